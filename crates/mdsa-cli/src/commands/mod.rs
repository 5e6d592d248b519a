//! One module per subcommand.

pub(crate) mod embed;
pub(crate) mod hw;
