//! Attention on the host, reading the KV cache's buffers in place: for each KV
//! head, the query heads that share it are stacked into one block of rows and
//! processed in tiles of [`TILE_ROWS`], each tile's keys in chunks of
//! [`KEY_CHUNK`]. A piece's scores are one matrix product, its softmax weights
//! are computed in place relative to its own largest score, and its output is
//! a second product with the values; the pieces of a tile are then rescaled
//! to a common maximum and summed (as flash attention does). Memory stays
//! O(tile × chunk) however long the prompt, every core gets a share of a
//! decode step over a long cache, and each cached key and value is read once
//! per step.

use std::ops::Range;

use crate::arch::matmul::{MatRef, matmul};
use crate::team;
use mdsa_engine::vector::{self, Element, exp};

use super::cache::{HostKv, KvRows};

/// Query rows per tile: enough for the matrix products to run at speed, few
/// enough that a tile's scores stay in cache for long prompts.
const TILE_ROWS: usize = 64;

/// Tiles of at most this many rows (a decode step's query heads of one KV
/// head) take plain dot products: a general matrix product's set-up costs
/// more than such a tile's arithmetic.
const SMALL_TILE: usize = 8;

/// Keys per piece of work: a decode step (one tile of a few rows per KV
/// head) is split along the keys too, so that every core has a share of a
/// long cache to read (flash-decoding).
const KEY_CHUNK: usize = 512;

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

/// One piece of work: rows `rows` of sequence `seq`'s KV head `head` block
/// against keys `keys`.
#[derive(Debug, Clone)]
struct Piece {
    seq: usize,
    head: usize,
    rows: Range<usize>,
    keys: Range<usize>,
}

/// A piece's result, unnormalized: per row the largest score, the sum of
/// `exp(score - largest)`, and those weights times the values.
struct Partial {
    max: Vec<f32>,
    sum: Vec<f32>,
    out: Vec<f32>,
}

/// One sequence's share of a layer's attention: its `[heads, n, head_dim]`
/// queries for `n` new positions, and its cache, which already holds their
/// keys and values as its last `n` positions.
pub(crate) struct SeqQueries<'a> {
    pub(crate) q: &'a [f32],
    pub(crate) n: usize,
    pub(crate) cache: &'a HostKv,
}

/// Attends from `n` new positions, whose `[heads, n, head_dim]` queries are
/// `q`, to everything in `cache` (which already holds their keys and values as
/// its last `n` positions). Returns the `[n, heads · head_dim]` context.
#[cfg(test)]
pub(crate) fn attend(q: &[f32], n: usize, cache: &HostKv, spec: &AttendSpec) -> Vec<f32> {
    attend_all(&[SeqQueries { q, n, cache }], spec)
        .pop()
        .unwrap_or_default()
}

/// [`attend`] for several sequences of one layer at once, in one parallel
/// pass over all their pieces (one fork-join per layer, not per sequence).
pub(crate) fn attend_all(seqs: &[SeqQueries<'_>], spec: &AttendSpec) -> Vec<Vec<f32>> {
    let AttendSpec {
        heads,
        kv_heads,
        head_dim: hd,
        ..
    } = *spec;
    let group = heads / kv_heads;
    let geometry: Vec<Geometry> = seqs
        .iter()
        .map(|s| Geometry {
            n: s.n,
            past: s.cache.len() - s.n,
            window: spec.window,
        })
        .collect();
    // The group's query heads are consecutive in `q`: one block of
    // `group · n` rows per KV head, cut into tiles, each tile's keys into chunks.
    let mut pieces = Vec::new();
    for (seq, (s, geometry)) in seqs.iter().zip(&geometry).enumerate() {
        let rows = group * s.n;
        for head in 0..kv_heads {
            for r0 in (0..rows).step_by(TILE_ROWS) {
                let tile = r0..(r0 + TILE_ROWS).min(rows);
                let seen = geometry.keys_of(tile.clone());
                for k0 in seen.clone().step_by(KEY_CHUNK) {
                    pieces.push(Piece {
                        seq,
                        head,
                        rows: tile.clone(),
                        keys: k0..(k0 + KEY_CHUNK).min(seen.end),
                    });
                }
            }
        }
    }
    let work = |piece: &Piece| {
        let s = &seqs[piece.seq];
        let rows = group * s.n;
        let block = &s.q[piece.head * rows * hd..(piece.head + 1) * rows * hd];
        attend_piece(block, piece, &geometry[piece.seq], s.cache, spec)
    };
    let partials: Vec<Partial> = if pieces.len() > 1 {
        team::map(pieces.len(), |i| work(&pieces[i]))
    } else {
        pieces.iter().map(work).collect()
    };

    let mut contexts: Vec<Vec<f32>> = seqs
        .iter()
        .map(|s| vec![0.0f32; s.n * heads * hd])
        .collect();
    let mut at = 0;
    while at < pieces.len() {
        // The pieces of one tile are consecutive.
        let tile = &pieces[at];
        let count = pieces[at..]
            .iter()
            .take_while(|p| p.seq == tile.seq && p.head == tile.head && p.rows == tile.rows)
            .count();
        let parts = &partials[at..at + count];
        let n = seqs[tile.seq].n;
        let context = &mut contexts[tile.seq];
        for (offset, r) in tile.rows.clone().enumerate() {
            let (g, i) = (r / n, r % n);
            let out = &mut context[(i * heads + tile.head * group + g) * hd..][..hd];
            combine(parts, offset, hd, out);
        }
        at += count;
    }
    contexts
}

/// Where the rows of a pass look: row `r` of a block is position
/// `past + r % n` and sees `first(position)..=position`.
struct Geometry {
    n: usize,
    past: usize,
    window: Option<usize>,
}

impl Geometry {
    fn position(&self, row: usize) -> usize {
        self.past + row % self.n
    }

    /// The keys row `row` sees.
    fn seen_by(&self, row: usize) -> Range<usize> {
        let position = self.position(row);
        let first = self.window.map_or(0, |w| (position + 1).saturating_sub(w));
        first..position + 1
    }

    /// The keys any row of `rows` sees.
    fn keys_of(&self, rows: Range<usize>) -> Range<usize> {
        rows.map(|r| self.seen_by(r))
            .reduce(|a, b| a.start.min(b.start)..a.end.max(b.end))
            .unwrap_or(0..0)
    }
}

/// One piece: scores of its rows against its keys, their softmax weights
/// relative to each row's largest score here, and the weighted values.
fn attend_piece(
    block: &[f32],
    piece: &Piece,
    geometry: &Geometry,
    cache: &HostKv,
    spec: &AttendSpec,
) -> Partial {
    let (hd, lo, hi) = (spec.head_dim, piece.keys.start, piece.keys.end);
    let queries = &block[piece.rows.start * hd..piece.rows.end * hd];
    let keys = cache.keys(piece.head).slice(lo * hd..hi * hd);
    let values = cache.values(piece.head).slice(lo * hd..hi * hd);
    let tile = Tile {
        queries,
        piece,
        geometry,
        spec,
    };
    if piece.rows.len() <= SMALL_TILE {
        // Plain dot products, which read an f16 cache as they go.
        return match (keys, values) {
            (KvRows::F16(k), KvRows::F16(v)) => tile.attend_small(k, v),
            (k, v) => {
                SCRATCH.with_borrow_mut(|(ks, vs)| tile.attend_small(k.f32_in(ks), v.f32_in(vs)))
            }
        };
    }
    // The matrix products take f32: an f16 cache is widened piece by piece
    // into this thread's buffers (an f32 one is read in place).
    SCRATCH.with_borrow_mut(|(key_scratch, value_scratch)| {
        tile.attend_large(keys.f32_in(key_scratch), values.f32_in(value_scratch))
    })
}

thread_local! {
    /// Keys and values of the piece in hand, widened from f16.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// A piece's queries and where they look.
struct Tile<'a> {
    queries: &'a [f32],
    piece: &'a Piece,
    geometry: &'a Geometry,
    spec: &'a AttendSpec,
}

impl Tile<'_> {
    /// A tile of at most [`SMALL_TILE`] rows, by plain dot products on the
    /// keys and values as stored.
    fn attend_small<K: Element>(&self, keys: &[K], values: &[K]) -> Partial {
        let (t, hd) = (self.piece.rows.len(), self.spec.head_dim);
        let mut scores = vec![0.0f32; t * self.piece.keys.len()];
        vector::scores(self.queries, keys, hd, &mut scores);
        let (max, sum) = self.softmax(&mut scores);
        let mut out = vec![0.0f32; t * hd];
        vector::weighted_sum(&scores, values, hd, &mut out);
        Partial { max, sum, out }
    }

    /// A larger tile, by two matrix products.
    fn attend_large(&self, keys: &[f32], values: &[f32]) -> Partial {
        let (t, hd, span) = (
            self.piece.rows.len(),
            self.spec.head_dim,
            self.piece.keys.len(),
        );
        let mut scores = vec![0.0f32; t * span];
        matmul(
            &mut scores,
            span,
            MatRef::rows(self.queries, t, hd, hd),
            MatRef::rows(keys, span, hd, hd).t(),
        );
        let (max, sum) = self.softmax(&mut scores);
        let mut out = vec![0.0f32; t * hd];
        matmul(
            &mut out,
            hd,
            MatRef::rows(&scores, t, span, span),
            MatRef::rows(values, span, hd, hd),
        );
        Partial { max, sum, out }
    }

    /// The `[rows, keys]` scores as softmax weights relative to each row's
    /// largest (zero where a row does not see a key); the largest scaled
    /// scores and the weights' sums.
    fn softmax(&self, scores: &mut [f32]) -> (Vec<f32>, Vec<f32>) {
        let Range { start: lo, end: hi } = self.piece.keys;
        let t = self.piece.rows.len();
        let mut max = vec![f32::NEG_INFINITY; t];
        let mut sum = vec![0.0f32; t];
        for (offset, (row, r)) in scores
            .chunks_exact_mut(hi - lo)
            .zip(self.piece.rows.clone())
            .enumerate()
        {
            let seen = self.geometry.seen_by(r);
            let (from, to) = (seen.start.max(lo), seen.end.min(hi));
            if from >= to {
                row.fill(0.0);
                continue;
            }
            let seen = from - lo..to - lo;
            let (largest, total) =
                vector::softmax_weights(&mut row[seen.clone()], self.spec.scale, self.spec.softcap);
            (max[offset], sum[offset]) = (largest, total);
            row[..seen.start].fill(0.0);
            row[seen.end..].fill(0.0);
        }
        (max, sum)
    }
}

/// Row `offset`'s output from the partial results of its tile's pieces: each
/// rescaled to the row's overall largest score, summed and normalized.
fn combine(parts: &[Partial], offset: usize, hd: usize, out: &mut [f32]) {
    let largest = parts
        .iter()
        .map(|p| p.max[offset])
        .fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0f32;
    for part in parts {
        if part.max[offset] == f32::NEG_INFINITY {
            continue;
        }
        let weight = exp(part.max[offset] - largest);
        total += weight * part.sum[offset];
        let row = &part.out[offset * hd..(offset + 1) * hd];
        for (o, &v) in out.iter_mut().zip(row) {
            *o += weight * v;
        }
    }
    let inv = total.recip();
    out.iter_mut().for_each(|o| *o *= inv);
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::super::cache::{KvPrecision, KvRows, Shape};
    use super::*;

    /// Attention by its definition, one query row at a time, in f64.
    fn naive(
        q: &[f32],
        n: usize,
        keys: &[Vec<f32>],
        values: &[Vec<f32>],
        spec: &AttendSpec,
    ) -> Vec<f32> {
        let (heads, hd) = (spec.heads, spec.head_dim);
        let group = heads / spec.kv_heads;
        let total = keys[0].len() / hd;
        let past = total - n;
        let mut out = vec![0.0f32; n * heads * hd];
        for head in 0..heads {
            let kv = head / group;
            for i in 0..n {
                let position = past + i;
                let first = spec.window.map_or(0, |w| (position + 1).saturating_sub(w));
                let query = &q[(head * n + i) * hd..][..hd];
                let scores: Vec<f64> = (first..=position)
                    .map(|j| {
                        let key = &keys[kv][j * hd..][..hd];
                        let dot: f64 = query.iter().zip(key).map(|(a, b)| f64::from(a * b)).sum();
                        let s = dot * f64::from(spec.scale);
                        spec.softcap
                            .map_or(s, |c| f64::from(c) * (s / f64::from(c)).tanh())
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for (w, j) in weights.iter().zip(first..=position) {
                    for d in 0..hd {
                        out[(i * heads + head) * hd + d] +=
                            (w / total * f64::from(values[kv][j * hd + d])) as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn tiles_and_key_chunks_agree_with_the_definition() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        // Three tiles of rows and two chunks of keys; with and without a
        // window and a soft cap; a decode step (n = 1) and a prefill after a
        // cached past.
        for (n, past, window, softcap) in [
            (70, 600, None, None),
            (70, 600, Some(300), Some(30.0)),
            (1, 1100, None, None),
            (1, 1100, Some(200), None),
        ] {
            let spec = AttendSpec {
                heads: 4,
                kv_heads: 2,
                head_dim: 16,
                scale: 0.25,
                softcap,
                window,
            };
            let hd = spec.head_dim;
            let total = past + n;
            let mut random = |len: usize| -> Vec<f32> {
                (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
            };
            let keys: Vec<Vec<f32>> = (0..spec.kv_heads).map(|_| random(total * hd)).collect();
            let values: Vec<Vec<f32>> = (0..spec.kv_heads).map(|_| random(total * hd)).collect();
            let q = random(spec.heads * n * hd);
            for (precision, tolerance) in [(KvPrecision::F32, 1e-5), (KvPrecision::F16, 2e-3)] {
                let shape = Shape {
                    kv_heads: spec.kv_heads,
                    capacity: total + 5,
                    head_dim: hd,
                };
                let mut cache = HostKv::new(shape, precision);
                // The past, then the new positions, as a forward pass writes them.
                for range in [0..past, past..total] {
                    let part = |all: &[Vec<f32>]| -> Vec<f32> {
                        all.iter()
                            .flat_map(|head| head[range.start * hd..range.end * hd].to_vec())
                            .collect()
                    };
                    cache.write(&part(&keys), &part(&values), range.len());
                }
                // The reference reads what the cache holds (f16-rounded).
                let held = |rows: fn(&HostKv, usize) -> KvRows<'_>| -> Vec<Vec<f32>> {
                    (0..spec.kv_heads)
                        .map(|h| rows(&cache, h).to_vec(0..total * hd))
                        .collect()
                };
                let want = naive(&q, n, &held(HostKv::keys), &held(HostKv::values), &spec);
                let exact = naive(&q, n, &keys, &values, &spec);
                let got = attend(&q, n, &cache, &spec);
                let worst = |want: &[f32]| {
                    got.iter()
                        .zip(want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0f32, f32::max)
                };
                assert!(
                    worst(&want) < 1e-5,
                    "{precision:?} n {n}, window {window:?}: max error {}",
                    worst(&want)
                );
                assert!(
                    worst(&exact) < tolerance,
                    "{precision:?} n {n}, window {window:?}: max error to f32 {}",
                    worst(&exact)
                );
            }
        }
    }
}
