//! One module per subcommand.

pub(crate) mod embed;
pub(crate) mod generate;
pub(crate) mod hw;
