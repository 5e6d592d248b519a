//! HF safetensors through mmap: the file is mapped, never copied whole; each
//! tensor is converted once from its stored dtype into the working dtype (f32).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor, TensorData};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors, tensor::Metadata};

use crate::storage::Storage;
use mdsa_engine::ModelError;

/// One or more safetensors files (shards) mapped into memory, or one file's
/// bytes already there.
pub struct SafetensorsWeights {
    shards: Vec<Shard>,
    /// Tensor name → shard index.
    index: HashMap<String, usize>,
}

struct Shard {
    path: PathBuf,
    storage: Storage,
    header_len: usize,
    metadata: Metadata,
}

impl std::fmt::Debug for SafetensorsWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsWeights")
            .field(
                "files",
                &self.shards.iter().map(|s| &s.path).collect::<Vec<_>>(),
            )
            .field("tensors", &self.index.len())
            .finish()
    }
}

impl SafetensorsWeights {
    /// Maps and validates every file (header, offsets, sizes) before any tensor is read.
    pub fn open(paths: &[PathBuf]) -> Result<Self, ModelError> {
        let shards = paths
            .iter()
            .map(|path| Shard::open(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_shards(shards))
    }

    /// Validates one safetensors file already in memory, as [`open`](Self::open)
    /// does a mapped one; `path` only names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: impl Into<PathBuf>) -> Result<Self, ModelError> {
        let shard = Shard::from_storage(path.into(), Storage::Owned(bytes))?;
        Ok(Self::from_shards(vec![shard]))
    }

    fn from_shards(shards: Vec<Shard>) -> Self {
        let mut index = HashMap::new();
        for (i, shard) in shards.iter().enumerate() {
            for name in shard.metadata.tensors().keys() {
                index.insert(name.clone(), i);
            }
        }
        Self { shards, index }
    }

    /// The file the weights came from (the first shard).
    pub fn path(&self) -> &Path {
        self.shards
            .first()
            .map_or(Path::new(""), |s| s.path.as_path())
    }

    /// Every tensor name, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The stored shape of a tensor.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let shard = &self.shards[*self.index.get(name)?];
        shard.metadata.info(name).map(|info| info.shape.clone())
    }

    /// A tensor as stored: its dtype, shape and little-endian bytes.
    pub fn raw(&self, name: &str) -> Option<(Dtype, &[usize], &[u8])> {
        let shard = &self.shards[*self.index.get(name)?];
        let info = shard.metadata.info(name)?;
        let (start, end) = info.data_offsets;
        let base = 8 + shard.header_len;
        // Offsets were validated against the file length when it was opened.
        let bytes = &shard.storage.bytes()[base + start..base + end];
        Some((info.dtype, &info.shape, bytes))
    }

    /// Bytes of all tensors as stored.
    pub fn stored_bytes(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| (s.storage.bytes().len() - 8 - s.header_len) as u64)
            .sum()
    }

    /// Reads a tensor as f32 values after checking its shape.
    pub fn read_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, ModelError> {
        let Some(&shard_index) = self.index.get(name) else {
            return Err(self.missing(name));
        };
        let shard = &self.shards[shard_index];
        let info = shard
            .metadata
            .info(name)
            .ok_or_else(|| self.missing(name))?;
        if info.shape != expected {
            return Err(ModelError::Shape {
                path: shard.path.clone(),
                name: name.to_string(),
                expected: expected.to_vec(),
                found: info.shape.clone(),
            });
        }
        let (start, end) = info.data_offsets;
        let base = 8 + shard.header_len;
        // Offsets were validated against the file length when it was opened.
        let bytes = &shard.storage.bytes()[base + start..base + end];
        let values = match info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(ModelError::DType {
                    path: shard.path.clone(),
                    name: name.to_string(),
                    found: format!("{other:?}"),
                });
            }
        };
        Ok(values)
    }

    /// Reads a tensor onto `device` with the given shape.
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>, ModelError> {
        let values = self.read_f32(name, &shape)?;
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }

    /// The weight and bias of the layer norm at `prefix`: `{prefix}.weight`
    /// and `{prefix}.bias`, or the older `gamma`/`beta` names.
    pub fn layer_norm_values(
        &self,
        prefix: &str,
        d_model: usize,
    ) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
        let (gamma, beta) = if self.contains(&format!("{prefix}.gamma")) {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        Ok((
            self.read_f32(&format!("{prefix}.{gamma}"), &[d_model])?,
            self.read_f32(&format!("{prefix}.{beta}"), &[d_model])?,
        ))
    }

    /// Builds a layer norm from [`SafetensorsWeights::layer_norm_values`].
    pub fn layer_norm(
        &self,
        prefix: &str,
        d_model: usize,
        epsilon: f64,
        device: &Device,
    ) -> Result<LayerNorm, ModelError> {
        let (gamma, beta) = self.layer_norm_values(prefix, d_model)?;
        let mut norm = LayerNormConfig::new(d_model)
            .with_epsilon(epsilon)
            .init(device);
        norm.gamma =
            Param::from_tensor(Tensor::from_data(TensorData::new(gamma, [d_model]), device));
        norm.beta = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(beta, [d_model]),
            device,
        )));
        Ok(norm)
    }

    fn missing(&self, name: &str) -> ModelError {
        // Point at the likely cause: a prefix such as "bert." present or absent.
        let tail = name.rsplit('.').take(3).collect::<Vec<_>>();
        let similar = self.index.keys().find(|candidate| {
            candidate.ends_with(name) || name.ends_with(candidate.as_str()) || {
                let c = candidate.rsplit('.').take(3).collect::<Vec<_>>();
                c == tail
            }
        });
        ModelError::MissingTensor {
            path: self.path().to_path_buf(),
            name: name.to_string(),
            available: self.index.len(),
            hint: similar.map_or_else(String::new, |s| format!(", e.g. {s:?}")),
        }
    }
}

impl Shard {
    fn open(path: &Path) -> Result<Self, ModelError> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the map is read-only and private to this process. A file changed
        // on disk while mapped can change what we read, which is the same risk every
        // mmap-based model loader accepts; the header is validated first.
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        Self::from_storage(path.to_path_buf(), Storage::Mapped(map))
    }

    /// Validates the header against the bytes: every tensor's offsets, dtype and
    /// shape agree, and the data ends where the file does.
    fn from_storage(path: PathBuf, storage: Storage) -> Result<Self, ModelError> {
        if let Err(reason) = check_data_ends(storage.bytes()) {
            return Err(ModelError::Safetensors { path, reason });
        }
        let (header_len, metadata) = match SafeTensors::read_metadata(storage.bytes()) {
            Ok(header) => header,
            Err(e) => {
                return Err(ModelError::Safetensors {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        Ok(Self {
            path,
            storage,
            header_len,
            metadata,
        })
    }
}

/// The longest header `SafeTensors::read_metadata` reads (it refuses longer).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Refuses a tensor whose data would end past the end of the file, before
/// `SafeTensors::read_metadata` sees it: safetensors 0.8 adds the last data
/// offset to the header length unchecked, so offsets summing to nearly
/// `usize::MAX` overflow there (a panic where overflow checks are on, as in
/// debug builds; safetensors/safetensors#808 proposes the fix upstream).
/// Anything else wrong is left to `read_metadata` to report.
fn check_data_ends(bytes: &[u8]) -> Result<(), String> {
    let Some((len, rest)) = bytes.split_first_chunk::<8>() else {
        return Ok(());
    };
    let header_len = u64::from_le_bytes(*len);
    let Some(header) = usize::try_from(header_len)
        .ok()
        .filter(|_| header_len <= MAX_HEADER_BYTES)
        .and_then(|n| rest.get(..n))
    else {
        return Ok(());
    };
    let Ok(entries) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(header)
    else {
        return Ok(());
    };
    let data_len = rest.len() - header.len();
    for (name, info) in &entries {
        let end = info
            .get("data_offsets")
            .and_then(|offsets| offsets.get(1))
            .and_then(serde_json::Value::as_u64);
        if let Some(end) = end
            && end > data_len as u64
        {
            return Err(format!(
                "tensor {name:?} ends at byte {end} of the data, but the file holds {data_len} bytes of data"
            ));
        }
    }
    Ok(())
}
