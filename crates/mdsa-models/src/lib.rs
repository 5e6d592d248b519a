//! Models for mdsa: where weights come from, how they are read, and the burn
//! modules that run them.
//!
//! - [`gguf`]: GGUF files (header, metadata, tensor infos, data through mmap)
//!   and their embedded tokenizers.
//! - [`quant`]: linear layers computing directly on GGUF quantized blocks
//!   (Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K) with run-time-selected SIMD kernels;
//!   Q5_0/Q5_1 read at load; dense f16/bf16 matrices.
//! - [`weights`]: safetensors through mmap, converted to the working dtype with
//!   every tensor's shape checked against the configuration.
//! - [`arch`]: architectures as burn modules: the BERT encoder, and the decoder
//!   families behind the [`arch::decoder::Decoder`] trait, one file per family
//!   built from shared layers.
//! - [`tokenizer`]: `tokenizer.json` with per-batch padding.
//! - [`chat`]: a model's own chat template, rendered with minijinja in a sandbox.
//! - [`generate`]: the decoder generator: sampling, stop conditions, UTF-8-safe
//!   streaming, usage, timings.
//! - [`embedder`]: the BERT sentence encoder.
//! - [`manager`]: the [`manager::ModelManager`]: which models are resident,
//!   single-flight loads, eviction by measured bytes, pluggable
//!   [`mdsa_engine::ModelBackend`]s, the built-in one being [`manager::LocalBackend`].
//! - [`backend`]: the burn backend chosen by cargo features (`flex`, `wgpu`, `cuda`).
//!
//! The interfaces it implements ([`mdsa_engine::TextGenerator`],
//! [`mdsa_engine::Embedder`], [`mdsa_engine::ModelBackend`]) and the plain types
//! they speak in live in `mdsa-engine`, which needs no tensor library: this crate
//! is the local burn backend behind them. It knows nothing of domains or routing.

pub mod arch;
pub mod backend;
pub mod chat;
pub mod embedder;
pub mod generate;
pub mod gguf;
pub mod manager;
pub mod quant;
mod storage;
mod team;
pub mod tokenizer;
pub mod weights;

pub use embedder::{BertEmbedder, EmbedderOptions, EncoderPath, Pooling};
pub use team::set_compute_nice;

// The README's snippets are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// What a caught panic said, when it said something (`&str` or `String`).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
}
