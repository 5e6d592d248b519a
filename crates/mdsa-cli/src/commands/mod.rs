//! One module per subcommand.

pub(crate) mod chat;
pub(crate) mod domains;
pub(crate) mod embed;
pub(crate) mod fetch;
pub(crate) mod generate;
pub(crate) mod hw;
pub(crate) mod logs;
pub(crate) mod metrics;
pub(crate) mod models;
pub(crate) mod query;
pub(crate) mod route;
pub(crate) mod routes;
pub(crate) mod serve;
pub(crate) mod system;
pub(crate) mod welcome;
