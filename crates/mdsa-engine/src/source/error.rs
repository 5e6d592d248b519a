//! Errors from parsing and resolving model references.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What a valid reference looks like, repeated in every parse error.
const EXPECTED: &str = "a local model directory (config.json, tokenizer.json, *.safetensors), \
     a local .gguf file, or a Hugging Face Hub id such as `org/name`, `org/name@revision`, \
     `org/name:file.gguf`, `org/name@revision:file.gguf` or `org/name:Q4_K_M`";

/// Why a file missing from the cache could not be downloaded instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownloadBlocked {
    /// `HF_HUB_OFFLINE` is set to `1`/`true`.
    Offline,
    /// Downloads are turned off: `offline: true` in the system config, `--offline`,
    /// or `ResolveOptions::allow_download == false`.
    Disabled,
}

impl fmt::Display for DownloadBlocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Offline => "offline (HF_HUB_OFFLINE is set; unset it to download)",
            Self::Disabled => {
                "offline (downloads are turned off: `offline: true` in the config, \
                 `--offline`, or allow_download = false)"
            }
        })
    }
}

/// Everything that can go wrong turning a model reference into files on disk.
///
/// Each message names the reference as the user wrote it, the file or directory
/// involved, and why it is unusable, so the crate's top-level error can wrap it
/// without adding context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The reference string was empty or only whitespace.
    #[error("empty model reference: expected {EXPECTED}")]
    Empty,

    /// The reference looks like a path (or names a path we could not stat) but no
    /// such file or directory exists.
    #[error(
        "model reference `{reference}`: no such file or directory: {} ({cause}); \
         expected an existing model directory or .gguf file",
        path.display()
    )]
    NoSuchPath {
        /// The reference as written.
        reference: String,
        /// The path that was looked up (after `~` expansion).
        path: PathBuf,
        /// What the operating system said.
        cause: io::Error,
    },

    /// The path exists but is a file that is not a `.gguf`.
    #[error(
        "model reference `{reference}`: {} is a file but not a .gguf file; expected a \
         model directory (config.json, tokenizer.json, *.safetensors) or a .gguf file",
        path.display()
    )]
    UnsupportedFile {
        /// The reference as written.
        reference: String,
        /// The file found.
        path: PathBuf,
    },

    /// Not an existing path and not a valid Hub id.
    #[error(
        "model reference `{reference}` is neither an existing path nor a valid Hugging Face \
         Hub id ({reason}); expected {EXPECTED}"
    )]
    Invalid {
        /// The reference as written.
        reference: String,
        /// Which rule of the Hub id grammar it broke.
        reason: String,
    },

    /// A local model directory lacks a file the layout needs.
    #[error("model `{reference}`: {} has no {file}: {why}", dir.display())]
    MissingFile {
        /// The reference as written.
        reference: String,
        /// The model directory.
        dir: PathBuf,
        /// The file (or alternatives) that is missing.
        file: String,
        /// Why the file is needed.
        why: &'static str,
    },

    /// A file or directory exists but could not be read.
    #[error("model `{reference}`: cannot read {}: {cause}", path.display())]
    Io {
        /// The reference as written.
        reference: String,
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        cause: io::Error,
    },

    /// `model.safetensors.index.json` is malformed or names unusable shards.
    #[error("model `{reference}`: {} is not a usable safetensors index: {reason}", path.display())]
    BadIndex {
        /// The reference as written.
        reference: String,
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A file that should be GGUF does not start with the GGUF magic.
    #[error(
        "model `{reference}`: {} is not a GGUF file (it starts with {found}, expected the \
         magic bytes `GGUF`)",
        path.display()
    )]
    NotGguf {
        /// The reference as written.
        reference: String,
        /// The file.
        path: PathBuf,
        /// The first bytes found, escaped.
        found: String,
    },

    /// A Hub file is not in the local cache and cannot be downloaded.
    #[error("{0}")]
    NotCached(Box<NotCached>),

    /// A Hub snapshot (or repo) holds several `.gguf` files and no `config.json`.
    #[error(
        "model `{reference}`: {location} holds several .gguf files ({}) and no config.json; \
         none is the single file of a preferred quantization; name one as `{repo}:FILE.gguf` \
         or `{repo}:QUANT` (such as `{repo}:Q4_K_M`)",
        candidates.join(", ")
    )]
    AmbiguousGguf {
        /// The reference as written.
        reference: String,
        /// `org/name`.
        repo: String,
        /// The snapshot directory or remote repo that was listed.
        location: String,
        /// The `.gguf` files found.
        candidates: Vec<String>,
    },

    /// A remote Hub repo holds neither a Hugging Face layout nor a GGUF file.
    #[error(
        "model `{reference}`: {location} holds neither config.json (a Hugging Face model) \
         nor a .gguf file"
    )]
    NoModelFiles {
        /// The reference as written.
        reference: String,
        /// The remote repo that was listed.
        location: String,
    },

    /// No Hugging Face cache directory could be determined.
    #[error(
        "model `{reference}`: cannot locate the Hugging Face cache: HF_HUB_CACHE and HF_HOME \
         are unset and the home directory is unknown; set HF_HUB_CACHE or pass a cache \
         directory"
    )]
    NoCacheDir {
        /// The reference as written.
        reference: String,
    },

    /// Downloading from the Hub failed.
    #[error("{0}")]
    Download(Box<DownloadFailed>),
}

/// The details of [`SourceError::NotCached`] (boxed to keep `Result`s small).
#[derive(Debug, thiserror::Error)]
#[error(
    "model `{reference}`: {file} of Hub repo {repo} (revision {revision}) is not in the \
     Hugging Face cache at {} (looked for {}) and cannot be downloaded: {blocked}. \
     Fix: go online once (`mdsa pull {reference}`), or copy the model into that cache",
    cache_dir.display(),
    looked_for.display()
)]
#[non_exhaustive]
pub struct NotCached {
    /// The reference as written.
    pub reference: String,
    /// `org/name`.
    pub repo: String,
    /// The revision looked up (`main` when none was given).
    pub revision: String,
    /// The file within the repo.
    pub file: String,
    /// The Hugging Face hub cache directory used.
    pub cache_dir: PathBuf,
    /// The exact path (or missing `refs/` file) that was looked for.
    pub looked_for: PathBuf,
    /// Why downloading was not an option.
    pub blocked: DownloadBlocked,
}

/// The details of [`SourceError::Download`] (boxed to keep `Result`s small).
#[derive(Debug, thiserror::Error)]
#[error(
    "model `{reference}`: downloading {file} of Hub repo {repo} (revision {revision}) into {} \
     failed: {message}",
    cache_dir.display()
)]
#[non_exhaustive]
pub struct DownloadFailed {
    /// The reference as written.
    pub reference: String,
    /// `org/name`.
    pub repo: String,
    /// The revision requested.
    pub revision: String,
    /// The file, or `the file list` for a repo listing.
    pub file: String,
    /// The cache directory downloads go to.
    pub cache_dir: PathBuf,
    /// What went wrong, as text (see [`super::fetch::FetchError`]).
    pub message: String,
}
