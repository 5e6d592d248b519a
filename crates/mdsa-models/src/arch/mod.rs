//! Model architectures, written as burn modules that read like the paper's
//! diagram: the BERT encoder in one file, the decoder families in
//! [`decoder`] (one file per family, built from shared layers), and the
//! [`linear`] layer they all share. Configuration parsing and weight loading sit
//! beside the forward pass but apart from it.

pub mod bert;
pub mod decoder;
pub mod linear;
pub(crate) mod matmul;
