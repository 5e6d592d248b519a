//! Attention on the host, reading the KV cache's buffers in place: for each KV
//! head, the query heads that share it are stacked into one block of rows and
//! processed in tiles of [`TILE_ROWS`]; a tile's scores against the keys it may
//! see are one matrix product, its softmax runs in place, and its output is a
//! second product with the values. Memory stays O(tile × positions) however
//! long the prompt, and a decode step (one query row per head) reads each
//! cached key and value once.

use rayon::prelude::*;

use crate::arch::matmul::{MatRef, matmul};

use super::cache::HostKv;

/// Query rows per tile: enough for the matrix products to run at speed, few
/// enough that a tile's scores stay in cache for long prompts.
const TILE_ROWS: usize = 64;

/// What one layer's attention needs besides its inputs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttendSpec {
    /// Query heads.
    pub(crate) heads: usize,
    /// Key/value heads (each shared by `heads / kv_heads` query heads).
    pub(crate) kv_heads: usize,
    /// Width of a head.
    pub(crate) head_dim: usize,
    /// Multiplies the scores (1/√head_dim, or the family's own).
    pub(crate) scale: f32,
    /// Gemma 2's soft cap on the scores: `cap · tanh(s / cap)`.
    pub(crate) softcap: Option<f32>,
    /// A sliding window: a query sees only the last `window` positions
    /// (itself included).
    pub(crate) window: Option<usize>,
}

/// Attends from `n` new positions, whose `[heads, n, head_dim]` queries are
/// `q`, to everything in `cache` (which already holds their keys and values as
/// its last `n` positions). Returns the `[n, heads · head_dim]` context.
pub(crate) fn attend(q: &[f32], n: usize, cache: &HostKv, spec: &AttendSpec) -> Vec<f32> {
    let AttendSpec {
        heads,
        kv_heads,
        head_dim: hd,
        ..
    } = *spec;
    let group = heads / kv_heads;
    let past = cache.len() - n;
    // The group's query heads are consecutive in `q`: one block of
    // `group · n` rows per KV head.
    let rows = group * n;
    let tiles: Vec<(usize, usize)> = (0..kv_heads)
        .flat_map(|h| (0..rows).step_by(TILE_ROWS).map(move |r| (h, r)))
        .collect();
    let outputs: Vec<Vec<f32>> = tiles
        .par_iter()
        .map(|&(h, r0)| {
            let r1 = (r0 + TILE_ROWS).min(rows);
            let block = &q[h * rows * hd..(h + 1) * rows * hd];
            tile(block, r0..r1, n, past, cache, h, spec)
        })
        .collect();
    let mut context = vec![0.0f32; n * heads * hd];
    for (&(h, r0), out) in tiles.iter().zip(&outputs) {
        for (offset, row) in out.chunks_exact(hd).enumerate() {
            let r = r0 + offset;
            let (g, i) = (r / n, r % n);
            let head = h * group + g;
            let at = (i * heads + head) * hd;
            context[at..at + hd].copy_from_slice(row);
        }
    }
    context
}

/// The `[r1 - r0, head_dim]` output of rows `r0..r1` of KV head `h`'s block.
fn tile(
    block: &[f32],
    rows: std::ops::Range<usize>,
    n: usize,
    past: usize,
    cache: &HostKv,
    h: usize,
    spec: &AttendSpec,
) -> Vec<f32> {
    let hd = spec.head_dim;
    let t = rows.len();
    // Row r is position `past + r % n`; it sees `first(pos)..=pos`.
    let position = |r: usize| past + r % n;
    let first = |pos: usize| spec.window.map_or(0, |w| (pos + 1).saturating_sub(w));
    let (mut lo, mut hi) = (usize::MAX, 0);
    for r in rows.clone() {
        lo = lo.min(first(position(r)));
        hi = hi.max(position(r) + 1);
    }
    let span = hi - lo;
    let keys = &cache.keys(h)[lo * hd..hi * hd];
    let values = &cache.values(h)[lo * hd..hi * hd];
    let queries = &block[rows.start * hd..rows.end * hd];

    let mut scores = vec![0.0f32; t * span];
    matmul(
        &mut scores,
        span,
        MatRef::rows(queries, t, hd, hd),
        MatRef::rows(keys, span, hd, hd).t(),
    );
    for (row, r) in scores.chunks_exact_mut(span).zip(rows) {
        let pos = position(r);
        let seen = first(pos) - lo..pos + 1 - lo;
        softmax_in_place(&mut row[seen.clone()], spec.scale, spec.softcap);
        row[..seen.start].fill(0.0);
        row[seen.end..].fill(0.0);
    }
    let mut out = vec![0.0f32; t * hd];
    matmul(
        &mut out,
        hd,
        MatRef::rows(&scores, t, span, span),
        MatRef::rows(values, span, hd, hd),
    );
    out
}

/// `softmax(scale · s)` (soft-capped first when asked), in place. The loops
/// carry no dependence from one element to the next (the reductions keep
/// eight partial results), so the compiler vectorizes them.
fn softmax_in_place(row: &mut [f32], scale: f32, softcap: Option<f32>) {
    match softcap {
        Some(cap) => row
            .iter_mut()
            .for_each(|s| *s = cap * (*s * scale / cap).tanh()),
        None => row.iter_mut().for_each(|s| *s *= scale),
    }
    let max = lanes(row, f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
    row.iter_mut().for_each(|s| *s = exp(*s - max));
    let inv = lanes(row, 0.0, |a, b| a + b).recip();
    row.iter_mut().for_each(|s| *s *= inv);
}

/// Folds `values` with `op` in eight independent lanes, then folds the lanes.
#[inline]
fn lanes(values: &[f32], init: f32, op: impl Fn(f32, f32) -> f32 + Copy) -> f32 {
    let mut acc = [init; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = op(*a, v);
        }
    }
    rest.iter().chain(&acc).fold(init, |a, &v| op(a, v))
}

/// `e^x` for `x ≤ 0` to ~1 ulp of f32 (Cephes' `expf`: 2^k · e^r with
/// |r| ≤ ln2/2 and a degree-6 polynomial), written so that the compiler
/// vectorizes the softmax loop, which a libm call prevents.
#[inline]
fn exp(x: f32) -> f32 {
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
        + 5.000_000_1e-1;
    let e_r = p * r * r + r + 1.0;
    e_r * f32::from_bits(((k + 127) as u32) << 23)
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
}
