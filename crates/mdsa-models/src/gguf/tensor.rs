//! Tensor infos: name, dims, type and where the bytes are.

use std::ops::Range;

use super::types::GgmlType;

/// One tensor as the GGUF header describes it, validated against the file.
///
/// **Dims order.** GGUF (like ggml) lists dims fastest-varying first: `dims()[0]`
/// is the number of columns (`ne[0]`), so a PyTorch `[rows, cols]` weight is
/// stored as `[cols, rows]`. [`shape_row_major`](Self::shape_row_major) gives
/// the reversed, burn/PyTorch order. Quantized blocks run along `dims()[0]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub(crate) name: String,
    pub(crate) dims: Vec<u64>,
    pub(crate) ggml_type: GgmlType,
    pub(crate) offset: u64,
    pub(crate) n_elements: u64,
    pub(crate) data: Range<usize>,
}

impl TensorInfo {
    /// The tensor's name (`"blk.0.attn_q.weight"`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Dims in GGUF order, fastest-varying first (`ne[0]` = columns).
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// Dims in row-major (burn/PyTorch) order: `dims()` reversed.
    ///
    /// Every dim was checked at parse time to fit `usize`.
    pub fn shape_row_major(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// The storage type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Offset of the data from the start of the file's data section, as stored.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Number of elements (the product of the dims; 1 for a tensor without dims).
    pub fn n_elements(&self) -> u64 {
        self.n_elements
    }

    /// Bytes of data.
    pub fn n_bytes(&self) -> usize {
        self.data.len()
    }

    /// Where the data lies in the whole file, in bytes.
    pub fn data_range(&self) -> Range<usize> {
        self.data.clone()
    }
}
