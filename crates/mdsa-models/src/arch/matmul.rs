//! A safe face on the `gemm` crate's f32 matrix product, for the host
//! attention kernel: matrices are slices with row and column strides, checked
//! against the slice lengths before the call.
//!
//! `gemm::gemm` takes raw pointers, so this module needs `unsafe`: the
//! workspace denies `unsafe_code`, and the exception is made here only, for one
//! call whose every address is proven in bounds first.
#![allow(unsafe_code)]

/// A read-only `rows × cols` matrix in `data`: element `(r, c)` at
/// `r * row_stride + c * col_stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix: rows of `cols` values, `row_stride` apart.
    pub(crate) fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose (no copy).
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element's index lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `out = lhs · rhs`, with `out` row-major (`rhs.cols` values a row, rows
/// `out_stride` apart), on the calling thread.
///
/// # Panics
/// When the shapes disagree or a matrix reaches past its slice: a bug in the
/// caller, never a property of user input.
pub(crate) fn matmul(out: &mut [f32], out_stride: usize, lhs: MatRef<'_>, rhs: MatRef<'_>) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "inner dimensions differ");
    assert!(
        lhs.in_bounds() && rhs.in_bounds(),
        "a factor reaches past its slice"
    );
    assert!(
        m == 0 || n == 0 || (m - 1) * out_stride + n <= out.len(),
        "the product reaches past its slice"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: every element of the three matrices addressed through these
    // pointers and strides was checked to lie inside its slice above; `out`
    // is borrowed mutably, so nothing else reads or writes it meanwhile.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_stride as isize,
            false,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_with_strides_and_transposes_match_the_definition() {
        // lhs [2, 3], rhs given as the transpose of a [2, 3] matrix.
        let lhs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let rhs_t = [1.0, 0.0, -1.0, 2.0, 1.0, 0.0];
        let mut out = [0.0f32; 4];
        matmul(
            &mut out,
            2,
            MatRef::rows(&lhs, 2, 3, 3),
            MatRef::rows(&rhs_t, 2, 3, 3).t(),
        );
        assert_eq!(out, [-2.0, 4.0, -2.0, 13.0]);
    }

    #[test]
    #[should_panic(expected = "past its slice")]
    fn a_matrix_past_its_slice_is_refused() {
        let mut out = [0.0f32; 4];
        let short = [1.0f32; 5];
        matmul(
            &mut out,
            2,
            MatRef::rows(&short, 2, 3, 3),
            MatRef::rows(&[1.0; 6], 3, 2, 2),
        );
    }
}
