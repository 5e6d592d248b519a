//! Hub ids resolved through hf-hub's cache API (and its download API with the
//! `download` feature).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hf_hub::{Cache, CacheRepo, Repo, RepoType};

#[cfg(feature = "download")]
use super::DownloadFailed;
use super::layout::{self, CONFIG, Files};
use super::{DownloadBlocked, NotCached, ResolveOptions, ResolvedModel, SourceError, hub_offline};

/// Resolves `repo[@revision][:file]` from the cache, downloading when allowed.
pub(super) fn resolve(
    reference: &str,
    repo: &str,
    revision: Option<&str>,
    file: Option<&str>,
    opts: &ResolveOptions,
) -> Result<ResolvedModel, SourceError> {
    let cache_dir = opts
        .effective_cache_dir()
        .ok_or_else(|| SourceError::NoCacheDir {
            reference: reference.to_owned(),
        })?;
    let mut hub = HubFiles::new(reference, repo, revision.unwrap_or("main"), cache_dir, opts);

    if let Some(file) = file {
        let path = hub.require(file, "")?;
        layout::check_gguf(reference, &path)?;
        return Ok(ResolvedModel::Gguf { path });
    }
    if hub.cached(CONFIG)?.is_some() {
        return layout::safetensors_layout(&mut hub);
    }
    // No config.json in the cache: a snapshot holding exactly one GGUF is a GGUF repo.
    if let Some(snapshot) = hub.snapshot()? {
        let ggufs = gguf_files_in(reference, &snapshot)?;
        match ggufs.as_slice() {
            [] => {}
            [one] => {
                let path = snapshot.join(one);
                layout::check_gguf(reference, &path)?;
                return Ok(ResolvedModel::Gguf { path });
            }
            _ => {
                return Err(SourceError::AmbiguousGguf {
                    reference: reference.to_owned(),
                    repo: repo.to_owned(),
                    location: format!("snapshot {}", snapshot.display()),
                    candidates: ggufs,
                });
            }
        }
    }
    if hub.blocked.is_none() {
        return hub.resolve_remote();
    }
    // Offline and nothing usable cached: report the file a Hugging Face layout needs.
    Err(hub.not_cached(CONFIG))
}

/// The `.gguf` files at the top of a snapshot directory, sorted.
fn gguf_files_in(reference: &str, snapshot: &Path) -> Result<Vec<String>, SourceError> {
    let io_error = |cause| SourceError::Io {
        reference: reference.to_owned(),
        path: snapshot.to_path_buf(),
        cause,
    };
    let mut found = Vec::new();
    for entry in fs::read_dir(snapshot).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let path = entry.path();
        if super::has_gguf_extension(&path)
            && path.is_file()
            && let Some(name) = entry.file_name().to_str()
        {
            found.push(name.to_owned());
        }
    }
    found.sort();
    Ok(found)
}

/// One Hub repo at one revision, seen through the local cache.
struct HubFiles<'a> {
    reference: &'a str,
    repo: &'a str,
    revision: &'a str,
    cache_dir: PathBuf,
    /// `<cache>/models--ORG--NAME`.
    repo_dir: PathBuf,
    cache_repo: CacheRepo,
    /// Why downloads are impossible; `None` when they are allowed and built in.
    blocked: Option<DownloadBlocked>,
    #[cfg(feature = "download")]
    remote: Option<remote::Remote>,
}

impl<'a> HubFiles<'a> {
    fn new(
        reference: &'a str,
        repo: &'a str,
        revision: &'a str,
        cache_dir: PathBuf,
        opts: &ResolveOptions,
    ) -> Self {
        let hf_repo = Repo::with_revision(repo.to_owned(), RepoType::Model, revision.to_owned());
        let repo_dir = cache_dir.join(hf_repo.folder_name());
        let cache_repo = Cache::new(cache_dir.clone()).repo(hf_repo);
        let blocked = if !opts.allow_download {
            Some(if hub_offline() {
                DownloadBlocked::Offline
            } else {
                DownloadBlocked::Disabled
            })
        } else if !super::DOWNLOAD_SUPPORTED {
            Some(DownloadBlocked::FeatureDisabled)
        } else {
            None
        };
        Self {
            reference,
            repo,
            revision,
            cache_dir,
            repo_dir,
            cache_repo,
            blocked,
            #[cfg(feature = "download")]
            remote: None,
        }
    }

    fn ref_file(&self) -> PathBuf {
        self.repo_dir.join("refs").join(self.revision)
    }

    /// The snapshot directory the revision points to, if it is in the cache.
    ///
    /// `refs/<revision>` names the commit; a revision that is itself a commit hash
    /// has no ref file (the Python client pins commits this way), so its snapshot
    /// is looked up directly.
    fn snapshot(&self) -> Result<Option<PathBuf>, SourceError> {
        let ref_file = self.ref_file();
        let commit = match fs::read_to_string(&ref_file) {
            Ok(text) => text.trim().to_owned(),
            Err(cause) if cause.kind() == io::ErrorKind::NotFound => {
                if is_commit_hash(self.revision) {
                    self.revision.to_owned()
                } else {
                    return Ok(None);
                }
            }
            Err(cause) => {
                return Err(SourceError::Io {
                    reference: self.reference.to_owned(),
                    path: ref_file,
                    cause,
                });
            }
        };
        // The ref file is data on disk: a commit must be a single path component.
        if commit.is_empty() || commit.contains(['/', '\\']) || commit == ".." {
            return Ok(None);
        }
        let snapshot = self.repo_dir.join("snapshots").join(commit);
        Ok(snapshot.is_dir().then_some(snapshot))
    }

    /// The cached file, if present: hf-hub's own lookup first, then the snapshot
    /// directly (commit-hash revisions, ref files with a trailing newline).
    fn cached(&self, name: &str) -> Result<Option<PathBuf>, SourceError> {
        if let Some(path) = self.cache_repo.get(name)
            && let Some(path) = layout::existing_file(self.reference, &path)?
        {
            return Ok(Some(path));
        }
        match self.snapshot()? {
            Some(snapshot) => layout::existing_file(self.reference, &snapshot.join(name)),
            None => Ok(None),
        }
    }

    fn not_cached(&self, name: &str) -> SourceError {
        let looked_for = match self.snapshot() {
            Ok(Some(snapshot)) => snapshot.join(name),
            _ => self.ref_file(),
        };
        SourceError::NotCached(Box::new(NotCached {
            reference: self.reference.to_owned(),
            repo: self.repo.to_owned(),
            revision: self.revision.to_owned(),
            file: name.to_owned(),
            cache_dir: self.cache_dir.clone(),
            looked_for,
            blocked: self.blocked.unwrap_or(DownloadBlocked::FeatureDisabled),
        }))
    }
}

#[cfg(feature = "download")]
impl HubFiles<'_> {
    fn download_error(&self, file: &str, message: String) -> SourceError {
        SourceError::Download(Box::new(DownloadFailed {
            reference: self.reference.to_owned(),
            repo: self.repo.to_owned(),
            revision: self.revision.to_owned(),
            file: file.to_owned(),
            cache_dir: self.cache_dir.clone(),
            message,
        }))
    }

    fn remote(&mut self) -> Result<&mut remote::Remote, SourceError> {
        let remote = match self.remote.take() {
            Some(remote) => remote,
            None => remote::Remote::connect(&self.cache_dir, self.repo, self.revision)
                .map_err(|message| self.download_error("(connecting)", message))?,
        };
        Ok(self.remote.insert(remote))
    }

    fn download(&mut self, name: &str) -> Result<PathBuf, SourceError> {
        let result = self.remote()?.download(name);
        result.map_err(|message| self.download_error(name, message))
    }

    fn remote_has(&mut self, name: &str) -> Result<bool, SourceError> {
        let result = self.remote()?.files().map(|f| f.iter().any(|f| f == name));
        result.map_err(|message| self.download_error("the file list", message))
    }

    /// Nothing usable is cached: ask the Hub what the repo holds and fetch that.
    fn resolve_remote(&mut self) -> Result<ResolvedModel, SourceError> {
        let listing = self.remote()?.files().map(<[String]>::to_vec);
        let files = listing.map_err(|message| self.download_error("the file list", message))?;
        if files.iter().any(|f| f == CONFIG) {
            return layout::safetensors_layout(self);
        }
        let ggufs: Vec<String> = files
            .into_iter()
            .filter(|f| super::has_gguf_extension(Path::new(f)))
            .collect();
        let location = format!("Hub repo {} (revision {})", self.repo, self.revision);
        match ggufs.as_slice() {
            [] => Err(SourceError::NoModelFiles {
                reference: self.reference.to_owned(),
                location,
            }),
            [one] => {
                let path = self.download(one)?;
                layout::check_gguf(self.reference, &path)?;
                Ok(ResolvedModel::Gguf { path })
            }
            _ => Err(SourceError::AmbiguousGguf {
                reference: self.reference.to_owned(),
                repo: self.repo.to_owned(),
                location,
                candidates: ggufs,
            }),
        }
    }
}

#[cfg(not(feature = "download"))]
impl HubFiles<'_> {
    // Without the feature `blocked` is always set, so these only build the error.
    fn download(&mut self, name: &str) -> Result<PathBuf, SourceError> {
        Err(self.not_cached(name))
    }

    fn remote_has(&mut self, _name: &str) -> Result<bool, SourceError> {
        Ok(false)
    }

    fn resolve_remote(&mut self) -> Result<ResolvedModel, SourceError> {
        Err(self.not_cached(CONFIG))
    }
}

impl Files for HubFiles<'_> {
    fn reference(&self) -> &str {
        self.reference
    }

    fn find(&mut self, name: &str) -> Result<Option<PathBuf>, SourceError> {
        if let Some(path) = self.cached(name)? {
            return Ok(Some(path));
        }
        // Optional files are fetched only when the repo is known to have them.
        if self.blocked.is_none() && self.remote_has(name)? {
            return self.download(name).map(Some);
        }
        Ok(None)
    }

    fn require(&mut self, name: &str, _why: &'static str) -> Result<PathBuf, SourceError> {
        if let Some(path) = self.cached(name)? {
            return Ok(path);
        }
        if self.blocked.is_none() {
            return self.download(name);
        }
        Err(self.not_cached(name))
    }
}

fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(feature = "download")]
mod remote {
    use std::io::IsTerminal;
    use std::path::{Path, PathBuf};

    use hf_hub::api::sync::{ApiBuilder, ApiRepo};
    use hf_hub::{Repo, RepoType};

    /// hf-hub's blocking client for one repo, with its file list fetched once.
    pub(super) struct Remote {
        repo: ApiRepo,
        files: Option<Vec<String>>,
    }

    impl Remote {
        pub(super) fn connect(
            cache_dir: &Path,
            repo: &str,
            revision: &str,
        ) -> Result<Self, String> {
            // from_env keeps HF_ENDPOINT and the token; the cache is ours.
            let api = ApiBuilder::from_env()
                .with_cache_dir(cache_dir.to_path_buf())
                .with_progress(std::io::stderr().is_terminal())
                .build()
                .map_err(|e| e.to_string())?;
            let repo = Repo::with_revision(repo.to_owned(), RepoType::Model, revision.to_owned());
            Ok(Self {
                repo: api.repo(repo),
                files: None,
            })
        }

        pub(super) fn download(&self, file: &str) -> Result<PathBuf, String> {
            self.repo.download(file).map_err(|e| e.to_string())
        }

        pub(super) fn files(&mut self) -> Result<&[String], String> {
            if self.files.is_none() {
                let info = self.repo.info().map_err(|e| e.to_string())?;
                self.files = Some(info.siblings.into_iter().map(|s| s.rfilename).collect());
            }
            Ok(self.files.as_deref().unwrap_or_default())
        }
    }
}
