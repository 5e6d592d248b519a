//! Reading weights from disk into burn tensors, with the checks that turn a wrong
//! file into a clear error instead of a wrong answer.

mod safetensors;

pub use safetensors::SafetensorsWeights;
