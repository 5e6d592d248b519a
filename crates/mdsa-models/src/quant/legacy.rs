//! GGUF block formats read at load time only, without matmul kernels: Q5_0 and
//! Q5_1 (llama.cpp's Q4_K_M files use Q5_0 for some attention weights). They are
//! dequantized once; the decoder then re-blocks them to Q8_0, which holds 5-bit
//! values with no further loss of note.

use half::f16;

use super::QuantError;

/// ggml type id of Q5_0.
pub const GGML_Q5_0: u32 = 6;
/// ggml type id of Q5_1.
pub const GGML_Q5_1: u32 = 7;

/// Dequantizes a row of Q5_0 (22-byte blocks) or Q5_1 (24-byte blocks) into `out`.
/// Returns `Ok(false)` for any other type id, so callers can try other readers.
pub fn dequantize_legacy(ggml_id: u32, bytes: &[u8], out: &mut [f32]) -> Result<bool, QuantError> {
    let (block_bytes, with_min) = match ggml_id {
        GGML_Q5_0 => (22, false),
        GGML_Q5_1 => (24, true),
        _ => return Ok(false),
    };
    if !out.len().is_multiple_of(32) || bytes.len() != out.len() / 32 * block_bytes {
        return Err(QuantError::BufferLength {
            what: "Q5 blocks",
            expected: out.len() / 32 * block_bytes,
            found: bytes.len(),
        });
    }
    for (block, y) in bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(32))
    {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let (m, rest) = if with_min {
            (
                f16::from_le_bytes([block[2], block[3]]).to_f32(),
                &block[4..],
            )
        } else {
            (0.0, &block[2..])
        };
        let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let qs = &rest[4..20];
        let offset = if with_min { 0 } else { 16 };
        for j in 0..16 {
            let high0 = (((qh >> j) << 4) & 0x10) as i32;
            let high1 = ((qh >> (j + 12)) & 0x10) as i32;
            let x0 = ((i32::from(qs[j]) & 0x0F) | high0) - offset;
            let x1 = ((i32::from(qs[j]) >> 4) | high1) - offset;
            y[j] = x0 as f32 * d + m;
            y[j + 16] = x1 as f32 * d + m;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One Q5_0 block by hand: d = 1, every low nibble 0..15 repeated, high bits
    /// set for the first weight only.
    #[test]
    fn q5_0_and_q5_1_decode_by_the_ggml_layout() {
        let mut block = Vec::new();
        block.extend_from_slice(&f16::from_f32(1.0).to_le_bytes());
        block.extend_from_slice(&1u32.to_le_bytes()); // high bit of weight 0
        block.extend((0u8..16).map(|j| j | (15 - j) << 4));
        let mut out = [0.0f32; 32];
        assert!(dequantize_legacy(GGML_Q5_0, &block, &mut out).unwrap());
        assert_eq!(out[0], (16 - 16) as f32 + 0.0, "0 | 16 - 16");
        assert_eq!(out[1], 1.0 - 16.0);
        assert_eq!(out[16], 15.0 - 16.0);
        assert_eq!(out[31], 0.0 - 16.0);

        let mut q51 = Vec::new();
        q51.extend_from_slice(&f16::from_f32(0.5).to_le_bytes());
        q51.extend_from_slice(&f16::from_f32(-1.0).to_le_bytes());
        q51.extend_from_slice(&block[2..]);
        assert!(dequantize_legacy(GGML_Q5_1, &q51, &mut out).unwrap());
        assert_eq!(out[0], 16.0 * 0.5 - 1.0);
        assert_eq!(out[1], 0.5 - 1.0);

        assert!(!dequantize_legacy(2, &block, &mut out).unwrap());
        assert!(dequantize_legacy(GGML_Q5_0, &block[..10], &mut out).is_err());
    }
}
