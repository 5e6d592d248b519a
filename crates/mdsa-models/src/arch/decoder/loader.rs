//! Reading a decoder's tensors, apart from the math that uses them: where
//! they come from (a GGUF file or safetensors), what each file format calls
//! them ([`Names`], [`Part`]), and how a quantized GGUF tensor becomes a
//! layer's weight in the requested [`WeightFormat`] ([`Stored`] →
//! [`Resolved`] → [`Matrix`] / [`LinearWeight`]).
//!
//! Every family loads through one [`Loader`]; a family with tensors of its own
//! adds a [`Part`] and its two names.

use std::ops::Range;
use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};
use mdsa_engine::WeightFormat;

use crate::arch::linear::{LinearWeight, Matrix, Packed, uses_block_kernels};
use crate::gguf::{GgmlType, GgufFile};
use crate::quant::{BlockFormat, QuantBytes, QuantMatrix};
use crate::weights::SafetensorsWeights;

use super::cache::KvPrecision;
use mdsa_engine::ModelError;

/// Lets quantized matrices borrow the GGUF mmap without copying it.
struct GgufBytes(Arc<GgufFile>);

impl AsRef<[u8]> for GgufBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes()
    }
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
        BlockFormat::Q8_0
        | BlockFormat::Q5_0
        | BlockFormat::Q5_1
        | BlockFormat::Q5_K
        | BlockFormat::Q6_K => WeightFormat::Int8,
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
pub(crate) enum Part {
    AttnNorm,
    Q,
    K,
    V,
    /// Q, K and V in one projection (Phi-3).
    Qkv,
    O,
    /// Per-head query and key norms (Qwen3, Gemma 3).
    QNorm,
    KNorm,
    /// The norm after attention, before the residual add (Gemma 2/3).
    PostAttnNorm,
    FfnNorm,
    /// The norm before the feed-forward layer when the block has four (Gemma 2/3).
    PreFfnNorm,
    /// The norm after the feed-forward layer, before the residual add (Gemma 2/3).
    PostFfnNorm,
    Gate,
    Up,
    /// Gate and up in one projection (Phi-3).
    GateUp,
    Down,
}

/// Tensor naming of one file format.
#[derive(Clone, Copy)]
pub(crate) enum Names {
    Gguf,
    HuggingFace,
}

impl Names {
    /// The name of a block's tensor, without `.weight` / `.bias`.
    pub(crate) fn layer(self, i: usize, part: Part) -> String {
        let (gguf, hf) = match part {
            Part::AttnNorm => ("attn_norm", "input_layernorm"),
            Part::Q => ("attn_q", "self_attn.q_proj"),
            Part::K => ("attn_k", "self_attn.k_proj"),
            Part::V => ("attn_v", "self_attn.v_proj"),
            Part::Qkv => ("attn_qkv", "self_attn.qkv_proj"),
            Part::O => ("attn_output", "self_attn.o_proj"),
            Part::QNorm => ("attn_q_norm", "self_attn.q_norm"),
            Part::KNorm => ("attn_k_norm", "self_attn.k_norm"),
            Part::PostAttnNorm => ("post_attention_norm", "post_attention_layernorm"),
            Part::FfnNorm => ("ffn_norm", "post_attention_layernorm"),
            Part::PreFfnNorm => ("ffn_norm", "pre_feedforward_layernorm"),
            Part::PostFfnNorm => ("post_ffw_norm", "post_feedforward_layernorm"),
            Part::Gate => ("ffn_gate", "mlp.gate_proj"),
            Part::Up => ("ffn_up", "mlp.up_proj"),
            Part::GateUp => ("ffn_up", "mlp.gate_up_proj"),
            Part::Down => ("ffn_down", "mlp.down_proj"),
        };
        match self {
            Self::Gguf => format!("blk.{i}.{gguf}"),
            Self::HuggingFace => format!("model.layers.{i}.{hf}"),
        }
    }

    /// The token embedding, without `.weight`.
    pub(crate) fn embedding(self) -> &'static str {
        match self {
            Self::Gguf => "token_embd",
            Self::HuggingFace => "model.embed_tokens",
        }
    }

    /// The output head, without `.weight`.
    pub(crate) fn head(self) -> &'static str {
        match self {
            Self::Gguf => "output",
            Self::HuggingFace => "lm_head",
        }
    }

    /// The final norm, without `.weight`.
    pub(crate) fn final_norm(self) -> &'static str {
        match self {
            Self::Gguf => "output_norm",
            Self::HuggingFace => "model.norm",
        }
    }
}

/// Reads tensors from one file format, in one weight format, onto one device.
pub(crate) struct Loader<'a> {
    source: Source<'a>,
    format: WeightFormat,
    device: &'a Device,
}

impl<'a> Loader<'a> {
    /// Reads from a GGUF file; quantized blocks kept as stored borrow its mmap.
    pub(crate) fn gguf(file: &'a Arc<GgufFile>, format: WeightFormat, device: &'a Device) -> Self {
        let bytes = Arc::new(GgufBytes(Arc::clone(file)));
        Self {
            source: Source::Gguf { file, bytes },
            format,
            device,
        }
    }

    /// Reads from Hugging Face safetensors.
    pub(crate) fn safetensors(
        weights: &'a SafetensorsWeights,
        format: WeightFormat,
        device: &'a Device,
    ) -> Self {
        Self {
            source: Source::Safetensors(weights),
            format,
            device,
        }
    }

    /// How this model's CPU KV cache holds values: f16 beside quantized
    /// weights (whose own rounding is far larger, as llama.cpp does), f32
    /// beside f32 and 16-bit float weights.
    pub(crate) fn kv_precision(&self) -> KvPrecision {
        match (self.format, &self.source) {
            (WeightFormat::Int8 | WeightFormat::Int4, _)
            | (WeightFormat::Stored, Source::Gguf { .. }) => KvPrecision::F16,
            _ => KvPrecision::F32,
        }
    }

    /// The device the tensors are put on.
    pub(crate) fn device(&self) -> &'a Device {
        self.device
    }

    /// The tensor naming of the source.
    pub(crate) fn names(&self) -> Names {
        match self.source {
            Source::Gguf { .. } => Names::Gguf,
            Source::Safetensors(_) => Names::HuggingFace,
        }
    }

    /// Whether the source has a tensor of that name.
    pub(crate) fn contains(&self, name: &str) -> bool {
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

    /// A quantized GGUF tensor as the blocks the kernels multiply; `None` for
    /// unquantized tensors and safetensors.
    fn stored(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Option<QuantMatrix>, ModelError> {
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
            return Ok(Some(QuantMatrix::new(format, rows, cols, data)?));
        }
        Err(ModelError::config(
            file.path(),
            name,
            format!(
                "GGUF type {} is not supported; supported: F32, F16, BF16, {}",
                ty.name(),
                BlockFormat::ALL.map(BlockFormat::name).join(", ")
            ),
        ))
    }

    /// A `[rows, cols]` tensor (GGUF dims `[cols, rows]`): GGUF blocks to keep
    /// as stored, or f32 values with the format to hold them in.
    fn resolve(&self, name: &str, rows: usize, cols: usize) -> Result<Resolved, ModelError> {
        let stored = self.stored(name, rows, cols)?;
        let keep = self.format == WeightFormat::Stored;
        Ok(match stored {
            Some(m) if keep => Resolved::Kept(m),
            Some(m) => Resolved::Values(self.format, m.dequantize()),
            None => Resolved::Values(self.format, self.read_dense(name, &[rows, cols])?),
        })
    }

    /// A `[rows, cols]` matrix in the requested format, as the CPU holds it
    /// (also the embedding table on every device: rows are looked up on the host).
    pub(crate) fn matrix(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Matrix, ModelError> {
        match self.resolve(name, rows, cols)? {
            Resolved::Kept(m) => Ok(Matrix::Packed(Packed::Blocks(m))),
            Resolved::Values(format, values) => Matrix::from_f32(format, rows, cols, values),
        }
    }

    /// The linear layer `{prefix}.weight` (`[d_out, d_in]`) with, if `bias`,
    /// `{prefix}.bias`.
    pub(crate) fn linear(
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

    /// Linear layers (no bias) from row ranges of one stored `[rows, d_in]`
    /// projection, `rows` being the end of the last range: a fused QKV or
    /// gate-up weight split as the model uses it. Quantized blocks are split
    /// without copying (rows are whole blocks).
    pub(crate) fn linear_split<const N: usize>(
        &self,
        prefix: &str,
        d_in: usize,
        ranges: [Range<usize>; N],
    ) -> Result<[LinearWeight; N], ModelError> {
        let rows = ranges.iter().map(|r| r.end).max().unwrap_or(0);
        let name = format!("{prefix}.weight");
        let resolved = self.resolve(&name, rows, d_in)?;
        let mut out = Vec::with_capacity(N);
        for range in ranges {
            let d_out = range.len();
            let weight = match &resolved {
                Resolved::Kept(m) => {
                    let part = m.row_range(range).map_err(ModelError::from)?;
                    if uses_block_kernels(self.device) {
                        let matrix = Matrix::Packed(Packed::Blocks(part));
                        LinearWeight::new(matrix, d_in, d_out, None, self.device)
                    } else {
                        let format = gpu_format(part.format());
                        LinearWeight::from_f32(
                            format,
                            part.dequantize(),
                            d_in,
                            d_out,
                            None,
                            self.device,
                        )?
                    }
                }
                Resolved::Values(format, values) => {
                    let part = values[range.start * d_in..range.end * d_in].to_vec();
                    LinearWeight::from_f32(*format, part, d_in, d_out, None, self.device)?
                }
            };
            out.push(weight);
        }
        out.try_into().map_err(|_| {
            ModelError::Backend(format!("{name}: split into the wrong number of parts"))
        })
    }

    /// An unquantized vector of `len` values, on the device.
    pub(crate) fn vector(&self, name: &str, len: usize) -> Result<Tensor<1>, ModelError> {
        let values = self.read_dense(name, &[len])?;
        Ok(Tensor::from_data(
            TensorData::new(values, [len]),
            self.device,
        ))
    }
}
