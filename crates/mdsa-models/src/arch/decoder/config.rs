//! The sizes and constants every decoder family is described by
//! ([`DecoderConfig`]), read from GGUF metadata or a Hugging Face `config.json`.
//!
//! One shared struct rather than one per family: the families differ in a few
//! optional settings, which are fields here with the value that means "plain
//! llama". The architecture name is checked against the family table
//! ([`Architecture`]), so an unknown one fails here, naming the file.

use std::path::Path;

use crate::gguf::GgufFile;
use mdsa_engine::ModelError;

use super::families::Architecture;

/// How RoPE positions are stretched beyond the trained context. The decoders'
/// RoPE layer turns each variant into its cos/sin tables, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum RopeScaling {
    /// Positions as they are.
    #[default]
    None,
    /// Positions divided by `factor` ("linear" / position interpolation).
    Linear {
        /// The divisor.
        factor: f32,
    },
}

/// Sizes and constants of a decoder, read from GGUF metadata or `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// Which architecture (and so which family builds the model).
    pub architecture: Architecture,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Number of blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (fewer than query heads with grouped-query attention).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// RoPE scaling.
    pub rope_scaling: RopeScaling,
    /// Longest context the model was trained for.
    pub context_length: usize,
}

impl DecoderConfig {
    /// Reads the `{arch}.*` keys of a GGUF file.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ModelError> {
        let name = file.architecture()?.to_string();
        let architecture = Architecture::parse(&name, file.path())?;
        let key = |k: &str| format!("{name}.{k}");
        let u = |k: &str| -> Result<usize, ModelError> { Ok(file.get_u32(&key(k))? as usize) };
        let hidden_size = u("embedding_length")?;
        let num_heads = u("attention.head_count")?;
        let num_kv_heads =
            file.get_u32_or(&key("attention.head_count_kv"), num_heads as u32)? as usize;
        let config_error =
            |field: &str, reason: String| ModelError::config(file.path(), field, reason);
        if num_heads == 0 || hidden_size % num_heads != 0 {
            return Err(config_error(
                &key("attention.head_count"),
                format!(
                    "embedding_length {hidden_size} is not divisible by head_count {num_heads}"
                ),
            ));
        }
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(config_error(
                &key("attention.head_count_kv"),
                format!("head_count {num_heads} is not a multiple of head_count_kv {num_kv_heads}"),
            ));
        }
        let vocab_size = match file.tensor("token_embd.weight") {
            Some(info) => info.shape_row_major().first().copied().unwrap_or(0),
            None => file.get_str_array("tokenizer.ggml.tokens")?.len(),
        };
        let rope_scaling = match file.get_str_opt(&key("rope.scaling.type"))? {
            None | Some("none") => RopeScaling::None,
            Some("linear") => RopeScaling::Linear {
                factor: file.get_f32_or(&key("rope.scaling.factor"), 1.0)?,
            },
            Some(other) => {
                return Err(config_error(
                    &key("rope.scaling.type"),
                    format!("RoPE scaling {other:?} is not supported (none, linear)"),
                ));
            }
        };
        Ok(Self {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size: u("feed_forward_length")?,
            num_layers: u("block_count")?,
            num_heads,
            num_kv_heads,
            head_dim: hidden_size / num_heads,
            rms_norm_eps: file.get_f32_or(&key("attention.layer_norm_rms_epsilon"), 1e-5)?,
            rope_theta: file.get_f32_or(&key("rope.freq_base"), 10_000.0)?,
            rope_scaling,
            context_length: file.get_u32_or(&key("context_length"), 2048)? as usize,
        })
    }

    /// Reads a Hugging Face `config.json` whose `model_type` names a supported
    /// architecture ([`SUPPORTED_ARCHITECTURES`](super::SUPPORTED_ARCHITECTURES)).
    pub fn from_hf_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let hf: HfConfig = serde_json::from_str(&text)
            .map_err(|e| ModelError::config(path, "(json)", e.to_string()))?;
        let architecture = Architecture::parse(&hf.model_type, path)?;
        let num_kv_heads = hf.num_key_value_heads.unwrap_or(hf.num_attention_heads);
        if hf.num_attention_heads == 0
            || num_kv_heads == 0
            || !hf.num_attention_heads.is_multiple_of(num_kv_heads)
        {
            return Err(ModelError::config(
                path,
                "num_key_value_heads",
                format!(
                    "num_attention_heads {} is not a multiple of num_key_value_heads {num_kv_heads}",
                    hf.num_attention_heads
                ),
            ));
        }
        let head_dim = hf
            .head_dim
            .unwrap_or(hf.hidden_size / hf.num_attention_heads);
        if head_dim * hf.num_attention_heads != hf.hidden_size {
            return Err(ModelError::config(
                path,
                "head_dim",
                format!(
                    "head_dim {head_dim} × num_attention_heads {} must equal hidden_size {}",
                    hf.num_attention_heads, hf.hidden_size
                ),
            ));
        }
        let rope_scaling = match &hf.rope_scaling {
            None => RopeScaling::None,
            Some(s) if s.r#type == "linear" => RopeScaling::Linear { factor: s.factor },
            Some(s) => {
                return Err(ModelError::config(
                    path,
                    "rope_scaling",
                    format!(
                        "RoPE scaling {:?} is not supported (none, linear)",
                        s.r#type
                    ),
                ));
            }
        };
        Ok(Self {
            architecture,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta: hf.rope_theta,
            rope_scaling,
            context_length: hf.max_position_embeddings,
        })
    }
}

/// The fields of a Hugging Face `config.json` that the decoders read.
#[derive(Debug, serde::Deserialize)]
struct HfConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_rms_eps")]
    rms_norm_eps: f32,
    #[serde(default = "default_rope_theta")]
    rope_theta: f32,
    #[serde(default)]
    rope_scaling: Option<HfRopeScaling>,
    #[serde(default = "default_context")]
    max_position_embeddings: usize,
}

#[derive(Debug, serde::Deserialize)]
struct HfRopeScaling {
    #[serde(alias = "rope_type")]
    r#type: String,
    #[serde(default = "one")]
    factor: f32,
}

fn default_rms_eps() -> f32 {
    1e-6
}
fn default_rope_theta() -> f32 {
    10_000.0
}
fn default_context() -> usize {
    2048
}
fn one() -> f32 {
    1.0
}
