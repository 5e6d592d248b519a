//! Decoder-only language models: the [`Decoder`] trait the generator runs, and
//! one module per model family built from shared pieces.
//!
//! - `config`: [`DecoderConfig`], the sizes and constants every family is
//!   described by, from GGUF metadata or a Hugging Face `config.json`.
//! - `families`: the table from an architecture name to its family
//!   ([`Architecture`], [`SUPPORTED_ARCHITECTURES`]).
//! - `layers`: embedding, RMSNorm, grouped-query attention with its masks,
//!   gated feed-forward layers.
//! - `rope`: rotary position embeddings and every [`RopeScaling`].
//! - `stack`: what all families share around their blocks (embedding, RoPE,
//!   masks, final norm, output head) and the `Block` trait.
//! - `cache`: the [`KvCache`], allocated once per sequence and written in place.
//! - `attend`: attention on the host, reading the cache's buffers directly.
//! - `loader`: tensor names in GGUF and safetensors, and how a stored tensor
//!   becomes a weight in the requested format.
//! - `llama`: the llama family (llama, mistral, qwen2, qwen3, phi3).
//! - `gemma`: the Gemma family (gemma2, gemma3).
//!
//! A new family is a file beside `llama.rs` with a `Block` and a `Family`
//! constant, one line in the `families` table, and its settings in
//! [`DecoderConfig`] and its parsing.
//!
//! Linear layers are dense burn tensors (the working dtype on any device) or
//! GGUF blocks kept as stored and multiplied by the quantized kernels in
//! [`crate::quant`] (CPU), which read a quarter of the bytes per token.

mod attend;
mod cache;
mod config;
mod families;
mod gemma;
mod layers;
mod llama;
mod loader;
mod rope;
mod stack;

use std::fmt::Debug;
use std::sync::Arc;

use burn::tensor::Device;
use mdsa_engine::WeightFormat;

use crate::gguf::GgufFile;
use crate::weights::SafetensorsWeights;
use mdsa_engine::ModelError;

pub use cache::{KvCache, KvPrecision};
pub use config::{AttentionKind, DecoderConfig, RopeScaling};
pub use families::{Architecture, SUPPORTED_ARCHITECTURES};

use loader::Loader;

/// A loaded decoder-only language model, whatever its family: next-token logits
/// for new tokens on top of a KV cache.
pub trait Decoder: Send + Sync + Debug {
    /// The configuration read from the file.
    fn config(&self) -> &DecoderConfig;

    /// Runs `tokens` (the next positions after what `cache` holds), adds them to
    /// `cache` and returns the logits of the last one (`vocab_size` values).
    fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, ModelError> {
        let mut batch = [BatchItem { tokens, cache }];
        let mut logits = self.forward_batch(&mut batch)?;
        logits
            .pop()
            .ok_or_else(|| ModelError::Backend("a forward pass gave no logits".into()))
    }

    /// Runs several sequences' new tokens in one pass, each on its own cache:
    /// their rows share every weight read (a decode step of many sequences
    /// reads the weights once). Returns each sequence's next-token logits, in
    /// order.
    fn forward_batch(&self, batch: &mut [BatchItem<'_>]) -> Result<Vec<Vec<f32>>, ModelError>;

    /// An empty cache for one sequence of up to `capacity` positions (its
    /// buffers are allocated once, here).
    fn new_cache_with_capacity(&self, capacity: usize) -> KvCache;

    /// An empty cache for one sequence of the model's whole context.
    fn new_cache(&self) -> KvCache {
        self.new_cache_with_capacity(self.config().context_length)
    }

    /// Bytes one cached position takes in the KV cache.
    fn kv_bytes_per_token(&self) -> usize {
        let c = self.config();
        2 * c.num_layers * c.num_kv_heads * c.head_dim * 4
    }

    /// Bytes of weights held in memory. A tied output head is counted with the
    /// embedding it shares. Embedding tables borrow the file's mmap; linear
    /// layers in block formats the SIMD kernels interleave are copied once at
    /// load (the same number of bytes, rearranged).
    fn resident_bytes(&self) -> usize;
}

/// One sequence of a batched forward pass: its new tokens and its cache.
#[derive(Debug)]
pub struct BatchItem<'a> {
    /// The next positions after what `cache` holds.
    pub tokens: &'a [u32],
    /// The sequence's keys and values.
    pub cache: &'a mut KvCache,
}

/// Loads the decoder a GGUF file holds, of whichever supported architecture.
pub fn load_gguf(
    file: Arc<GgufFile>,
    format: WeightFormat,
    device: &Device,
) -> Result<Box<dyn Decoder>, ModelError> {
    let config = DecoderConfig::from_gguf(&file)?;
    let loader = Loader::gguf(&file, format, device);
    (config.architecture.family().build)(config, &loader)
}

/// Loads a decoder from Hugging Face safetensors described by `config`
/// (see [`DecoderConfig::from_hf_file`]).
pub fn load_safetensors(
    config: DecoderConfig,
    weights: &SafetensorsWeights,
    format: WeightFormat,
    device: &Device,
) -> Result<Box<dyn Decoder>, ModelError> {
    let loader = Loader::safetensors(weights, format, device);
    (config.architecture.family().build)(config, &loader)
}

/// Checks that a forward pass of `n` tokens after `past` cached ones has
/// something to run and fits the context.
fn check_positions(config: &DecoderConfig, past: usize, n: usize) -> Result<(), ModelError> {
    if n == 0 {
        return Err(ModelError::Backend(
            "forward needs at least one token".into(),
        ));
    }
    if past + n > config.context_length {
        return Err(ModelError::ContextOverflow {
            tokens: past + n,
            context: config.context_length,
        });
    }
    Ok(())
}
