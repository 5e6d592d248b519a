//! GGUF files: header, metadata, tensor infos and tensor data through mmap, and
//! the tokenizer GGUF files embed.
//!
//! - [`parse`] reads and validates a whole file held in a byte slice (the fuzz
//!   target's entry point); [`GgufFile::open`] maps a file and parses it.
//! - [`GgufValue`]/[`GgufArray`]: metadata values of every GGUF type; typed
//!   getters on [`GgufFile`] (`get_str`, `get_u32`, ...) name the key, the
//!   expected and the found type when they fail.
//! - [`TensorInfo`]: name, dims (GGUF order, fastest-varying first; see
//!   [`TensorInfo::shape_row_major`] for burn's order), [`GgmlType`], and the
//!   tensor's bytes ([`GgufFile::tensor_data`]). F32/F16/BF16 convert with
//!   [`GgufFile::read_f32`]; block-quantized types are `crate::quant`'s.
//! - [`tokenizer`]: the embedded tokenizer (SentencePiece or byte-level BPE),
//!   encoding and decoding as llama.cpp ([`GgufTokenizer`], and so a
//!   [`TextTokenizer`](crate::tokenizer::TextTokenizer)).
//! - [`GgufWriter`]: writes valid files, for tests and tools.
//!
//! A malformed file is an error naming the byte offset and what was being read,
//! never a panic or an allocation the file's size does not justify.

mod reader;
mod tensor;
pub mod tokenizer;
mod types;
mod value;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::storage::Storage;

pub use reader::{
    ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufContent, GgufMetadata, MAX_ARRAY_NESTING,
    MAX_DIMS, ParseError, ParseErrorKind, parse,
};
pub use tensor::TensorInfo;
pub use tokenizer::{GgufTokenizer, GgufTokenizerInfo};
pub use types::GgmlType;
pub use value::{GgufArray, GgufValue, GgufValueType};
pub use writer::GgufWriter;

/// Everything that can go wrong with a GGUF file.
///
/// Each variant names the file; metadata errors name the key, the expected and
/// the found type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The bytes are not a valid GGUF file.
    #[error("{}: not a valid GGUF file: {source}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and what (boxed: it is large and rare).
        source: Box<ParseError>,
    },
    /// A metadata key the caller needs is absent.
    #[error("{}: metadata key {key:?} is missing", .path.display())]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A metadata value has another type than the caller needs.
    #[error("{}: metadata key {key:?} is {found}, expected {expected}", .path.display())]
    WrongType {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The type asked for (`"u32"`, `"array of string"`, ...).
        expected: &'static str,
        /// The type (and, for an out-of-range integer, the value) found.
        found: String,
    },
    /// A tensor the caller needs is absent.
    #[error("{}: tensor {name:?} is missing (the file has {available} tensors)", .path.display())]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor name looked up.
        name: String,
        /// How many tensors the file has.
        available: usize,
    },
    /// A tensor's type cannot be read the way the caller asked.
    #[error("{}: tensor {name:?} is stored as {ggml_type}: {reason}", .path.display())]
    TensorType {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Its type.
        ggml_type: GgmlType,
        /// What to do instead.
        reason: &'static str,
    },
    /// The embedded tokenizer uses a model this crate does not build.
    #[error("{}: tokenizer model {model:?} (tokenizer.ggml.model) is not supported; supported: {supported}", .path.display())]
    UnsupportedTokenizer {
        /// The file.
        path: PathBuf,
        /// The value of `tokenizer.ggml.model`.
        model: String,
        /// The supported values.
        supported: &'static str,
    },
    /// The embedded tokenizer's pre-tokenizer is not one this crate knows.
    #[error("{}: pre-tokenizer {pre:?} (tokenizer.ggml.pre) is not supported; supported: {supported}", .path.display())]
    UnsupportedPreTokenizer {
        /// The file.
        path: PathBuf,
        /// The value of `tokenizer.ggml.pre`.
        pre: String,
        /// The supported values.
        supported: &'static str,
    },
    /// The embedded tokenizer's data is inconsistent.
    #[error("{}: invalid tokenizer: {reason}", .path.display())]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl From<GgufError> for mdsa_engine::ModelError {
    fn from(error: GgufError) -> Self {
        Self::format(error)
    }
}

/// A parsed GGUF file whose tensor data stays in the mapped file.
pub struct GgufFile {
    path: PathBuf,
    storage: Storage,
    content: GgufContent,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.content.version())
            .field("metadata", &self.content.metadata().len())
            .field("tensors", &self.content.tensors().len())
            .finish()
    }
}

impl GgufFile {
    /// Maps the file and parses and validates its header; no tensor data is read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this value. Another process
        // truncating or rewriting the file while it is mapped is undefined
        // behaviour, as for every mmap-based model loader; model files are not
        // modified in place.
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::from_storage(path.to_path_buf(), Storage::Mapped(map))
    }

    /// Parses a file already in memory; `path` only names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: impl Into<PathBuf>) -> Result<Self, GgufError> {
        Self::from_storage(path.into(), Storage::Owned(bytes))
    }

    fn from_storage(path: PathBuf, storage: Storage) -> Result<Self, GgufError> {
        match parse(storage.bytes()) {
            Ok(content) => Ok(Self {
                path,
                storage,
                content,
            }),
            Err(source) => Err(GgufError::Parse {
                path,
                source: Box::new(source),
            }),
        }
    }

    /// The file (or the name given to [`from_bytes`](Self::from_bytes)).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// The parsed header.
    pub fn content(&self) -> &GgufContent {
        &self.content
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.content.version()
    }

    /// The alignment of tensor data.
    pub fn alignment(&self) -> u64 {
        self.content.alignment()
    }

    /// The metadata entries.
    pub fn metadata(&self) -> &GgufMetadata {
        self.content.metadata()
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.content.metadata().get(key)
    }

    /// `general.architecture` (`"llama"`, `"qwen2"`, ...).
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.typed(key, "string", GgufValue::as_str)
    }

    /// A string value, or `None` when the key is absent (a present value of
    /// another type is still an error).
    pub fn get_str_opt(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.optional(key, Self::get_str)
    }

    /// An integer value that fits `u32` (any integer type is accepted: writers differ).
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.integer(key, "u32")
    }

    /// [`get_u32`](Self::get_u32), or `default` when the key is absent.
    pub fn get_u32_or(&self, key: &str, default: u32) -> Result<u32, GgufError> {
        Ok(self.optional(key, Self::get_u32)?.unwrap_or(default))
    }

    /// [`get_u32`](Self::get_u32), or `None` when the key is absent.
    pub fn get_u32_opt(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.optional(key, Self::get_u32)
    }

    /// An integer value that fits `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.integer(key, "u64")
    }

    /// An integer value that fits `i32`.
    pub fn get_i32(&self, key: &str) -> Result<i32, GgufError> {
        self.integer(key, "i32")
    }

    /// An integer value that fits `i64`.
    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.integer(key, "i64")
    }

    /// An `f32` value (an `f64` is narrowed).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.typed(key, "f32", |v| v.as_float().map(|f| f as f32))
    }

    /// [`get_f32`](Self::get_f32), or `default` when the key is absent.
    pub fn get_f32_or(&self, key: &str, default: f32) -> Result<f32, GgufError> {
        Ok(self.optional(key, Self::get_f32)?.unwrap_or(default))
    }

    /// [`get_f32`](Self::get_f32), or `None` when the key is absent.
    pub fn get_f32_opt(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.optional(key, Self::get_f32)
    }

    /// An `f64` (or `f32`) value.
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        self.typed(key, "f64", GgufValue::as_float)
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        self.typed(key, "bool", GgufValue::as_bool)
    }

    /// [`get_bool`](Self::get_bool), or `default` when the key is absent.
    pub fn get_bool_or(&self, key: &str, default: bool) -> Result<bool, GgufError> {
        Ok(self.optional(key, Self::get_bool)?.unwrap_or(default))
    }

    /// An array value of any element type.
    pub fn get_array(&self, key: &str) -> Result<&GgufArray, GgufError> {
        self.typed(key, "array", GgufValue::as_array)
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<&[String], GgufError> {
        self.typed(key, "array of string", |v| v.as_array()?.as_strings())
    }

    /// An array of `i32`.
    pub fn get_i32_array(&self, key: &str) -> Result<&[i32], GgufError> {
        self.typed(key, "array of i32", |v| v.as_array()?.as_i32s())
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        self.content.tensors()
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.content.tensor(name)
    }

    /// The tensor called `name`, or an error naming it and the file.
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensor(name).ok_or_else(|| GgufError::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
            available: self.tensors().len(),
        })
    }

    /// The stored bytes of a tensor of this file.
    ///
    /// An info from another file whose range does not fit this one gives an
    /// empty slice rather than a panic.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        self.bytes().get(info.data_range()).unwrap_or_default()
    }

    /// Reads an F32, F16 or BF16 tensor as f32 values, in stored order.
    ///
    /// Block-quantized tensors are an error: dequantize them with `crate::quant`.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let info = self.require_tensor(name)?;
        let bytes = self.tensor_data(info);
        let values = match info.ggml_type() {
            GgmlType::F32 => convert(bytes, f32::from_le_bytes),
            GgmlType::F16 => convert(bytes, |b| half::f16::from_le_bytes(b).to_f32()),
            GgmlType::BF16 => convert(bytes, |b| half::bf16::from_le_bytes(b).to_f32()),
            other => {
                let reason = if other.is_quantized() {
                    "a block-quantized type; dequantize it with the quant module"
                } else {
                    "not a floating-point type read_f32 converts (F32, F16, BF16)"
                };
                return Err(GgufError::TensorType {
                    path: self.path.clone(),
                    name: name.to_string(),
                    ggml_type: other,
                    reason,
                });
            }
        };
        Ok(values)
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        extract: impl FnOnce(&'a GgufValue) -> Option<T>,
    ) -> Result<T, GgufError> {
        let value = self.get(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        })?;
        extract(value).ok_or_else(|| GgufError::WrongType {
            path: self.path.clone(),
            key: key.to_string(),
            expected,
            found: value.type_name(),
        })
    }

    fn integer<T: TryFrom<i128>>(&self, key: &str, expected: &'static str) -> Result<T, GgufError> {
        let value = self.typed(key, expected, GgufValue::as_integer)?;
        T::try_from(value).map_err(|_| GgufError::WrongType {
            path: self.path.clone(),
            key: key.to_string(),
            expected,
            found: format!(
                "{} {value}, out of range",
                self.get(key).map_or_else(String::new, GgufValue::type_name)
            ),
        })
    }

    fn optional<'a, T>(
        &'a self,
        key: &str,
        get: impl FnOnce(&'a Self, &str) -> Result<T, GgufError>,
    ) -> Result<Option<T>, GgufError> {
        if self.metadata().contains_key(key) {
            get(self, key).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Converts little-endian 2- or 4-byte values; the byte count was validated
/// against the tensor's type and dims when the file was parsed.
fn convert<const N: usize>(bytes: &[u8], from: impl Fn([u8; N]) -> f32) -> Vec<f32> {
    let (chunks, _) = bytes.as_chunks::<N>();
    chunks.iter().map(|&c| from(c)).collect()
}

/// What a model listing shows about a GGUF file (`mdsa models`): its
/// architecture and llama.cpp file type, read from the header only.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GgufSummary {
    /// `general.architecture` (`llama`, `qwen2`, ...).
    pub architecture: Option<String>,
    /// `general.file_type` by llama.cpp's name (`Q4_K_M`, `Q8_0`, `F16`, ...).
    pub file_type: Option<String>,
}

impl GgufSummary {
    /// Reads the summary of `path`; `None` when it is not a readable GGUF file.
    pub fn read(path: &Path) -> Option<Self> {
        let file = GgufFile::open(path).ok()?;
        Some(Self {
            architecture: file.architecture().ok().map(str::to_owned),
            file_type: file
                .get("general.file_type")
                .and_then(GgufValue::as_integer)
                .and_then(|t| u32::try_from(t).ok())
                .map(file_type_name),
        })
    }
}

/// llama.cpp's `general.file_type` numbers (`enum llama_ftype`).
fn file_type_name(file_type: u32) -> String {
    let name = match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        other => return format!("file type {other}"),
    };
    name.to_owned()
}
