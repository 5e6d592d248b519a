//! Model architectures, one file each, written as burn modules that read like the
//! paper's diagram. Configuration parsing and weight loading sit beside the
//! forward pass but apart from it.

pub mod bert;
pub mod linear;
pub mod llama;
