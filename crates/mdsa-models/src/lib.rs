//! Models for mdsa: where weights come from, how they are read, and the burn
//! modules that run them.
//!
//! - [`source`]: a model reference (a local directory, a local `.gguf` file, or a
//!   Hugging Face Hub id) resolved to files on disk through the hf-hub cache.
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
//! - [`generate`]: the [`generate::TextGenerator`] interface and the decoder
//!   generator: sampling, stop conditions, UTF-8-safe streaming, usage, timings.
//! - [`embedder`]: the [`Embedder`] interface and the BERT sentence encoder.
//! - [`registry`]: named model specs ([`registry::ModelSpec`]) read from RON.
//! - [`manager`]: the [`manager::ModelManager`]: which models are resident,
//!   single-flight loads, eviction by measured bytes, pluggable
//!   [`manager::ModelBackend`]s.
//! - [`backend`]: the burn backend chosen by cargo features (`flex`, `wgpu`, `cuda`).
//!
//! The crate knows nothing of domains or routing; `mdsa-domains` uses it through
//! the engine interfaces defined here.

pub mod arch;
pub mod backend;
pub mod chat;
pub mod embedder;
mod error;
pub mod generate;
pub mod gguf;
pub mod manager;
pub mod quant;
pub mod registry;
pub mod source;
mod storage;
pub mod tokenizer;
pub mod weights;

/// The router's sentence encoder, used when no model is named.
pub const DEFAULT_ENCODER: &str = "sentence-transformers/all-MiniLM-L6-v2";

pub use embedder::{BertEmbedder, Embedder, EmbedderOptions, Pooling, dot};
pub use error::ModelError;

// The README's snippets are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
