//! Sentence embeddings as an interface: the [`Embedder`] trait and the vector
//! arithmetic routers use on its output.

use crate::error::ModelError;

/// Turns texts into fixed-size vectors. Implementations are shared between
/// threads (`&self`), so a router can embed from many requests at once.
pub trait Embedder: Send + Sync {
    /// One embedding per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError>;
    /// Length of every embedding.
    fn dimension(&self) -> usize;
}

/// Dot product of two f32 vectors (the shorter length), summed in
/// independent lanes so the compiler vectorises it (a plain `.sum()` is one
/// dependent chain of adds, several times slower for embedding-sized
/// vectors), with AVX2 + FMA where the CPU has them: a router takes one per
/// example per query, and the baseline x86-64 build has only 4-wide SSE2.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        return fused::dot(a, b);
    }
    dot_portable(a, b)
}

/// [`dot`] in eight lanes of plain multiply-adds, for any CPU.
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut lanes = [0.0f32; 8];
    let (a8, a_rest) = a[..n].split_at(n / 8 * 8);
    let (b8, b_rest) = b[..n].split_at(n / 8 * 8);
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod fused {
    /// [`super::dot`] compiled for AVX2 + FMA.
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: the caller checked that the CPU has AVX2 and FMA.
        unsafe { dot_fma(a, b) }
    }

    /// Four 8-wide accumulators (for the latency of FMA), 32 values a step.
    #[target_feature(enable = "avx2,fma")]
    fn dot_fma(a: &[f32], b: &[f32]) -> f32 {
        use std::arch::x86_64::*;
        let n = a.len().min(b.len());
        let load = |s: &[f32]| {
            let s = &s[..8];
            // SAFETY: `s` has 8 readable f32s; loadu has no alignment need,
            // and this function runs with AVX.
            unsafe { _mm256_loadu_ps(s.as_ptr()) }
        };
        let mut acc = [_mm256_setzero_ps(); 4];
        for step in 0..n / 32 {
            for (k, acc) in acc.iter_mut().enumerate() {
                let at = 32 * step + 8 * k;
                *acc = _mm256_fmadd_ps(load(&a[at..]), load(&b[at..]), *acc);
            }
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` has 8 writable f32s; storeu has no alignment need.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
        let done = n / 32 * 32;
        let tail: f32 = a[done..n].iter().zip(&b[done..n]).map(|(x, y)| x * y).sum();
        lanes.iter().sum::<f32>() + tail
    }
}

/// Cosine similarity of two vectors, accumulated in f64 (for comparing
/// embeddings across formats and against references); 0 for a zero vector.
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let norms = norm(a) * norm(b);
    if norms == 0.0 { 0.0 } else { dot / norms }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_a_plain_sum_for_any_length() {
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 384, 385, 1023] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "n = {n}");
            assert!((dot_portable(&a, &b) - plain).abs() < 1e-4, "n = {n}");
        }
        // Different lengths: the shorter one decides.
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[1.0, 1.0]), 3.0);
    }
}
