//! GGUF block layouts, scalar decoders and the reference quantizers.
//!
//! The layouts follow ggml's `ggml-common.h` (`block_q8_0`, `block_q4_0`,
//! `block_q4_1`, `block_q4_K`, `block_q5_K`, `block_q6_K`); the decoders follow
//! `dequantize_row_*` in `ggml-quants.c` operation for operation, so that they give
//! the same f32 bits as ggml and the `gguf` Python package (checked against its
//! output in `tests/quant.rs`). All multi-byte fields are little-endian, as GGUF
//! stores them.
//!
//! | format | weights/block | bytes/block | layout |
//! |---|---|---|---|
//! | Q8_0 | 32 | 34 | `d: f16, qs: [i8; 32]`, w = d·q |
//! | Q4_0 | 32 | 18 | `d: f16, qs: [u8; 16]`, w = d·(q − 8); low nibbles are weights 0–15, high 16–31 |
//! | Q4_1 | 32 | 20 | `d: f16, m: f16, qs: [u8; 16]`, w = d·q + m |
//! | Q5_0 | 32 | 22 | `d: f16, qh: u32, qs: [u8; 16]`, w = d·(q − 16); bit i of qh is weight i's fifth bit |
//! | Q5_1 | 32 | 24 | `d: f16, m: f16, qh: u32, qs: [u8; 16]`, w = d·q + m |
//! | Q4_K | 256 | 144 | `d, dmin: f16, scales: [u8; 12], qs: [u8; 128]`: 8 sub-blocks of 32 with 6-bit scale and min, w = d·sc·q − dmin·m |
//! | Q5_K | 256 | 176 | as Q4_K plus `qh: [u8; 32]` (the fifth bit) before `qs` |
//! | Q6_K | 256 | 210 | `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`: 16 sub-blocks of 16, w = d·sc·(q − 32) |

use half::f16;

use super::QuantError;

/// Weights per block of the 32-weight formats (ggml's `QK4_0`, `QK8_0`, ...).
pub const QK: usize = 32;
/// Weights per super-block of the K-quants (ggml's `QK_K`).
pub const QK_K: usize = 256;

/// A GGUF / ggml block-quantized tensor format that [`super::QuantMatrix`] can
/// compute on.
///
/// The discriminants are not the ggml ids; use [`BlockFormat::ggml_id`] and
/// [`BlockFormat::from_ggml_id`] to convert.
// Variant names are ggml's own (`Q4_K`, not `Q4K`), so they read the same as
// in GGUF tools and llama.cpp.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockFormat {
    /// 8-bit, blocks of 32 with an f16 scale (ggml type 8).
    Q8_0,
    /// 4-bit symmetric, blocks of 32 with an f16 scale (ggml type 2).
    Q4_0,
    /// 4-bit with an f16 scale and an f16 minimum, blocks of 32 (ggml type 3).
    Q4_1,
    /// 5-bit symmetric, blocks of 32 with an f16 scale (ggml type 6).
    Q5_0,
    /// 5-bit with an f16 scale and an f16 minimum, blocks of 32 (ggml type 7).
    Q5_1,
    /// 4-bit K-quant: super-blocks of 256 in 8 sub-blocks with 6-bit scales and mins (ggml type 12).
    Q4_K,
    /// 5-bit K-quant: Q4_K plus one high bit per weight (ggml type 13).
    Q5_K,
    /// 6-bit K-quant: super-blocks of 256 in 16 sub-blocks with i8 scales (ggml type 14).
    Q6_K,
}

impl BlockFormat {
    /// Every supported format, for iteration in tests and tools.
    pub const ALL: [BlockFormat; 8] = [
        BlockFormat::Q8_0,
        BlockFormat::Q4_0,
        BlockFormat::Q4_1,
        BlockFormat::Q5_0,
        BlockFormat::Q5_1,
        BlockFormat::Q4_K,
        BlockFormat::Q5_K,
        BlockFormat::Q6_K,
    ];

    /// Weights per block: 32, or 256 for the K-quants.
    pub const fn block_size(self) -> usize {
        match self {
            BlockFormat::Q8_0
            | BlockFormat::Q4_0
            | BlockFormat::Q4_1
            | BlockFormat::Q5_0
            | BlockFormat::Q5_1 => QK,
            BlockFormat::Q4_K | BlockFormat::Q5_K | BlockFormat::Q6_K => QK_K,
        }
    }

    /// Bytes per block: 34, 18, 20, 22, 24, 144, 176, 210.
    pub const fn block_bytes(self) -> usize {
        match self {
            BlockFormat::Q8_0 => 34,
            BlockFormat::Q4_0 => 18,
            BlockFormat::Q4_1 => 20,
            BlockFormat::Q5_0 => 22,
            BlockFormat::Q5_1 => 24,
            BlockFormat::Q4_K => 144,
            BlockFormat::Q5_K => 176,
            BlockFormat::Q6_K => 210,
        }
    }

    /// The `ggml_type` id GGUF files store for this format.
    pub const fn ggml_id(self) -> u32 {
        match self {
            BlockFormat::Q4_0 => 2,
            BlockFormat::Q4_1 => 3,
            BlockFormat::Q5_0 => 6,
            BlockFormat::Q5_1 => 7,
            BlockFormat::Q8_0 => 8,
            BlockFormat::Q4_K => 12,
            BlockFormat::Q5_K => 13,
            BlockFormat::Q6_K => 14,
        }
    }

    /// The format for a GGUF `ggml_type` id, or `None` for types this module
    /// does not compute on (F32, F16, Q8_1, IQ*, ...).
    pub const fn from_ggml_id(id: u32) -> Option<Self> {
        match id {
            2 => Some(BlockFormat::Q4_0),
            3 => Some(BlockFormat::Q4_1),
            6 => Some(BlockFormat::Q5_0),
            7 => Some(BlockFormat::Q5_1),
            8 => Some(BlockFormat::Q8_0),
            12 => Some(BlockFormat::Q4_K),
            13 => Some(BlockFormat::Q5_K),
            14 => Some(BlockFormat::Q6_K),
            _ => None,
        }
    }

    /// ggml's name for the format, as `gguf` tools print it.
    pub const fn name(self) -> &'static str {
        match self {
            BlockFormat::Q8_0 => "Q8_0",
            BlockFormat::Q4_0 => "Q4_0",
            BlockFormat::Q4_1 => "Q4_1",
            BlockFormat::Q5_0 => "Q5_0",
            BlockFormat::Q5_1 => "Q5_1",
            BlockFormat::Q4_K => "Q4_K",
            BlockFormat::Q5_K => "Q5_K",
            BlockFormat::Q6_K => "Q6_K",
        }
    }

    /// Storage cost in bits per weight (8.5, 4.5, 5, 5.5, 6, 4.5, 5.5, 6.5625).
    pub fn bits_per_weight(self) -> f64 {
        (self.block_bytes() * 8) as f64 / self.block_size() as f64
    }

    /// Whether activations pair with this format as Q8_K (256) rather than
    /// 32-value Q8 blocks.
    pub(crate) const fn is_k_quant(self) -> bool {
        self.block_size() == QK_K
    }
}

impl std::fmt::Display for BlockFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads the little-endian f16 at `b[at..at + 2]` as f32.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Scale and min of sub-block `j` (0..8) from the 12 packed bytes of a Q4_K /
/// Q5_K super-block (ggml's `get_scale_min_k4`): sub-blocks 0–3 keep their six
/// bits in the low bits of bytes 0–3 (scales) and 4–7 (mins); sub-blocks 4–7 take
/// four low bits from bytes 8–11 and their two high bits from the top of bytes 0–7.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Decodes whole blocks of `format` from `bytes` into `out`.
///
/// `bytes` must hold a whole number of blocks and `out` exactly
/// `blocks × block_size` floats; otherwise a [`QuantError::BufferLength`] is
/// returned and nothing is written.
pub fn dequantize_row(
    format: BlockFormat,
    bytes: &[u8],
    out: &mut [f32],
) -> Result<(), QuantError> {
    let bb = format.block_bytes();
    if !bytes.len().is_multiple_of(bb) {
        return Err(QuantError::BufferLength {
            what: "quantized bytes (not a whole number of blocks)",
            expected: bytes.len() / bb * bb,
            found: bytes.len(),
        });
    }
    let expected = bytes.len() / bb * format.block_size();
    if out.len() != expected {
        return Err(QuantError::BufferLength {
            what: "dequantized output",
            expected,
            found: out.len(),
        });
    }
    let bs = format.block_size();
    for (blk, y) in bytes.chunks_exact(bb).zip(out.chunks_exact_mut(bs)) {
        match format {
            BlockFormat::Q8_0 => dequant_q8_0(blk, y),
            BlockFormat::Q4_0 => dequant_q4_0(blk, y),
            BlockFormat::Q4_1 => dequant_q4_1(blk, y),
            BlockFormat::Q5_0 => dequant_q5(blk, 0.0, &blk[2..], y),
            BlockFormat::Q5_1 => dequant_q5(blk, f16_at(blk, 2), &blk[4..], y),
            BlockFormat::Q4_K => dequant_q4_k(blk, y),
            BlockFormat::Q5_K => dequant_q5_k(blk, y),
            BlockFormat::Q6_K => dequant_q6_k(blk, y),
        }
    }
    Ok(())
}

fn dequant_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (v, &q) in y.iter_mut().zip(&b[2..34]) {
        *v = q as i8 as f32 * d;
    }
}

fn dequant_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let (lo, hi) = y.split_at_mut(16);
    for (j, &q) in b[2..18].iter().enumerate() {
        lo[j] = d * ((q & 0xF) as i32 - 8) as f32;
        hi[j] = d * ((q >> 4) as i32 - 8) as f32;
    }
}

fn dequant_q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let (lo, hi) = y.split_at_mut(16);
    for (j, &q) in b[4..20].iter().enumerate() {
        lo[j] = d * (q & 0xF) as f32 + m;
        hi[j] = d * (q >> 4) as f32 + m;
    }
}

/// Q5_0 (`m` = 0, offset −16) and Q5_1 (`m` from the block, no offset);
/// `rest` is the block after its f16 header(s): `qh` then `qs`.
fn dequant_q5(b: &[u8], m: f32, rest: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let offset = if b.len() == 22 { 16 } else { 0 };
    let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    for (j, &q) in rest[4..20].iter().enumerate() {
        let high0 = ((qh >> j) & 1) << 4;
        let high1 = ((qh >> (j + 16)) & 1) << 4;
        y[j] = (((q & 0xF) as u32 | high0) as i32 - offset) as f32 * d + m;
        y[j + 16] = (((q >> 4) as u32 | high1) as i32 - offset) as f32 * d + m;
    }
}

/// The 32 five-bit values of a Q5_0 / Q5_1 block (`rest`: `qh` then `qs`),
/// before offset and scale.
#[inline(always)]
pub(crate) fn q5_values(rest: &[u8]) -> [u8; 32] {
    let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let mut out = [0u8; 32];
    for (j, &q) in rest[4..20].iter().enumerate() {
        out[j] = (q & 0xF) | ((((qh >> j) & 1) as u8) << 4);
        out[j + 16] = (q >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
    out
}

fn dequant_q4_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for c in 0..4 {
        // Each 32 bytes of qs hold two sub-blocks: low nibbles, then high nibbles.
        let (sc1, m1) = scale_min_k4(2 * c, scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        let q = &qs[32 * c..32 * c + 32];
        let out = &mut y[64 * c..64 * c + 64];
        for l in 0..32 {
            out[l] = d1 * (q[l] & 0xF) as f32 - m1;
            out[32 + l] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

fn dequant_q5_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for c in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * c, scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        // Sub-block 2c takes its fifth bit from bit 2c of qh[l], 2c + 1 from bit 2c + 1.
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        let q = &qs[32 * c..32 * c + 32];
        let out = &mut y[64 * c..64 * c + 64];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            out[l] = d1 * ((q[l] & 0xF) + h1) as f32 - m1;
            out[32 + l] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
        }
    }
}

fn dequant_q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for h in 0..2 {
        let ql = &b[64 * h..64 * h + 64];
        let qh = &b[128 + 32 * h..128 + 32 * h + 32];
        let sc = &b[192 + 8 * h..192 + 8 * h + 8];
        let out = &mut y[128 * h..128 * h + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            out[l] = d * sc[is] as i8 as f32 * q1 as f32;
            out[l + 32] = d * sc[is + 2] as i8 as f32 * q2 as f32;
            out[l + 64] = d * sc[is + 4] as i8 as f32 * q3 as f32;
            out[l + 96] = d * sc[is + 6] as i8 as f32 * q4 as f32;
        }
    }
}

fn check_quantize_input(x: &[f32]) -> Result<(), QuantError> {
    if !x.len().is_multiple_of(QK) {
        return Err(QuantError::BufferLength {
            what: "values to quantize (not a multiple of 32)",
            expected: x.len() / QK * QK,
            found: x.len(),
        });
    }
    Ok(())
}

/// Quantizes `x` to Q8_0 blocks, bit-exact with ggml's `quantize_row_q8_0_ref`:
/// d = max|x| / 127, q = round-half-away(x / d).
///
/// `x.len()` must be a multiple of 32.
pub fn quantize_row_q8_0(x: &[f32]) -> Result<Vec<u8>, QuantError> {
    check_quantize_input(x)?;
    let mut out = Vec::with_capacity(x.len() / QK * 34);
    for blk in x.chunks_exact(QK) {
        let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend(blk.iter().map(|&v| (v * id).round() as i8 as u8));
    }
    Ok(out)
}

/// Quantizes `x` to Q4_0 blocks, bit-exact with ggml's `quantize_row_q4_0_ref`:
/// the value of largest magnitude maps to −8, d = that value / −8.
///
/// `x.len()` must be a multiple of 32.
pub fn quantize_row_q4_0(x: &[f32]) -> Result<Vec<u8>, QuantError> {
    check_quantize_input(x)?;
    let mut out = Vec::with_capacity(x.len() / QK * 18);
    for blk in x.chunks_exact(QK) {
        // The signed value with the largest magnitude (first one on ties, as ggml).
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in blk {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        let q = |v: f32| ((v * id + 8.5) as u8).min(15);
        for j in 0..QK / 2 {
            out.push(q(blk[j]) | (q(blk[j + QK / 2]) << 4));
        }
    }
    Ok(out)
}

/// Quantizes `x` to Q4_1 blocks, bit-exact with ggml's `quantize_row_q4_1_ref`:
/// m = min, d = (max − min) / 15, q = ⌊(x − m) / d + ½⌋.
///
/// `x.len()` must be a multiple of 32.
pub fn quantize_row_q4_1(x: &[f32]) -> Result<Vec<u8>, QuantError> {
    check_quantize_input(x)?;
    let mut out = Vec::with_capacity(x.len() / QK * 20);
    for blk in x.chunks_exact(QK) {
        let min = blk.iter().fold(f32::MAX, |a, &v| a.min(v));
        let max = blk.iter().fold(-f32::MAX, |a, &v| a.max(v));
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend_from_slice(&f16::from_f32(min).to_bits().to_le_bytes());
        let q = |v: f32| (((v - min) * id + 0.5) as u8).min(15);
        for j in 0..QK / 2 {
            out.push(q(blk[j]) | (q(blk[j + QK / 2]) << 4));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sizes_match_ggml() {
        for f in BlockFormat::ALL {
            assert_eq!(BlockFormat::from_ggml_id(f.ggml_id()), Some(f));
        }
        let bytes: Vec<_> = BlockFormat::ALL.iter().map(|f| f.block_bytes()).collect();
        assert_eq!(bytes, [34, 18, 20, 22, 24, 144, 176, 210]);
        for id in [0, 1, 9, 10, 11, 15, 16, 30, 1000] {
            assert_eq!(BlockFormat::from_ggml_id(id), None, "id {id}");
        }
    }

    #[test]
    fn q8_0_round_trip_is_close() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        let q = quantize_row_q8_0(&x).unwrap();
        let mut y = vec![0.0; 64];
        dequantize_row(BlockFormat::Q8_0, &q, &mut y).unwrap();
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= 1.0 / 254.0 + 1e-3, "{a} vs {b}");
        }
    }

    /// One Q5_0 block by hand: d = 1, every low nibble 0..15 repeated, high bits
    /// set for weights 0 and 17 only.
    #[test]
    fn q5_0_and_q5_1_decode_by_the_ggml_layout() {
        let mut block = Vec::new();
        block.extend_from_slice(&f16::from_f32(1.0).to_le_bytes());
        block.extend_from_slice(&(1u32 | 1 << 17).to_le_bytes());
        block.extend((0u8..16).map(|j| j | (15 - j) << 4));
        let mut out = [0.0f32; 32];
        dequantize_row(BlockFormat::Q5_0, &block, &mut out).unwrap();
        assert_eq!(out[0], 0.0, "0 | 16 − 16");
        assert_eq!(out[1], 1.0 - 16.0);
        assert_eq!(out[16], 15.0 - 16.0);
        assert_eq!(out[17], 14.0);
        assert_eq!(out[31], 0.0 - 16.0);

        let mut q51 = Vec::new();
        q51.extend_from_slice(&f16::from_f32(0.5).to_le_bytes());
        q51.extend_from_slice(&f16::from_f32(-1.0).to_le_bytes());
        q51.extend_from_slice(&block[2..]);
        dequantize_row(BlockFormat::Q5_1, &q51, &mut out).unwrap();
        assert_eq!(out[0], 16.0 * 0.5 - 1.0);
        assert_eq!(out[1], 0.5 - 1.0);
        assert!(dequantize_row(BlockFormat::Q5_0, &block[..10], &mut out).is_err());
    }

    #[test]
    fn scale_min_unpacks_all_six_bits() {
        // Sub-block 5: low four bits from byte 9, high two from the top of bytes 1 / 5.
        let mut s = [0u8; 12];
        s[1] = 0b11 << 6;
        s[5] = 0b10 << 6;
        s[9] = 0x7A;
        assert_eq!(scale_min_k4(5, &s), (0xA | (3 << 4), 0x7 | (2 << 4)));
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let mut out = [0f32; 32];
        assert!(dequantize_row(BlockFormat::Q4_1, &[0; 19], &mut out).is_err());
        assert!(dequantize_row(BlockFormat::Q4_1, &[0; 20], &mut out[..31]).is_err());
        assert!(quantize_row_q8_0(&[0.0; 33]).is_err());
    }
}
