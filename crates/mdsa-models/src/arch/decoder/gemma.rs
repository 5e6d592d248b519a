//! The Gemma family: gemma2 and gemma3 (text models).
//!
//! Blocks with four RMSNorms — before and after attention, before and after
//! the feed-forward layer — each post-norm applied before its residual add;
//! GeGLU feed-forward (tanh-approximated GELU); embedding rows scaled by
//! √hidden_size; attention scaled by `query_pre_attn_scalar`; sliding-window
//! attention on some layers (Gemma 2: every other one; Gemma 3: as its
//! `layer_types` say, with a RoPE base of its own). Gemma 2 soft-caps
//! attention scores and output logits; Gemma 3 normalizes each query and key
//! head instead.
//!
//! Hugging Face files store every norm weight as `w - 1`; llama.cpp's
//! converter adds the 1 back, so GGUF norms are plain. Gemma GGUFs rotate
//! halves (no Q/K permutation).

use burn::tensor::Tensor;

use mdsa_engine::ModelError;

use super::config::DecoderConfig;
use super::families::Family;
use super::layers::{Activation, Attention, AttentionSpec, Mlp, NormWeight, RmsNorm};
use super::loader::{Loader, Part};
use super::rope::RopeLayout;
use super::stack::{Block, LayerPass, Stack, StackSpec};

const STACK: StackSpec = StackSpec {
    gguf_rope: RopeLayout::Halves,
    hf_norm: NormWeight::OnePlus,
    scale_embedding: true,
};

/// Gemma's defaults around its constructor.
const fn gemma(name: &'static str, aliases: &'static [&'static str], qk_norm: bool) -> Family {
    Family {
        aliases,
        uses_softcap: true,
        uses_query_pre_attn_scalar: true,
        ..Family::plain(name, if qk_norm { build_with_qk_norm } else { build })
    }
}

/// `gemma2`: soft-capped attention and logits.
pub(super) const GEMMA2: Family = gemma("gemma2", &[], false);

/// `gemma3` (`gemma3_text` in Hugging Face configs): per-head Q/K norms.
pub(super) const GEMMA3: Family = gemma("gemma3", &["gemma3_text"], true);

fn build(
    config: DecoderConfig,
    loader: &Loader<'_>,
) -> Result<Box<dyn super::Decoder>, ModelError> {
    Stack::<GemmaBlock>::boxed(config, loader, STACK, GemmaSpec { qk_norm: false })
}

fn build_with_qk_norm(
    config: DecoderConfig,
    loader: &Loader<'_>,
) -> Result<Box<dyn super::Decoder>, ModelError> {
    Stack::<GemmaBlock>::boxed(config, loader, STACK, GemmaSpec { qk_norm: true })
}

/// Whether a member normalizes query and key heads.
#[derive(Debug, Clone, Copy)]
pub(super) struct GemmaSpec {
    qk_norm: bool,
}

/// One Gemma block.
#[derive(Debug)]
pub(super) struct GemmaBlock {
    attn_norm: RmsNorm,
    attention: Attention,
    post_attn_norm: RmsNorm,
    pre_ffn_norm: RmsNorm,
    mlp: Mlp,
    post_ffn_norm: RmsNorm,
}

impl Block for GemmaBlock {
    type Spec = GemmaSpec;

    fn load(
        loader: &Loader<'_>,
        layer: usize,
        config: &DecoderConfig,
        spec: GemmaSpec,
    ) -> Result<Self, ModelError> {
        let names = loader.names();
        let stored = STACK.norm(loader);
        let (h, eps) = (config.hidden_size, config.rms_norm_eps);
        let norm = |part| RmsNorm::load(loader, &names.layer(layer, part), h, eps, stored);
        let attention = AttentionSpec {
            qk_norm: spec.qk_norm.then_some(stored),
            ..AttentionSpec::PLAIN
        };
        Ok(Self {
            attn_norm: norm(Part::AttnNorm)?,
            attention: Attention::load(loader, layer, config, attention)?,
            post_attn_norm: norm(Part::PostAttnNorm)?,
            pre_ffn_norm: norm(Part::PreFfnNorm)?,
            mlp: Mlp::load(loader, layer, config, Activation::GeluTanh, false)?,
            post_ffn_norm: norm(Part::PostFfnNorm)?,
        })
    }

    fn forward(&self, x: Tensor<2>, layer: &mut LayerPass<'_>) -> Result<Tensor<2>, ModelError> {
        let normed = self.attn_norm.forward(x.clone());
        let attended = self.attention.forward(normed, layer)?;
        let x = x + self.post_attn_norm.forward(attended);
        let fed = self.mlp.forward(self.pre_ffn_norm.forward(x.clone()))?;
        Ok(x + self.post_ffn_norm.forward(fed))
    }

    fn resident_bytes(&self) -> usize {
        [
            &self.attn_norm,
            &self.post_attn_norm,
            &self.pre_ffn_norm,
            &self.post_ffn_norm,
        ]
        .iter()
        .map(|n| n.resident_bytes())
        .sum::<usize>()
            + self.attention.resident_bytes()
            + self.mlp.resident_bytes()
    }
}
