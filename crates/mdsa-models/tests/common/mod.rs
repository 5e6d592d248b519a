//! Helpers shared by the integration tests: writing safetensors files and
//! tiny GGUF decoders.

// Each test binary uses a part of these helpers.
#![allow(dead_code)]

pub(crate) mod tiny_gguf;

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, View};

/// Raw bytes of one tensor in a given dtype.
pub(crate) struct Raw {
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    pub(crate) bytes: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.bytes[..]).into()
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// f32 values encoded in `dtype` (F32, F16, BF16, or I64 for bad-dtype tests).
pub(crate) fn encode(values: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::I64 => values
            .iter()
            .flat_map(|v| (*v as i64).to_le_bytes())
            .collect(),
        other => unreachable!("tests write no {other:?}"),
    }
}

/// Writes named tensors to a safetensors file.
pub(crate) fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Raw>) {
    safetensors::serialize_to_file(tensors.iter().map(|(k, v)| (k.as_str(), v)), None, path)
        .unwrap();
}
