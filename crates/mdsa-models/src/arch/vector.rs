//! f32 vector primitives for the host attention of short tiles (a decode
//! step's few query rows), where a general matrix product spends more time
//! choosing and packing than multiplying: a dot product and `y += a·x`, with
//! AVX2 + FMA chosen at run time and portable loops otherwise.
//!
//! The intrinsics take raw pointers, so this module needs `unsafe`: the
//! workspace denies `unsafe_code`, and the exception is made here for loads
//! and stores whose slices are checked right there, and for calls into
//! `#[target_feature]` functions after the CPU check.
#![allow(unsafe_code)]

/// Whether the AVX2 + FMA paths can run (std caches the check).
#[inline]
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::quant::simd_allowed()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Σ a·b over the shorter of the two.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { x86::dot(a, b) };
    }
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `out[r · n + j] = ⟨queries row r, keys row j⟩` for every row of
/// `queries` and of `keys` (rows of `width` values; `out` has `n` = the
/// number of key rows per query row): a short tile's attention scores.
pub(crate) fn scores(queries: &[f32], keys: &[f32], width: usize, out: &mut [f32]) {
    let n = keys.len() / width.max(1);
    #[cfg(target_arch = "x86_64")]
    if avx2() && width.is_multiple_of(8) {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe { x86::scores(queries, keys, width, out) };
        return;
    }
    for (row, query) in out
        .chunks_exact_mut(n.max(1))
        .zip(queries.chunks_exact(width))
    {
        for (score, key) in row.iter_mut().zip(keys.chunks_exact(width)) {
            *score = dot(query, key);
        }
    }
}

/// `out row r = Σ_j weights[r · n + j] · values row j` (rows of `width`;
/// `n` value rows): a short tile's weighted values, added to `out`.
pub(crate) fn weighted_sum(weights: &[f32], values: &[f32], width: usize, out: &mut [f32]) {
    let n = values.len() / width.max(1);
    #[cfg(target_arch = "x86_64")]
    if avx2() && width.is_multiple_of(8) {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe { x86::weighted_sum(weights, values, width, out) };
        return;
    }
    for (row, o) in weights
        .chunks_exact(n.max(1))
        .zip(out.chunks_exact_mut(width))
    {
        for (&w, value) in row.iter().zip(values.chunks_exact(width)) {
            axpy(o, w, value);
        }
    }
}

/// `y += alpha · x` over the shorter of the two.
#[inline]
pub(crate) fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    let len = y.len().min(x.len());
    let (y, x) = (&mut y[..len], &x[..len]);
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe { x86::axpy(y, alpha, x) };
        return;
    }
    for (y, &x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// `e^x` for `x ≤ 0` to ~1 ulp of f32 (Cephes' `expf`: 2^k · e^r with
/// |r| ≤ ln2/2 and a degree-6 polynomial), written so that the compiler
/// vectorizes the softmax loop, which a libm call prevents.
#[inline]
pub(crate) fn exp(x: f32) -> f32 {
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

/// `out = silu(gate) · up` (SwiGLU's gating), with `silu(x) = x · σ(x)`
/// from [`exp`] of `-|x|` so that it never overflows, in a loop the compiler
/// vectorizes.
pub(crate) fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
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
pub(crate) fn widen_f16(values: &[half::f16], out: &mut [f32]) {
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
pub(crate) fn erf(x: f32) -> f32 {
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
pub(crate) fn gelu(values: &mut [f32]) {
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

    /// See [`super::dot`]; `a` and `b` have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for (x, y) in ca.zip(cb) {
            s0 = _mm256_fmadd_ps(load(x), load(y), s0);
            s1 = _mm256_fmadd_ps(load(&x[8..]), load(&y[8..]), s1);
        }
        let mut tail = 0.0f32;
        let rest = if ra.len() >= 8 {
            s0 = _mm256_fmadd_ps(load(ra), load(rb), s0);
            8
        } else {
            0
        };
        for (x, y) in ra[rest..].iter().zip(&rb[rest..]) {
            tail += x * y;
        }
        let s = _mm256_add_ps(s0, s1);
        let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h))) + tail
    }

    /// See [`super::scores`]; `width` is a multiple of 8.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn scores(queries: &[f32], keys: &[f32], width: usize, out: &mut [f32]) {
        let n = keys.len() / width;
        // Eight keys at a time: eight accumulators per query row, reduced
        // together into one vector of eight scores.
        let blocks = n / 8;
        for b in 0..blocks {
            let keys8 = &keys[8 * b * width..8 * (b + 1) * width];
            for (r, query) in queries.chunks_exact(width).enumerate() {
                let mut acc = [_mm256_setzero_ps(); 8];
                for (c, q) in query.chunks_exact(8).enumerate() {
                    let q = load(q);
                    for (t, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(q, load(&keys8[t * width + 8 * c..]), *a);
                    }
                }
                if let Some(o) = out.get_mut(r * n + 8 * b..r * n + 8 * b + 8) {
                    store(o, hsum8(acc));
                }
            }
        }
        for (j, key) in keys.chunks_exact(width).enumerate().skip(8 * blocks) {
            for (r, query) in queries.chunks_exact(width).enumerate() {
                let mut acc = _mm256_setzero_ps();
                for (q, k) in query.chunks_exact(8).zip(key.chunks_exact(8)) {
                    acc = _mm256_fmadd_ps(load(q), load(k), acc);
                }
                if let Some(o) = out.get_mut(r * n + j) {
                    *o = hsum(acc);
                }
            }
        }
    }

    /// See [`super::weighted_sum`]; `width` is a multiple of 8. Each output
    /// row is accumulated 64 values at a time in registers.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn weighted_sum(weights: &[f32], values: &[f32], width: usize, out: &mut [f32]) {
        let n = values.len() / width;
        for (row, o) in weights
            .chunks_exact(n.max(1))
            .zip(out.chunks_exact_mut(width))
        {
            for start in (0..width).step_by(64) {
                let len = (width - start).min(64);
                let lanes = len / 8;
                let mut acc = [_mm256_setzero_ps(); 8];
                for (i, a) in acc.iter_mut().enumerate().take(lanes) {
                    *a = load(&o[start + 8 * i..]);
                }
                for (&w, value) in row.iter().zip(values.chunks_exact(width)) {
                    if w == 0.0 {
                        continue;
                    }
                    let w = _mm256_set1_ps(w);
                    for (i, a) in acc.iter_mut().enumerate().take(lanes) {
                        *a = _mm256_fmadd_ps(w, load(&value[start + 8 * i..]), *a);
                    }
                }
                for (i, a) in acc.iter().enumerate().take(lanes) {
                    store(&mut o[start + 8 * i..], *a);
                }
            }
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

    /// The sums of eight vectors, as one vector (lane t: the sum of `v[t]`).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum8(v: [__m256; 8]) -> __m256 {
        let s01 = _mm256_hadd_ps(v[0], v[1]);
        let s23 = _mm256_hadd_ps(v[2], v[3]);
        let s45 = _mm256_hadd_ps(v[4], v[5]);
        let s67 = _mm256_hadd_ps(v[6], v[7]);
        let s0123 = _mm256_hadd_ps(s01, s23);
        let s4567 = _mm256_hadd_ps(s45, s67);
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(s0123, s4567),
            _mm256_permute2f128_ps::<0x31>(s0123, s4567),
        )
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(s: __m256) -> f32 {
        let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)))
    }

    /// See [`super::axpy`]; `y` and `x` have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
        let a = _mm256_set1_ps(alpha);
        let mut cy = y.chunks_exact_mut(8);
        let mut cx = x.chunks_exact(8);
        for (y, x) in (&mut cy).zip(&mut cx) {
            let v = _mm256_fmadd_ps(a, load(x), load(y));
            store(y, v);
        }
        for (y, &x) in cy.into_remainder().iter_mut().zip(cx.remainder()) {
            *y += alpha * x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for width in [8, 16, 64, 96, 128, 256, 12] {
            let (rows, keys) = (3, 37);
            let q: Vec<f32> = (0..rows * width).map(|i| (i as f32 * 0.31).sin()).collect();
            let k: Vec<f32> = (0..keys * width).map(|i| (i as f32 * 0.17).cos()).collect();
            let mut got = vec![0.0; rows * keys];
            scores(&q, &k, width, &mut got);
            for r in 0..rows {
                for j in 0..keys {
                    let want: f32 = (0..width)
                        .map(|d| q[r * width + d] * k[j * width + d])
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
            weighted_sum(&w, &k, width, &mut got);
            for r in 0..rows {
                for d in 0..width {
                    let want: f32 = 1.0
                        + (0..keys)
                            .map(|j| w[r * keys + j] * k[j * width + d])
                            .sum::<f32>();
                    assert!(
                        (got[r * width + d] - want).abs() < 1e-4,
                        "sums {width} {r} {d}"
                    );
                }
            }
        }
    }

    #[test]
    fn dot_and_axpy_agree_with_plain_loops_at_every_length() {
        for len in [0, 1, 7, 8, 9, 16, 23, 64, 96, 130] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y)).sum();
            assert!((f64::from(dot(&a, &b)) - want).abs() < 1e-4, "dot, {len}");
            let mut y = b.clone();
            axpy(&mut y, 0.5, &a);
            for i in 0..len {
                assert!((y[i] - (b[i] + 0.5 * a[i])).abs() < 1e-6, "axpy, {len}");
            }
        }
    }
}
