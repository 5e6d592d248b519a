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

use crate::error::ModelError;
use crate::gguf::{GgmlType, GgufFile};
use crate::quant::{BlockFormat, QuantBytes, QuantMatrix};

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

/// How weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// Every weight dequantized to f32 burn tensors (any device; the reference path).
    F32,
    /// GGUF blocks as stored, multiplied by the quantized CPU kernels.
    #[default]
    Stored,
    /// Re-quantized to Q8_0 blocks (8.5 bits per weight).
    Int8,
    /// Re-quantized to Q4_0 blocks (4.5 bits per weight).
    Int4,
}

impl std::str::FromStr for WeightFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Self::F32),
            "stored" => Ok(Self::Stored),
            "int8" => Ok(Self::Int8),
            "int4" => Ok(Self::Int4),
            other => Err(format!(
                "unknown dtype {other:?}: expected f32, stored, int8 or int4"
            )),
        }
    }
}

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

/// A linear layer `y = x Wᵀ + b` in one of two representations.
#[derive(Debug)]
enum LinearWeight {
    /// `[in, out]` f32 tensor.
    Dense {
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
    },
    /// `[out, in]` quantized blocks.
    Quantized {
        matrix: QuantMatrix,
        bias: Option<Tensor<1>>,
    },
}

impl LinearWeight {
    /// `x` is `[n, in]`; returns `[n, out]`.
    fn forward(&self, x: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        match self {
            Self::Dense { weight, bias } => {
                let y = x.matmul(weight.clone());
                Ok(match bias {
                    Some(b) => y + b.clone().unsqueeze::<2>(),
                    None => y,
                })
            }
            Self::Quantized { matrix, bias } => {
                let [n, _] = x.dims();
                let device = x.device();
                let input = tensor_to_vec(x)?;
                let mut out = vec![0.0f32; n * matrix.rows()];
                matrix.matmul(&input, n, &mut out)?;
                let y = Tensor::<2>::from_data(TensorData::new(out, [n, matrix.rows()]), &device);
                Ok(match bias {
                    Some(b) => y + b.clone().unsqueeze::<2>(),
                    None => y,
                })
            }
        }
    }

    fn resident_bytes(&self) -> usize {
        let bias = |b: &Option<Tensor<1>>| b.as_ref().map_or(0, |b| b.dims()[0] * 4);
        match self {
            Self::Dense { weight, bias: b } => {
                weight.dims().iter().product::<usize>() * 4 + bias(b)
            }
            Self::Quantized { matrix, bias: b } => matrix.resident_bytes() + bias(b),
        }
    }
}

/// The token embedding table, dense or quantized (rows are dequantized on lookup).
#[derive(Debug)]
enum EmbeddingWeight {
    Dense(Tensor<2>),
    Quantized(QuantMatrix),
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
            file: &file,
            bytes,
            format,
            device,
        };
        let h = config.hidden_size;
        let qkv_bias = config.architecture == Architecture::Qwen2;
        let blocks = (0..config.num_layers)
            .map(|i| {
                let p = format!("blk.{i}");
                let kv = config.num_kv_heads * config.head_dim;
                Ok(Block {
                    attn_norm: loader.vector(&format!("{p}.attn_norm.weight"), h)?,
                    q: loader.linear(&format!("{p}.attn_q"), h, h, qkv_bias)?,
                    k: loader.linear(&format!("{p}.attn_k"), h, kv, qkv_bias)?,
                    v: loader.linear(&format!("{p}.attn_v"), h, kv, qkv_bias)?,
                    o: loader.linear(&format!("{p}.attn_output"), h, h, false)?,
                    ffn_norm: loader.vector(&format!("{p}.ffn_norm.weight"), h)?,
                    gate: loader.linear(
                        &format!("{p}.ffn_gate"),
                        h,
                        config.intermediate_size,
                        false,
                    )?,
                    up: loader.linear(
                        &format!("{p}.ffn_up"),
                        h,
                        config.intermediate_size,
                        false,
                    )?,
                    down: loader.linear(
                        &format!("{p}.ffn_down"),
                        config.intermediate_size,
                        h,
                        false,
                    )?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let embedding = match loader.matrix("token_embd.weight", config.vocab_size, h)? {
            Matrix::Quantized(m) => EmbeddingWeight::Quantized(m),
            Matrix::Dense(rows) => EmbeddingWeight::Dense(Tensor::from_data(
                TensorData::new(rows, [config.vocab_size, h]),
                device,
            )),
        };
        // Tied embeddings: without `output.weight` the head is the embedding table.
        let head_name = if file.tensor("output.weight").is_some() {
            "output"
        } else {
            "token_embd"
        };
        let head = loader.linear(head_name, h, config.vocab_size, false)?;
        let (rope_cos, rope_sin) = rope_tables(&config, device);
        let mut model = Self {
            interleaved_rope: config.architecture != Architecture::Qwen2,
            embedding,
            blocks,
            norm: loader.vector("output_norm.weight", h)?,
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
            EmbeddingWeight::Quantized(matrix) => {
                let mut rows = vec![0.0f32; tokens.len() * h];
                for (row, &token) in rows.chunks_exact_mut(h).zip(tokens) {
                    matrix.dequantize_row_into(token as usize, row)?;
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
            EmbeddingWeight::Quantized(m) => m.resident_bytes(),
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

fn tensor_to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, ModelError> {
    t.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Backend(format!("reading a tensor back: {e:?}")))
}

enum Matrix {
    Quantized(QuantMatrix),
    /// Row-major `[rows, cols]` f32 values.
    Dense(Vec<f32>),
}

struct Loader<'a> {
    file: &'a GgufFile,
    bytes: Arc<GgufBytes>,
    format: WeightFormat,
    device: &'a Device,
}

impl Loader<'_> {
    /// A `[rows, cols]` matrix (GGUF dims `[cols, rows]`) in the requested format.
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix, ModelError> {
        let info = self.file.require_tensor(name)?;
        let found = info.shape_row_major();
        if found != [rows, cols] {
            return Err(ModelError::Shape {
                path: self.file.path().to_path_buf(),
                name: name.to_string(),
                expected: vec![rows, cols],
                found,
            });
        }
        let ty = info.ggml_type();
        let stored = match ty {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => None,
            _ => Some(QuantMatrix::new(
                BlockFormat::from_ggml_id(ty.id()).ok_or_else(|| ModelError::DType {
                    path: self.file.path().to_path_buf(),
                    name: name.to_string(),
                    found: ty.name().to_string(),
                })?,
                rows,
                cols,
                QuantBytes::from_shared(Arc::clone(&self.bytes), info.data_range())?,
            )?),
        };
        let dense = |stored: Option<QuantMatrix>| -> Result<Vec<f32>, ModelError> {
            match stored {
                Some(m) => Ok(m.dequantize()),
                None => Ok(self.file.read_f32(name)?),
            }
        };
        Ok(match (self.format, stored) {
            (WeightFormat::Stored, Some(m)) => Matrix::Quantized(m),
            (WeightFormat::Int8, stored) => Matrix::Quantized(QuantMatrix::quantize(
                BlockFormat::Q8_0,
                rows,
                cols,
                &dense(stored)?,
            )?),
            (WeightFormat::Int4, stored) => Matrix::Quantized(QuantMatrix::quantize(
                BlockFormat::Q4_0,
                rows,
                cols,
                &dense(stored)?,
            )?),
            (_, stored) => Matrix::Dense(dense(stored)?),
        })
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
        Ok(
            match self.matrix(&format!("{prefix}.weight"), d_out, d_in)? {
                Matrix::Quantized(matrix) => LinearWeight::Quantized { matrix, bias },
                Matrix::Dense(values) => {
                    // Stored [out, in]; burn multiplies x [n, in] by [in, out].
                    let mut transposed = vec![0.0f32; values.len()];
                    for (o, row) in values.chunks_exact(d_in).enumerate() {
                        for (i, &v) in row.iter().enumerate() {
                            transposed[i * d_out + o] = v;
                        }
                    }
                    LinearWeight::Dense {
                        weight: Tensor::from_data(
                            TensorData::new(transposed, [d_in, d_out]),
                            self.device,
                        ),
                        bias,
                    }
                }
            },
        )
    }

    fn vector(&self, name: &str, len: usize) -> Result<Tensor<1>, ModelError> {
        let values = self.file.read_f32(name)?;
        if values.len() != len {
            return Err(ModelError::Shape {
                path: self.file.path().to_path_buf(),
                name: name.to_string(),
                expected: vec![len],
                found: vec![values.len()],
            });
        }
        Ok(Tensor::from_data(
            TensorData::new(values, [len]),
            self.device,
        ))
    }
}
