//! The Hugging Face directory layout, shared by local directories and Hub snapshots.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{ResolvedModel, SourceError};

pub(super) const CONFIG: &str = "config.json";
pub(super) const TOKENIZER: &str = "tokenizer.json";
pub(super) const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
pub(super) const POOLING_CONFIG: &str = "1_Pooling/config.json";
pub(super) const WEIGHTS: &str = "model.safetensors";
pub(super) const WEIGHTS_INDEX: &str = "model.safetensors.index.json";

const WHY_CONFIG: &str = "a Hugging Face model directory needs config.json";
const WHY_WEIGHTS: &str =
    "a Hugging Face model directory needs model.safetensors or model.safetensors.index.json";
const WHY_SHARD: &str = "model.safetensors.index.json names it as a weight shard";

/// Where layout files are looked up: a local directory or a Hub cache snapshot.
pub(super) trait Files {
    /// The reference as written, for errors.
    fn reference(&self) -> &str;
    /// The file if it exists (may download it when the source can).
    fn find(&mut self, name: &str) -> Result<Option<PathBuf>, SourceError>;
    /// The file, or an error explaining that it is missing and why it is needed.
    fn require(&mut self, name: &str, why: &'static str) -> Result<PathBuf, SourceError>;
}

/// Files directly inside a local directory.
pub(super) struct LocalFiles<'a> {
    reference: &'a str,
    dir: &'a Path,
}

impl<'a> LocalFiles<'a> {
    pub(super) fn new(reference: &'a str, dir: &'a Path) -> Self {
        Self { reference, dir }
    }
}

impl Files for LocalFiles<'_> {
    fn reference(&self) -> &str {
        self.reference
    }

    fn find(&mut self, name: &str) -> Result<Option<PathBuf>, SourceError> {
        existing_file(self.reference, &self.dir.join(name))
    }

    fn require(&mut self, name: &str, why: &'static str) -> Result<PathBuf, SourceError> {
        self.find(name)?.ok_or_else(|| SourceError::MissingFile {
            reference: self.reference.to_owned(),
            dir: self.dir.to_path_buf(),
            file: name.to_owned(),
            why,
        })
    }
}

/// `path` if it is a file (following symlinks, as Hub snapshots use them), `None`
/// if it does not exist; other I/O failures are errors.
pub(super) fn existing_file(reference: &str, path: &Path) -> Result<Option<PathBuf>, SourceError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Some(path.to_path_buf())),
        Ok(_) => Ok(None),
        Err(cause) if cause.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(cause) => Err(SourceError::Io {
            reference: reference.to_owned(),
            path: path.to_path_buf(),
            cause,
        }),
    }
}

/// Resolves config, tokenizer files and weights (single file or sharded index).
pub(super) fn safetensors_layout(files: &mut dyn Files) -> Result<ResolvedModel, SourceError> {
    let config = files.require(CONFIG, WHY_CONFIG)?;
    let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
    let tokenizer = files.find(TOKENIZER)?;
    let tokenizer_config = files.find(TOKENIZER_CONFIG)?;
    let pooling_config = files.find(POOLING_CONFIG)?;

    let (weights, weights_index) = if let Some(single) = files.find(WEIGHTS)? {
        (vec![single], None)
    } else if let Some(index) = files.find(WEIGHTS_INDEX)? {
        let mut shards = Vec::new();
        for shard in index_shards(files.reference(), &index)? {
            shards.push(files.require(&shard, WHY_SHARD)?);
        }
        (shards, Some(index))
    } else {
        // Neither exists: `require` produces the source-specific "missing" error
        // (for a Hub id, the one that says how to fetch it).
        (vec![files.require(WEIGHTS, WHY_WEIGHTS)?], None)
    };

    Ok(ResolvedModel::SafetensorsDir {
        dir,
        config,
        tokenizer,
        tokenizer_config,
        pooling_config,
        weights,
        weights_index,
    })
}

/// The distinct shard files named in an index's `weight_map`, sorted.
fn index_shards(reference: &str, index: &Path) -> Result<Vec<String>, SourceError> {
    let bad = |reason: String| SourceError::BadIndex {
        reference: reference.to_owned(),
        path: index.to_path_buf(),
        reason,
    };
    let text = fs::read_to_string(index).map_err(|cause| SourceError::Io {
        reference: reference.to_owned(),
        path: index.to_path_buf(),
        cause,
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut shards = BTreeSet::new();
    for (tensor, shard) in map {
        let shard = shard
            .as_str()
            .ok_or_else(|| bad(format!("tensor `{tensor}` maps to a non-string")))?;
        // The index is data from a download: never let it point outside the model dir.
        if shard.is_empty()
            || shard.starts_with('/')
            || shard.contains('\\')
            || shard.split('/').any(|p| p.is_empty() || p == "..")
        {
            return Err(bad(format!(
                "tensor `{tensor}` maps to `{shard}`, which is not a file name inside the model \
                 directory"
            )));
        }
        shards.insert(shard.to_owned());
    }
    if shards.is_empty() {
        return Err(bad("`weight_map` is empty".into()));
    }
    Ok(shards.into_iter().collect())
}

/// Checks that `path` is a readable file starting with the GGUF magic.
pub(super) fn check_gguf(reference: &str, path: &Path) -> Result<(), SourceError> {
    let io_error = |cause: io::Error| {
        if cause.kind() == io::ErrorKind::NotFound {
            SourceError::NoSuchPath {
                reference: reference.to_owned(),
                path: path.to_path_buf(),
                cause,
            }
        } else {
            SourceError::Io {
                reference: reference.to_owned(),
                path: path.to_path_buf(),
                cause,
            }
        }
    };
    let mut magic = Vec::with_capacity(4);
    fs::File::open(path)
        .map_err(io_error)?
        .take(4)
        .read_to_end(&mut magic)
        .map_err(io_error)?;
    if magic == b"GGUF" {
        Ok(())
    } else {
        Err(SourceError::NotGguf {
            reference: reference.to_owned(),
            path: path.to_path_buf(),
            found: if magic.is_empty() {
                "nothing (the file is empty)".to_owned()
            } else {
                format!("`{}`", magic.escape_ascii())
            },
        })
    }
}
