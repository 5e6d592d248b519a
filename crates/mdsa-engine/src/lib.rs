//! The engine interfaces of mdsa, with no tensor library behind them.
//!
//! Work in progress: the rest of the interface moves here next.

pub mod format;

pub use format::WeightFormat;
