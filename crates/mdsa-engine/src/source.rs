//! Where a model's files come from.
//!
//! A [`ModelRef`] is what a user writes in a config file or on the command line:
//!
//! - a local directory in Hugging Face layout (`config.json`, `tokenizer.json`,
//!   `model.safetensors` or `model.safetensors.index.json` with its shards),
//! - a local `.gguf` file,
//! - a Hugging Face Hub id: `org/name`, `org/name@revision`, `org/name:file.gguf`,
//!   `org/name@revision:file.gguf`, or `org/name:Q4_K_M` (the repo's GGUF file
//!   of that quantization).
//!
//! A GGUF repo named without a file resolves to its only `.gguf` file, else to
//! the one whose name carries the first quantization of [`GGUF_PREFERENCE`]
//! (`Q4_K_M`, then `Q4_0`, ...) that exactly one file has.
//!
//! [`ModelRef::resolve`] turns it into files on disk ([`ResolvedModel`]). Hub ids
//! are looked up in the standard Hugging Face cache through hf-hub's cache API
//! (`models--ORG--NAME/refs/REVISION` naming a snapshot in
//! `models--ORG--NAME/snapshots/COMMIT/`), so files fetched by Python tools, by
//! hf-hub or by `cargo xtask fetch-models` are all found the same way.
//!
//! The cache directory is, in order: [`ResolveOptions::cache_dir`], `HF_HUB_CACHE`,
//! `$HF_HOME/hub`, `~/.cache/huggingface/hub` (see [`default_cache_dir`]).
//! `xtask/src/fetch_models.rs` writes with the same rule; keep the two in step.
//!
//! A file missing from the cache is downloaded from the Hub ([`fetch`]:
//! `HF_ENDPOINT`, `HF_TOKEN` or the token file, resumable, verified, written
//! atomically) unless downloads are off: `HF_HUB_OFFLINE=1` or
//! [`ResolveOptions::allow_download`] `false`. Offline, a missing file is an
//! error naming it, and nothing touches the network.

mod error;
pub mod fetch;
mod hub;
mod layout;

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use error::{DownloadBlocked, DownloadFailed, NotCached, SourceError};
pub use fetch::{DownloadProgress, HubClient, HubToken};
pub use hub::GGUF_PREFERENCE;

/// A model as the user names it: a local directory, a local GGUF file or a Hub id.
///
/// Parses from and displays as the same string (see the module docs), and
/// (de)serializes as that string. Parsing checks the filesystem: a string naming
/// an existing path is local, even if it would also be a valid Hub id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ModelRef {
    /// A directory in Hugging Face layout: `config.json`, `tokenizer.json`, `*.safetensors`.
    LocalDir(PathBuf),
    /// A single `.gguf` file.
    LocalGguf(PathBuf),
    /// A Hugging Face Hub repository, looked up in the local cache.
    Hub {
        /// `org/name`.
        repo: String,
        /// A branch, tag or commit hash; `main` when `None`.
        revision: Option<String>,
        /// A `.gguf` file inside the repo, or a quantization (`Q4_K_M`) choosing
        /// one; `None` for a Hugging Face layout or a GGUF repo's preferred file.
        file: Option<String>,
    },
}

/// How [`ModelRef::resolve`] finds Hub files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveOptions {
    /// The Hugging Face hub cache directory (the one holding `models--*`); `None`
    /// uses [`default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// Whether a file missing from the cache may be downloaded.
    pub allow_download: bool,
    /// The Hub to download from; `None`: `HF_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// The token sent to the Hub; `None`: `HF_TOKEN`, else the token file.
    pub token: Option<HubToken>,
}

impl Default for ResolveOptions {
    /// No cache override; downloads allowed unless `HF_HUB_OFFLINE` is `1`/`true`.
    fn default() -> Self {
        Self {
            cache_dir: None,
            allow_download: !hub_offline(),
            endpoint: None,
            token: None,
        }
    }
}

impl ResolveOptions {
    /// Options that never touch the network, whatever the environment says.
    pub fn offline() -> Self {
        Self {
            allow_download: false,
            ..Self::default()
        }
    }

    /// The Hub client these options download with (endpoint and token filled
    /// in from the environment where unset).
    pub fn client(&self) -> HubClient {
        HubClient::new(
            self.endpoint
                .clone()
                .unwrap_or_else(fetch::endpoint_from_env),
            self.token.clone().or_else(HubToken::from_env),
        )
    }

    /// These options with `cache_dir` set.
    #[must_use]
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// The cache directory these options resolve Hub ids in, if one can be found.
    pub fn effective_cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir.clone().or_else(default_cache_dir)
    }
}

/// The files a model reference resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolvedModel {
    /// A Hugging Face layout: config, optional tokenizer files, safetensors weights.
    #[non_exhaustive]
    SafetensorsDir {
        /// The directory holding the files (for a Hub id, the snapshot directory).
        dir: PathBuf,
        /// `config.json`.
        config: PathBuf,
        /// `tokenizer.json`, when present; the caller decides whether it is required.
        tokenizer: Option<PathBuf>,
        /// `tokenizer_config.json`, when present.
        tokenizer_config: Option<PathBuf>,
        /// `1_Pooling/config.json` (sentence-transformers pooling), when present.
        pooling_config: Option<PathBuf>,
        /// The weight files: `model.safetensors`, or the shards an index names, sorted.
        weights: Vec<PathBuf>,
        /// `model.safetensors.index.json`, when the weights are sharded.
        weights_index: Option<PathBuf>,
    },
    /// A single GGUF file (weights, tokenizer and metadata in one).
    Gguf {
        /// The `.gguf` file.
        path: PathBuf,
    },
}

/// The Hugging Face hub cache directory from the environment: `HF_HUB_CACHE`, else
/// `$HF_HOME/hub`, else `~/.cache/huggingface/hub`; `None` when none applies.
///
/// Without `HF_HUB_CACHE` this is exactly hf-hub 0.4.3's `Cache::from_env()`
/// (which does not read `HF_HUB_CACHE`; Python's `huggingface_hub` does, so we do
/// too). Empty variables count as unset. `cargo xtask fetch-models` uses the same
/// rule.
pub fn default_cache_dir() -> Option<PathBuf> {
    cache_dir_from(
        std::env::var_os("HF_HUB_CACHE"),
        std::env::var_os("HF_HOME"),
        dirs::home_dir(),
    )
}

/// Whether `HF_HUB_OFFLINE` asks for no network access (`1`, `true`, `yes`, `on`).
pub fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| is_truthy(&v))
}

fn cache_dir_from(
    hub_cache: Option<OsString>,
    hf_home: Option<OsString>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    set(hub_cache)
        .or_else(|| set(hf_home).map(|h| h.join("hub")))
        .or_else(|| home.map(|h| h.join(".cache").join("huggingface").join("hub")))
}

fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

impl ModelRef {
    /// Finds the model's files: on disk for local references, in the Hugging Face
    /// cache for Hub ids (downloading missing ones when `opts.allow_download`).
    pub fn resolve(&self, opts: &ResolveOptions) -> Result<ResolvedModel, SourceError> {
        self.resolve_with_progress(opts, &mut |_| {})
    }

    /// [`Self::resolve`], telling `progress` how each download advances.
    pub fn resolve_with_progress(
        &self,
        opts: &ResolveOptions,
        progress: &mut dyn FnMut(DownloadProgress<'_>),
    ) -> Result<ResolvedModel, SourceError> {
        let reference = self.to_string();
        match self {
            Self::LocalDir(dir) => {
                if let Err(cause) = fs::metadata(dir) {
                    return Err(SourceError::NoSuchPath {
                        reference,
                        path: dir.clone(),
                        cause,
                    });
                }
                layout::safetensors_layout(&mut layout::LocalFiles::new(&reference, dir))
            }
            Self::LocalGguf(path) => {
                layout::check_gguf(&reference, path)?;
                Ok(ResolvedModel::Gguf { path: path.clone() })
            }
            Self::Hub {
                repo,
                revision,
                file,
            } => hub::resolve(
                &reference,
                repo,
                revision.as_deref(),
                file.as_deref(),
                opts,
                progress,
            ),
        }
    }

    /// Whether this reference names a Hub repository (and so needs the cache).
    pub fn is_hub(&self) -> bool {
        matches!(self, Self::Hub { .. })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LocalDir(path) | Self::LocalGguf(path) => write!(f, "{}", path.display()),
            Self::Hub {
                repo,
                revision,
                file,
            } => {
                f.write_str(repo)?;
                if let Some(revision) = revision {
                    write!(f, "@{revision}")?;
                }
                if let Some(file) = file {
                    write!(f, ":{file}")?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for ModelRef {
    type Err = SourceError;

    fn from_str(text: &str) -> Result<Self, SourceError> {
        if text.trim().is_empty() {
            return Err(SourceError::Empty);
        }
        let path = expand_tilde(text);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => return Ok(Self::LocalDir(path)),
            Ok(_) if has_gguf_extension(&path) => return Ok(Self::LocalGguf(path)),
            Ok(_) => {
                return Err(SourceError::UnsupportedFile {
                    reference: text.to_owned(),
                    path,
                });
            }
            // A path-like string is never reinterpreted as a Hub id: the user meant a file.
            Err(cause) if looks_like_path(text) => {
                return Err(SourceError::NoSuchPath {
                    reference: text.to_owned(),
                    path,
                    cause,
                });
            }
            Err(_) => {}
        }
        let (repo, revision, file) = parse_hub_id(text).map_err(|reason| SourceError::Invalid {
            reference: text.to_owned(),
            reason,
        })?;
        Ok(Self::Hub {
            repo: repo.to_owned(),
            revision: revision.map(str::to_owned),
            file: file.map(str::to_owned),
        })
    }
}

impl serde::Serialize for ModelRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::LocalDir(path) | Self::LocalGguf(path) if path.to_str().is_none() => {
                Err(serde::ser::Error::custom(format!(
                    "model path {} is not valid UTF-8 and cannot be written as a string",
                    path.display()
                )))
            }
            _ => serializer.collect_str(self),
        }
    }
}

impl<'de> serde::Deserialize<'de> for ModelRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `~` and `~/rest` become the home directory; anything else is taken literally.
fn expand_tilde(text: &str) -> PathBuf {
    let rest = match text.strip_prefix('~') {
        Some("") => Some(""),
        Some(rest) => rest.strip_prefix('/'),
        None => None,
    };
    match (rest, dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(text),
    }
}

fn looks_like_path(text: &str) -> bool {
    text.starts_with(['.', '/', '~']) || text.contains('\\')
}

fn has_gguf_extension(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("gguf"))
}

/// Splits `org/name[@revision][:file]`, checking each part; the error is the reason
/// shown to the user.
fn parse_hub_id(text: &str) -> Result<(&str, Option<&str>, Option<&str>), String> {
    let (head, file) = match text.split_once(':') {
        Some((head, file)) => (head, Some(file)),
        None => (text, None),
    };
    let (repo, revision) = match head.split_once('@') {
        Some((repo, revision)) => (repo, Some(revision)),
        None => (head, None),
    };
    check_repo_id(repo)?;
    if let Some(revision) = revision {
        check_revision(revision)?;
    }
    if let Some(file) = file {
        check_file(file)?;
    }
    Ok((repo, revision, file))
}

fn check_repo_id(repo: &str) -> Result<(), String> {
    let slashes = repo.matches('/').count();
    if slashes != 1 {
        return Err(format!(
            "`{repo}` has {slashes} `/`; a Hub id has exactly one, between organisation and name"
        ));
    }
    let (org, name) = repo.split_once('/').unwrap_or_default();
    if org.is_empty() {
        return Err("the organisation before `/` is empty".into());
    }
    if name.is_empty() {
        return Err("the name after `/` is empty".into());
    }
    if repo.contains("..") {
        return Err("`..` is not allowed in a Hub id".into());
    }
    if let Some(bad) = repo
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
    {
        return Err(format!(
            "character {bad:?} is not allowed in a Hub id (use A-Z a-z 0-9 . _ -)"
        ));
    }
    Ok(())
}

fn check_revision(revision: &str) -> Result<(), String> {
    if revision.is_empty() {
        return Err("the revision after `@` is empty".into());
    }
    if revision.contains("..") || revision.starts_with('/') || revision.ends_with('/') {
        return Err(format!(
            "revision `{revision}` must not contain `..` or start or end with `/`"
        ));
    }
    if let Some(bad) = revision
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
    {
        return Err(format!(
            "character {bad:?} is not allowed in revision `{revision}` (use A-Z a-z 0-9 . _ - /)"
        ));
    }
    Ok(())
}

fn check_file(file: &str) -> Result<(), String> {
    if file.is_empty() {
        return Err("the file name after `:` is empty".into());
    }
    // `:Q4_K_M`: a quantization to pick the repo's GGUF file by.
    let is_quant = file.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !is_quant && !has_gguf_extension(Path::new(file)) {
        return Err(format!(
            "the part after `:` must be a .gguf file or a quantization such as Q4_K_M, \
             found `{file}` (omit `:FILE` for a Hugging Face layout)"
        ));
    }
    if file.split('/').any(|part| part.is_empty() || part == "..") {
        return Err(format!(
            "file `{file}` must be a relative path inside the repo (no empty parts, no `..`)"
        ));
    }
    if let Some(bad) = file
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '/')))
    {
        return Err(format!(
            "character {bad:?} is not allowed in file `{file}` (use A-Z a-z 0-9 . _ - + /)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_rule_prefers_hub_cache_then_hf_home_then_home() {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(
            cache_dir_from(Some("/c".into()), Some("/h".into()), home.clone()),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            cache_dir_from(None, Some("/h".into()), home.clone()),
            Some(PathBuf::from("/h/hub"))
        );
        assert_eq!(
            cache_dir_from(Some("".into()), Some("".into()), home),
            Some(PathBuf::from("/home/u/.cache/huggingface/hub"))
        );
        assert_eq!(cache_dir_from(None, None, None), None);
    }

    #[test]
    fn errors_stay_small() {
        // Callers wrap this in their own errors; clippy's result_large_err limit is 128.
        assert!(
            size_of::<SourceError>() <= 104,
            "{}",
            size_of::<SourceError>()
        );
    }

    #[test]
    fn offline_values() {
        for yes in ["1", "true", "TRUE", "yes", "on", " 1 "] {
            assert!(is_truthy(yes), "{yes}");
        }
        for no in ["", "0", "false", "no", "off", "maybe"] {
            assert!(!is_truthy(no), "{no}");
        }
    }

    #[test]
    fn hub_ids_round_trip_through_display() {
        for text in [
            "org/name",
            "org/name@v1.0",
            "org/name@refs/pr/1",
            "org/name:sub/file.Q4_1.gguf",
            "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF@abc123:qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ] {
            let parsed: ModelRef = text.parse().unwrap();
            assert!(parsed.is_hub());
            assert_eq!(parsed.to_string(), text);
            assert_eq!(parsed.to_string().parse::<ModelRef>().unwrap(), parsed);
        }
    }

    #[test]
    fn file_part_rules() {
        assert!(check_file("a.gguf").is_ok());
        assert!(check_file("dir/a.GGUF").is_ok());
        assert!(check_file("a.bin").unwrap_err().contains(".gguf"));
        assert!(check_file("Q4_K_M").is_ok());
        assert!(check_file("../a.gguf").unwrap_err().contains(".."));
        assert!(check_file("/a.gguf").is_err());
        assert!(check_file("a b.gguf").is_err());
    }

    #[test]
    fn tilde_expands_only_alone_or_before_slash() {
        if let Some(home) = dirs::home_dir() {
            assert_eq!(expand_tilde("~"), home);
            assert_eq!(expand_tilde("~/x.gguf"), home.join("x.gguf"));
        }
        assert_eq!(expand_tilde("~other/x"), PathBuf::from("~other/x"));
        assert_eq!(expand_tilde("org/name"), PathBuf::from("org/name"));
    }
}
