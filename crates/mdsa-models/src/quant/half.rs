//! Dense weights in 16-bit floats (f16 or bf16): half the bytes of f32 and, since
//! decoding is memory-bound, close to twice the speed; widened to f32 in
//! registers, so activations stay f32 (no activation rounding, unlike the blocks).

use crate::team;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use super::{QuantError, check_row_request};
use mdsa_engine::dot;

/// Which 16-bit float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalfKind {
    /// IEEE half precision (5-bit exponent, 10-bit mantissa).
    F16,
    /// bfloat16 (8-bit exponent, 7-bit mantissa): f32's range, less precision.
    BF16,
}

/// Output rows handled by one parallel task.
const ROWS_PER_TASK: usize = 32;

/// A `[rows, cols]` weight matrix (out × in) stored in 16 bits.
#[derive(Debug, Clone)]
pub struct HalfMatrix {
    kind: HalfKind,
    rows: usize,
    cols: usize,
    data: Data,
}

#[derive(Debug, Clone)]
enum Data {
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

impl HalfMatrix {
    /// Rounds row-major f32 values to 16 bits.
    pub fn from_f32(
        kind: HalfKind,
        rows: usize,
        cols: usize,
        values: &[f32],
    ) -> Result<Self, QuantError> {
        let expected = rows.checked_mul(cols).ok_or(QuantError::BufferLength {
            what: "half matrix values",
            expected: usize::MAX,
            found: values.len(),
        })?;
        if values.len() != expected {
            return Err(QuantError::BufferLength {
                what: "half matrix values",
                expected,
                found: values.len(),
            });
        }
        let data = match kind {
            HalfKind::F16 => Data::F16(values.iter().map(|&v| f16::from_f32(v)).collect()),
            HalfKind::BF16 => Data::BF16(values.iter().map(|&v| bf16::from_f32(v)).collect()),
        };
        Ok(Self {
            kind,
            rows,
            cols,
            data,
        })
    }

    /// The float kind.
    pub fn kind(&self) -> HalfKind {
        self.kind
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held.
    pub fn resident_bytes(&self) -> usize {
        self.rows * self.cols * 2
    }

    /// Row `row` widened to f32 (an embedding lookup).
    pub fn row_into(&self, row: usize, out: &mut [f32]) -> Result<(), QuantError> {
        check_row_request(row, self.rows, self.cols, out)?;
        let range = row * self.cols..(row + 1) * self.cols;
        match &self.data {
            Data::F16(d) => d[range].convert_to_f32_slice(out),
            Data::BF16(d) => d[range].convert_to_f32_slice(out),
        }
        Ok(())
    }

    /// `out[n][rows] = x[n][cols] · Wᵀ`, rows split over the thread team.
    pub fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]) -> Result<(), QuantError> {
        let (rows, cols) = (self.rows, self.cols);
        if x.len() != n * cols {
            return Err(QuantError::BufferLength {
                what: "activations",
                expected: n * cols,
                found: x.len(),
            });
        }
        if out.len() != n * rows {
            return Err(QuantError::BufferLength {
                what: "output",
                expected: n * rows,
                found: out.len(),
            });
        }
        // Row-major [rows, n] per task, transposed into `out` at the end.
        let mut by_row = vec![0.0f32; rows * n];
        team::for_each_piece_mut(&mut by_row, ROWS_PER_TASK * n, |task, chunk| {
            let mut widened = vec![0.0f32; cols];
            for (i, results) in chunk.chunks_exact_mut(n).enumerate() {
                let row = task * ROWS_PER_TASK + i;
                // In range by construction: `chunk` covers rows of this task only.
                let _ = self.row_into(row, &mut widened);
                for (result, input) in results.iter_mut().zip(x.chunks_exact(cols)) {
                    *result = dot(&widened, input);
                }
            }
        });
        for (r, results) in by_row.chunks_exact(n).enumerate() {
            for (t, &value) in results.iter().enumerate() {
                out[t * rows + r] = value;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_matmul_matches_f32_within_rounding() {
        let (rows, cols, n) = (70, 37, 3);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 113) as f32 / 113.0 - 0.5)
            .collect();
        let x: Vec<f32> = (0..n * cols)
            .map(|i| ((i * 31) % 17) as f32 / 17.0 - 0.5)
            .collect();
        for kind in [HalfKind::F16, HalfKind::BF16] {
            let m = HalfMatrix::from_f32(kind, rows, cols, &w).unwrap();
            assert_eq!(m.resident_bytes(), rows * cols * 2);
            let mut out = vec![0.0; n * rows];
            m.matmul(&x, n, &mut out).unwrap();
            let tolerance = if kind == HalfKind::F16 { 2e-3 } else { 2e-2 };
            for t in 0..n {
                for r in 0..rows {
                    let exact: f32 = (0..cols).map(|c| w[r * cols + c] * x[t * cols + c]).sum();
                    let got = out[t * rows + r];
                    assert!(
                        (got - exact).abs() <= tolerance * (1.0 + exact.abs()),
                        "{kind:?} {t} {r}: {got} vs {exact}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(HalfMatrix::from_f32(HalfKind::F16, 2, 3, &[0.0; 5]).is_err());
        let m = HalfMatrix::from_f32(HalfKind::F16, 2, 3, &[0.0; 6]).unwrap();
        assert!(m.matmul(&[0.0; 4], 1, &mut [0.0; 2]).is_err());
        assert!(m.matmul(&[0.0; 3], 1, &mut [0.0; 3]).is_err());
        assert!(m.row_into(2, &mut [0.0; 3]).is_err());
    }
}
