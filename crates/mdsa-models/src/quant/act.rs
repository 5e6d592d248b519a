//! Activation quantization: the f32 input rows of a matmul become 8-bit blocks
//! once per call, so that every weight block meets them in an integer dot
//! product (llama.cpp's `vec_dot_type`).
//!
//! Two shapes, after ggml's `block_q8_1` and `block_q8_K`:
//! - [`BlockQ8`] (32 values) pairs with Q8_0, Q4_0 and Q4_1. It keeps
//!   `s = d · Σq` so that the Q4_0 offset (−8) and the Q4_1 minimum cost one
//!   multiply per block instead of a pass over the values. Unlike ggml, `d` and
//!   `s` stay f32: no reason to round them to f16 in memory we never store.
//! - [`BlockQ8K`] (256 values) pairs with the K-quants; `bsums` (sums of 16
//!   values) serve the K-quant minimums (Q4_K, Q5_K) and the −32 offset (Q6_K).
//!
//! Both use d = max|x| / 127 and q = round(x / d): per value the error is at most
//! d / 2 = max|x| / 254 of its block, which is the bound the tests check
//! against.

use super::formats::{QK, QK_K};

/// 32 activations as i8 with their scale.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub(crate) struct BlockQ8 {
    /// Scale: x ≈ d · q.
    pub(crate) d: f32,
    /// d · Σ q.
    pub(crate) s: f32,
    /// Quantized values.
    pub(crate) qs: [i8; QK],
}

impl BlockQ8 {
    pub(crate) const ZERO: BlockQ8 = BlockQ8 {
        d: 0.0,
        s: 0.0,
        qs: [0; QK],
    };
}

/// 256 activations as i8 with their scale and sums of 16.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub(crate) struct BlockQ8K {
    /// Scale: x ≈ d · q.
    pub(crate) d: f32,
    /// Quantized values.
    pub(crate) qs: [i8; QK_K],
    /// Σ q over each run of 16 values.
    pub(crate) bsums: [i16; QK_K / 16],
}

impl BlockQ8K {
    pub(crate) const ZERO: BlockQ8K = BlockQ8K {
        d: 0.0,
        qs: [0; QK_K],
        bsums: [0; QK_K / 16],
    };
}

/// Scale and inverse scale for a block whose largest magnitude is `amax`.
#[inline(always)]
pub(crate) fn scales(amax: f32) -> (f32, f32) {
    let d = amax / 127.0;
    let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    (d, id)
}

/// Quantizes `x` (a multiple of 32 values) into `out` (one block per 32).
///
/// `inline(always)` so that the AVX2 module can compile this same body with AVX2
/// enabled (it vectorizes there) while the portable path keeps the baseline ISA.
/// Rounding is ties-to-even (one `roundps` with SSE4.1); both paths round the
/// same way, so SIMD and scalar results see identical activations.
#[inline(always)]
pub(crate) fn quantize_q8_body(x: &[f32], out: &mut [BlockQ8]) {
    for (blk, o) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
        let (d, id) = scales(amax);
        let mut sum = 0i32;
        for (q, &v) in o.qs.iter_mut().zip(blk) {
            // |v · id| ≤ 127 up to rounding; clamp so no input can wrap.
            let r = (v * id).round_ties_even().clamp(-127.0, 127.0) as i32;
            *q = r as i8;
            sum += r;
        }
        o.d = d;
        o.s = d * sum as f32;
    }
}

/// Quantizes `x` (a multiple of 256 values) into `out` (one block per 256).
#[inline(always)]
pub(crate) fn quantize_q8k_body(x: &[f32], out: &mut [BlockQ8K]) {
    for (blk, o) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
        let (d, id) = scales(amax);
        for (q, &v) in o.qs.iter_mut().zip(blk) {
            *q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
        }
        for (s, q) in o.bsums.iter_mut().zip(o.qs.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i16).sum();
        }
        o.d = d;
    }
}

/// The quantized activations of one matmul call: `n` rows of `per_row` blocks.
#[derive(Debug)]
pub(crate) struct Activations {
    /// Activation rows (the matmul's `n`).
    pub(crate) n: usize,
    /// Blocks per activation row.
    pub(crate) per_row: usize,
    /// The blocks, row after row.
    pub(crate) blocks: ActBlocks,
}

impl Activations {
    /// Rows `start..start + n` of Q8 activations; `None` for Q8K blocks
    /// or rows past the end.
    pub(crate) fn q8_rows(&self, start: usize, n: usize) -> Option<Q8Rows<'_>> {
        let ActBlocks::Q8(blocks) = &self.blocks else {
            return None;
        };
        let blocks = blocks.get(start * self.per_row..(start + n) * self.per_row)?;
        Some(Q8Rows {
            blocks,
            n,
            per_row: self.per_row,
        })
    }
}

/// Consecutive rows of Q8 activations, borrowed: what the interleaved
/// kernels multiply (one task's share of a matmul's rows).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Q8Rows<'a> {
    /// `n · per_row` blocks, row after row.
    pub(crate) blocks: &'a [BlockQ8],
    /// Activation rows.
    pub(crate) n: usize,
    /// Blocks per row.
    pub(crate) per_row: usize,
}

/// Block storage matching the weight format's family.
#[derive(Debug)]
pub(crate) enum ActBlocks {
    /// For Q8_0, Q4_0, Q4_1.
    Q8(Vec<BlockQ8>),
    /// For Q4_K, Q5_K, Q6_K.
    Q8K(Vec<BlockQ8K>),
}
