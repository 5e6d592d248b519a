//! The llama family: llama (Llama 2 and 3.x, SmolLM, TinyLlama, ...), mistral
//! (a llama by another name, with a sliding window where its config sets
//! one), qwen2 / qwen2.5 (a bias on Q, K and V), qwen3 (per-head Q/K RMSNorm,
//! an explicit head width) and phi3 (Phi-3/3.5/4-mini: fused QKV and
//! gate-up projections, LongRoPE, partial rotary embeddings).
//!
//! Pre-norm transformer blocks: RMSNorm → attention with rotary position
//! embeddings and grouped-query heads → residual → RMSNorm → SwiGLU
//! feed-forward → residual; a final RMSNorm and an output head that may share
//! the token embedding ([`Stack`]).
//!
//! RoPE layout: llama.cpp's converter permutes the Q and K weights of `llama`
//! models so that rotating *adjacent* pairs gives Hugging Face's rotate-half
//! result; qwen2, qwen3 and phi3 GGUFs are not permuted and rotate halves. So
//! the layout follows the architecture, and the stored weights are used as
//! they are.

use burn::tensor::Tensor;

use mdsa_engine::ModelError;

use super::config::DecoderConfig;
use super::families::Family;
use super::layers::{Activation, Attention, AttentionSpec, Mlp, NormWeight, RmsNorm, add_in_place};
use super::loader::{Loader, Part};
use super::rope::RopeLayout;
use super::stack::{Block, LayerPass, Stack, StackSpec};
use crate::arch::linear::{recycle, take_buffer};

/// Llama's embedding, norms and RoPE storage, given its GGUF RoPE layout.
const fn stack(gguf_rope: RopeLayout) -> StackSpec {
    StackSpec {
        gguf_rope,
        hf_norm: NormWeight::Plain,
        scale_embedding: false,
    }
}

/// `llama`: GGUF Q/K permuted for adjacent-pair RoPE, no Q/K/V bias.
pub(super) const LLAMA: Family = Family::plain("llama", |config, loader| {
    let spec = stack(RopeLayout::Interleaved);
    Stack::<LlamaBlock>::boxed(config, loader, spec, LlamaSpec::PLAIN)
});

/// `mistral`: the same as llama (its sliding window comes from the config).
pub(super) const MISTRAL: Family = Family::plain("mistral", |config, loader| {
    let spec = stack(RopeLayout::Interleaved);
    Stack::<LlamaBlock>::boxed(config, loader, spec, LlamaSpec::PLAIN)
});

/// `qwen2`: a bias on Q, K and V; GGUF Q/K not permuted.
pub(super) const QWEN2: Family = Family::plain("qwen2", |config, loader| {
    let block = LlamaSpec {
        attention: AttentionSpec {
            qkv_bias: true,
            ..AttentionSpec::PLAIN
        },
        fused_gate_up: false,
    };
    Stack::<LlamaBlock>::boxed(config, loader, stack(RopeLayout::Halves), block)
});

/// `qwen3`: RMSNorm on each query and key head before RoPE; no bias.
pub(super) const QWEN3: Family = Family::plain("qwen3", |config, loader| {
    let block = LlamaSpec {
        attention: AttentionSpec {
            qk_norm: Some(NormWeight::Plain),
            ..AttentionSpec::PLAIN
        },
        fused_gate_up: false,
    };
    Stack::<LlamaBlock>::boxed(config, loader, stack(RopeLayout::Halves), block)
});

/// `phi3`: Q, K and V in one projection, gate and up in another.
pub(super) const PHI3: Family = Family {
    default_rms_eps: 1e-5,
    ..Family::plain("phi3", |config, loader| {
        let block = LlamaSpec {
            attention: AttentionSpec {
                fused_qkv: true,
                ..AttentionSpec::PLAIN
            },
            fused_gate_up: true,
        };
        Stack::<LlamaBlock>::boxed(config, loader, stack(RopeLayout::Halves), block)
    })
};

/// What sets the members of the family apart.
#[derive(Debug, Clone, Copy)]
pub(super) struct LlamaSpec {
    attention: AttentionSpec,
    /// Gate and up are one stored projection.
    fused_gate_up: bool,
}

impl LlamaSpec {
    const PLAIN: Self = Self {
        attention: AttentionSpec::PLAIN,
        fused_gate_up: false,
    };
}

/// One pre-norm transformer block.
#[derive(Debug)]
pub(super) struct LlamaBlock {
    attn_norm: RmsNorm,
    attention: Attention,
    ffn_norm: RmsNorm,
    mlp: Mlp,
}

impl Block for LlamaBlock {
    type Spec = LlamaSpec;

    fn load(
        loader: &Loader<'_>,
        layer: usize,
        config: &DecoderConfig,
        spec: LlamaSpec,
    ) -> Result<Self, ModelError> {
        let names = loader.names();
        let (h, eps) = (config.hidden_size, config.rms_norm_eps);
        let norm =
            |part| RmsNorm::load(loader, &names.layer(layer, part), h, eps, NormWeight::Plain);
        Ok(Self {
            attn_norm: norm(Part::AttnNorm)?,
            attention: Attention::load(loader, layer, config, spec.attention)?,
            ffn_norm: norm(Part::FfnNorm)?,
            mlp: Mlp::load(loader, layer, config, Activation::Silu, spec.fused_gate_up)?,
        })
    }

    fn forward(&self, x: Tensor<2>, layer: &mut LayerPass<'_>) -> Result<Tensor<2>, ModelError> {
        let normed = self.attn_norm.forward(x.clone());
        let attended = self.attention.forward(normed, layer)?;
        let x = x + attended;
        Ok(x.clone() + self.mlp.forward(self.ffn_norm.forward(x))?)
    }

    fn runs_on_host(&self) -> bool {
        self.attention.runs_on_host() && self.mlp.runs_on_host()
    }

    fn forward_host(&self, x: &mut [f32], layer: &mut LayerPass<'_>) -> Result<(), ModelError> {
        let rows = layer.rows();
        let mut normed = take_buffer(x.len());
        self.attn_norm.forward_host(x, &mut normed);
        let attended = self.attention.forward_host(&normed, rows, layer)?;
        add_in_place(x, &attended);
        recycle(attended);
        self.ffn_norm.forward_host(x, &mut normed);
        let y = self.mlp.forward_host(&normed, rows)?;
        add_in_place(x, &y);
        recycle(y);
        recycle(normed);
        Ok(())
    }

    fn resident_bytes(&self) -> usize {
        self.attn_norm.resident_bytes()
            + self.attention.resident_bytes()
            + self.ffn_norm.resident_bytes()
            + self.mlp.resident_bytes()
    }
}
