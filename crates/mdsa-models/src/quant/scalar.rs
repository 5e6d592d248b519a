//! Portable dot products of weight blocks with quantized activations.
//!
//! This is the fallback on CPUs without AVX2 and the reference the SIMD kernels
//! are tested against: the integer sums are the same ones the SIMD code forms
//! (so they agree exactly), and only the order of the f32 accumulation differs.

use super::act::{ActBlocks, Activations, BlockQ8, BlockQ8K};
use super::formats::{BlockFormat, f16_at, q5_values, scale_min_k4};

/// out[r · n + i] = ⟨weight row r, activation row i⟩ for every whole row in `w`.
///
/// Rows outer, activations inner: each weight row is read from memory once and
/// then stays in L1 for all `n` activation rows.
pub(crate) fn rows(
    format: BlockFormat,
    w: &[u8],
    row_bytes: usize,
    acts: &Activations,
    out: &mut [f32],
) {
    let (n, per_row) = (acts.n, acts.per_row);
    if row_bytes == 0 || n == 0 {
        out.fill(0.0);
        return;
    }
    for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(n)) {
        for (i, v) in o.iter_mut().enumerate() {
            *v = match &acts.blocks {
                ActBlocks::Q8(a) => dot_q8(format, row, &a[i * per_row..(i + 1) * per_row]),
                ActBlocks::Q8K(a) => dot_q8k(format, row, &a[i * per_row..(i + 1) * per_row]),
            };
        }
    }
}

/// One weight row of a 32-block format against one activation row.
pub(crate) fn dot_q8(format: BlockFormat, row: &[u8], act: &[BlockQ8]) -> f32 {
    let bb = format.block_bytes();
    let mut acc = 0f32;
    for (b, a) in row.chunks_exact(bb).zip(act) {
        acc += match format {
            BlockFormat::Q8_0 => {
                let isum: i32 = b[2..34]
                    .iter()
                    .zip(&a.qs)
                    .map(|(&w, &x)| w as i8 as i32 * x as i32)
                    .sum();
                f16_at(b, 0) * a.d * isum as f32
            }
            BlockFormat::Q4_0 => {
                // Σ (q − 8)·x = Σ q·x − 8·Σ x; the second term comes from `s`.
                let d = f16_at(b, 0);
                d * a.d * nibble_dot(&b[2..18], &a.qs) as f32 - 8.0 * d * a.s
            }
            BlockFormat::Q4_1 => {
                f16_at(b, 0) * a.d * nibble_dot(&b[4..20], &a.qs) as f32 + f16_at(b, 2) * a.s
            }
            BlockFormat::Q5_0 => {
                let d = f16_at(b, 0);
                d * a.d * byte_dot(&q5_values(&b[2..]), &a.qs) as f32 - 16.0 * d * a.s
            }
            BlockFormat::Q5_1 => {
                f16_at(b, 0) * a.d * byte_dot(&q5_values(&b[4..]), &a.qs) as f32
                    + f16_at(b, 2) * a.s
            }
            // K-quants never pair with 32-blocks (the dispatcher picks Q8K for them).
            BlockFormat::Q4_K | BlockFormat::Q5_K | BlockFormat::Q6_K => 0.0,
        };
    }
    acc
}

/// Σ q·x over 32 4-bit values (low nibbles are values 0–15, high 16–31).
#[inline(always)]
fn nibble_dot(qs: &[u8], x: &[i8; 32]) -> i32 {
    let mut s = 0i32;
    for (j, &q) in qs.iter().enumerate() {
        s += (q & 0xF) as i32 * x[j] as i32 + (q >> 4) as i32 * x[j + 16] as i32;
    }
    s
}

/// Σ q·x over 32 unsigned values.
#[inline(always)]
fn byte_dot(q: &[u8; 32], x: &[i8; 32]) -> i32 {
    q.iter().zip(x).map(|(&q, &x)| q as i32 * x as i32).sum()
}

/// One weight row of a K-quant format against one activation row.
pub(crate) fn dot_q8k(format: BlockFormat, row: &[u8], act: &[BlockQ8K]) -> f32 {
    let bb = format.block_bytes();
    let mut acc = 0f32;
    for (b, a) in row.chunks_exact(bb).zip(act) {
        acc += match format {
            BlockFormat::Q4_K => dot_q4_k(b, a),
            BlockFormat::Q5_K => dot_q5_k(b, a),
            BlockFormat::Q6_K => dot_q6_k(b, a),
            BlockFormat::Q8_0
            | BlockFormat::Q4_0
            | BlockFormat::Q4_1
            | BlockFormat::Q5_0
            | BlockFormat::Q5_1 => 0.0,
        };
    }
    acc
}

/// Σ over the 8 sub-blocks of min_j · Σ x, from the activation's sums of 16.
#[inline(always)]
fn k_mins(scales: &[u8], a: &BlockQ8K) -> (i32, [i32; 8]) {
    let mut mins = 0i32;
    let mut sc = [0i32; 8];
    for (j, s) in sc.iter_mut().enumerate() {
        let (scale, min) = scale_min_k4(j, scales);
        *s = scale as i32;
        mins += min as i32 * (a.bsums[2 * j] as i32 + a.bsums[2 * j + 1] as i32);
    }
    (mins, sc)
}

fn dot_q4_k(b: &[u8], a: &BlockQ8K) -> f32 {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (mins, sc) = k_mins(&b[4..16], a);
    let qs = &b[16..144];
    let mut sumi = 0i32;
    for c in 0..4 {
        let (mut lo, mut hi) = (0i32, 0i32);
        for l in 0..32 {
            let q = qs[32 * c + l];
            lo += (q & 0xF) as i32 * a.qs[64 * c + l] as i32;
            hi += (q >> 4) as i32 * a.qs[64 * c + 32 + l] as i32;
        }
        sumi += sc[2 * c] * lo + sc[2 * c + 1] * hi;
    }
    d * a.d * sumi as f32 - dmin * a.d * mins as f32
}

fn dot_q5_k(b: &[u8], a: &BlockQ8K) -> f32 {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (mins, sc) = k_mins(&b[4..16], a);
    let qh = &b[16..48];
    let qs = &b[48..176];
    let mut sumi = 0i32;
    for c in 0..4 {
        let (mut lo, mut hi) = (0i32, 0i32);
        for l in 0..32 {
            let q = qs[32 * c + l];
            let h1 = ((qh[l] >> (2 * c)) & 1) << 4;
            let h2 = ((qh[l] >> (2 * c + 1)) & 1) << 4;
            lo += ((q & 0xF) | h1) as i32 * a.qs[64 * c + l] as i32;
            hi += ((q >> 4) | h2) as i32 * a.qs[64 * c + 32 + l] as i32;
        }
        sumi += sc[2 * c] * lo + sc[2 * c + 1] * hi;
    }
    d * a.d * sumi as f32 - dmin * a.d * mins as f32
}

fn dot_q6_k(b: &[u8], a: &BlockQ8K) -> f32 {
    let d = f16_at(b, 208);
    // Per 16-value group g: sc_g · Σ (q − 32)·x = sc_g · (Σ q·x − 32 · bsum_g).
    let mut group = [0i32; 16];
    for h in 0..2 {
        let ql = &b[64 * h..64 * h + 64];
        let qh = &b[128 + 32 * h..128 + 32 * h + 32];
        let x = &a.qs[128 * h..128 * h + 128];
        let g = &mut group[8 * h..8 * h + 8];
        for l in 0..32 {
            let is = l / 16;
            let q1 = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
            let q2 = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
            let q3 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            let q4 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
            g[is] += q1 as i32 * x[l] as i32;
            g[is + 2] += q2 as i32 * x[l + 32] as i32;
            g[is + 4] += q3 as i32 * x[l + 64] as i32;
            g[is + 6] += q4 as i32 * x[l + 96] as i32;
        }
    }
    let mut sumi = 0i32;
    for (j, &g) in group.iter().enumerate() {
        let sc = b[192 + j] as i8 as i32;
        sumi += sc * (g - 32 * a.bsums[j] as i32);
    }
    d * a.d * sumi as f32
}
