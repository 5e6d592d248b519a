//! The GGUF parser, over a byte slice so the fuzz target and tests need no file.
//!
//! Layout (little-endian): magic `GGUF`, version (`u32`), tensor count and
//! metadata count (`u64`); the metadata entries (key string, value type `u32`,
//! value); the tensor infos (name, dim count `u32`, dims `u64`, ggml type `u32`,
//! offset `u64` into the data section); padding to the alignment
//! (`general.alignment`, default 32); the data section.
//!
//! Every count and length is checked against the bytes that remain *before*
//! anything is allocated or sliced: a string length of 2^60 or a tensor count of
//! 2^40 fails at once with the byte offset and what was being read, and no input
//! makes the parser panic, recurse without bound or allocate more than a small
//! multiple of the input's size.

use std::collections::HashMap;
use std::fmt;

use super::tensor::TensorInfo;
use super::types::GgmlType;
use super::value::{GgufArray, GgufValue, GgufValueType};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The alignment of the data section and of every tensor when the file sets no
/// `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that sets the alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Most dims a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Deepest nesting of arrays of arrays; deeper input is an error rather than a
/// risk to the stack.
pub const MAX_ARRAY_NESTING: usize = 8;

/// Upper bound on the capacity reserved up front for a list whose length comes
/// from the file: a lying count then costs at most this much before the data
/// runs out, while honest lists still grow in a few steps.
const PREALLOC_LIMIT: usize = 1 << 16;
/// Fewest bytes a metadata entry takes: key length, value type, a one-byte value.
const MIN_KV_SIZE: u64 = 8 + 4 + 1;
/// Fewest bytes a tensor info takes: name length, dim count, type, offset.
const MIN_TENSOR_INFO_SIZE: u64 = 8 + 4 + 4 + 8;

/// Why bytes are not a valid GGUF file: where, while reading what, and what is wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("at byte {offset}, reading {what}: {kind}")]
pub struct ParseError {
    offset: u64,
    what: String,
    kind: ParseErrorKind,
}

impl ParseError {
    fn new(offset: usize, kind: ParseErrorKind) -> Self {
        Self {
            offset: offset as u64,
            what: String::new(),
            kind,
        }
    }

    /// Adds the outer context (`"value of metadata key \"x\""`) in front of any
    /// inner one (`"string length"`).
    fn reading(mut self, outer: impl fmt::Display) -> Self {
        self.what = if self.what.is_empty() {
            outer.to_string()
        } else {
            format!("{outer}: {}", self.what)
        };
        self
    }

    /// Byte offset in the file of the item that could not be read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// What was being read (`"tensor count"`, `"name of tensor #3"`, ...).
    pub fn what(&self) -> &str {
        &self.what
    }

    /// What is wrong.
    pub fn kind(&self) -> &ParseErrorKind {
        &self.kind
    }
}

/// What is wrong with a GGUF file.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The file ends in the middle of an item.
    #[error("the file ends: {needed} bytes needed, {available} left")]
    UnexpectedEof {
        /// Bytes the item needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// A count cannot be honest: even the smallest items would not fit.
    #[error(
        "{count} items of at least {min_size} bytes each cannot fit in the {available} bytes left"
    )]
    CountTooLarge {
        /// The count read.
        count: u64,
        /// The fewest bytes one item takes.
        min_size: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// The file does not start with `GGUF`.
    #[error("bad magic {found:02x?}, expected \"GGUF\" (47 47 55 46)")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// A version this reader does not read.
    #[error("unsupported GGUF version {version}; this reader reads versions 2 and 3{}", version_hint(.version))]
    UnsupportedVersion {
        /// The version read.
        version: u32,
    },
    /// A string is not UTF-8.
    #[error("the string is not valid UTF-8")]
    InvalidUtf8,
    /// A metadata value type id GGUF does not define.
    #[error("unknown metadata value type id {id}")]
    UnknownValueType {
        /// The id read.
        id: u32,
    },
    /// A bool byte other than 0 or 1.
    #[error("invalid bool byte {value} (must be 0 or 1)")]
    InvalidBool {
        /// The byte read.
        value: u8,
    },
    /// Arrays nested deeper than [`MAX_ARRAY_NESTING`].
    #[error("arrays are nested deeper than {max} levels")]
    NestingTooDeep {
        /// The limit.
        max: usize,
    },
    /// A metadata key appears twice.
    #[error("duplicate metadata key {key:?}")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// `general.alignment` is not a non-zero power of two that fits `u32`.
    #[error("general.alignment is {found}; it must be a non-zero power of two (u32)")]
    BadAlignment {
        /// The value (and its type) as found.
        found: String,
    },
    /// A tensor has more than [`MAX_DIMS`] dims.
    #[error("tensor {tensor:?} has {n_dims} dims; at most {max} are supported", max = MAX_DIMS)]
    TooManyDims {
        /// The tensor.
        tensor: String,
        /// The dim count read.
        n_dims: u32,
    },
    /// A tensor's element or byte count does not fit `i64`.
    #[error("tensor {tensor:?} with dims {dims:?}: the element count overflows")]
    ElementCountOverflow {
        /// The tensor.
        tensor: String,
        /// Its dims (GGUF order).
        dims: Vec<u64>,
    },
    /// A ggml type id this reader does not know.
    #[error("tensor {tensor:?} has unknown ggml type id {id}")]
    UnknownGgmlType {
        /// The tensor.
        tensor: String,
        /// The id read.
        id: u32,
    },
    /// A row (`dims[0]`) is not a whole number of the type's blocks.
    #[error(
        "tensor {tensor:?}: {ne0} columns are not a multiple of the {ggml_type} block size {block_size}"
    )]
    NotBlockMultiple {
        /// The tensor.
        tensor: String,
        /// Its type.
        ggml_type: GgmlType,
        /// `dims[0]`.
        ne0: u64,
        /// Elements per block of the type.
        block_size: usize,
    },
    /// A tensor name appears twice.
    #[error("duplicate tensor name {tensor:?}")]
    DuplicateTensor {
        /// The name.
        tensor: String,
    },
    /// A tensor's data offset is not a multiple of the alignment.
    #[error(
        "tensor {tensor:?}: data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        /// The tensor.
        tensor: String,
        /// Its offset into the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// A tensor's data does not lie inside the file.
    #[error(
        "tensor {tensor:?}: data at file bytes {start}..{end} lies outside the file ({file_len} bytes)"
    )]
    TensorOutOfBounds {
        /// The tensor.
        tensor: String,
        /// First byte (from the start of the file).
        start: u128,
        /// One past the last byte.
        end: u128,
        /// The file's length.
        file_len: u64,
    },
}

fn version_hint(version: &u32) -> &'static str {
    match *version {
        1 => " (version 1, with 32-bit lengths, predates August 2023: convert the model again)",
        v if matches!(v.swap_bytes(), 2 | 3) => {
            " (this looks like a big-endian GGUF, which is not supported)"
        }
        _ => "",
    }
}

/// The metadata entries of a GGUF file, in file order, with lookup by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GgufMetadata {
    entries: Vec<(String, GgufValue)>,
    index: HashMap<String, usize>,
}

impl GgufMetadata {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &GgufValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Keys in file order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry; `false` (and no change) if the key is already present.
    fn insert(&mut self, key: String, value: GgufValue) -> bool {
        if self.index.contains_key(&key) {
            return false;
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        true
    }
}

/// Everything a GGUF header says, validated against the bytes it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufContent {
    version: u32,
    metadata: GgufMetadata,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl GgufContent {
    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The metadata entries.
    pub fn metadata(&self) -> &GgufMetadata {
        &self.metadata
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The alignment of the data section and of every tensor's data.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Where the data section starts, in bytes from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }
}

/// Parses and validates a whole GGUF file held in `bytes`.
///
/// On success every tensor's [`data_range`](TensorInfo::data_range) lies inside
/// `bytes`, is aligned, and holds exactly the bytes its type and dims need.
pub fn parse(bytes: &[u8]) -> Result<GgufContent, ParseError> {
    let mut cur = Cursor { bytes, pos: 0 };

    let magic = cur.array::<4>().map_err(|e| e.reading("magic"))?;
    if magic != GGUF_MAGIC {
        return Err(ParseError::new(
            0,
            ParseErrorKind::BadMagic { found: magic },
        ));
    }
    let version = cur.u32().map_err(|e| e.reading("version"))?;
    if !matches!(version, 2 | 3) {
        return Err(
            ParseError::new(4, ParseErrorKind::UnsupportedVersion { version }).reading("version"),
        );
    }
    let tensor_count = cur.u64().map_err(|e| e.reading("tensor count"))?;
    let kv_count_at = cur.pos;
    let kv_count = cur.u64().map_err(|e| e.reading("metadata entry count"))?;
    // Tensor infos follow the metadata, so both must fit in what is left.
    let n_kv = cur
        .guard_count(kv_count, MIN_KV_SIZE, kv_count_at)
        .map_err(|e| e.reading("metadata entry count"))?;
    cur.guard_count(tensor_count, MIN_TENSOR_INFO_SIZE, 8)
        .map_err(|e| e.reading("tensor count"))?;

    let mut metadata = GgufMetadata::default();
    metadata.entries.reserve(n_kv.min(PREALLOC_LIMIT));
    let mut alignment_at = 0;
    for i in 0..n_kv {
        let entry_at = cur.pos;
        let key = cur
            .string()
            .map_err(|e| e.reading(format_args!("key of metadata entry #{i}")))?;
        let value = cur
            .value_with_type(0)
            .map_err(|e| e.reading(format_args!("value of metadata key {key:?}")))?;
        if key == ALIGNMENT_KEY {
            alignment_at = entry_at;
        }
        let key = key.to_owned();
        if !metadata.insert(key.clone(), value) {
            return Err(
                ParseError::new(entry_at, ParseErrorKind::DuplicateKey { key })
                    .reading(format_args!("metadata entry #{i}")),
            );
        }
    }

    let alignment = match metadata.get(ALIGNMENT_KEY) {
        None => DEFAULT_ALIGNMENT,
        Some(value) => match value.as_integer() {
            Some(a) if a > 0 && a <= i128::from(u32::MAX) && (a as u64).is_power_of_two() => {
                a as u64
            }
            _ => {
                let found = match value.as_integer() {
                    Some(a) => format!("{a} ({})", value.type_name()),
                    None => format!("a {}", value.type_name()),
                };
                return Err(
                    ParseError::new(alignment_at, ParseErrorKind::BadAlignment { found })
                        .reading(format_args!("metadata key {ALIGNMENT_KEY:?}")),
                );
            }
        },
    };

    let n_tensors = tensor_count as usize; // Guarded above: fits in the input.
    let mut tensors = Vec::with_capacity(n_tensors.min(PREALLOC_LIMIT));
    let mut tensor_index = HashMap::with_capacity(n_tensors.min(PREALLOC_LIMIT));
    // Where each info starts, for errors found once the data section is known.
    let mut info_offsets = Vec::with_capacity(n_tensors.min(PREALLOC_LIMIT));
    for i in 0..n_tensors {
        let info_at = cur.pos;
        let info = cur
            .tensor_info()
            .map_err(|e| e.reading(format_args!("info of tensor #{i}")))?;
        if !info.offset.is_multiple_of(alignment) {
            return Err(ParseError::new(
                info_at,
                ParseErrorKind::MisalignedTensor {
                    tensor: info.name,
                    offset: info.offset,
                    alignment,
                },
            )
            .reading(format_args!("info of tensor #{i}")));
        }
        if tensor_index.contains_key(&info.name) {
            return Err(ParseError::new(
                info_at,
                ParseErrorKind::DuplicateTensor { tensor: info.name },
            )
            .reading(format_args!("info of tensor #{i}")));
        }
        tensor_index.insert(info.name.clone(), i);
        tensors.push(info);
        info_offsets.push(info_at);
    }

    // The data section starts at the next multiple of the alignment. Without
    // tensors it may lie past the end (writers need not pad an empty section).
    let header_end = cur.pos as u64;
    // Cannot overflow for real input sizes; saturate rather than trust that.
    let data_offset = header_end
        .checked_next_multiple_of(alignment)
        .unwrap_or(u64::MAX);
    let file_len = bytes.len() as u64;
    for (i, (info, &info_at)) in tensors.iter_mut().zip(&info_offsets).enumerate() {
        let n_bytes = info.data.end as u64; // Staged by `tensor_info`: the byte count.
        let start = data_offset.checked_add(info.offset);
        let end = start.and_then(|s| s.checked_add(n_bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= file_len => {
                // Both fit in the input's length, hence in usize.
                info.data = start as usize..end as usize;
            }
            _ => {
                let start = u128::from(data_offset) + u128::from(info.offset);
                return Err(ParseError::new(
                    info_at,
                    ParseErrorKind::TensorOutOfBounds {
                        tensor: info.name.clone(),
                        start,
                        end: start + u128::from(n_bytes),
                        file_len,
                    },
                )
                .reading(format_args!("info of tensor #{i}")));
            }
        }
    }

    Ok(GgufContent {
        version,
        metadata,
        tensors,
        tensor_index,
        alignment,
        data_offset,
    })
}

/// Reads little-endian items, every read checked against the bytes left.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], ParseError> {
        let available = self.remaining();
        match usize::try_from(n) {
            Ok(n) if n <= available => {
                let slice = &self.bytes[self.pos..self.pos + n];
                self.pos += n;
                Ok(slice)
            }
            _ => Err(ParseError::new(
                self.pos,
                ParseErrorKind::UnexpectedEof {
                    needed: n,
                    available: available as u64,
                },
            )),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let slice = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, ParseError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, ParseError> {
        self.array().map(u64::from_le_bytes)
    }

    /// Checks that `count` items of at least `min_size` bytes each fit in what is
    /// left, so the caller may loop or reserve `count` without trusting the file.
    /// `count_at` is the offset of the count, for the error.
    fn guard_count(&self, count: u64, min_size: u64, count_at: usize) -> Result<usize, ParseError> {
        let available = self.remaining() as u64;
        match count.checked_mul(min_size) {
            Some(total) if total <= available => Ok(count as usize),
            _ => Err(ParseError::new(
                count_at,
                ParseErrorKind::CountTooLarge {
                    count,
                    min_size,
                    available,
                },
            )),
        }
    }

    /// A `u64` length, then that many UTF-8 bytes.
    fn string(&mut self) -> Result<&'a str, ParseError> {
        let at = self.pos;
        let len = self.u64().map_err(|e| e.reading("string length"))?;
        let bytes = self.take(len).map_err(|e| {
            let mut e = e.reading(format_args!("string of {len} bytes"));
            // Point at the length that promised the bytes.
            e.offset = at as u64;
            e
        })?;
        std::str::from_utf8(bytes)
            .map_err(|_| ParseError::new(at + 8, ParseErrorKind::InvalidUtf8).reading("string"))
    }

    /// A value type id, then a value of that type.
    fn value_with_type(&mut self, depth: usize) -> Result<GgufValue, ParseError> {
        let at = self.pos;
        let id = self.u32().map_err(|e| e.reading("value type"))?;
        let ty = GgufValueType::from_id(id)
            .ok_or_else(|| ParseError::new(at, ParseErrorKind::UnknownValueType { id }))?;
        self.value(ty, depth)
    }

    fn value(&mut self, ty: GgufValueType, depth: usize) -> Result<GgufValue, ParseError> {
        Ok(match ty {
            GgufValueType::U8 => GgufValue::U8(self.u8()?),
            GgufValueType::I8 => GgufValue::I8(i8::from_le_bytes(self.array()?)),
            GgufValueType::U16 => GgufValue::U16(u16::from_le_bytes(self.array()?)),
            GgufValueType::I16 => GgufValue::I16(i16::from_le_bytes(self.array()?)),
            GgufValueType::U32 => GgufValue::U32(self.u32()?),
            GgufValueType::I32 => GgufValue::I32(i32::from_le_bytes(self.array()?)),
            GgufValueType::U64 => GgufValue::U64(self.u64()?),
            GgufValueType::I64 => GgufValue::I64(i64::from_le_bytes(self.array()?)),
            GgufValueType::F32 => GgufValue::F32(f32::from_le_bytes(self.array()?)),
            GgufValueType::F64 => GgufValue::F64(f64::from_le_bytes(self.array()?)),
            GgufValueType::Bool => {
                let at = self.pos;
                GgufValue::Bool(bool_byte(self.u8()?, at)?)
            }
            GgufValueType::String => GgufValue::String(self.string()?.to_owned()),
            GgufValueType::Array => GgufValue::Array(self.gguf_array(depth)?),
        })
    }

    /// An element type, a `u64` count, then the elements.
    fn gguf_array(&mut self, depth: usize) -> Result<GgufArray, ParseError> {
        if depth >= MAX_ARRAY_NESTING {
            return Err(ParseError::new(
                self.pos,
                ParseErrorKind::NestingTooDeep {
                    max: MAX_ARRAY_NESTING,
                },
            ));
        }
        let at = self.pos;
        let id = self.u32().map_err(|e| e.reading("array element type"))?;
        let ty = GgufValueType::from_id(id).ok_or_else(|| {
            ParseError::new(at, ParseErrorKind::UnknownValueType { id })
                .reading("array element type")
        })?;
        let count_at = self.pos;
        let count = self.u64().map_err(|e| e.reading("array length"))?;
        let n = self
            .guard_count(count, ty.min_encoded_size(), count_at)
            .map_err(|e| e.reading(format_args!("length of an array of {ty}")))?;
        // Fixed-size elements: one bounds check for the lot, no per-element errors.
        let fixed = |cur: &mut Self, size: u64| cur.take(n as u64 * size);
        Ok(match ty {
            GgufValueType::U8 => GgufArray::U8(fixed(self, 1)?.to_vec()),
            GgufValueType::I8 => GgufArray::I8(fixed(self, 1)?.iter().map(|&b| b as i8).collect()),
            GgufValueType::U16 => GgufArray::U16(le_values(fixed(self, 2)?, u16::from_le_bytes)),
            GgufValueType::I16 => GgufArray::I16(le_values(fixed(self, 2)?, i16::from_le_bytes)),
            GgufValueType::U32 => GgufArray::U32(le_values(fixed(self, 4)?, u32::from_le_bytes)),
            GgufValueType::I32 => GgufArray::I32(le_values(fixed(self, 4)?, i32::from_le_bytes)),
            GgufValueType::F32 => GgufArray::F32(le_values(fixed(self, 4)?, f32::from_le_bytes)),
            GgufValueType::U64 => GgufArray::U64(le_values(fixed(self, 8)?, u64::from_le_bytes)),
            GgufValueType::I64 => GgufArray::I64(le_values(fixed(self, 8)?, i64::from_le_bytes)),
            GgufValueType::F64 => GgufArray::F64(le_values(fixed(self, 8)?, f64::from_le_bytes)),
            GgufValueType::Bool => {
                let start = self.pos;
                let bytes = fixed(self, 1)?;
                let values = bytes
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| bool_byte(b, start + i))
                    .collect::<Result<_, _>>()?;
                GgufArray::Bool(values)
            }
            GgufValueType::String => {
                let mut values = Vec::with_capacity(n.min(PREALLOC_LIMIT));
                for i in 0..n {
                    let s = self
                        .string()
                        .map_err(|e| e.reading(format_args!("element {i} of {n}")))?;
                    values.push(s.to_owned());
                }
                GgufArray::String(values)
            }
            GgufValueType::Array => {
                let mut values = Vec::with_capacity(n.min(PREALLOC_LIMIT));
                for i in 0..n {
                    let inner = self
                        .gguf_array(depth + 1)
                        .map_err(|e| e.reading(format_args!("element {i} of {n}")))?;
                    values.push(inner);
                }
                GgufArray::Array(values)
            }
        })
    }

    /// One tensor info, checked on its own; `data` holds `0..n_bytes` until the
    /// data section's start is known.
    fn tensor_info(&mut self) -> Result<TensorInfo, ParseError> {
        let name = self.string().map_err(|e| e.reading("name"))?.to_owned();
        let n_dims_at = self.pos;
        let n_dims = self.u32().map_err(|e| e.reading("dim count"))?;
        if n_dims as usize > MAX_DIMS {
            return Err(ParseError::new(
                n_dims_at,
                ParseErrorKind::TooManyDims {
                    tensor: name,
                    n_dims,
                },
            ));
        }
        let dims_at = self.pos;
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(self.u64().map_err(|e| e.reading(format_args!("dim {d}")))?);
        }
        // ggml counts elements in i64; every dim must also index memory (usize).
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .filter(|_| dims.iter().all(|&d| usize::try_from(d).is_ok()));
        let Some(n_elements) = n_elements else {
            return Err(ParseError::new(
                dims_at,
                ParseErrorKind::ElementCountOverflow { tensor: name, dims },
            ));
        };
        let type_at = self.pos;
        let id = self.u32().map_err(|e| e.reading("ggml type"))?;
        let Some(ggml_type) = GgmlType::from_id(id) else {
            return Err(ParseError::new(
                type_at,
                ParseErrorKind::UnknownGgmlType { tensor: name, id },
            ));
        };
        // Blocks never straddle rows, so each row is a whole number of blocks
        // (ggml checks ne[0], not just the total).
        let ne0 = dims.first().copied().unwrap_or(1);
        let block_size = ggml_type.block_size();
        if !ne0.is_multiple_of(block_size as u64) {
            return Err(ParseError::new(
                type_at,
                ParseErrorKind::NotBlockMultiple {
                    tensor: name,
                    ggml_type,
                    ne0,
                    block_size,
                },
            ));
        }
        let n_bytes = ggml_type
            .bytes_for(n_elements)
            .and_then(|n| usize::try_from(n).ok());
        let Some(n_bytes) = n_bytes else {
            return Err(ParseError::new(
                dims_at,
                ParseErrorKind::ElementCountOverflow { tensor: name, dims },
            ));
        };
        let offset = self.u64().map_err(|e| e.reading("data offset"))?;
        Ok(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_elements,
            data: 0..n_bytes,
        })
    }
}

fn bool_byte(value: u8, at: usize) -> Result<bool, ParseError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(ParseError::new(at, ParseErrorKind::InvalidBool { value })),
    }
}

/// Decodes fixed-size little-endian values; `bytes.len()` is a multiple of `N`.
fn le_values<T, const N: usize>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    let (chunks, _) = bytes.as_chunks::<N>();
    chunks.iter().map(|&c| from(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u32, tensors: u64, kvs: u64) -> Vec<u8> {
        let mut bytes = GGUF_MAGIC.to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&tensors.to_le_bytes());
        bytes.extend_from_slice(&kvs.to_le_bytes());
        bytes
    }

    #[test]
    fn an_empty_file_is_valid() {
        for version in [2, 3] {
            let content = parse(&header(version, 0, 0)).unwrap();
            assert_eq!(content.version(), version);
            assert!(content.metadata().is_empty() && content.tensors().is_empty());
            assert_eq!(content.alignment(), DEFAULT_ALIGNMENT);
            // The (empty) data section starts at the next multiple of 32.
            assert_eq!(content.data_offset(), 32);
        }
    }

    #[test]
    fn errors_say_where_and_what() {
        let mut bytes = header(3, 0, 1);
        bytes.extend_from_slice(&100u64.to_le_bytes());
        bytes.extend_from_slice(b"gener");
        let err = parse(&bytes).unwrap_err();
        assert_eq!(err.offset(), 24);
        assert_eq!(
            err.to_string(),
            "at byte 24, reading key of metadata entry #0: string of 100 bytes: \
             the file ends: 100 bytes needed, 5 left"
        );
        let err = parse(&header(3, 0, 1)).unwrap_err();
        assert_eq!(err.offset(), 16);
        assert_eq!(
            err.to_string(),
            "at byte 16, reading metadata entry count: 1 items of at least 13 bytes \
             each cannot fit in the 0 bytes left"
        );
        let err = parse(&header(0x0200_0000, 0, 0)).unwrap_err();
        assert!(err.to_string().contains("big-endian"), "{err}");
    }

    #[test]
    fn counts_are_guarded_before_allocation() {
        let cur = Cursor {
            bytes: &[0; 100],
            pos: 4,
        };
        assert_eq!(cur.guard_count(12, 8, 0).unwrap(), 12);
        assert!(cur.guard_count(13, 8, 0).is_err());
        assert!(cur.guard_count(u64::MAX, 2, 0).is_err());
    }
}
