//! The sizes and constants every decoder family is described by
//! ([`DecoderConfig`]), read from GGUF metadata or a Hugging Face `config.json`.
//!
//! One shared struct rather than one per family: the families differ in a few
//! optional settings, which are fields here with the value that means "plain
//! llama". The architecture name is checked against the family table
//! ([`Architecture`]), so an unknown one fails here, naming the file.
//!
//! `config.json` comes in two generations: transformers 4 writes `rope_theta`
//! and `rope_scaling` at the top level, transformers 5 writes
//! `rope_parameters` (per attention kind for Gemma 3). Both are read.

use std::path::Path;

use serde_json::{Map, Value};

use crate::gguf::GgufFile;
use mdsa_engine::ModelError;

use super::families::Architecture;

/// How RoPE frequencies are changed from `1 / theta^(2i/d)`, as transformers'
/// `rope_type` (and llama.cpp's equivalents) describe it. The RoPE layer
/// ([`super::rope`]) turns each variant into its cos/sin tables, in one place.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum RopeScaling {
    /// Frequencies as they are.
    #[default]
    None,
    /// Positions divided by `factor` ("linear" / position interpolation).
    Linear {
        /// The divisor.
        factor: f32,
    },
    /// Llama 3.1's scaling: low frequencies divided by `factor`, high ones
    /// kept, a smooth blend between.
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f32,
        /// Wavelengths above `original_context / low_freq_factor` are scaled.
        low_freq_factor: f32,
        /// Wavelengths below `original_context / high_freq_factor` are kept.
        high_freq_factor: f32,
        /// The context the model was first trained for.
        original_context: usize,
    },
    /// Per-frequency divisors stored as a tensor (llama.cpp's `rope_freqs`,
    /// what its converter writes for Llama 3.1 scaling).
    Divisors(Vec<f32>),
    /// Dynamic NTK: past `original_context` positions, the base grows with the
    /// sequence length.
    DynamicNtk {
        /// The scaling factor.
        factor: f32,
        /// Length up to which the base is unchanged.
        original_context: usize,
    },
    /// YaRN: interpolation of low frequencies, extrapolation of high ones, a
    /// ramp between, and an attention factor on cos/sin.
    Yarn {
        /// The context extension factor.
        factor: f32,
        /// The context the model was first trained for.
        original_context: usize,
        /// Rotations above which dimensions extrapolate.
        beta_fast: f32,
        /// Rotations below which dimensions interpolate.
        beta_slow: f32,
        /// Multiplier of cos and sin.
        attention_factor: f32,
        /// Whether the ramp's ends are rounded to whole dimensions.
        truncate: bool,
    },
    /// Phi-3's LongRoPE: per-frequency divisors, `short` while the sequence
    /// fits `original_context`, `long` beyond, and an attention factor.
    LongRope {
        /// Divisors for sequences up to `original_context`.
        short: Vec<f32>,
        /// Divisors for longer sequences.
        long: Vec<f32>,
        /// The context the model was first trained for.
        original_context: usize,
        /// Multiplier of cos and sin.
        attention_factor: f32,
    },
}

impl RopeScaling {
    /// The names accepted in files, for error messages.
    pub const SUPPORTED: &'static str = "default, linear, llama3, dynamic, yarn, longrope (su)";
}

/// Which positions a layer's attention sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKind {
    /// Every earlier position.
    Full,
    /// The last `sliding_window` positions (the current one included).
    Sliding,
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
    /// Width of one head (not always `hidden_size / num_heads`: Qwen3, Gemma).
    pub head_dim: usize,
    /// Leading dimensions of each head that RoPE rotates (`head_dim` unless
    /// the model uses partial rotary embeddings).
    pub rotary_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// RoPE base frequency (of full-attention layers where they differ).
    pub rope_theta: f32,
    /// RoPE scaling (of full-attention layers where they differ).
    pub rope_scaling: RopeScaling,
    /// RoPE base of sliding-window layers, when they have their own (Gemma 3);
    /// they use no scaling.
    pub rope_local_theta: Option<f32>,
    /// Longest context the model was trained for.
    pub context_length: usize,
    /// Window of sliding-window layers.
    pub sliding_window: Option<usize>,
    /// Each layer's attention kind (all `Full` without a sliding window).
    pub layer_kinds: Vec<AttentionKind>,
    /// Attention scores are multiplied by this (`1/sqrt(head_dim)` unless the
    /// model says otherwise, as Gemma's `query_pre_attn_scalar` does).
    pub attention_scale: f32,
    /// `cap · tanh(score / cap)` on attention scores (Gemma 2).
    pub attn_logit_softcap: Option<f32>,
    /// `cap · tanh(logit / cap)` on the output logits (Gemma 2).
    pub final_logit_softcap: Option<f32>,
    /// Whether the output head is the token embedding (`None`: whichever the
    /// file has — a head tensor if present).
    pub tie_word_embeddings: Option<bool>,
}

impl DecoderConfig {
    /// Reads the `{arch}.*` keys of a GGUF file.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ModelError> {
        let name = file.architecture()?.to_string();
        let architecture = Architecture::parse(&name, file.path())?;
        let key = |k: &str| format!("{name}.{k}");
        let u = |k: &str| -> Result<usize, ModelError> { Ok(file.get_u32(&key(k))? as usize) };
        let opt = |k: &str| -> Result<Option<usize>, ModelError> {
            Ok(file.get_u32_opt(&key(k))?.map(|v| v as usize))
        };
        let config_error =
            |field: &str, reason: String| ModelError::config(file.path(), field, reason);
        let hidden_size = u("embedding_length")?;
        let num_heads = u("attention.head_count")?;
        let num_kv_heads = opt("attention.head_count_kv")?.unwrap_or(num_heads);
        if num_heads == 0 {
            return Err(config_error(
                &key("attention.head_count"),
                "head_count must be at least 1".into(),
            ));
        }
        if num_kv_heads == 0 || !num_heads.is_multiple_of(num_kv_heads) {
            return Err(config_error(
                &key("attention.head_count_kv"),
                format!("head_count {num_heads} is not a multiple of head_count_kv {num_kv_heads}"),
            ));
        }
        let head_dim = match opt("attention.key_length")? {
            Some(d) => d,
            None if hidden_size.is_multiple_of(num_heads) => hidden_size / num_heads,
            None => {
                return Err(config_error(
                    &key("attention.head_count"),
                    format!(
                        "embedding_length {hidden_size} is not divisible by head_count {num_heads} \
                         and attention.key_length is not set"
                    ),
                ));
            }
        };
        if let Some(v) = opt("attention.value_length")?
            && v != head_dim
        {
            return Err(config_error(
                &key("attention.value_length"),
                format!("value_length {v} differs from key_length {head_dim}; not supported"),
            ));
        }
        let rotary_dim = opt("rope.dimension_count")?.unwrap_or(head_dim);
        let vocab_size = match file.tensor("token_embd.weight") {
            Some(info) => info.shape_row_major().first().copied().unwrap_or(0),
            None => file.get_str_array("tokenizer.ggml.tokens")?.len(),
        };
        let context_length = file.get_u32_or(&key("context_length"), 2048)? as usize;
        let original_context = || -> Result<usize, ModelError> {
            Ok(opt("rope.scaling.original_context_length")?.unwrap_or(context_length))
        };
        let tensor = |name: &str| -> Result<Option<Vec<f32>>, ModelError> {
            match file.tensor(name) {
                Some(_) => Ok(Some(file.read_f32(name)?)),
                None => Ok(None),
            }
        };
        let scaling_type = file.get_str_opt(&key("rope.scaling.type"))?;
        let factor = file.get_f32_or(&key("rope.scaling.factor"), 1.0)?;
        let rope_scaling = match (
            tensor("rope_factors_short.weight")?,
            tensor("rope_factors_long.weight")?,
        ) {
            // Phi-3's LongRoPE factors are tensors; the attention factor is metadata.
            (Some(short), Some(long)) => {
                let original_context = original_context()?;
                let attention_factor = match file.get_f32_opt(&key("rope.scaling.attn_factor"))? {
                    Some(f) => f,
                    None => longrope_attention_factor(context_length, original_context),
                };
                RopeScaling::LongRope {
                    short,
                    long,
                    original_context,
                    attention_factor,
                }
            }
            _ => match tensor("rope_freqs.weight")? {
                Some(divisors) => RopeScaling::Divisors(divisors),
                None => match scaling_type {
                    None | Some("none") => RopeScaling::None,
                    Some("linear") => RopeScaling::Linear { factor },
                    Some("yarn") => {
                        let f = |k: &str, default: f32| file.get_f32_or(&key(k), default);
                        RopeScaling::Yarn {
                            factor,
                            original_context: original_context()?,
                            beta_fast: f("rope.scaling.yarn_beta_fast", 32.0)?,
                            beta_slow: f("rope.scaling.yarn_beta_slow", 1.0)?,
                            attention_factor: match file
                                .get_f32_opt(&key("rope.scaling.attn_factor"))?
                            {
                                Some(a) => a,
                                None => yarn_mscale(factor, 1.0),
                            },
                            truncate: true,
                        }
                    }
                    Some(other) => {
                        return Err(config_error(
                            &key("rope.scaling.type"),
                            format!(
                                "RoPE scaling {other:?} is not supported ({})",
                                RopeScaling::SUPPORTED
                            ),
                        ));
                    }
                },
            },
        };
        let num_layers = u("block_count")?;
        let sliding_window = opt("attention.sliding_window")?.filter(|&w| w > 0);
        let layer_kinds = gguf_layer_kinds(&name, num_layers, sliding_window);
        let family = architecture.family();
        Ok(Self {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size: u("feed_forward_length")?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rotary_dim,
            rms_norm_eps: file.get_f32_or(&key("attention.layer_norm_rms_epsilon"), 1e-5)?,
            rope_theta: file.get_f32_or(&key("rope.freq_base"), 10_000.0)?,
            rope_scaling,
            // Newer converters store the sliding layers' base; llama.cpp
            // assumes Gemma 3's 10,000 where they do not.
            rope_local_theta: match file.get_f32_opt(&key("rope.freq_base_swa"))? {
                Some(theta) => Some(theta),
                None => (name == "gemma3").then_some(10_000.0),
            },
            context_length,
            sliding_window,
            layer_kinds,
            attention_scale: match file.get_f32_opt(&key("attention.scale"))? {
                Some(scale) => scale,
                None => 1.0 / (head_dim as f32).sqrt(),
            },
            attn_logit_softcap: file
                .get_f32_opt(&key("attn_logit_softcapping"))?
                .filter(|&c| c > 0.0 && family.uses_softcap),
            final_logit_softcap: file
                .get_f32_opt(&key("final_logit_softcapping"))?
                .filter(|&c| c > 0.0 && family.uses_softcap),
            tie_word_embeddings: None,
        })
    }

    /// Reads a Hugging Face `config.json` whose `model_type` names a supported
    /// architecture ([`SUPPORTED_ARCHITECTURES`](super::SUPPORTED_ARCHITECTURES)).
    pub fn from_hf_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::config(path, "(json)", e.to_string()))?;
        let Some(hf) = json.as_object() else {
            return Err(ModelError::config(path, "(json)", "expected a JSON object"));
        };
        HfConfig { path, hf }.read()
    }
}

/// llama.cpp's per-architecture rule for which layers slide when the GGUF
/// says only the window: Gemma 2 alternates (even layers slide), Gemma 3
/// slides five layers in six; others slide everywhere.
fn gguf_layer_kinds(arch: &str, layers: usize, window: Option<usize>) -> Vec<AttentionKind> {
    (0..layers)
        .map(|i| match (window, arch) {
            (None, _) => AttentionKind::Full,
            (Some(_), "gemma2") if i % 2 == 1 => AttentionKind::Full,
            (Some(_), "gemma3") if i % 6 == 5 => AttentionKind::Full,
            (Some(_), _) => AttentionKind::Sliding,
        })
        .collect()
}

/// transformers' YaRN magnitude correction `0.1 · mscale · ln(factor) + 1`.
pub(super) fn yarn_mscale(factor: f32, mscale: f32) -> f32 {
    if factor <= 1.0 {
        1.0
    } else {
        0.1 * mscale * factor.ln() + 1.0
    }
}

/// LongRoPE's default attention factor `sqrt(1 + ln(s) / ln(original))`, with
/// `s` the context extension.
fn longrope_attention_factor(context: usize, original: usize) -> f32 {
    let scale = context as f32 / original as f32;
    if scale <= 1.0 {
        1.0
    } else {
        (1.0 + scale.ln() / (original as f32).ln()).sqrt()
    }
}

/// A `config.json` being read: typed field access with errors naming the
/// file and field.
struct HfConfig<'a> {
    path: &'a Path,
    hf: &'a Map<String, Value>,
}

impl HfConfig<'_> {
    fn error(&self, field: &str, reason: impl Into<String>) -> ModelError {
        ModelError::config(self.path, field, reason.into())
    }

    /// A non-negative integer field, `None` when absent or null.
    fn usize_opt(
        &self,
        obj: &Map<String, Value>,
        field: &str,
    ) -> Result<Option<usize>, ModelError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(|v| Some(v as usize)).ok_or_else(|| {
                self.error(field, format!("expected a non-negative integer, found {v}"))
            }),
        }
    }

    fn usize(&self, field: &str) -> Result<usize, ModelError> {
        self.usize_opt(self.hf, field)?
            .ok_or_else(|| self.error(field, "missing"))
    }

    fn f32_opt(&self, obj: &Map<String, Value>, field: &str) -> Result<Option<f32>, ModelError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|v| Some(v as f32))
                .ok_or_else(|| self.error(field, format!("expected a number, found {v}"))),
        }
    }

    fn f32_list(&self, obj: &Map<String, Value>, field: &str) -> Result<Vec<f32>, ModelError> {
        let values = obj
            .get(field)
            .and_then(Value::as_array)
            .ok_or_else(|| self.error(field, "expected a list of numbers"))?;
        values
            .iter()
            .map(|v| {
                v.as_f64()
                    .map(|v| v as f32)
                    .ok_or_else(|| self.error(field, format!("expected numbers, found {v}")))
            })
            .collect()
    }

    fn read(&self) -> Result<DecoderConfig, ModelError> {
        let hf = self.hf;
        let model_type = hf
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| self.error("model_type", "missing"))?;
        if hf.contains_key("text_config") {
            // Gemma 3 4B+, Llama 3.2 Vision...: the language model is nested
            // and its tensors are prefixed; only text-only exports load.
            return Err(self.error(
                "text_config",
                format!(
                    "a multimodal {model_type:?} checkpoint is not supported; use its text-only export (Gemma 3: model_type \"gemma3_text\") or a GGUF of it"
                ),
            ));
        }
        let architecture = Architecture::parse(model_type, self.path)?;
        let family = architecture.family();
        let hidden_size = self.usize("hidden_size")?;
        let num_heads = self.usize("num_attention_heads")?;
        let num_kv_heads = self
            .usize_opt(hf, "num_key_value_heads")?
            .unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 || !num_heads.is_multiple_of(num_kv_heads) {
            return Err(self.error(
                "num_key_value_heads",
                format!(
                    "num_attention_heads {num_heads} is not a multiple of num_key_value_heads {num_kv_heads}"
                ),
            ));
        }
        let head_dim = match self.usize_opt(hf, "head_dim")? {
            Some(d) if d > 0 => d,
            _ if hidden_size.is_multiple_of(num_heads) => hidden_size / num_heads,
            _ => {
                return Err(self.error(
                    "num_attention_heads",
                    format!("hidden_size {hidden_size} is not divisible by num_attention_heads {num_heads}"),
                ));
            }
        };
        // transformers 5 moved it into `rope_parameters`.
        let partial = match self.f32_opt(hf, "partial_rotary_factor")? {
            Some(p) => p,
            None => match hf.get("rope_parameters").and_then(Value::as_object) {
                Some(params) => self
                    .f32_opt(params, "partial_rotary_factor")?
                    .unwrap_or(1.0),
                None => 1.0,
            },
        };
        let rotary_dim = (head_dim as f32 * partial) as usize;
        if rotary_dim == 0 || rotary_dim > head_dim || !rotary_dim.is_multiple_of(2) {
            return Err(self.error(
                "partial_rotary_factor",
                format!("{partial} of head_dim {head_dim} gives {rotary_dim} rotary dimensions; expected an even number in 2..={head_dim}"),
            ));
        }
        let max_positions = self
            .usize_opt(hf, "max_position_embeddings")?
            .unwrap_or(2048);
        let num_layers = self.usize("num_hidden_layers")?;

        // transformers 5: `rope_parameters`, possibly one per attention kind.
        let params = hf.get("rope_parameters").and_then(Value::as_object);
        let (global, local) = match params {
            Some(p) if p.contains_key("full_attention") => (
                p.get("full_attention").and_then(Value::as_object),
                p.get("sliding_attention").and_then(Value::as_object),
            ),
            Some(p) => (Some(p), None),
            None => (hf.get("rope_scaling").and_then(Value::as_object), None),
        };
        let theta_of = |obj: Option<&Map<String, Value>>| -> Result<Option<f32>, ModelError> {
            match obj {
                Some(o) => self.f32_opt(o, "rope_theta"),
                None => Ok(None),
            }
        };
        let rope_theta = match theta_of(global)? {
            Some(t) => t,
            None => self.f32_opt(hf, "rope_theta")?.unwrap_or(10_000.0),
        };
        let rope_scaling = match global {
            Some(obj) => self.rope_scaling(obj, max_positions, rotary_dim)?,
            None => RopeScaling::None,
        };
        // Dynamic NTK exists to run past `max_position_embeddings`: allow the
        // `factor` times longer context it is configured for.
        let context_length = match &rope_scaling {
            RopeScaling::DynamicNtk { factor, .. } if *factor > 1.0 => {
                (max_positions as f32 * factor) as usize
            }
            _ => max_positions,
        };
        let rope_local_theta = match theta_of(local)? {
            Some(t) => Some(t),
            None => self.f32_opt(hf, "rope_local_base_freq")?,
        };

        let sliding_window = self.usize_opt(hf, "sliding_window")?.filter(|&w| w > 0);
        let layer_kinds = self.layer_kinds(num_layers, sliding_window, model_type)?;
        let attention_scale = match self.f32_opt(hf, "query_pre_attn_scalar")? {
            Some(s) if family.uses_query_pre_attn_scalar => 1.0 / s.sqrt(),
            _ => 1.0 / (head_dim as f32).sqrt(),
        };
        let softcap = |field: &str| -> Result<Option<f32>, ModelError> {
            Ok(self
                .f32_opt(hf, field)?
                .filter(|&c| c > 0.0 && family.uses_softcap))
        };
        let tie_word_embeddings = match hf.get("tie_word_embeddings") {
            Some(Value::Bool(b)) => Some(*b),
            // transformers' default is tied.
            None | Some(Value::Null) => Some(true),
            Some(v) => {
                return Err(self.error(
                    "tie_word_embeddings",
                    format!("expected true or false, found {v}"),
                ));
            }
        };
        Ok(DecoderConfig {
            architecture,
            vocab_size: self.usize("vocab_size")?,
            hidden_size,
            intermediate_size: self.usize("intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rotary_dim,
            rms_norm_eps: self
                .f32_opt(hf, "rms_norm_eps")?
                .unwrap_or(family.default_rms_eps),
            rope_theta,
            rope_scaling,
            rope_local_theta,
            context_length,
            sliding_window,
            layer_kinds,
            attention_scale,
            attn_logit_softcap: softcap("attn_logit_softcapping")?,
            final_logit_softcap: softcap("final_logit_softcapping")?,
            tie_word_embeddings,
        })
    }

    /// Which layers slide: `layer_types` when given (transformers 5 and Gemma
    /// 3), else Gemma 2's alternation, else every layer when a window is set.
    fn layer_kinds(
        &self,
        layers: usize,
        window: Option<usize>,
        model_type: &str,
    ) -> Result<Vec<AttentionKind>, ModelError> {
        let Some(_) = window else {
            return Ok(vec![AttentionKind::Full; layers]);
        };
        if let Some(types) = self.hf.get("layer_types").and_then(Value::as_array) {
            if types.len() != layers {
                return Err(self.error(
                    "layer_types",
                    format!("{} entries for {layers} layers", types.len()),
                ));
            }
            return types
                .iter()
                .map(|t| match t.as_str() {
                    Some("full_attention") => Ok(AttentionKind::Full),
                    Some("sliding_attention") => Ok(AttentionKind::Sliding),
                    _ => Err(self.error(
                        "layer_types",
                        format!("expected \"full_attention\" or \"sliding_attention\", found {t}"),
                    )),
                })
                .collect();
        }
        let pattern = self.usize_opt(self.hf, "sliding_window_pattern")?;
        Ok((0..layers)
            .map(|i| match (model_type, pattern) {
                (_, Some(p)) if p > 0 && (i + 1) % p == 0 => AttentionKind::Full,
                ("gemma2", None) if i % 2 == 1 => AttentionKind::Full,
                _ => AttentionKind::Sliding,
            })
            .collect())
    }

    /// The scaling a `rope_scaling` / `rope_parameters` object describes.
    fn rope_scaling(
        &self,
        obj: &Map<String, Value>,
        context: usize,
        rotary_dim: usize,
    ) -> Result<RopeScaling, ModelError> {
        let kind = obj
            .get("rope_type")
            .or_else(|| obj.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let factor = self.f32_opt(obj, "factor")?.unwrap_or(1.0);
        // The original context is in the scaling object or, for Phi-3, at the top.
        let original = match self.usize_opt(obj, "original_max_position_embeddings")? {
            Some(o) => Some(o),
            None => self.usize_opt(self.hf, "original_max_position_embeddings")?,
        };
        Ok(match kind {
            "default" | "none" => RopeScaling::None,
            "linear" => RopeScaling::Linear { factor },
            "llama3" => RopeScaling::Llama3 {
                factor,
                low_freq_factor: self.f32_opt(obj, "low_freq_factor")?.unwrap_or(1.0),
                high_freq_factor: self.f32_opt(obj, "high_freq_factor")?.unwrap_or(4.0),
                original_context: original.ok_or_else(|| {
                    self.error(
                        "rope_scaling.original_max_position_embeddings",
                        "missing (needed by llama3 scaling)",
                    )
                })?,
            },
            "dynamic" => RopeScaling::DynamicNtk {
                factor,
                original_context: context,
            },
            "yarn" => {
                // transformers: with an explicit original context the factor is
                // the ratio of the contexts.
                let original_context = original.unwrap_or(context);
                let factor = match original {
                    Some(o) if o > 0 && self.f32_opt(obj, "factor")?.is_none() => {
                        context as f32 / o as f32
                    }
                    _ => factor,
                };
                let mscale = self.f32_opt(obj, "mscale")?;
                let mscale_all_dim = self.f32_opt(obj, "mscale_all_dim")?;
                let attention_factor = match (
                    self.f32_opt(obj, "attention_factor")?,
                    mscale,
                    mscale_all_dim,
                ) {
                    (Some(a), _, _) => a,
                    (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                        yarn_mscale(factor, m) / yarn_mscale(factor, all)
                    }
                    _ => yarn_mscale(factor, 1.0),
                };
                RopeScaling::Yarn {
                    factor,
                    original_context,
                    beta_fast: self.f32_opt(obj, "beta_fast")?.unwrap_or(32.0),
                    beta_slow: self.f32_opt(obj, "beta_slow")?.unwrap_or(1.0),
                    attention_factor,
                    truncate: obj.get("truncate").and_then(Value::as_bool).unwrap_or(true),
                }
            }
            "longrope" | "su" => {
                let short = self.f32_list(obj, "short_factor")?;
                let long = self.f32_list(obj, "long_factor")?;
                for (name, list) in [("short_factor", &short), ("long_factor", &long)] {
                    if list.len() != rotary_dim / 2 {
                        return Err(self.error(
                            &format!("rope_scaling.{name}"),
                            format!(
                                "{} values for {} rotary frequencies",
                                list.len(),
                                rotary_dim / 2
                            ),
                        ));
                    }
                }
                let original_context = original.unwrap_or(context);
                let attention_factor = match self.f32_opt(obj, "attention_factor")? {
                    Some(a) => a,
                    None => longrope_attention_factor(context, original_context),
                };
                RopeScaling::LongRope {
                    short,
                    long,
                    original_context,
                    attention_factor,
                }
            }
            other => {
                return Err(self.error(
                    "rope_scaling",
                    format!(
                        "RoPE scaling {other:?} is not supported ({})",
                        RopeScaling::SUPPORTED
                    ),
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: serde_json::Value) -> Result<DecoderConfig, ModelError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json.to_string()).unwrap();
        DecoderConfig::from_hf_file(&path)
    }

    fn base(model_type: &str) -> serde_json::Value {
        serde_json::json!({
            "model_type": model_type,
            "vocab_size": 100,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 256,
        })
    }

    #[test]
    fn both_generations_of_rope_settings_are_read() {
        let mut old = base("llama");
        old["rope_theta"] = 500_000.0.into();
        old["rope_scaling"] = serde_json::json!({"type": "linear", "factor": 2.0});
        let mut new = base("llama");
        new["rope_parameters"] =
            serde_json::json!({"rope_theta": 500000.0, "rope_type": "linear", "factor": 2.0});
        for json in [old, new] {
            let config = read(json).unwrap();
            assert_eq!(config.rope_theta, 500_000.0);
            assert_eq!(config.rope_scaling, RopeScaling::Linear { factor: 2.0 });
        }
    }

    #[test]
    fn gemma3_reads_a_rope_per_attention_kind_and_its_layer_types() {
        let mut json = base("gemma3_text");
        json["head_dim"] = 32.into();
        json["sliding_window"] = 6.into();
        json["query_pre_attn_scalar"] = 32.into();
        json["layer_types"] =
            serde_json::json!(["sliding_attention", "sliding_attention", "full_attention"]);
        json["rope_parameters"] = serde_json::json!({
            "full_attention": {"rope_theta": 1000000.0, "rope_type": "default"},
            "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"},
        });
        let config = read(json).unwrap();
        assert_eq!(config.architecture.name(), "gemma3");
        assert_eq!(config.head_dim, 32);
        assert_eq!(config.rope_theta, 1e6);
        assert_eq!(config.rope_local_theta, Some(1e4));
        assert_eq!(
            config.layer_kinds,
            [
                AttentionKind::Sliding,
                AttentionKind::Sliding,
                AttentionKind::Full
            ]
        );
        assert_eq!(config.attention_scale, 1.0 / 32f32.sqrt());
    }

    #[test]
    fn a_multimodal_checkpoint_says_what_would_load() {
        let json = serde_json::json!({"model_type": "gemma3", "text_config": {"hidden_size": 64}});
        let error = read(json).unwrap_err().to_string();
        assert!(
            error.contains("multimodal") && error.contains("gemma3_text"),
            "{error}"
        );
    }

    #[test]
    fn bad_rope_settings_name_the_field() {
        let mut json = base("phi3");
        json["rope_scaling"] = serde_json::json!({
            "type": "longrope", "short_factor": [1.0, 1.0], "long_factor": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        });
        let error = read(json).unwrap_err().to_string();
        assert!(error.contains("rope_scaling.short_factor"), "{error}");
        assert!(error.contains("2 values for 8"), "{error}");

        let mut json = base("llama");
        json["rope_scaling"] = serde_json::json!({"rope_type": "su2", "factor": 2.0});
        let error = read(json).unwrap_err().to_string();
        assert!(
            error.contains("\"su2\"") && error.contains("yarn"),
            "{error}"
        );

        let mut json = base("llama");
        json["layer_types"] = serde_json::json!(["full_attention"]);
        json["sliding_window"] = 4.into();
        let error = read(json).unwrap_err().to_string();
        assert!(
            error.contains("layer_types") && error.contains("1 entries for 3"),
            "{error}"
        );
    }
}
