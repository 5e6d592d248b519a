//! The interleaved kernels again on 512-bit registers (AVX-512 F/BW/VL +
//! VNNI): a pair of 8-row groups side by side in one register, so that each
//! `vpdpbusd` and each broadcast activation load covers 16 rows.
//!
//! Why a second copy of [`super::x86`]'s `groups`: with 256-bit registers a
//! batch's products are bound by the broadcast loads around `vpdpbusd`, not
//! by `vpdpbusd` itself. On the 2-core AMD EPYC reference machine, a loop of `vpdpbusd` with broadcast
//! activations ran at 4.8 per ns on 256 bits and at 3.4 per ns on 512 bits
//! (6.8 in 256-bit terms), against 7.1 with everything in registers. Up to 8
//! activation rows share each weight unpack here. A batch's pass also
//! fetches the weights a few pairs ahead: a decode step over several
//! sequences is slow enough per byte that the hardware prefetcher alone
//! leaves the cores waiting on memory, while one sequence is not.
//!
//! The pair's blocks alternate in memory (see `interleave`), so the pair is
//! one sequential stream: reading two groups a group apart, as two streams,
//! halved the speed of one sequence's decode.
//!
//! Same layout, same integer sums and the same f32 operations per block as
//! the 256-bit VNNI kernel. `unsafe` is allowed here for the same reasons as
//! in [`super::x86`]: loads from slices whose length is checked right there,
//! and the call into the `#[target_feature]` code behind a [`Token`].

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::quant::act::{BlockQ8, Q8Rows};
use crate::quant::formats::BlockFormat;
use crate::quant::interleave::paired;
use crate::team::ColumnBlock;

/// Proof that this CPU has the features every function here is compiled
/// for (AVX2, FMA, F16C, AVX-512 F/BW/VL/VNNI): the safe entry point takes one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token(());

impl Token {
    /// Checks the CPU at run time (std caches the result).
    pub(crate) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni"))
        .then_some(Token(()))
    }

    /// Same contract as the 256-bit kernels' `groups`: interleaved groups of
    /// 8 rows (`group_bytes` each) against every activation row; group `g`'s
    /// outputs for activation row `i` go to `out.row_mut(i)[8g..][..8]`.
    /// Q8_0, Q4_0 and Q4_1 only (the formats that are interleaved).
    pub(crate) fn groups(
        self,
        format: BlockFormat,
        w: &[u8],
        group_bytes: usize,
        acts: Q8Rows<'_>,
        out: &mut ColumnBlock<'_, f32>,
    ) {
        // SAFETY: a `Token` exists only if `detect` found every feature the
        // `#[target_feature]` functions here are compiled for.
        unsafe { groups_impl(format, w, group_bytes, acts, out) }
    }
}

const Q8_0: u8 = 0;
const Q4_0: u8 = 1;
const Q4_1: u8 = 2;

/// Activation rows per pass over a pair of groups: each pass unpacks the
/// pair's weights once for all of them.
const MAX_ACTS: usize = 8;

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn groups_impl(
    format: BlockFormat,
    w: &[u8],
    group_bytes: usize,
    acts: Q8Rows<'_>,
    out: &mut ColumnBlock<'_, f32>,
) {
    match format {
        BlockFormat::Q8_0 => pairs::<Q8_0, 272>(w, group_bytes, acts, out),
        BlockFormat::Q4_0 => pairs::<Q4_0, 144>(w, group_bytes, acts, out),
        BlockFormat::Q4_1 => pairs::<Q4_1, 160>(w, group_bytes, acts, out),
        // Only these formats are ever interleaved.
        _ => out.fill(0.0),
    }
}

/// Groups a pair at a time (a last group on its own is paired with itself
/// and only its half stored), activation rows up to [`MAX_ACTS`] at a time.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pairs<const F: u8, const GB: usize>(
    w: &[u8],
    group_bytes: usize,
    acts: Q8Rows<'_>,
    out: &mut ColumnBlock<'_, f32>,
) {
    let Q8Rows {
        blocks: a,
        n,
        per_row,
    } = acts;
    if group_bytes == 0 || n == 0 || per_row == 0 {
        out.fill(0.0);
        return;
    }
    let (blocks, _) = w.as_chunks::<GB>();
    let groups = blocks.len() / per_row;
    let mut g = 0;
    while g < groups {
        let pair = paired(groups, g);
        // A pair's blocks alternate between its two groups (see
        // `interleave`); a lone group's are its own, in order.
        let (run, stride) = if pair {
            (&blocks[g * per_row..(g + 2) * per_row], 2)
        } else {
            (&blocks[g * per_row..(g + 1) * per_row], 1)
        };
        let mut i = 0;
        while i < n {
            let count = (n - i).min(MAX_ACTS);
            // A loop, not `array::from_fn`, whose closure does not inherit
            // this function's target features and was not inlined.
            let mut rows: [&[BlockQ8]; MAX_ACTS] = [&[]; MAX_ACTS];
            for (k, rows) in rows.iter_mut().enumerate() {
                let row = i + k.min(count - 1);
                *rows = &a[row * per_row..(row + 1) * per_row];
            }
            // The first pass over a pair of a batch fetches ahead; one
            // activation row is fast enough for the hardware prefetcher.
            let ahead = i == 0 && count > 1;
            let mut sums = [_mm512_setzero_ps(); MAX_ACTS];
            let sums = &mut sums;
            match count {
                8 => dot16::<F, GB, 8>(run, stride, per_row, rows, ahead, sums),
                7 => dot16::<F, GB, 7>(run, stride, per_row, rows, ahead, sums),
                6 => dot16::<F, GB, 6>(run, stride, per_row, rows, ahead, sums),
                5 => dot16::<F, GB, 5>(run, stride, per_row, rows, ahead, sums),
                4 => dot16::<F, GB, 4>(run, stride, per_row, rows, ahead, sums),
                3 => dot16::<F, GB, 3>(run, stride, per_row, rows, ahead, sums),
                2 => dot16::<F, GB, 2>(run, stride, per_row, rows, ahead, sums),
                _ => dot16::<F, GB, 1>(run, stride, per_row, rows, ahead, sums),
            }
            for (k, v) in sums.iter().enumerate().take(count) {
                let o = &mut out.row_mut(i + k)[8 * g..];
                if pair {
                    let o = &mut o[..16];
                    // SAFETY: `o` has exactly 16 writable f32s; storeu has no alignment need.
                    unsafe { _mm512_storeu_ps(o.as_mut_ptr(), *v) }
                } else {
                    let o = &mut o[..8];
                    // SAFETY: as above, 8 f32s.
                    unsafe { _mm256_storeu_ps(o.as_mut_ptr(), _mm512_castps512_ps256(*v)) }
                }
            }
            i += count;
        }
        g += 2;
    }
}

/// Bytes `4k..4k + 4` of an activation block in every 32-bit lane (the
/// compiler folds it into `vpdpbusd`'s memory operand as `{1to16}`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn bcast4(qs: &[i8; 32], k: usize) -> __m512i {
    let q = &qs[4 * k..4 * k + 4];
    _mm512_set1_epi32(i32::from_le_bytes([
        q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8,
    ]))
}

/// 32 bytes of `lo` at `at` in the low half, of `hi` in the high half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn load_pair256(lo: &[u8], hi: &[u8], at: usize) -> __m512i {
    let (lo, hi) = (&lo[at..at + 32], &hi[at..at + 32]);
    // SAFETY: both slices have exactly 32 readable bytes; loadu has no alignment need.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_si256(lo.as_ptr().cast()),
            _mm256_loadu_si256(hi.as_ptr().cast()),
        )
    };
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// 8 f16 of `lo` at `at` and 8 of `hi` as 16 f32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn load_pair_f16(lo: &[u8], hi: &[u8], at: usize) -> __m512 {
    let (lo, hi) = (&lo[at..at + 16], &hi[at..at + 16]);
    // SAFETY: both slices have exactly 16 readable bytes; loadu has no alignment need.
    let (lo, hi) = unsafe {
        (
            _mm_loadu_si128(lo.as_ptr().cast()),
            _mm_loadu_si128(hi.as_ptr().cast()),
        )
    };
    _mm512_cvtph_ps(_mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi))
}

/// How far ahead of the block in hand a batch's pass fetches weights: a few
/// pairs' blocks, about as far as the out-of-order core cannot see.
const PREFETCH_BYTES: usize = 4096;

/// One pair of groups (16 rows: the first group's 8, then the second's; `nb`
/// blocks each, block `b` of the pair at `run[stride · b]` and
/// `run[stride · b + stride - 1]`) against `NA` activation rows: lane `r` of
/// `sums[k]` is ⟨row r, activation k⟩. With `ahead`, the weights
/// [`PREFETCH_BYTES`] further on are fetched into L1 block by block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dot16<const F: u8, const GB: usize, const NA: usize>(
    run: &[[u8; GB]],
    stride: usize,
    nb: usize,
    acts: [&[BlockQ8]; MAX_ACTS],
    ahead: bool,
    sums: &mut [__m512; MAX_ACTS],
) {
    let mut acts_nb: [&[BlockQ8]; NA] = [&[]; NA];
    for k in 0..NA {
        acts_nb[k] = &acts[k][..nb];
    }
    let m4 = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); NA];
    for b in 0..nb {
        let (bl, bh) = (&run[stride * b][..], &run[stride * b + stride - 1][..]);
        if ahead {
            let from = bl.as_ptr().wrapping_add(PREFETCH_BYTES);
            for line in (0..stride * GB).step_by(64) {
                // A prefetch never faults: an address past the weights is harmless.
                _mm_prefetch::<_MM_HINT_T0>(from.wrapping_add(line).cast::<i8>());
            }
        }
        let d = load_pair_f16(bl, bh, 0);
        // The term that multiplies each activation block's `s` (d · Σq):
        // Q4_1's minimums, or the offset of the unsigned quants.
        let off = match F {
            Q4_1 => load_pair_f16(bl, bh, 16),
            Q4_0 => _mm512_mul_ps(d, _mm512_set1_ps(-8.0)),
            _ => _mm512_mul_ps(d, _mm512_set1_ps(-128.0)),
        };
        let mut q = [_mm512_setzero_si512(); 8];
        if F == Q8_0 {
            // As unsigned bytes (+128): `vpdpbusd` takes u8 × i8.
            for (k, q) in q.iter_mut().enumerate() {
                *q = _mm512_xor_si512(load_pair256(bl, bh, 16 + 32 * k), _mm512_set1_epi8(-128));
            }
        } else {
            let qs_at = if F == Q4_1 { 32 } else { 16 };
            for j in 0..4 {
                let v = load_pair256(bl, bh, qs_at + 32 * j);
                q[j] = _mm512_and_si512(v, m4);
                q[j + 4] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
            }
        }
        for k in 0..NA {
            let a = &acts_nb[k][b];
            // Two chains of integer sums, for the latency of `vpdpbusd`.
            let (mut s0, mut s1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            for j in (0..8).step_by(2) {
                s0 = _mm512_dpbusd_epi32(s0, q[j], bcast4(&a.qs, j));
                s1 = _mm512_dpbusd_epi32(s1, q[j + 1], bcast4(&a.qs, j + 1));
            }
            let p = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));
            acc[k] = _mm512_fmadd_ps(p, _mm512_mul_ps(d, _mm512_set1_ps(a.d)), acc[k]);
            acc[k] = _mm512_fmadd_ps(off, _mm512_set1_ps(a.s), acc[k]);
        }
    }
    sums[..NA].copy_from_slice(&acc);
}
