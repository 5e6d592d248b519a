//! The linear layer every architecture shares: `y = x Wᵀ + b` with `W` held as
//! a dense f32 burn tensor (any device), as 16-bit floats, or as quantized
//! blocks that the CPU kernels in [`crate::quant`] multiply directly.
//!
//! The format is chosen at load ([`WeightFormat`]), so one checkpoint can be
//! held at several sizes: int4 blocks take about half the bytes of int8 and an
//! eighth of f32.
//!
//! The block kernels run on the host, so they serve the CPU backend (flex)
//! only. On any other device (wgpu, cuda) int8/int4 weights become burn's
//! packed quantized tensors (symmetric, blocks of 32, values packed into
//! `u32`s), dequantized on the device as each matmul needs them, and f16/bf16
//! weights become burn half tensors where the device has that dtype.

use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
use burn::tensor::{DType, Device, FloatDType, Tensor, TensorData};

use crate::quant::{BlockFormat, HalfKind, HalfMatrix, PanelMatrix, QuantMatrix};
use mdsa_engine::{ModelError, WeightFormat};

/// A weight matrix the CPU multiplies itself: quantized blocks, 16-bit
/// floats, or f32 in the panels of a register-blocked product.
#[derive(Debug)]
pub(crate) enum Packed {
    Blocks(QuantMatrix),
    Half(HalfMatrix),
    Panels(PanelMatrix),
}

impl Packed {
    /// Row-major `[rows, cols]` f32 values as the host multiplies them in
    /// `format`: f32 in panels, the others as [`Matrix::from_f32`] makes
    /// them (blocks interleaved for the 8-row kernels).
    pub(crate) fn from_f32(
        format: WeightFormat,
        rows: usize,
        cols: usize,
        values: Vec<f32>,
    ) -> Result<Self, ModelError> {
        Ok(match Matrix::from_f32(format, rows, cols, values)? {
            Matrix::Dense(values) => Self::Panels(PanelMatrix::from_rows(rows, cols, &values)?),
            Matrix::Packed(Self::Blocks(blocks)) => Self::Blocks(blocks.interleaved()),
            Matrix::Packed(packed) => packed,
        })
    }

    pub(crate) fn rows(&self) -> usize {
        match self {
            Self::Blocks(m) => m.rows(),
            Self::Half(m) => m.rows(),
            Self::Panels(m) => m.rows(),
        }
    }

    pub(crate) fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]) -> Result<(), ModelError> {
        match self {
            Self::Blocks(m) => m.matmul(x, n, out)?,
            Self::Half(m) => m.matmul(x, n, out)?,
            Self::Panels(m) => m.matmul(x, n, out)?,
        }
        Ok(())
    }

    pub(crate) fn row_into(&self, row: usize, out: &mut [f32]) -> Result<(), ModelError> {
        match self {
            Self::Blocks(m) => m.dequantize_row_into(row, out)?,
            Self::Half(m) => m.row_into(row, out)?,
            Self::Panels(m) => m.row_into(row, out)?,
        }
        Ok(())
    }

    pub(crate) fn resident_bytes(&self) -> usize {
        match self {
            Self::Blocks(m) => m.resident_bytes(),
            Self::Half(m) => m.resident_bytes(),
            Self::Panels(m) => m.resident_bytes(),
        }
    }
}

/// A `[rows, cols]` (out × in) matrix in the representation a format asks for.
pub(crate) enum Matrix {
    Packed(Packed),
    /// Row-major `[rows, cols]` f32 values.
    Dense(Vec<f32>),
}

impl Matrix {
    /// Converts row-major f32 values to `format`: f32 (and "as stored", which for
    /// dense values is f32) stay dense, f16/bf16 become [`HalfMatrix`], int8
    /// Q8_0 blocks and int4 Q4_0 blocks.
    pub(crate) fn from_f32(
        format: WeightFormat,
        rows: usize,
        cols: usize,
        values: Vec<f32>,
    ) -> Result<Self, ModelError> {
        let blocks = |block| -> Result<Self, ModelError> {
            Ok(Self::Packed(Packed::Blocks(QuantMatrix::quantize(
                block, rows, cols, &values,
            )?)))
        };
        let half = |kind| -> Result<Self, ModelError> {
            Ok(Self::Packed(Packed::Half(HalfMatrix::from_f32(
                kind, rows, cols, &values,
            )?)))
        };
        match format {
            WeightFormat::F32 | WeightFormat::Stored => Ok(Self::Dense(values)),
            WeightFormat::F16 => half(HalfKind::F16),
            WeightFormat::BF16 => half(HalfKind::BF16),
            WeightFormat::Int8 => blocks(BlockFormat::Q8_0),
            WeightFormat::Int4 => blocks(BlockFormat::Q4_0),
        }
    }
}

/// Values per quantization block on a GPU: the block of GGUF's Q8_0/Q4_0.
const GPU_BLOCK: usize = 32;

/// Whether `device` multiplies weights with the host block kernels: only the
/// CPU backend does; other devices would copy activations to the host per layer.
pub(crate) fn uses_block_kernels(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        *device == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// The symmetric block-32 scheme burn quantizes a GPU weight with. `PackedU32`
/// rather than `Native`: the native store failed on an H200 (stack notes).
/// Blocks run along the innermost dimension, which is `out` for an `[in, out]`
/// weight; f32 scales (one per block).
fn gpu_scheme(value: QuantValue) -> QuantScheme {
    QuantScheme::default()
        .with_value(value)
        .with_store(QuantStore::PackedU32(0))
        .per_block([GPU_BLOCK as u8], ScaleDtype::F32)
}

/// Bytes burn holds for a `[rows, cols]` tensor under [`gpu_scheme`]: values
/// packed `32 / bits` to a `u32` along each row, plus one f32 scale per block.
fn packed_bytes(rows: usize, cols: usize, bits: usize) -> usize {
    let per_word = 32 / bits;
    let words = rows * cols.div_ceil(per_word);
    let scales = rows * cols.div_ceil(GPU_BLOCK);
    words * 4 + scales * 4
}

/// A linear layer `y = x Wᵀ + b` in one of three representations.
#[derive(Debug)]
pub(crate) enum LinearWeight {
    /// `[in, out]` f32 tensor.
    Dense {
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
    },
    /// `[out, in]` quantized blocks or half floats.
    Packed {
        matrix: Packed,
        bias: Option<Tensor<1>>,
    },
    /// `[in, out]` burn tensor in a device representation: f16/bf16, or burn's
    /// packed quantization (GPU).
    Device {
        weight: Tensor<2>,
        /// The dtype `x` is cast to before the matmul; `None` for quantized
        /// weights, dequantized to f32 for the matmul.
        compute: Option<FloatDType>,
        bias: Option<Tensor<1>>,
        /// The weight's bytes on the device, computed from its representation.
        bytes: usize,
    },
}

impl LinearWeight {
    /// A layer from an `[out, in]` matrix (`d_out` rows of `d_in`).
    pub(crate) fn new(
        matrix: Matrix,
        d_in: usize,
        d_out: usize,
        bias: Option<Tensor<1>>,
        device: &Device,
    ) -> Self {
        match matrix {
            // Interleaved where the SIMD kernels multiply 8 rows at a time.
            Matrix::Packed(Packed::Blocks(blocks)) => Self::Packed {
                matrix: Packed::Blocks(blocks.interleaved()),
                bias,
            },
            Matrix::Packed(matrix) => Self::Packed { matrix, bias },
            Matrix::Dense(values) => Self::Dense {
                // Stored [out, in]; burn multiplies x [n, in] by [in, out].
                weight: Tensor::from_data(
                    TensorData::new(transpose(&values, d_out, d_in), [d_in, d_out]),
                    device,
                ),
                bias,
            },
        }
    }

    /// A layer from row-major `[out, in]` f32 values held as `format` in the
    /// representation `device` multiplies best: the CPU's ([`Matrix::from_f32`])
    /// on the CPU backend, burn tensors elsewhere. f16/bf16 stay f32 on a device
    /// that lacks the dtype (wgpu has no bf16; f16 needs `shader-f16`).
    pub(crate) fn from_f32(
        format: WeightFormat,
        values: Vec<f32>,
        d_in: usize,
        d_out: usize,
        bias: Option<Tensor<1>>,
        device: &Device,
    ) -> Result<Self, ModelError> {
        if values.len() != d_in * d_out {
            return Err(ModelError::Backend(format!(
                "a [{d_out}, {d_in}] weight has {} values",
                values.len()
            )));
        }
        if uses_block_kernels(device) {
            let matrix = Matrix::from_f32(format, d_out, d_in, values)?;
            return Ok(Self::new(matrix, d_in, d_out, bias, device));
        }
        let dense = |values: Vec<f32>| {
            Tensor::<2>::from_data(
                TensorData::new(transpose(&values, d_out, d_in), [d_in, d_out]),
                device,
            )
        };
        let (value, bits) = match format {
            WeightFormat::Int8 => (QuantValue::Q8S, 8),
            WeightFormat::Int4 => (QuantValue::Q4S, 4),
            WeightFormat::F16 | WeightFormat::BF16 => {
                let dtype = if format == WeightFormat::F16 {
                    FloatDType::F16
                } else {
                    FloatDType::BF16
                };
                if !device.supports_dtype(dtype) {
                    return Ok(Self::new(Matrix::Dense(values), d_in, d_out, bias, device));
                }
                let weight = dense(values).cast(dtype);
                return Ok(Self::Device {
                    weight,
                    compute: Some(dtype),
                    bias,
                    bytes: d_in * d_out * 2,
                });
            }
            WeightFormat::F32 | WeightFormat::Stored => {
                return Ok(Self::new(Matrix::Dense(values), d_in, d_out, bias, device));
            }
        };
        let scheme = gpu_scheme(value);
        if !d_out.is_multiple_of(GPU_BLOCK) {
            return Err(ModelError::Backend(format!(
                "{format} on {device:?} quantizes blocks of {GPU_BLOCK} along the output dimension; {d_out} is not a multiple"
            )));
        }
        if !device.supports_dtype(DType::QFloat(scheme)) {
            return Err(ModelError::Backend(format!(
                "{device:?} does not support burn's {value:?} block-{GPU_BLOCK} quantization; use --dtype f32"
            )));
        }
        Ok(Self::Device {
            weight: dense(values).quantize_dynamic(&scheme),
            compute: None,
            bias,
            bytes: packed_bytes(d_in, d_out, bits),
        })
    }

    /// `x` is `[n, in]`; returns `[n, out]`.
    pub(crate) fn forward(&self, x: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        let (y, bias) = match self {
            Self::Dense { weight, bias } => (x.matmul(weight.clone()), bias),
            // Dequantized on the device for each matmul (a transient f32 copy
            // of one layer; the resident weight stays packed). burn 0.22.1's
            // quantized matmul reads the packed rhs directly, but on llvmpipe it
            // gave wrong decode-step logits inside the decoder (relative RMS
            // error 1.29 against f32, 0.008 dequantized; tests/wgpu_quant.rs).
            Self::Device {
                weight,
                compute: None,
                bias,
                ..
            } => (x.matmul(weight.clone().dequantize()), bias),
            Self::Device {
                weight,
                compute: Some(dtype),
                bias,
                ..
            } => (
                x.cast(*dtype).matmul(weight.clone()).cast(FloatDType::F32),
                bias,
            ),
            Self::Packed { matrix, bias } => {
                let [n, _] = x.dims();
                let device = x.device();
                let input = tensor_to_vec(x)?;
                let mut out = vec![0.0f32; n * matrix.rows()];
                matrix.matmul(&input, n, &mut out)?;
                let y = Tensor::<2>::from_data(TensorData::new(out, [n, matrix.rows()]), &device);
                (y, bias)
            }
        };
        Ok(match bias {
            Some(b) => y + b.clone().unsqueeze::<2>(),
            None => y,
        })
    }

    /// One layer computing all of `parts` (same input, outputs side by side
    /// in order) where they are quantized blocks of one format: see
    /// [`QuantMatrix::concat_rows`]. `None` otherwise (dense, half or device
    /// weights, or a bias on some parts only).
    pub(crate) fn fuse(parts: &[&LinearWeight]) -> Option<LinearWeight> {
        let mut blocks = Vec::with_capacity(parts.len());
        let mut biases = Vec::with_capacity(parts.len());
        for part in parts {
            let Self::Packed {
                matrix: Packed::Blocks(m),
                bias,
            } = part
            else {
                return None;
            };
            blocks.push(m);
            biases.push(bias.clone());
        }
        let bias = if biases.iter().all(Option::is_some) {
            Some(Tensor::cat(biases.into_iter().flatten().collect(), 0))
        } else if biases.iter().all(Option::is_none) {
            None
        } else {
            return None;
        };
        Some(Self::Packed {
            matrix: Packed::Blocks(QuantMatrix::concat_rows(&blocks)?),
            bias,
        })
    }

    /// Whether [`LinearWeight::forward_host`] takes this layer: quantized or
    /// half weights without a bias, which the CPU multiplies itself.
    pub(crate) fn on_host(&self) -> bool {
        matches!(self, Self::Packed { bias: None, .. })
    }

    /// `x` (`n` rows of `in`) through the layer in host buffers, without burn
    /// tensors; an error unless [`LinearWeight::on_host`].
    pub(crate) fn forward_host(&self, x: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        let Self::Packed { matrix, bias: None } = self else {
            return Err(ModelError::Backend(
                "a layer with a bias or on a device was run on the host".into(),
            ));
        };
        let mut out = take_buffer(n * matrix.rows());
        // The block kernels write every output; the others start from zero.
        if !matches!(matrix, Packed::Blocks(_)) {
            out.fill(0.0);
        }
        matrix.matmul(x, n, &mut out)?;
        Ok(out)
    }

    /// `x` is `[batch, seq, in]`; returns `[batch, seq, out]`.
    pub(crate) fn forward3(&self, x: Tensor<3>) -> Result<Tensor<3>, ModelError> {
        let [batch, seq, d_in] = x.dims();
        let y = self.forward(x.reshape([batch * seq, d_in]))?;
        let [_, d_out] = y.dims();
        Ok(y.reshape([batch, seq, d_out]))
    }

    pub(crate) fn resident_bytes(&self) -> usize {
        let bias = |b: &Option<Tensor<1>>| b.as_ref().map_or(0, |b| b.dims()[0] * 4);
        match self {
            Self::Dense { weight, bias: b } => {
                weight.dims().iter().product::<usize>() * 4 + bias(b)
            }
            Self::Packed { matrix, bias: b } => matrix.resident_bytes() + bias(b),
            Self::Device { bytes, bias: b, .. } => bytes + bias(b),
        }
    }
}

/// Linear layers that read the same input (Q, K and V; gate and up): one
/// fused layer on the CPU's quantized path ([`LinearWeight::fuse`]), else
/// each on its own. Either way [`SharedInput::forward`] gives each layer's
/// output.
#[derive(Debug)]
pub(crate) enum SharedInput<const N: usize> {
    /// One layer whose outputs are the parts' side by side, `widths` wide.
    Fused {
        weight: Box<LinearWeight>,
        widths: [usize; N],
    },
    /// The layers as loaded.
    Separate(Box<[LinearWeight; N]>),
}

impl<const N: usize> SharedInput<N> {
    /// Fuses `parts` where they can be.
    pub(crate) fn new(parts: [LinearWeight; N]) -> Self {
        let widths = parts.each_ref().map(|part| match part {
            LinearWeight::Packed { matrix, .. } => matrix.rows(),
            _ => 0,
        });
        match LinearWeight::fuse(&parts.each_ref()) {
            Some(weight) => Self::Fused {
                weight: Box::new(weight),
                widths,
            },
            None => Self::Separate(Box::new(parts)),
        }
    }

    /// Each layer's `[n, out]` output for the `[n, in]` input.
    pub(crate) fn forward(&self, x: Tensor<2>) -> Result<[Tensor<2>; N], ModelError> {
        match self {
            Self::Fused { weight, widths } => {
                let y = weight.forward(x)?;
                let mut start = 0;
                Ok(widths.map(|width| {
                    let part = y.clone().narrow(1, start, width);
                    start += width;
                    part
                }))
            }
            Self::Separate(parts) => {
                let mut outputs = Vec::with_capacity(N);
                for part in parts.iter() {
                    outputs.push(part.forward(x.clone())?);
                }
                outputs
                    .try_into()
                    .map_err(|_| ModelError::Backend("a projection went missing".into()))
            }
        }
    }

    /// The fused layer, where there is one.
    pub(crate) fn fused(&self) -> Option<(&LinearWeight, &[usize; N])> {
        match self {
            Self::Fused { weight, widths } => Some((weight, widths)),
            Self::Separate(_) => None,
        }
    }

    /// Bytes the weights hold.
    pub(crate) fn resident_bytes(&self) -> usize {
        match self {
            Self::Fused { weight, .. } => weight.resident_bytes(),
            Self::Separate(parts) => parts.iter().map(LinearWeight::resident_bytes).sum(),
        }
    }
}

/// Host buffers the CPU's forward passes hand back ([`recycle`]) to reuse:
/// a decode step's ~150 products would otherwise each allocate, page in and
/// zero their output. At most this many are kept per thread.
const KEPT_BUFFERS: usize = 8;

thread_local! {
    static BUFFERS: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A buffer of `len` floats whose values are unspecified (an earlier pass's),
/// for outputs that are written whole.
pub(crate) fn take_buffer(len: usize) -> Vec<f32> {
    let kept = BUFFERS.with_borrow_mut(|kept| {
        // The smallest that holds `len`, else the largest (to grow).
        let fit = (0..kept.len())
            .filter(|&i| kept[i].capacity() >= len)
            .min_by_key(|&i| kept[i].capacity())
            .or_else(|| (0..kept.len()).max_by_key(|&i| kept[i].capacity()));
        fit.map(|i| kept.swap_remove(i))
    });
    let mut buffer = kept.unwrap_or_default();
    if buffer.len() >= len {
        buffer.truncate(len);
    } else {
        buffer.resize(len, 0.0);
    }
    buffer
}

/// Hands a buffer back for [`take_buffer`] to give out again.
pub(crate) fn recycle(buffer: Vec<f32>) {
    BUFFERS.with_borrow_mut(|kept| {
        if kept.len() < KEPT_BUFFERS {
            kept.push(buffer);
        }
    });
}

/// Row-major `[rows, cols]` → `[cols, rows]`.
pub(crate) fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut transposed = vec![0.0f32; values.len()];
    for (r, row) in values.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            transposed[c * rows + r] = v;
        }
    }
    transposed
}

pub(crate) fn tensor_to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, ModelError> {
    t.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Backend(format!("reading a tensor back: {e:?}")))
}

/// A standalone linear layer `y = x Wᵀ (+ b)` in any [`WeightFormat`], held the
/// way the architectures hold theirs on `device`: block kernels on the CPU
/// backend, burn's packed quantization or half tensors on a GPU. For tests,
/// benches and tools that measure one layer.
#[derive(Debug)]
pub struct Linear(LinearWeight);

impl Linear {
    /// A layer from row-major `[d_out, d_in]` f32 weights and an optional bias.
    pub fn from_f32(
        format: WeightFormat,
        weight: Vec<f32>,
        d_in: usize,
        d_out: usize,
        bias: Option<Vec<f32>>,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let bias = bias.map(|b| Tensor::<1>::from_data(TensorData::new(b, [d_out]), device));
        LinearWeight::from_f32(format, weight, d_in, d_out, bias, device).map(Self)
    }

    /// `x` is `[n, d_in]`; returns `[n, d_out]`.
    pub fn forward(&self, x: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        self.0.forward(x)
    }

    /// Bytes of weight and bias as held.
    pub fn resident_bytes(&self) -> usize {
        self.0.resident_bytes()
    }

    /// How the weight is held: `f32`, `cpu-blocks`, `cpu-half`, `cpu-panels`,
    /// `burn-quantized` or `burn-half`.
    pub fn representation(&self) -> &'static str {
        match &self.0 {
            LinearWeight::Dense { .. } => "f32",
            LinearWeight::Packed {
                matrix: Packed::Blocks(_),
                ..
            } => "cpu-blocks",
            LinearWeight::Packed {
                matrix: Packed::Half(_),
                ..
            } => "cpu-half",
            LinearWeight::Packed {
                matrix: Packed::Panels(_),
                ..
            } => "cpu-panels",
            LinearWeight::Device { compute: None, .. } => "burn-quantized",
            LinearWeight::Device { .. } => "burn-half",
        }
    }
}
