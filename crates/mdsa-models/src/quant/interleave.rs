//! The interleaved layout: blocks of 8 weight rows stored together so that one
//! SIMD integer dot product (`vpdpbusd`, or `vpmaddubsw` + `vpmaddwd`) covers
//! 8 rows at once, each 32-bit lane one row.
//!
//! In GGUF's layout a dot product of one row with one activation block ends
//! in a horizontal sum, and every (row, activation) pair pays for its own
//! scale conversion and accumulation. Interleaved, lane `r` of a 32-byte
//! vector holds 4 quants of row `r`, the activation's matching 4 bytes are
//! broadcast to every lane, and 8 such products give 8 rows' block sums in one
//! vector: the scales, the conversion to f32 and the accumulation are then
//! shared by 8 rows, and the result is already the 8 outputs, with no
//! horizontal sum (the approach of llama.cpp's repacked `Q4_0_8x8` and
//! ik_llama.cpp's `_R8` formats).
//!
//! A group of 8 rows holds, for each block `b` in turn:
//!
//! | format | bytes | contents |
//! |---|---:|---|
//! | Q4_0 | 144 | 8 f16 scales, then 128 bytes of nibbles |
//! | Q4_1 | 160 | 8 f16 scales, 8 f16 minimums, 128 bytes of nibbles |
//! | Q8_0 | 272 | 8 f16 scales, 256 bytes of quants |
//!
//! the same bytes as the 8 rows' blocks, rearranged. The quants go in runs of
//! 4 bytes, row after row: for Q8_0 run `k` (k = 0..8) is bytes `4k..4k + 4`
//! of each row's block (values `4k..4k + 4`); for the 4-bit formats run `j`
//! (j = 0..4) is bytes `4j..4j + 4` of each row's nibbles, whose low nibbles
//! are values `4j..4j + 4` and high nibbles values `16 + 4j..16 + 4j + 4`.
//!
//! Groups go in pairs: the blocks of groups `2p` and `2p + 1` alternate
//! (block 0 of the first, block 0 of the second, block 1 of the first...),
//! so that a kernel that multiplies 16 rows at once (512-bit registers) reads
//! one sequential stream, which the hardware prefetcher follows, rather than
//! two a group apart. A last group without a partner keeps its blocks in
//! order. A kernel that takes one group at a time reads every other block.

use super::formats::BlockFormat;

/// Rows per interleaved group.
pub(crate) const GROUP: usize = 8;

/// Bytes of the quants in one block of one row.
fn quant_bytes(format: BlockFormat) -> usize {
    match format {
        BlockFormat::Q8_0 => 32,
        _ => 16,
    }
}

/// Bytes before the quants in one block of one row (the f16 header).
fn header_bytes(format: BlockFormat) -> usize {
    format.block_bytes() - quant_bytes(format)
}

/// Whether `format` has an interleaved layout.
pub(crate) fn supports(format: BlockFormat) -> bool {
    matches!(
        format,
        BlockFormat::Q8_0 | BlockFormat::Q4_0 | BlockFormat::Q4_1
    )
}

/// Rearranges `rows` (a multiple of [`GROUP`]) rows of `blocks_per_row`
/// blocks, GGUF order, into the interleaved layout. `bytes` must hold exactly
/// those rows (checked by the caller).
pub(crate) fn interleave(format: BlockFormat, blocks_per_row: usize, bytes: &[u8]) -> Vec<u8> {
    let bb = format.block_bytes();
    let row_bytes = blocks_per_row * bb;
    let group_bytes = GROUP * row_bytes;
    let groups = bytes.len() / group_bytes.max(1);
    let mut out = vec![0u8; bytes.len()];
    for (g, group) in bytes.chunks_exact(group_bytes).enumerate() {
        for b in 0..blocks_per_row {
            let at = group_block(groups, blocks_per_row, g, b) * GROUP * bb;
            let dst = &mut out[at..at + GROUP * bb];
            for r in 0..GROUP {
                let block = &group[r * row_bytes + b * bb..][..bb];
                write_lane(format, block, r, dst);
            }
        }
    }
    out
}

/// Whether group `g` (of `groups`) shares its blocks with a partner, rather
/// than being a last group on its own.
pub(crate) fn paired(groups: usize, g: usize) -> bool {
    g - g % 2 + 1 < groups
}

/// Where block `b` of group `g` (of `groups`) lies, counted in group blocks
/// (`GROUP` rows' blocks each) from the start: alternating with its
/// partner's in a pair, in order for a last group on its own.
fn group_block(groups: usize, blocks_per_row: usize, g: usize, b: usize) -> usize {
    if paired(groups, g) {
        (g - g % 2) * blocks_per_row + 2 * b + g % 2
    } else {
        g * blocks_per_row + b
    }
}

/// Row `lane`'s block of an interleaved group block, in GGUF order.
pub(crate) fn read_lane(format: BlockFormat, group_block: &[u8], lane: usize, block: &mut [u8]) {
    let header = header_bytes(format);
    let fields = header / 2;
    for f in 0..fields {
        let at = f * 2 * GROUP + lane * 2;
        block[f * 2..f * 2 + 2].copy_from_slice(&group_block[at..at + 2]);
    }
    let runs = quant_bytes(format) / 4;
    let quants = &group_block[header * GROUP..];
    for run in 0..runs {
        let at = (run * GROUP + lane) * 4;
        block[header + run * 4..][..4].copy_from_slice(&quants[at..at + 4]);
    }
}

/// Writes one row's block (GGUF order) as lane `lane` of a group block.
fn write_lane(format: BlockFormat, block: &[u8], lane: usize, group_block: &mut [u8]) {
    let header = header_bytes(format);
    // Each f16 header field (d, and m for Q4_1) becomes a run of 8.
    let fields = header / 2;
    for f in 0..fields {
        let at = f * 2 * GROUP + lane * 2;
        group_block[at..at + 2].copy_from_slice(&block[f * 2..f * 2 + 2]);
    }
    let runs = quant_bytes(format) / 4;
    let quants = &mut group_block[header * GROUP..];
    for run in 0..runs {
        let at = (run * GROUP + lane) * 4;
        quants[at..at + 4].copy_from_slice(&block[header + run * 4..][..4]);
    }
}

/// Row `row` (of an interleaved matrix of `blocks_per_row` blocks per row,
/// or of a run of its groups that starts at a pair) in GGUF order.
pub(crate) fn read_row(
    format: BlockFormat,
    blocks_per_row: usize,
    bytes: &[u8],
    row: usize,
) -> Vec<u8> {
    let bb = format.block_bytes();
    let groups = bytes.len() / (GROUP * blocks_per_row * bb).max(1);
    let mut out = vec![0u8; blocks_per_row * bb];
    for (b, block) in out.chunks_exact_mut(bb).enumerate() {
        let at = group_block(groups, blocks_per_row, row / GROUP, b) * GROUP * bb;
        read_lane(format, &bytes[at..at + GROUP * bb], row % GROUP, block);
    }
    out
}
