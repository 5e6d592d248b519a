//! The llama family: llama (SmolLM, TinyLlama, ...), mistral (a llama by
//! another name) and qwen2 / qwen2.5 (a llama with a bias on Q, K and V).
//!
//! Pre-norm transformer blocks: RMSNorm → attention with rotary position
//! embeddings and grouped-query heads → residual → RMSNorm → SwiGLU
//! feed-forward → residual; a final RMSNorm and an output head that may share
//! the token embedding.
//!
//! RoPE layout: llama.cpp's converter permutes the Q and K weights of `llama`
//! models so that rotating *adjacent* pairs gives Hugging Face's rotate-half
//! result; qwen2 GGUFs are not permuted and rotate halves. So the layout follows
//! the architecture, and the stored weights are used as they are.

use burn::tensor::{Device, Tensor};

use crate::arch::linear::{LinearWeight, tensor_to_vec};
use mdsa_engine::ModelError;

use super::cache::{KvCache, LayerKv};
use super::config::DecoderConfig;
use super::families::Family;
use super::layers::{Attention, Embedding, Mlp, RmsNorm, Rope, RopeAt, RopeLayout, causal_mask};
use super::loader::{Loader, Names, Part};
use super::{Decoder, check_positions};

/// `llama`: GGUF Q/K permuted for adjacent-pair RoPE, no Q/K/V bias.
pub(super) const LLAMA: Family = Family {
    name: "llama",
    build: |config, loader| Llama::boxed(config, loader, Variant::LLAMA),
};

/// `mistral`: the same as llama.
pub(super) const MISTRAL: Family = Family {
    name: "mistral",
    build: |config, loader| Llama::boxed(config, loader, Variant::LLAMA),
};

/// `qwen2`: a bias on Q, K and V; GGUF Q/K not permuted.
pub(super) const QWEN2: Family = Family {
    name: "qwen2",
    build: |config, loader| Llama::boxed(config, loader, Variant::QWEN2),
};

/// What sets the members of the family apart.
#[derive(Debug, Clone, Copy)]
struct Variant {
    /// Q, K and V projections have a bias.
    qkv_bias: bool,
    /// The RoPE layout of a GGUF file's Q/K weights (safetensors rotate halves).
    gguf_rope: RopeLayout,
}

impl Variant {
    const LLAMA: Self = Self {
        qkv_bias: false,
        gguf_rope: RopeLayout::Interleaved,
    };
    const QWEN2: Self = Self {
        qkv_bias: true,
        gguf_rope: RopeLayout::Halves,
    };
}

/// One pre-norm transformer block.
#[derive(Debug)]
struct Block {
    attn_norm: RmsNorm,
    attention: Attention,
    ffn_norm: RmsNorm,
    mlp: Mlp,
}

impl Block {
    fn load(
        loader: &Loader<'_>,
        layer: usize,
        config: &DecoderConfig,
        variant: Variant,
    ) -> Result<Self, ModelError> {
        let names = loader.names();
        let (h, eps) = (config.hidden_size, config.rms_norm_eps);
        Ok(Self {
            attn_norm: RmsNorm::load(loader, &names.layer(layer, Part::AttnNorm), h, eps)?,
            attention: Attention::load(loader, layer, config, variant.qkv_bias)?,
            ffn_norm: RmsNorm::load(loader, &names.layer(layer, Part::FfnNorm), h, eps)?,
            mlp: Mlp::load(loader, layer, h, config.intermediate_size)?,
        })
    }

    fn forward(
        &self,
        x: Tensor<2>,
        rope: &Rope,
        at: &RopeAt,
        mask: Option<Tensor<2>>,
        cache: &mut LayerKv,
    ) -> Result<Tensor<2>, ModelError> {
        let attended =
            self.attention
                .forward(self.attn_norm.forward(x.clone()), rope, at, mask, cache)?;
        let x = x + attended;
        Ok(x.clone() + self.mlp.forward(self.ffn_norm.forward(x))?)
    }

    fn resident_bytes(&self) -> usize {
        self.attn_norm.resident_bytes()
            + self.attention.resident_bytes()
            + self.ffn_norm.resident_bytes()
            + self.mlp.resident_bytes()
    }
}

/// A loaded llama-family decoder.
#[derive(Debug)]
pub(crate) struct Llama {
    config: DecoderConfig,
    embedding: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    head: LinearWeight,
    rope: Rope,
    device: Device,
    resident_bytes: usize,
}

impl Llama {
    fn boxed(
        config: DecoderConfig,
        loader: &Loader<'_>,
        variant: Variant,
    ) -> Result<Box<dyn Decoder>, ModelError> {
        Ok(Box::new(Self::load(config, loader, variant)?))
    }

    fn load(
        config: DecoderConfig,
        loader: &Loader<'_>,
        variant: Variant,
    ) -> Result<Self, ModelError> {
        let device = loader.device();
        let names = loader.names();
        let h = config.hidden_size;
        let blocks = (0..config.num_layers)
            .map(|i| Block::load(loader, i, &config, variant))
            .collect::<Result<Vec<_>, ModelError>>()?;
        let embedding = Embedding::load(loader, names.embedding(), config.vocab_size, h)?;
        // Tied embeddings: without an output weight the head is the embedding table.
        let head_name = if loader.contains(&format!("{}.weight", names.head())) {
            names.head()
        } else {
            names.embedding()
        };
        let head = loader.linear(head_name, h, config.vocab_size, false)?;
        let layout = match names {
            Names::Gguf => variant.gguf_rope,
            Names::HuggingFace => RopeLayout::Halves,
        };
        let rope = Rope::new(&config, layout, device);
        let norm = RmsNorm::load(loader, names.final_norm(), h, config.rms_norm_eps)?;
        let mut model = Self {
            embedding,
            blocks,
            norm,
            head,
            rope,
            device: device.clone(),
            config,
            resident_bytes: 0,
        };
        model.resident_bytes = model.embedding.resident_bytes()
            + model
                .blocks
                .iter()
                .map(Block::resident_bytes)
                .sum::<usize>()
            + model.norm.resident_bytes()
            + model.head.resident_bytes();
        Ok(model)
    }
}

impl Decoder for Llama {
    fn config(&self) -> &DecoderConfig {
        &self.config
    }

    fn resident_bytes(&self) -> usize {
        self.resident_bytes
    }

    fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, ModelError> {
        let n = tokens.len();
        let past = cache.len();
        check_positions(&self.config, past, n)?;
        let mut x = self.embedding.forward(tokens)?;
        let at = self.rope.at(past, n);
        let group = self.config.num_heads / self.config.num_kv_heads;
        let mask = (n > 1).then(|| causal_mask(n, past, group, &self.device));
        for (block, layer_cache) in self.blocks.iter().zip(cache.layers_mut()) {
            x = block.forward(x, &self.rope, &at, mask.clone(), layer_cache)?;
        }
        cache.advance(n);
        let last = x.narrow(0, n - 1, 1);
        let logits = self.head.forward(self.norm.forward(last))?;
        tensor_to_vec(logits)
    }
}
