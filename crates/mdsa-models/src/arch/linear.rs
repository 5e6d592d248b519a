//! The linear layer every architecture shares: `y = x Wᵀ + b` with `W` held as
//! a dense f32 burn tensor (any device), as 16-bit floats, or as quantized
//! blocks that the CPU kernels in [`crate::quant`] multiply directly.
//!
//! The format is chosen at load ([`WeightFormat`]), so one checkpoint can be
//! held at several sizes: int4 blocks take about half the bytes of int8 and an
//! eighth of f32.

use burn::tensor::{Device, Tensor, TensorData};

use crate::arch::llama::WeightFormat;
use crate::error::ModelError;
use crate::quant::{BlockFormat, HalfKind, HalfMatrix, QuantMatrix};

/// A weight matrix the CPU multiplies row by row: quantized blocks or 16-bit floats.
#[derive(Debug)]
pub(crate) enum Packed {
    Blocks(QuantMatrix),
    Half(HalfMatrix),
}

impl Packed {
    pub(crate) fn rows(&self) -> usize {
        match self {
            Self::Blocks(m) => m.rows(),
            Self::Half(m) => m.rows(),
        }
    }

    fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]) -> Result<(), ModelError> {
        match self {
            Self::Blocks(m) => m.matmul(x, n, out)?,
            Self::Half(m) => m.matmul(x, n, out)?,
        }
        Ok(())
    }

    pub(crate) fn row_into(&self, row: usize, out: &mut [f32]) -> Result<(), ModelError> {
        match self {
            Self::Blocks(m) => m.dequantize_row_into(row, out)?,
            Self::Half(m) => m.row_into(row, out)?,
        }
        Ok(())
    }

    pub(crate) fn resident_bytes(&self) -> usize {
        match self {
            Self::Blocks(m) => m.resident_bytes(),
            Self::Half(m) => m.resident_bytes(),
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

/// A linear layer `y = x Wᵀ + b` in one of two representations.
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

    /// `x` is `[n, in]`; returns `[n, out]`.
    pub(crate) fn forward(&self, x: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        let (y, bias) = match self {
            Self::Dense { weight, bias } => (x.matmul(weight.clone()), bias),
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
        }
    }
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
