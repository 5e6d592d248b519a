//! f32 vector primitives shared by the CPU kernels of the models and the
//! router: scores (query rows · key rows) and weighted sums of rows, reading
//! f32 or f16 rows, and the element-wise functions around them, with AVX2 +
//! FMA + F16C chosen at run time (AVX-512 for the scores of one row) and
//! portable loops otherwise. The decoders' and the encoder's attention of
//! short tiles (where a general matrix product spends more time choosing and
//! packing than multiplying) and the router's similarity to every example
//! run on them.
//!
//! The intrinsics take raw pointers, so this module needs `unsafe`: the
//! workspace denies `unsafe_code`, and the exception is made here for loads
//! and stores whose slices are checked right there, and for calls into
//! `#[target_feature]` functions after the CPU check.
#![allow(unsafe_code)]

/// Whether SIMD kernels may run. `MDSA_SIMD=off` makes every kernel (here
/// and in the models' quantized matmuls) take its portable code (read once
/// per process): how tests check the fallbacks of a CPU without AVX2 on one
/// that has it.
pub fn simd_allowed() -> bool {
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| {
        !matches!(
            std::env::var("MDSA_SIMD").as_deref(),
            Ok("off" | "0" | "scalar")
        )
    })
}

mod sealed {
    /// Only this module's element types: the SIMD loads are written for them.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
}

/// Whether the AVX2 + FMA (+ F16C, which every AVX2 CPU has) paths can run
/// (std caches the check).
#[inline]
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        simd_allowed()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the 512-bit paths can run: AVX-512 F besides [`avx2`]'s features.
#[cfg(target_arch = "x86_64")]
#[inline]
fn avx512() -> bool {
    avx2() && is_x86_feature_detected!("avx512f")
}

/// A value a KV cache stores: f32, or f16 widened as it is read (one F16C
/// instruction per 8 values inside the attention loops, where widening a
/// piece into a buffer first would write and read it all once more).
pub trait Element: Copy + sealed::Sealed {
    /// The value as f32.
    fn to_f32(self) -> f32;
    /// Eight values from the start of `s` (which has at least 8).
    ///
    /// # Safety
    /// Only to be called from code compiled with AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(s: &[Self]) -> std::arch::x86_64::__m256;
    /// Sixteen values from the start of `s` (which has at least 16).
    ///
    /// # Safety
    /// Only to be called from code compiled with AVX-512 F (and F16C).
    #[cfg(target_arch = "x86_64")]
    unsafe fn load16(s: &[Self]) -> std::arch::x86_64::__m512;
}

impl Element for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(s: &[Self]) -> std::arch::x86_64::__m256 {
        let s = &s[..8];
        // SAFETY: `s` has 8 readable f32s; loadu has no alignment need, and
        // the caller runs with AVX.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(s.as_ptr()) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(s: &[Self]) -> std::arch::x86_64::__m512 {
        let s = &s[..16];
        // SAFETY: `s` has 16 readable f32s; loadu has no alignment need, and
        // the caller runs with AVX-512 F.
        unsafe { std::arch::x86_64::_mm512_loadu_ps(s.as_ptr()) }
    }
}

impl Element for half::f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(s: &[Self]) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::{_mm_loadu_si128, _mm256_cvtph_ps};
        let s = &s[..8];
        // SAFETY: `s` has 8 readable f16s (16 bytes); loadu has no alignment
        // need, and the caller runs with F16C.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(s.as_ptr().cast())) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(s: &[Self]) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::{_mm256_loadu_si256, _mm512_cvtph_ps};
        let s = &s[..16];
        // SAFETY: `s` has 16 readable f16s (32 bytes); loadu has no alignment
        // need, and the caller runs with AVX-512 F.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(s.as_ptr().cast())) }
    }
}

/// `out[r · n + j] = ⟨queries row r, keys row j⟩` for every row of
/// `queries` and of `keys` (rows of `width` values; `out` has `n` = the
/// number of key rows per query row): a short tile's attention scores, or
/// a query's similarity to every row of a matrix.
pub fn scores<K: Element>(queries: &[f32], keys: &[K], width: usize, out: &mut [f32]) {
    let n = keys.len() / width.max(1);
    #[cfg(target_arch = "x86_64")]
    if queries.len() == width && width.is_multiple_of(16) && avx512() {
        // SAFETY: the CPU has AVX-512 F, AVX2, FMA and F16C (checked above).
        unsafe { x86::scores_one_wide(queries, keys, width, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if avx2() && width.is_multiple_of(8) {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
        unsafe { x86::scores(queries, keys, width, out) };
        return;
    }
    for (row, query) in out
        .chunks_exact_mut(n.max(1))
        .zip(queries.chunks_exact(width))
    {
        for (score, key) in row.iter_mut().zip(keys.chunks_exact(width)) {
            *score = query.iter().zip(key).map(|(q, k)| q * k.to_f32()).sum();
        }
    }
}

/// `out row r = Σ_j weights[r · n + j] · values row j` (rows of `width`;
/// `n` value rows): a short tile's weighted values, added to `out`.
pub fn weighted_sum<V: Element>(weights: &[f32], values: &[V], width: usize, out: &mut [f32]) {
    let n = values.len() / width.max(1);
    #[cfg(target_arch = "x86_64")]
    if avx2() && width.is_multiple_of(8) {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
        unsafe { x86::weighted_sum(weights, values, width, out) };
        return;
    }
    for (row, o) in weights
        .chunks_exact(n.max(1))
        .zip(out.chunks_exact_mut(width))
    {
        for (&w, value) in row.iter().zip(values.chunks_exact(width)) {
            for (o, v) in o.iter_mut().zip(value) {
                *o += w * v.to_f32();
            }
        }
    }
}

/// `Σ f(v)` over `values` in eight interleaved partial sums: one running sum
/// is a chain of dependent additions the compiler may not reorder, eight are
/// one vector register.
pub fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `e^x` for `x ≤ 0` to ~1 ulp of f32 (Cephes' `expf`: 2^k · e^r with
/// |r| ≤ ln2/2 and a degree-6 polynomial), written so that the compiler
/// vectorizes the softmax loop, which a libm call prevents.
#[inline]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.max(-87.0);
    // k = round(x · log2 e) without `round` (a libm call without SSE4.1).
    let t = x * LOG2E + 0.5;
    let truncated = t as i32;
    let k = truncated - i32::from((truncated as f32) > t);
    let kf = k as f32;
    let r = x - kf * LN2_HI - kf * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e_r = p * r * r + r + 1.0;
    e_r * f32::from_bits(((k + 127) as u32) << 23)
}

/// Turns attention scores into softmax weights relative to their largest,
/// in place: `exp(scale · s - largest)` (soft-capped first when asked);
/// returns the largest scaled score and the weights' sum. The loops carry no
/// dependence from one element to the next (the reductions keep eight
/// partial results), so the compiler vectorizes them.
pub fn softmax_weights(row: &mut [f32], scale: f32, softcap: Option<f32>) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { x86::softmax_weights(row, scale, softcap) };
    }
    softmax_weights_portable(row, scale, softcap)
}

#[inline]
fn softmax_weights_portable(row: &mut [f32], scale: f32, softcap: Option<f32>) -> (f32, f32) {
    match softcap {
        Some(cap) => row
            .iter_mut()
            .for_each(|s| *s = cap * (*s * scale / cap).tanh()),
        None => row.iter_mut().for_each(|s| *s *= scale),
    }
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = if v > *lane { v } else { *lane };
        }
    }
    let max = rest
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    row.iter_mut().for_each(|s| *s = exp(*s - max));
    (max, lane_sum(row, |v| v))
}

/// Each row of `len` values of `scores` (row-major) replaced by the
/// softmax of the row times `scale` (weights summing to 1). One pass of
/// [`exp`] covers the whole matrix: a short sequence's rows (a query's 14
/// tokens) would each end in a scalar remainder of a row-by-row pass.
pub fn softmax_rows(scores: &mut [f32], len: usize, scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { x86::softmax_rows(scores, len, scale) };
    }
    softmax_rows_portable(scores, len, scale);
}

#[inline]
fn softmax_rows_portable(scores: &mut [f32], len: usize, scale: f32) {
    if len == 0 {
        return;
    }
    for row in scores.chunks_exact_mut(len) {
        row.iter_mut().for_each(|s| *s *= scale);
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        row.iter_mut().for_each(|s| *s -= max);
    }
    scores.iter_mut().for_each(|s| *s = exp(*s));
    for row in scores.chunks_exact_mut(len) {
        let inv = 1.0 / lane_sum(row, |v| v);
        row.iter_mut().for_each(|s| *s *= inv);
    }
}

/// `out = silu(gate) · up` (SwiGLU's gating), with `silu(x) = x · σ(x)`
/// from [`exp`] of `-|x|` so that it never overflows, in a loop the compiler
/// vectorizes.
pub fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        let done = unsafe { x86::silu_mul(gate, up, out) };
        return silu_mul_portable(&gate[done..], &up[done..], &mut out[done..]);
    }
    silu_mul_portable(gate, up, out);
}

/// `out = values` widened from f16 (a KV cache's), with F16C where the CPU
/// has it: one instruction per 8 values, where a call per 8 would cost more
/// than the attention reading them.
pub fn widen_f16(values: &[half::f16], out: &mut [f32]) {
    let len = values.len().min(out.len());
    let (values, out) = (&values[..len], &mut out[..len]);
    #[cfg(target_arch = "x86_64")]
    if avx2() && is_x86_feature_detected!("f16c") {
        // SAFETY: the CPU has AVX2 and F16C (checked above).
        let done = unsafe { x86::widen_f16(values, out) };
        for (o, v) in out[done..].iter_mut().zip(&values[done..]) {
            *o = v.to_f32();
        }
        return;
    }
    for (o, v) in out.iter_mut().zip(values) {
        *o = v.to_f32();
    }
}

/// The error function to ~2e-7 absolute: Eigen's odd/even rational
/// approximation on [-4, 4] (±1 beyond, where f32 cannot tell). Plain
/// arithmetic, so that a loop of it vectorizes (a libm call would not).
#[inline]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = ((((((-2.726_142_3e-10 * x2 + 2.770_681_4e-8) * x2 - 2.101_024e-6) * x2
        - 5.692_506_4e-5)
        * x2
        - 7.349_906_3e-4)
        * x2
        - 2.954_600_1e-3)
        * x2
        - 1.609_603_3e-2)
        * x;
    let q = (((-1.456_607_2e-5 * x2 - 2.133_740_6e-4) * x2 - 1.682_827e-3) * x2 - 7.373_329_2e-3)
        * x2
        - 1.426_474e-2;
    p / q
}

/// GELU in place, the exact form BERT uses: `x · Φ(x) = x/2 · (1 + erf(x/√2))`.
pub fn gelu(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe { x86::gelu(values) };
        return;
    }
    gelu_portable(values);
}

#[inline]
fn gelu_portable(values: &mut [f32]) {
    for v in values {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

fn silu_mul_portable(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        let e = exp(-g.abs());
        let sigmoid = if g >= 0.0 {
            1.0 / (1.0 + e)
        } else {
            e / (1.0 + e)
        };
        *o = g * sigmoid * u;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Element;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn load(s: &[f32]) -> __m256 {
        let s = &s[..8];
        // SAFETY: `s` has exactly 8 readable f32s; loadu has no alignment need.
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn store(s: &mut [f32], v: __m256) {
        let s = &mut s[..8];
        // SAFETY: `s` has exactly 8 writable f32s; storeu has no alignment need.
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
    }

    /// See [`super::scores`]; `width` is a multiple of 8. Query rows go 3
    /// at a time (a decode step's query heads of one KV head), so that each
    /// key is loaded and widened once for all of them.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn scores<K: Element>(queries: &[f32], keys: &[K], width: usize, out: &mut [f32]) {
        let n = keys.len() / width;
        let rows = queries.len() / width;
        let mut r0 = 0;
        while r0 < rows {
            let q = &queries[r0 * width..];
            let o = &mut out[r0 * n..];
            r0 += match rows - r0 {
                1 => scores_rows::<K, 1>(q, keys, width, o),
                2 => scores_rows::<K, 2>(q, keys, width, o),
                _ => scores_rows::<K, 3>(q, keys, width, o),
            };
        }
    }

    /// How many blocks of 4 key rows ahead [`scores_rows`] prefetches.
    const PREFETCH_BLOCKS: usize = 4;

    /// The row width, in cache lines, from which [`scores_rows`] prefetches.
    const PREFETCH_MIN_LINES: usize = 8;

    /// The scores of the first `R` rows of `queries` (into `out`'s first `R`
    /// rows of `n`): 4 keys at a time, 4 accumulators per row reduced
    /// together; `R` ≤ 3 keeps the 12 sums, the `R` queries and a key in the
    /// 16 vector registers.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn scores_rows<K: Element, const R: usize>(
        queries: &[f32],
        keys: &[K],
        width: usize,
        out: &mut [f32],
    ) -> usize {
        let n = keys.len() / width;
        let blocks = n / 4;
        // Values per cache line. Four rows read side by side are one stream
        // for the hardware prefetcher while they are a few lines each (a KV
        // cache's heads), but four it does not follow when they are wide
        // (the router's examples): those are fetched ahead (into L2) by
        // hand, which halves the time to score rows cold in memory.
        let line = 64 / std::mem::size_of::<K>();
        let prefetch = width >= PREFETCH_MIN_LINES * line;
        for b in 0..blocks {
            let keys4 = &keys[4 * b * width..4 * (b + 1) * width];
            let ahead = keys
                .as_ptr()
                .wrapping_add(4 * (b + PREFETCH_BLOCKS) * width);
            let mut acc = [[_mm256_setzero_ps(); 4]; R];
            for c in (0..width).step_by(8) {
                if prefetch && c % line == 0 {
                    // A prefetch never faults: one past the end is harmless.
                    for t in 0..4 {
                        let at = ahead.wrapping_add(t * width + c);
                        _mm_prefetch::<_MM_HINT_T1>(at.cast::<i8>());
                    }
                }
                // A loop, not `array::from_fn`: its closure does not inherit
                // this function's target features, so it was not inlined and
                // passed every vector through memory (a third of the time).
                let mut q = [_mm256_setzero_ps(); R];
                for (r, q) in q.iter_mut().enumerate() {
                    *q = load(&queries[r * width + c..]);
                }
                for t in 0..4 {
                    // SAFETY: this function runs with AVX2, FMA and F16C.
                    let k = unsafe { K::load8(&keys4[t * width + c..]) };
                    for r in 0..R {
                        acc[r][t] = _mm256_fmadd_ps(q[r], k, acc[r][t]);
                    }
                }
            }
            for (r, sums) in acc.iter().enumerate() {
                let o = &mut out[r * n + 4 * b..r * n + 4 * b + 4];
                // SAFETY: `o` has exactly 4 writable f32s; storeu has no alignment need.
                unsafe { _mm_storeu_ps(o.as_mut_ptr(), hsum4(*sums)) };
            }
        }
        for (j, key) in keys.chunks_exact(width).enumerate().skip(4 * blocks) {
            for r in 0..R {
                let mut acc = _mm256_setzero_ps();
                for (q, k) in queries[r * width..(r + 1) * width]
                    .chunks_exact(8)
                    .zip(key.chunks_exact(8))
                {
                    // SAFETY: as above.
                    acc = _mm256_fmadd_ps(load(q), unsafe { K::load8(k) }, acc);
                }
                out[r * n + j] = hsum(acc);
            }
        }
        R
    }

    /// [`super::scores`] of one query row (the router's similarity to every
    /// example, an attention head without grouped keys), 16 values at a
    /// time: on a single row the widening of f16 keys is the work, and a
    /// 512-bit F16C conversion widens twice the values of a 256-bit one for
    /// the same issue slot. `width` is a multiple of 16.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) fn scores_one_wide<K: Element>(
        query: &[f32],
        keys: &[K],
        width: usize,
        out: &mut [f32],
    ) {
        let query = &query[..width];
        let line = 64 / std::mem::size_of::<K>();
        let prefetch = width >= PREFETCH_MIN_LINES * line;
        let mut blocks = keys.chunks_exact(4 * width);
        for (b, keys4) in blocks.by_ref().enumerate() {
            let ahead = keys
                .as_ptr()
                .wrapping_add(4 * (b + PREFETCH_BLOCKS) * width);
            let mut acc = [_mm512_setzero_ps(); 4];
            for c in (0..width).step_by(16) {
                if prefetch && c % line == 0 {
                    // A prefetch never faults: one past the end is harmless.
                    for t in 0..4 {
                        let at = ahead.wrapping_add(t * width + c);
                        _mm_prefetch::<_MM_HINT_T1>(at.cast::<i8>());
                    }
                }
                // SAFETY: `query[c..]` has 16 f32s (width is a multiple of 16).
                let q = unsafe { _mm512_loadu_ps(query[c..c + 16].as_ptr()) };
                for (t, a) in acc.iter_mut().enumerate() {
                    // SAFETY: this function runs with AVX-512 F and F16C.
                    let k = unsafe { K::load16(&keys4[t * width + c..]) };
                    *a = _mm512_fmadd_ps(q, k, *a);
                }
            }
            for (o, a) in out[4 * b..4 * b + 4].iter_mut().zip(acc) {
                *o = _mm512_reduce_add_ps(a);
            }
        }
        let done = keys.len() / width / 4 * 4;
        for (o, key) in out[done..]
            .iter_mut()
            .zip(blocks.remainder().chunks_exact(width))
        {
            let mut acc = _mm512_setzero_ps();
            for c in (0..width).step_by(16) {
                // SAFETY: as above.
                let q = unsafe { _mm512_loadu_ps(query[c..c + 16].as_ptr()) };
                // SAFETY: as above.
                let k = unsafe { K::load16(&key[c..]) };
                acc = _mm512_fmadd_ps(q, k, acc);
            }
            *o = _mm512_reduce_add_ps(acc);
        }
    }

    /// See [`super::weighted_sum`]; `width` is a multiple of 8. Up to 4
    /// output rows at a time (a decode step's query heads of one KV head),
    /// 32 values of each at a time in registers, so that each value row is
    /// read once per 4 output rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn weighted_sum<V: Element>(
        weights: &[f32],
        values: &[V],
        width: usize,
        out: &mut [f32],
    ) {
        const ROWS: usize = 4;
        const LANES: usize = 4;
        let n = values.len() / width;
        let rows = out.len() / width;
        let mut r0 = 0;
        while r0 < rows {
            let count = (rows - r0).min(ROWS);
            for start in (0..width).step_by(8 * LANES) {
                let lanes = ((width - start) / 8).min(LANES);
                let mut acc = [[_mm256_setzero_ps(); LANES]; ROWS];
                for (k, row) in acc.iter_mut().enumerate().take(count) {
                    for (i, a) in row.iter_mut().enumerate().take(lanes) {
                        *a = load(&out[(r0 + k) * width + start + 8 * i..]);
                    }
                }
                for (j, value) in values.chunks_exact(width).enumerate() {
                    let mut v = [_mm256_setzero_ps(); LANES];
                    for (i, v) in v.iter_mut().enumerate().take(lanes) {
                        // SAFETY: this function runs with AVX2, FMA and F16C.
                        *v = unsafe { V::load8(&value[start + 8 * i..]) };
                    }
                    for (k, row) in acc.iter_mut().enumerate().take(count) {
                        let w = _mm256_set1_ps(weights[(r0 + k) * n + j]);
                        for (a, v) in row.iter_mut().zip(&v).take(lanes) {
                            *a = _mm256_fmadd_ps(w, *v, *a);
                        }
                    }
                }
                for (k, row) in acc.iter().enumerate().take(count) {
                    for (i, a) in row.iter().enumerate().take(lanes) {
                        store(&mut out[(r0 + k) * width + start + 8 * i..], *a);
                    }
                }
            }
            r0 += count;
        }
    }

    /// See [`super::widen_f16`]: whole runs of 8; returns how many it wrote.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) fn widen_f16(values: &[half::f16], out: &mut [f32]) -> usize {
        let n = values.len().min(out.len()) / 8 * 8;
        for (v, o) in values[..n]
            .chunks_exact(8)
            .zip(out[..n].chunks_exact_mut(8))
        {
            // SAFETY: `v` has 8 readable f16s (16 bytes) and `o` 8 writable
            // f32s; the unaligned load and store have no alignment need.
            unsafe {
                let half = _mm_loadu_si128(v.as_ptr().cast());
                _mm256_storeu_ps(o.as_mut_ptr(), _mm256_cvtph_ps(half));
            }
        }
        n
    }

    /// [`super::gelu`]'s loop compiled for AVX2 + FMA (the compiler
    /// vectorizes it 8 lanes wide).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gelu(values: &mut [f32]) {
        super::gelu_portable(values);
    }

    /// See [`super::softmax_weights`]: the portable loops, vectorized 8 wide.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn softmax_weights(row: &mut [f32], scale: f32, softcap: Option<f32>) -> (f32, f32) {
        super::softmax_weights_portable(row, scale, softcap)
    }

    /// See [`super::softmax_rows`]: the portable loops, vectorized 8 wide.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn softmax_rows(scores: &mut [f32], len: usize, scale: f32) {
        super::softmax_rows_portable(scores, len, scale)
    }

    /// See [`super::silu_mul`]: whole runs of 8, with [`super::exp`]'s
    /// method in vector registers; returns how many values it wrote.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) -> usize {
        let n = out.len().min(gate.len()).min(up.len()) / 8 * 8;
        let (one, sign) = (_mm256_set1_ps(1.0), _mm256_set1_ps(-0.0));
        for i in (0..n).step_by(8) {
            let g = load(&gate[i..]);
            let e = exp(_mm256_or_ps(g, sign));
            let denominator = _mm256_add_ps(one, e);
            let positive = _mm256_cmp_ps::<_CMP_GE_OQ>(g, _mm256_setzero_ps());
            let sigmoid = _mm256_div_ps(_mm256_blendv_ps(e, one, positive), denominator);
            store(
                &mut out[i..],
                _mm256_mul_ps(_mm256_mul_ps(g, sigmoid), load(&up[i..])),
            );
        }
        n
    }

    /// `e^x` for `x ≤ 0` (Cephes, as [`super::exp`]).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn exp(x: __m256) -> __m256 {
        let x = _mm256_max_ps(x, _mm256_set1_ps(-87.0));
        let t = _mm256_fmadd_ps(
            x,
            _mm256_set1_ps(std::f32::consts::LOG2_E),
            _mm256_set1_ps(0.5),
        );
        let truncated = _mm256_cvttps_epi32(t);
        let above = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(
            _mm256_cvtepi32_ps(truncated),
            t,
        ));
        // floor(t): one less where truncation rounded up (the mask is -1 there).
        let k = _mm256_add_epi32(truncated, above);
        let kf = _mm256_cvtepi32_ps(k);
        let r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let e_r = _mm256_fmadd_ps(
            _mm256_mul_ps(p, r),
            r,
            _mm256_add_ps(r, _mm256_set1_ps(1.0)),
        );
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            k,
            _mm256_set1_epi32(127),
        )));
        _mm256_mul_ps(e_r, scale)
    }

    /// The sums of 4 vectors' lanes, in order.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum4(v: [__m256; 4]) -> __m128 {
        let s = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
        _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(s: __m256) -> f32 {
        let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_weights_agree_with_a_plain_softmax() {
        // Lengths around the eight lanes and their remainder; scores of both
        // signs; with and without a soft cap.
        for len in [1, 7, 8, 9, 14, 33] {
            let scores: Vec<f32> = (0..len).map(|i| (i as f32 * 1.3).sin() * 9.0).collect();
            for softcap in [None, Some(5.0)] {
                let capped: Vec<f32> = scores
                    .iter()
                    .map(|&s| match softcap {
                        Some(cap) => cap * (s * 0.5 / cap).tanh(),
                        None => s * 0.5,
                    })
                    .collect();
                let largest = capped.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let expected: Vec<f32> = capped.iter().map(|&s| (s - largest).exp()).collect();
                let mut row = scores.clone();
                let (max, sum) = softmax_weights(&mut row, 0.5, softcap);
                assert_eq!(max, largest, "len {len}, softcap {softcap:?}");
                assert!((sum - expected.iter().sum::<f32>()).abs() < 1e-5 * len as f32);
                for (w, e) in row.iter().zip(&expected) {
                    assert!((w - e).abs() < 1e-6, "len {len}: {w} vs {e}");
                }
            }
        }
    }

    #[test]
    fn softmax_rows_agree_with_a_plain_softmax_per_row() {
        for len in [1, 7, 8, 14, 33] {
            for rows in [1, 3, 14] {
                let scores: Vec<f32> = (0..len * rows)
                    .map(|i| (i as f32 * 0.7).cos() * 11.0)
                    .collect();
                let mut got = scores.clone();
                softmax_rows(&mut got, len, 0.25);
                for (row, out) in scores.chunks(len).zip(got.chunks(len)) {
                    let largest = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let e: Vec<f32> = row.iter().map(|&s| ((s - largest) * 0.25).exp()).collect();
                    let total: f32 = e.iter().sum();
                    for (w, e) in out.iter().zip(&e) {
                        assert!(
                            (w - e / total).abs() < 1e-6,
                            "len {len}: {w} vs {}",
                            e / total
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn exp_agrees_with_libm_over_the_softmax_range() {
        let mut worst = 0.0f32;
        for i in 0..=87_000 {
            let x = -(i as f32) / 1000.0;
            let relative = (exp(x) - x.exp()).abs() / x.exp();
            worst = worst.max(relative);
        }
        assert!(worst < 4e-7, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37);
    }

    #[test]
    fn f16_widens_exactly() {
        let values: Vec<half::f16> = (0..1003)
            .map(|i| half::f16::from_f32((i as f32 - 500.0) * 0.37))
            .collect();
        let mut out = vec![0.0; values.len()];
        widen_f16(&values, &mut out);
        for (v, o) in values.iter().zip(&out) {
            assert_eq!(v.to_f32(), *o);
        }
    }

    #[test]
    fn erf_and_gelu_agree_with_a_series_in_f64() {
        // erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1)), fine in f64 for |x| ≤ 4.
        let series = |x: f64| {
            let (mut term, mut total) = (x, x);
            for n in 1..200 {
                term *= -x * x / n as f64;
                total += term / (2 * n + 1) as f64;
            }
            total * 2.0 / std::f64::consts::PI.sqrt()
        };
        let xs: Vec<f32> = (-500..=500).map(|i| i as f32 * 0.01).collect();
        for &x in &xs {
            let want = if x.abs() >= 4.0 {
                series(4.0_f64.copysign(f64::from(x)))
            } else {
                series(f64::from(x))
            };
            assert!(
                (f64::from(erf(x)) - want).abs() < 1e-6,
                "erf({x}) = {} vs {want}",
                erf(x)
            );
        }
        let mut got = xs.clone();
        gelu(&mut got);
        for (&x, &g) in xs.iter().zip(&got) {
            let x64 = f64::from(x);
            let want = 0.5 * x64 * (1.0 + series(x64 / std::f64::consts::SQRT_2));
            assert!(
                (f64::from(g) - want).abs() < 2e-6,
                "gelu({x}) = {g} vs {want}"
            );
        }
    }

    #[test]
    fn silu_mul_agrees_with_its_definition() {
        let gate: Vec<f32> = (-200..203).map(|i| i as f32 * 0.25).collect();
        let up: Vec<f32> = gate.iter().map(|g| 1.5 - g * 0.1).collect();
        let mut out = vec![0.0; gate.len()];
        silu_mul(&gate, &up, &mut out);
        for ((&g, &u), &o) in gate.iter().zip(&up).zip(&out) {
            let want = f64::from(g) / (1.0 + (-f64::from(g)).exp()) * f64::from(u);
            assert!(
                (f64::from(o) - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{g}: {o} vs {want}"
            );
        }
    }

    #[test]
    fn scores_and_weighted_sums_agree_with_plain_loops() {
        // 1 to 7 rows: blocks of 3 (scores) and 4 (sums) and remainders;
        // 37 keys (blocks of 4 and one more); widths past 32 and not
        // multiples of 8 (the portable path); keys and values as f32 and as
        // f16 (read widened); rows of 8 lines and more are prefetched.
        for width in [8, 16, 64, 96, 128, 256, 384, 12, 40] {
            let keys: Vec<f32> = (0..37 * width).map(|i| (i as f32 * 0.17).cos()).collect();
            let halves: Vec<half::f16> = keys.iter().map(|&k| half::f16::from_f32(k)).collect();
            for rows in 1..=7 {
                check_scores_and_sums(rows, width, &keys);
                check_scores_and_sums(rows, width, &halves);
            }
        }
    }

    fn check_scores_and_sums<K: Element>(rows: usize, width: usize, k: &[K]) {
        let keys = k.len() / width;
        let q: Vec<f32> = (0..rows * width).map(|i| (i as f32 * 0.31).sin()).collect();
        let mut got = vec![0.0; rows * keys];
        scores(&q, k, width, &mut got);
        for r in 0..rows {
            for j in 0..keys {
                let want: f32 = (0..width)
                    .map(|d| q[r * width + d] * k[j * width + d].to_f32())
                    .sum();
                assert!(
                    (got[r * keys + j] - want).abs() < 1e-4,
                    "scores {width} {r} {j}"
                );
            }
        }
        let w: Vec<f32> = (0..rows * keys)
            .map(|i| {
                if i % 5 == 0 {
                    0.0
                } else {
                    (i as f32 * 0.07).sin()
                }
            })
            .collect();
        let mut got = vec![1.0; rows * width];
        weighted_sum(&w, k, width, &mut got);
        for r in 0..rows {
            for d in 0..width {
                let want: f32 = 1.0
                    + (0..keys)
                        .map(|j| w[r * keys + j] * k[j * width + d].to_f32())
                        .sum::<f32>();
                assert!(
                    (got[r * width + d] - want).abs() < 1e-4,
                    "sums {width} {r} {d}"
                );
            }
        }
    }
}
