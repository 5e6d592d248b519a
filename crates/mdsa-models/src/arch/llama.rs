//! Where [`WeightFormat`] used to live, kept so that `arch::llama::WeightFormat`
//! still resolves while its users move to `mdsa_engine::WeightFormat`. The
//! decoders themselves are in [`super::decoder`].

pub use mdsa_engine::WeightFormat;
