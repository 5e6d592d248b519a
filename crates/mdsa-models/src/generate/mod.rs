//! Text generation: sampling, stop conditions, streaming text pieces, usage and
//! timings. The model-specific forward pass lives in `arch`; this module is the
//! loop around it, shared by every architecture.

pub mod batch;
mod caches;
pub mod detokenize;
pub mod engine;
pub mod prefix;
pub mod sampling;
mod sequence;

pub use batch::BatchStats;
pub use detokenize::IncrementalDecoder;
pub use engine::{DEFAULT_SEQUENCES, DecoderGenerator, DecoderOptions};
pub use prefix::PrefixStats;
pub use sampling::{Sampler, argmax};
