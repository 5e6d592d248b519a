//! Text generation: sampling, stop conditions, streaming text pieces, usage and
//! timings. The model-specific forward pass lives in `arch`; this module is the
//! loop around it, shared by every architecture.

pub mod detokenize;
pub mod engine;
pub mod params;
pub mod sampling;

pub use detokenize::IncrementalDecoder;
pub use engine::{DecoderGenerator, DecoderOptions, TextGenerator};
pub use params::{FinishReason, GenerationOutput, GenerationParams, Timings, Usage};
pub use sampling::{Sampler, SamplingParams, argmax};
