//! Llama-family decoders (llama, mistral, qwen2) from GGUF files.
//!
//! Pre-norm transformer blocks: RMSNorm → attention with rotary position
//! embeddings and grouped-query heads (+ a Q/K/V bias for qwen2) → residual →
//! RMSNorm → SwiGLU feed-forward → residual; a final RMSNorm and an output head
//! that may share the token embedding.
//!
//! Linear layers are either dense burn tensors (the working dtype on any device)
//! or GGUF blocks kept as stored and multiplied by the quantized kernels in
//! [`crate::quant`] (CPU), which read a quarter of the bytes per token.
//!
//! RoPE layout: llama.cpp's converter permutes the Q and K weights of `llama`
//! models so that rotating *adjacent* pairs gives Hugging Face's rotate-half
//! result; qwen2 GGUFs are not permuted and rotate halves. So the layout follows
//! the architecture, and the stored weights are used as they are.

use std::path::Path;
use std::sync::Arc;

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Tensor, TensorData};

use crate::arch::linear::{LinearWeight, Matrix, Packed, tensor_to_vec, uses_block_kernels};
use crate::gguf::{GgmlType, GgufFile};
use crate::quant::{BlockFormat, QuantBytes, QuantMatrix, dequantize_legacy};
use crate::weights::SafetensorsWeights;
use mdsa_engine::ModelError;

/// Decoder architectures this module runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama, SmolLM, TinyLlama, ...
    Llama,
    /// Mistral (a llama with a different name).
    Mistral,
    /// Qwen2 / Qwen2.5: llama with a bias on Q, K and V.
    Qwen2,
}

/// The architectures, as `general.architecture` names them.
pub const SUPPORTED_ARCHITECTURES: &str = "llama, mistral, qwen2";

impl Architecture {
    fn parse(name: &str, path: &Path) -> Result<Self, ModelError> {
        match name {
            "llama" => Ok(Self::Llama),
            "mistral" => Ok(Self::Mistral),
            "qwen2" => Ok(Self::Qwen2),
            other => Err(ModelError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                found: other.to_string(),
                supported: SUPPORTED_ARCHITECTURES,
            }),
        }
    }
}

pub use mdsa_engine::WeightFormat;

/// Sizes and constants of a decoder, read from GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// Which architecture.
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
    /// Linear RoPE scaling factor (1 = none).
    pub rope_scale: f32,
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
        let rope_scale = match file.get_str_opt(&key("rope.scaling.type"))? {
            None | Some("none") => 1.0,
            Some("linear") => file.get_f32_or(&key("rope.scaling.factor"), 1.0)?,
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
            rope_scale,
            context_length: file.get_u32_or(&key("context_length"), 2048)? as usize,
        })
    }
}

/// The fields of a Hugging Face `config.json` for llama-family decoders.
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

impl DecoderConfig {
    /// Reads a Hugging Face `config.json` (`model_type` llama, mistral or qwen2).
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
        let rope_scale = match &hf.rope_scaling {
            None => 1.0,
            Some(s) if s.r#type == "linear" => s.factor,
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
            rope_scale,
            context_length: hf.max_position_embeddings,
        })
    }
}

/// The token embedding table, dense or quantized (rows are dequantized on lookup).
#[derive(Debug)]
enum EmbeddingWeight {
    Dense(Tensor<2>),
    Packed(Packed),
}

#[derive(Debug)]
struct Block {
    attn_norm: Tensor<1>,
    q: LinearWeight,
    k: LinearWeight,
    v: LinearWeight,
    o: LinearWeight,
    ffn_norm: Tensor<1>,
    gate: LinearWeight,
    up: LinearWeight,
    down: LinearWeight,
}

/// Keys and values of every layer for the tokens seen so far.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<3>, Tensor<3>)>>,
    len: usize,
}

impl KvCache {
    /// Number of positions cached.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A loaded decoder.
#[derive(Debug)]
pub struct DecoderModel {
    config: DecoderConfig,
    embedding: EmbeddingWeight,
    blocks: Vec<Block>,
    norm: Tensor<1>,
    head: LinearWeight,
    /// `[context, head_dim / 2]` cos and sin tables.
    rope_cos: Tensor<2>,
    rope_sin: Tensor<2>,
    interleaved_rope: bool,
    device: Device,
    resident_bytes: usize,
}

/// Lets quantized matrices borrow the GGUF mmap without copying it.
struct GgufBytes(Arc<GgufFile>);

impl AsRef<[u8]> for GgufBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl DecoderModel {
    /// Loads a decoder from a GGUF file.
    pub fn from_gguf(
        file: Arc<GgufFile>,
        format: WeightFormat,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let config = DecoderConfig::from_gguf(&file)?;
        let bytes = Arc::new(GgufBytes(Arc::clone(&file)));
        let loader = Loader {
            source: Source::Gguf { file: &file, bytes },
            format,
            device,
        };
        // llama.cpp permutes llama's Q/K rows for adjacent-pair RoPE; qwen2 is not permuted.
        let interleaved = config.architecture != Architecture::Qwen2;
        Self::build(config, &loader, interleaved)
    }

    /// Loads a decoder from Hugging Face safetensors described by `config`
    /// (see [`DecoderConfig::from_hf_file`]).
    pub fn from_safetensors(
        config: DecoderConfig,
        weights: &SafetensorsWeights,
        format: WeightFormat,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let loader = Loader {
            source: Source::Safetensors(weights),
            format,
            device,
        };
        Self::build(config, &loader, false)
    }

    fn build(
        config: DecoderConfig,
        loader: &Loader<'_>,
        interleaved_rope: bool,
    ) -> Result<Self, ModelError> {
        let device = loader.device;
        let names = loader.names();
        let h = config.hidden_size;
        let ffn = config.intermediate_size;
        let kv = config.num_kv_heads * config.head_dim;
        let qkv_bias = config.architecture == Architecture::Qwen2;
        let blocks = (0..config.num_layers)
            .map(|i| {
                let n = |part: Part| names.layer(i, part);
                Ok(Block {
                    attn_norm: loader.vector(&format!("{}.weight", n(Part::AttnNorm)), h)?,
                    q: loader.linear(&n(Part::Q), h, h, qkv_bias)?,
                    k: loader.linear(&n(Part::K), h, kv, qkv_bias)?,
                    v: loader.linear(&n(Part::V), h, kv, qkv_bias)?,
                    o: loader.linear(&n(Part::O), h, h, false)?,
                    ffn_norm: loader.vector(&format!("{}.weight", n(Part::FfnNorm)), h)?,
                    gate: loader.linear(&n(Part::Gate), h, ffn, false)?,
                    up: loader.linear(&n(Part::Up), h, ffn, false)?,
                    down: loader.linear(&n(Part::Down), ffn, h, false)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let embedding_name = format!("{}.weight", names.embedding());
        let embedding = match loader.matrix(&embedding_name, config.vocab_size, h)? {
            Matrix::Packed(m) => EmbeddingWeight::Packed(m),
            Matrix::Dense(rows) => EmbeddingWeight::Dense(Tensor::from_data(
                TensorData::new(rows, [config.vocab_size, h]),
                device,
            )),
        };
        // Tied embeddings: without an output weight the head is the embedding table.
        let head_name = if loader.contains(&format!("{}.weight", names.head())) {
            names.head()
        } else {
            names.embedding()
        };
        let head = loader.linear(head_name, h, config.vocab_size, false)?;
        let (rope_cos, rope_sin) = rope_tables(&config, device);
        let mut model = Self {
            interleaved_rope,
            embedding,
            blocks,
            norm: loader.vector(&format!("{}.weight", names.final_norm()), h)?,
            head,
            rope_cos,
            rope_sin,
            device: device.clone(),
            config,
            resident_bytes: 0,
        };
        model.resident_bytes = model.count_bytes();
        Ok(model)
    }

    /// The configuration read from the file.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Bytes of weights held in memory. A tied output head is counted with the
    /// embedding it shares: quantized blocks borrow one mmap and are not copied.
    pub fn resident_bytes(&self) -> usize {
        self.resident_bytes
    }

    /// Bytes one cached position takes in the KV cache.
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.config.num_layers * self.config.num_kv_heads * self.config.head_dim * 4
    }

    /// An empty cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            layers: (0..self.config.num_layers).map(|_| None).collect(),
            len: 0,
        }
    }

    /// Runs `tokens` (the next positions after what `cache` holds) and returns the
    /// logits of the last one.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, ModelError> {
        let n = tokens.len();
        let past = cache.len;
        if n == 0 {
            return Err(ModelError::Backend(
                "forward needs at least one token".into(),
            ));
        }
        if past + n > self.config.context_length {
            return Err(ModelError::ContextOverflow {
                tokens: past + n,
                context: self.config.context_length,
            });
        }
        let mut x = self.embed(tokens)?;
        let cos = self.rope_cos.clone().narrow(0, past, n);
        let sin = self.rope_sin.clone().narrow(0, past, n);
        let mask = (n > 1).then(|| self.causal_mask(n, past));
        for (block, layer_cache) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            x = self.block_forward(block, x, &cos, &sin, mask.clone(), layer_cache)?;
        }
        cache.len += n;
        let last = x.narrow(0, n - 1, 1);
        let logits = self
            .head
            .forward(rms_norm(last, &self.norm, self.config.rms_norm_eps))?;
        tensor_to_vec(logits)
    }

    fn embed(&self, tokens: &[u32]) -> Result<Tensor<2>, ModelError> {
        let h = self.config.hidden_size;
        if let Some(&bad) = tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(ModelError::Backend(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.config.vocab_size
            )));
        }
        match &self.embedding {
            EmbeddingWeight::Dense(table) => {
                let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
                let ids = Tensor::<1, burn::tensor::Int>::from_data(
                    TensorData::new(ids, [tokens.len()]),
                    &self.device,
                );
                Ok(table.clone().select(0, ids))
            }
            EmbeddingWeight::Packed(matrix) => {
                let mut rows = vec![0.0f32; tokens.len() * h];
                for (row, &token) in rows.chunks_exact_mut(h).zip(tokens) {
                    matrix.row_into(token as usize, row)?;
                }
                Ok(Tensor::from_data(
                    TensorData::new(rows, [tokens.len(), h]),
                    &self.device,
                ))
            }
        }
    }

    /// `[group * n, past + n]`: 0 where a query may look, -inf where it may not.
    fn causal_mask(&self, n: usize, past: usize) -> Tensor<2> {
        let group = self.config.num_heads / self.config.num_kv_heads;
        let total = past + n;
        let mut mask = vec![0.0f32; group * n * total];
        for g in 0..group {
            for i in 0..n {
                let row = (g * n + i) * total;
                for j in (past + i + 1)..total {
                    mask[row + j] = f32::NEG_INFINITY;
                }
            }
        }
        Tensor::from_data(TensorData::new(mask, [group * n, total]), &self.device)
    }

    fn block_forward(
        &self,
        block: &Block,
        x: Tensor<2>,
        cos: &Tensor<2>,
        sin: &Tensor<2>,
        mask: Option<Tensor<2>>,
        cache: &mut Option<(Tensor<3>, Tensor<3>)>,
    ) -> Result<Tensor<2>, ModelError> {
        let c = &self.config;
        let [n, hidden] = x.dims();
        let (heads, kv_heads, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let group = heads / kv_heads;
        let normed = rms_norm(x.clone(), &block.attn_norm, c.rms_norm_eps);
        // [n, heads * hd] → [heads, n, hd]
        let split = |t: Tensor<2>, h: usize| t.reshape([n, h, hd]).swap_dims(0, 1);
        let q = self.rope(split(block.q.forward(normed.clone())?, heads), cos, sin);
        let k = self.rope(split(block.k.forward(normed.clone())?, kv_heads), cos, sin);
        let v = split(block.v.forward(normed)?, kv_heads);
        let (k, v) = match cache.take() {
            Some((past_k, past_v)) => (
                Tensor::cat(vec![past_k, k], 1),
                Tensor::cat(vec![past_v, v], 1),
            ),
            None => (k, v),
        };
        *cache = Some((k.clone(), v.clone()));
        // Grouped-query attention without copying K/V: the `group` query heads
        // that share one KV head are stacked along the query axis.
        let q = q.reshape([kv_heads, group * n, hd]);
        let mut scores = q.matmul(k.swap_dims(1, 2)) * (1.0 / (hd as f64).sqrt());
        if let Some(mask) = mask {
            scores = scores + mask.unsqueeze::<3>();
        }
        let context = softmax(scores, 2)
            .matmul(v) // [kv, group * n, hd]
            .reshape([heads, n, hd])
            .swap_dims(0, 1)
            .reshape([n, hidden]);
        let x = x + block.o.forward(context)?;
        let normed = rms_norm(x.clone(), &block.ffn_norm, c.rms_norm_eps);
        let gated = silu(block.gate.forward(normed.clone())?) * block.up.forward(normed)?;
        Ok(x + block.down.forward(gated)?)
    }

    /// Rotary embedding of `[heads, n, hd]` with `[n, hd / 2]` tables.
    fn rope(&self, x: Tensor<3>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<3> {
        let [heads, n, hd] = x.dims();
        let half = hd / 2;
        let cos = cos.clone().reshape([1, n, half]);
        let sin = sin.clone().reshape([1, n, half]);
        if self.interleaved_rope {
            // Adjacent pairs (x[2i], x[2i+1]).
            let pairs = x.reshape([heads, n, half, 2]);
            let a = pairs.clone().narrow(3, 0, 1).reshape([heads, n, half]);
            let b = pairs.narrow(3, 1, 1).reshape([heads, n, half]);
            let ra = a.clone() * cos.clone() - b.clone() * sin.clone();
            let rb = a * sin + b * cos;
            Tensor::stack::<4>(vec![ra, rb], 3).reshape([heads, n, hd])
        } else {
            // Halves (x[i], x[i + hd/2]): Hugging Face's rotate_half.
            let a = x.clone().narrow(2, 0, half);
            let b = x.narrow(2, half, half);
            let ra = a.clone() * cos.clone() - b.clone() * sin.clone();
            let rb = a * sin + b * cos;
            Tensor::cat(vec![ra, rb], 2)
        }
    }

    fn count_bytes(&self) -> usize {
        let vector = |t: &Tensor<1>| t.dims()[0] * 4;
        let embedding = match &self.embedding {
            EmbeddingWeight::Dense(t) => t.dims().iter().product::<usize>() * 4,
            EmbeddingWeight::Packed(m) => m.resident_bytes(),
        };
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                vector(&b.attn_norm)
                    + vector(&b.ffn_norm)
                    + [&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down]
                        .iter()
                        .map(|l| l.resident_bytes())
                        .sum::<usize>()
            })
            .sum();
        embedding + blocks + vector(&self.norm) + self.head.resident_bytes()
    }
}

fn rms_norm(x: Tensor<2>, weight: &Tensor<1>, eps: f32) -> Tensor<2> {
    let scale = (x.clone().powf_scalar(2.0).mean_dim(1) + f64::from(eps))
        .sqrt()
        .recip();
    x * scale * weight.clone().unsqueeze::<2>()
}

fn rope_tables(config: &DecoderConfig, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let half = config.head_dim / 2;
    let positions = config.context_length;
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for p in 0..positions {
        let position = p as f64 / f64::from(config.rope_scale);
        for i in 0..half {
            let freq =
                1.0 / f64::from(config.rope_theta).powf(2.0 * i as f64 / config.head_dim as f64);
            let angle = position * freq;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (
        Tensor::from_data(TensorData::new(cos, [positions, half]), device),
        Tensor::from_data(TensorData::new(sin, [positions, half]), device),
    )
}

/// A quantized tensor as read from a GGUF file.
enum Stored {
    /// Blocks the quantized kernels multiply directly.
    Blocks(QuantMatrix),
    /// Dequantized values of a format without kernels.
    Values(Vec<f32>),
}

/// A tensor as the loader resolved it, before a device representation is chosen.
enum Resolved {
    /// GGUF blocks kept as stored (`stored` format).
    Kept(QuantMatrix),
    /// f32 values and the format to hold them in.
    Values(WeightFormat, Vec<f32>),
}

/// The burn quantization matching a GGUF block format's bit width on a GPU:
/// 4-bit formats to int4; 8-, 5- and 6-bit ones to int8 (burn has no 5/6-bit
/// values, and 8 bits loses nothing of them).
fn gpu_format(format: BlockFormat) -> WeightFormat {
    match format {
        BlockFormat::Q4_0 | BlockFormat::Q4_1 | BlockFormat::Q4_K => WeightFormat::Int4,
        BlockFormat::Q8_0 | BlockFormat::Q5_K | BlockFormat::Q6_K => WeightFormat::Int8,
    }
}

/// Where weights are read from.
enum Source<'a> {
    Gguf {
        file: &'a GgufFile,
        bytes: Arc<GgufBytes>,
    },
    Safetensors(&'a SafetensorsWeights),
}

/// The parts of a block, named differently by GGUF and Hugging Face.
#[derive(Clone, Copy)]
enum Part {
    AttnNorm,
    Q,
    K,
    V,
    O,
    FfnNorm,
    Gate,
    Up,
    Down,
}

/// Tensor naming of one file format.
#[derive(Clone, Copy)]
enum Names {
    Gguf,
    HuggingFace,
}

impl Names {
    fn layer(self, i: usize, part: Part) -> String {
        let (gguf, hf) = match part {
            Part::AttnNorm => ("attn_norm", "input_layernorm"),
            Part::Q => ("attn_q", "self_attn.q_proj"),
            Part::K => ("attn_k", "self_attn.k_proj"),
            Part::V => ("attn_v", "self_attn.v_proj"),
            Part::O => ("attn_output", "self_attn.o_proj"),
            Part::FfnNorm => ("ffn_norm", "post_attention_layernorm"),
            Part::Gate => ("ffn_gate", "mlp.gate_proj"),
            Part::Up => ("ffn_up", "mlp.up_proj"),
            Part::Down => ("ffn_down", "mlp.down_proj"),
        };
        match self {
            Self::Gguf => format!("blk.{i}.{gguf}"),
            Self::HuggingFace => format!("model.layers.{i}.{hf}"),
        }
    }

    fn embedding(self) -> &'static str {
        match self {
            Self::Gguf => "token_embd",
            Self::HuggingFace => "model.embed_tokens",
        }
    }

    fn head(self) -> &'static str {
        match self {
            Self::Gguf => "output",
            Self::HuggingFace => "lm_head",
        }
    }

    fn final_norm(self) -> &'static str {
        match self {
            Self::Gguf => "output_norm",
            Self::HuggingFace => "model.norm",
        }
    }
}

struct Loader<'a> {
    source: Source<'a>,
    format: WeightFormat,
    device: &'a Device,
}

impl Loader<'_> {
    fn names(&self) -> Names {
        match self.source {
            Source::Gguf { .. } => Names::Gguf,
            Source::Safetensors(_) => Names::HuggingFace,
        }
    }

    fn contains(&self, name: &str) -> bool {
        match &self.source {
            Source::Gguf { file, .. } => file.tensor(name).is_some(),
            Source::Safetensors(weights) => weights.contains(name),
        }
    }

    /// Row-major f32 values of an unquantized tensor with the given shape.
    fn read_dense(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        match &self.source {
            Source::Safetensors(weights) => weights.read_f32(name, shape),
            Source::Gguf { file, .. } => {
                let info = file.require_tensor(name)?;
                let found = info.shape_row_major();
                if found != shape {
                    return Err(ModelError::Shape {
                        path: file.path().to_path_buf(),
                        name: name.to_string(),
                        expected: shape.to_vec(),
                        found,
                    });
                }
                Ok(file.read_f32(name)?)
            }
        }
    }

    /// A quantized GGUF tensor as stored: blocks the kernels multiply, or values
    /// of a format without kernels; `None` for unquantized tensors and safetensors.
    fn stored(&self, name: &str, rows: usize, cols: usize) -> Result<Option<Stored>, ModelError> {
        let Source::Gguf { file, bytes } = &self.source else {
            return Ok(None);
        };
        let info = file.require_tensor(name)?;
        let found = info.shape_row_major();
        if found != [rows, cols] {
            return Err(ModelError::Shape {
                path: file.path().to_path_buf(),
                name: name.to_string(),
                expected: vec![rows, cols],
                found,
            });
        }
        let ty = info.ggml_type();
        if matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            return Ok(None);
        }
        if let Some(format) = BlockFormat::from_ggml_id(ty.id()) {
            let data = QuantBytes::from_shared(Arc::clone(bytes), info.data_range())?;
            return Ok(Some(Stored::Blocks(QuantMatrix::new(
                format, rows, cols, data,
            )?)));
        }
        let mut values = vec![0.0f32; rows * cols];
        if dequantize_legacy(ty.id(), file.tensor_data(info), &mut values)? {
            return Ok(Some(Stored::Values(values)));
        }
        Err(ModelError::config(
            file.path(),
            name,
            format!(
                "GGUF type {} is not supported; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K",
                ty.name()
            ),
        ))
    }

    /// A `[rows, cols]` tensor (GGUF dims `[cols, rows]`): GGUF blocks to keep
    /// as stored, or f32 values with the format to hold them in.
    fn resolve(&self, name: &str, rows: usize, cols: usize) -> Result<Resolved, ModelError> {
        let stored = self.stored(name, rows, cols)?;
        let keep = self.format == WeightFormat::Stored;
        Ok(match stored {
            Some(Stored::Blocks(m)) if keep => Resolved::Kept(m),
            Some(Stored::Blocks(m)) => Resolved::Values(self.format, m.dequantize()),
            // No kernels for this format: Q8_0 keeps its 5 bits and stays compact.
            Some(Stored::Values(values)) if keep => Resolved::Values(WeightFormat::Int8, values),
            Some(Stored::Values(values)) => Resolved::Values(self.format, values),
            None => Resolved::Values(self.format, self.read_dense(name, &[rows, cols])?),
        })
    }

    /// A `[rows, cols]` matrix in the requested format, as the CPU holds it
    /// (also the embedding table on every device: rows are looked up on the host).
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix, ModelError> {
        match self.resolve(name, rows, cols)? {
            Resolved::Kept(m) => Ok(Matrix::Packed(Packed::Blocks(m))),
            Resolved::Values(format, values) => Matrix::from_f32(format, rows, cols, values),
        }
    }

    fn linear(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<LinearWeight, ModelError> {
        let bias = if bias {
            Some(self.vector(&format!("{prefix}.bias"), d_out)?)
        } else {
            None
        };
        let (format, values) = match self.resolve(&format!("{prefix}.weight"), d_out, d_in)? {
            Resolved::Kept(m) if uses_block_kernels(self.device) => {
                let matrix = Matrix::Packed(Packed::Blocks(m));
                return Ok(LinearWeight::new(matrix, d_in, d_out, bias, self.device));
            }
            // Off the CPU "stored" means burn's quantization at the blocks' bit width.
            Resolved::Kept(m) => (gpu_format(m.format()), m.dequantize()),
            Resolved::Values(format, values) => (format, values),
        };
        LinearWeight::from_f32(format, values, d_in, d_out, bias, self.device)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Tensor<1>, ModelError> {
        let values = self.read_dense(name, &[len])?;
        Ok(Tensor::from_data(
            TensorData::new(values, [len]),
            self.device,
        ))
    }
}
