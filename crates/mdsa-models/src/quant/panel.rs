//! Dense f32 weights packed once, at load, for a register-blocked product.
//!
//! A general GEMM (the `gemm` crate, burn's matmul) packs the weight matrix
//! into its micro-kernel's layout on every call. For the few rows of an
//! encoder query (10–30 tokens) that packing costs as much as the
//! arithmetic, so [`PanelMatrix`] keeps the weights in that layout for good:
//! panels of [`WIDTH`] output features, each stored input feature by input
//! feature (`[panel][in][WIDTH]`). The micro-kernel holds a tile of
//! [`TILE_ROWS`] input rows × [`WIDTH`] outputs in registers and streams
//! through one panel, one broadcast and two fused multiply-adds per input
//! row and feature (AVX2 + FMA chosen at run time; portable loops
//! otherwise, which the compiler vectorizes for the baseline target).
//!
//! The intrinsics take raw pointers, so this module needs `unsafe`: the
//! workspace denies `unsafe_code`, and the exception is made here for the
//! loads of a tile whose bounds are checked before its loop.
#![allow(unsafe_code)]

use crate::team;

use super::{QuantError, check_row_request};

/// Output features per panel: two 8-lane registers.
const WIDTH: usize = 16;

/// Input rows per register tile (12 accumulators, 2 weight registers and a
/// broadcast: 15 of the 16 AVX2 registers).
const TILE_ROWS: usize = 6;

/// Input rows from which the work is split by rows (every task reads every
/// panel) rather than by panels (every task reads every row).
const SPLIT_BY_ROWS: usize = 4 * TILE_ROWS;

/// A `[rows, cols]` f32 weight matrix (out × in) in panels of [`WIDTH`] rows.
#[derive(Clone)]
pub struct PanelMatrix {
    rows: usize,
    cols: usize,
    /// `[rows.div_ceil(WIDTH)][cols][WIDTH]`; the last panel's missing rows are 0.
    panels: Vec<f32>,
}

impl std::fmt::Debug for PanelMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PanelMatrix")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish_non_exhaustive()
    }
}

impl PanelMatrix {
    /// Packs row-major `[rows, cols]` values.
    pub fn from_rows(rows: usize, cols: usize, values: &[f32]) -> Result<Self, QuantError> {
        let expected = rows
            .checked_mul(cols)
            .ok_or(QuantError::TooLarge { rows, cols })?;
        if values.len() != expected {
            return Err(QuantError::BufferLength {
                what: "panel matrix values",
                expected,
                found: values.len(),
            });
        }
        let mut panels = vec![0.0f32; rows.div_ceil(WIDTH) * cols * WIDTH];
        for (p, panel) in panels.chunks_exact_mut(cols * WIDTH).enumerate() {
            for lane in 0..WIDTH.min(rows - p * WIDTH) {
                let row = &values[(p * WIDTH + lane) * cols..][..cols];
                for (k, &v) in row.iter().enumerate() {
                    panel[k * WIDTH + lane] = v;
                }
            }
        }
        Ok(Self { rows, cols, panels })
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held (the last panel's padding included).
    pub fn resident_bytes(&self) -> usize {
        self.panels.len() * 4
    }

    /// Row `row` of the matrix.
    pub fn row_into(&self, row: usize, out: &mut [f32]) -> Result<(), QuantError> {
        check_row_request(row, self.rows, self.cols, out)?;
        let panel = &self.panels[(row / WIDTH) * self.cols * WIDTH..][..self.cols * WIDTH];
        for (k, o) in out.iter_mut().enumerate() {
            *o = panel[k * WIDTH + row % WIDTH];
        }
        Ok(())
    }

    /// `out[n][rows] = x[n][cols] · Wᵀ`, split over the thread team: by
    /// rows of `x` when there are many, by panels otherwise.
    pub fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]) -> Result<(), QuantError> {
        let (rows, cols) = (self.rows, self.cols);
        let check = |what, expected: Option<usize>, found| match expected {
            Some(e) if e == found => Ok(()),
            Some(e) => Err(QuantError::BufferLength {
                what,
                expected: e,
                found,
            }),
            None => Err(QuantError::TooLarge { rows: n, cols }),
        };
        check("matmul input (n × cols)", n.checked_mul(cols), x.len())?;
        check("matmul output (n × rows)", n.checked_mul(rows), out.len())?;
        if n == 0 || rows == 0 {
            return Ok(());
        }
        let panel_len = cols * WIDTH;
        let threads = team::threads();
        if n >= SPLIT_BY_ROWS {
            // Whole tiles per task, so only the last task has a short tile.
            let per_task = n.div_ceil(threads).div_ceil(TILE_ROWS) * TILE_ROWS;
            team::for_each_piece_mut(out, per_task * rows, |k, out| {
                let n = out.len() / rows;
                let x = &x[k * per_task * cols..][..n * cols];
                for (p, panel) in self.panels.chunks_exact(panel_len).enumerate() {
                    self.product(panel, p, x, n, out, rows, p * WIDTH);
                }
            });
        } else {
            // Each panel's `[n][WIDTH]` block apart, then copied into place.
            let mut blocks = vec![0.0f32; self.panels.len() / cols * n];
            let per_task = (rows.div_ceil(WIDTH)).div_ceil(2 * threads).max(1);
            team::for_each_piece_mut(&mut blocks, per_task * n * WIDTH, |k, blocks| {
                for (j, block) in blocks.chunks_exact_mut(n * WIDTH).enumerate() {
                    let p = k * per_task + j;
                    let panel = &self.panels[p * panel_len..(p + 1) * panel_len];
                    self.product(panel, p, x, n, block, WIDTH, 0);
                }
            });
            for (p, block) in blocks.chunks_exact(n * WIDTH).enumerate() {
                let width = WIDTH.min(rows - p * WIDTH);
                for (o, b) in out.chunks_exact_mut(rows).zip(block.chunks_exact(WIDTH)) {
                    o[p * WIDTH..p * WIDTH + width].copy_from_slice(&b[..width]);
                }
            }
        }
        Ok(())
    }

    /// Panel `p` against the `n` rows of `x`: row `r`'s results go to
    /// `out[r · stride + at..]` (as many as the panel has real rows).
    #[allow(clippy::too_many_arguments)]
    fn product(
        &self,
        panel: &[f32],
        p: usize,
        x: &[f32],
        n: usize,
        out: &mut [f32],
        stride: usize,
        at: usize,
    ) {
        let cols = self.cols;
        let width = WIDTH.min(self.rows - p * WIDTH);
        let mut r = 0;
        while r < n {
            let tile = TILE_ROWS.min(n - r);
            let rows = &x[r * cols..(r + tile) * cols];
            let mut acc = [[0.0f32; WIDTH]; TILE_ROWS];
            tile_product(rows, tile, cols, panel, &mut acc);
            for (i, acc) in acc.iter().take(tile).enumerate() {
                out[(r + i) * stride + at..][..width].copy_from_slice(&acc[..width]);
            }
            r += tile;
        }
    }
}

/// `acc[i][j] = Σ_k rows[i][k] · panel[k][j]` for the first `tile` rows.
fn tile_product(
    rows: &[f32],
    tile: usize,
    cols: usize,
    panel: &[f32],
    acc: &mut [[f32; WIDTH]; TILE_ROWS],
) {
    assert!(tile <= TILE_ROWS && rows.len() == tile * cols && panel.len() == cols * WIDTH);
    #[cfg(target_arch = "x86_64")]
    if super::simd_allowed() && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    {
        // SAFETY: the CPU has AVX2 and FMA (checked above); the slice
        // lengths were checked by the assertion.
        unsafe {
            match tile {
                6 => x86::tile::<6>(rows, cols, panel, acc),
                5 => x86::tile::<5>(rows, cols, panel, acc),
                4 => x86::tile::<4>(rows, cols, panel, acc),
                3 => x86::tile::<3>(rows, cols, panel, acc),
                2 => x86::tile::<2>(rows, cols, panel, acc),
                _ => x86::tile::<1>(rows, cols, panel, acc),
            }
        }
        return;
    }
    for (i, row) in rows.chunks_exact(cols).enumerate() {
        let a = &mut acc[i];
        for (&v, w) in row.iter().zip(panel.chunks_exact(WIDTH)) {
            for (a, &w) in a.iter_mut().zip(w) {
                *a += v * w;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{TILE_ROWS, WIDTH};

    /// The register tile: `R` rows × 16 outputs in `2R` accumulators.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `rows` holds `R · cols` values and `panel`
    /// `cols · WIDTH`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile<const R: usize>(
        rows: &[f32],
        cols: usize,
        panel: &[f32],
        acc: &mut [[f32; WIDTH]; TILE_ROWS],
    ) {
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        let (x, w) = (rows.as_ptr(), panel.as_ptr());
        for k in 0..cols {
            // SAFETY: k < cols, so `w + k·WIDTH + 16` and `x + i·cols + k`
            // (i < R) stay inside the slices (lengths checked by the caller).
            unsafe {
                let w0 = _mm256_loadu_ps(w.add(k * WIDTH));
                let w1 = _mm256_loadu_ps(w.add(k * WIDTH + 8));
                for i in 0..R {
                    let v = _mm256_broadcast_ss(&*x.add(i * cols + k));
                    lo[i] = _mm256_fmadd_ps(v, w0, lo[i]);
                    hi[i] = _mm256_fmadd_ps(v, w1, hi[i]);
                }
            }
        }
        for i in 0..R {
            // SAFETY: each row of `acc` has 16 writable f32s.
            unsafe {
                _mm256_storeu_ps(acc[i].as_mut_ptr(), lo[i]);
                _mm256_storeu_ps(acc[i].as_mut_ptr().add(8), hi[i]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(w: &[f32], rows: usize, cols: usize, x: &[f32], n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n * rows];
        for t in 0..n {
            for r in 0..rows {
                out[t * rows + r] = (0..cols).map(|k| x[t * cols + k] * w[r * cols + k]).sum();
            }
        }
        out
    }

    #[test]
    fn products_match_the_definition_for_every_tile_and_split() {
        for (rows, cols) in [(16, 8), (37, 19), (1152, 384), (5, 3)] {
            let w: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37).sin()).collect();
            let m = PanelMatrix::from_rows(rows, cols, &w).unwrap();
            for n in [1, 2, 5, 6, 7, 13, 24, 31] {
                let x: Vec<f32> = (0..n * cols).map(|i| (i as f32 * 0.11).cos()).collect();
                let mut got = vec![f32::NAN; n * rows];
                m.matmul(&x, n, &mut got).unwrap();
                let want = reference(&w, rows, cols, &x, n);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-3, "{rows}×{cols}, n={n}: {g} vs {w}");
                }
            }
            let mut row = vec![0.0; cols];
            m.row_into(rows - 1, &mut row).unwrap();
            assert_eq!(row, w[(rows - 1) * cols..]);
        }
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let m = PanelMatrix::from_rows(4, 3, &[0.0; 12]).unwrap();
        assert!(PanelMatrix::from_rows(4, 3, &[0.0; 11]).is_err());
        assert!(m.matmul(&[0.0; 5], 2, &mut [0.0; 8]).is_err());
        assert!(m.matmul(&[0.0; 6], 2, &mut [0.0; 7]).is_err());
        assert!(m.row_into(4, &mut [0.0; 3]).is_err());
    }
}
