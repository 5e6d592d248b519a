//! Hub ids resolved through hf-hub's cache API, downloading what is missing
//! with [`super::fetch`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hf_hub::{Cache, CacheRepo, Repo, RepoType};

use super::fetch::{DownloadProgress, HubClient};
use super::layout::{self, CONFIG, Files};
use super::{
    DownloadBlocked, DownloadFailed, NotCached, ResolveOptions, ResolvedModel, SourceError,
    hub_offline,
};

/// Resolves `repo[@revision][:file]` from the cache, downloading when allowed.
pub(super) fn resolve(
    reference: &str,
    repo: &str,
    revision: Option<&str>,
    file: Option<&str>,
    opts: &ResolveOptions,
    progress: &mut dyn FnMut(DownloadProgress<'_>),
) -> Result<ResolvedModel, SourceError> {
    let cache_dir = opts
        .effective_cache_dir()
        .ok_or_else(|| SourceError::NoCacheDir {
            reference: reference.to_owned(),
        })?;
    let mut hub = HubFiles::new(reference, repo, revision.unwrap_or("main"), cache_dir, opts);
    hub.progress = Some(progress);

    // `org/name:Q4_K_M` names a quantization, not a file.
    let quant = file.filter(|f| !super::has_gguf_extension(Path::new(f)));
    if let Some(file) = file
        && quant.is_none()
    {
        let path = hub.require(file, "")?;
        layout::check_gguf(reference, &path)?;
        return Ok(ResolvedModel::Gguf { path });
    }
    if quant.is_none() && hub.cached(CONFIG)?.is_some() {
        return layout::safetensors_layout(&mut hub);
    }
    // No config.json in the cache: the snapshot's GGUF files, chosen by the rule.
    if let Some(snapshot) = hub.snapshot()? {
        let ggufs = gguf_files_in(reference, &snapshot)?;
        if let Some(one) = pick_gguf(&ggufs, quant) {
            let path = snapshot.join(one);
            layout::check_gguf(reference, &path)?;
            return Ok(ResolvedModel::Gguf { path });
        }
        if ggufs.len() > 1 && (quant.is_none() || hub.blocked.is_some()) {
            return Err(SourceError::AmbiguousGguf {
                reference: reference.to_owned(),
                repo: repo.to_owned(),
                location: format!("snapshot {}", snapshot.display()),
                candidates: ggufs,
            });
        }
    }
    if hub.blocked.is_none() {
        return hub.resolve_remote(quant);
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
    /// Why downloads are impossible; `None` when they are allowed.
    blocked: Option<DownloadBlocked>,
    /// The Hub client, made on the first download (so offline use builds none).
    client: Option<HubClient>,
    /// The options the client is made from.
    opts: &'a ResolveOptions,
    /// The repo's file list, fetched once.
    listing: Option<Vec<String>>,
    progress: Option<&'a mut dyn FnMut(DownloadProgress<'_>)>,
}

impl<'a> HubFiles<'a> {
    fn new(
        reference: &'a str,
        repo: &'a str,
        revision: &'a str,
        cache_dir: PathBuf,
        opts: &'a ResolveOptions,
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
            client: None,
            opts,
            listing: None,
            progress: None,
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
            blocked: self.blocked.unwrap_or(DownloadBlocked::Disabled),
        }))
    }
}

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

    fn client(&mut self) -> &HubClient {
        let opts = self.opts;
        self.client.get_or_insert_with(|| opts.client())
    }

    fn download(&mut self, name: &str) -> Result<PathBuf, SourceError> {
        if self.blocked.is_some() {
            return Err(self.not_cached(name));
        }
        let mut ignore = |_: DownloadProgress<'_>| {};
        let mut progress = self.progress.take();
        let sink: &mut dyn FnMut(DownloadProgress<'_>) = match &mut progress {
            Some(sink) => *sink,
            None => &mut ignore,
        };
        let (cache_dir, repo, revision) = (self.cache_dir.clone(), self.repo, self.revision);
        let result = self
            .client()
            .download(&cache_dir, repo, revision, name, sink);
        self.progress = progress;
        result.map_err(|e| self.download_error(name, e.to_string()))
    }

    fn files(&mut self) -> Result<&[String], SourceError> {
        if self.listing.is_none() {
            let (repo, revision) = (self.repo, self.revision);
            let listing = self.client().list_files(repo, revision);
            let files = listing.map_err(|e| self.download_error("the file list", e.to_string()))?;
            self.listing = Some(files);
        }
        Ok(self.listing.as_deref().unwrap_or_default())
    }

    fn remote_has(&mut self, name: &str) -> Result<bool, SourceError> {
        Ok(self.files()?.iter().any(|f| f == name))
    }

    /// Nothing usable is cached: ask the Hub what the repo holds and fetch that.
    fn resolve_remote(&mut self, quant: Option<&str>) -> Result<ResolvedModel, SourceError> {
        let files = self.files()?.to_vec();
        if quant.is_none() && files.iter().any(|f| f == CONFIG) {
            return layout::safetensors_layout(self);
        }
        let ggufs: Vec<String> = files
            .into_iter()
            .filter(|f| super::has_gguf_extension(Path::new(f)))
            .collect();
        let location = format!("Hub repo {} (revision {})", self.repo, self.revision);
        if let Some(one) = pick_gguf(&ggufs, quant) {
            let path = self.download(&one.clone())?;
            layout::check_gguf(self.reference, &path)?;
            return Ok(ResolvedModel::Gguf { path });
        }
        match ggufs.as_slice() {
            [] => Err(SourceError::NoModelFiles {
                reference: self.reference.to_owned(),
                location,
            }),
            _ => Err(SourceError::AmbiguousGguf {
                reference: self.reference.to_owned(),
                repo: self.repo.to_owned(),
                location,
                candidates: ggufs,
            }),
        }
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

/// The quantizations a repo's GGUF file is chosen by when the reference names
/// none, best first: 4-bit k-quants are the usual balance of size and quality,
/// then the other 4- and 5-bit ones, then larger, then smaller. Documented in
/// docs/models.md ("Which GGUF file").
pub const GGUF_PREFERENCE: &[&str] = &[
    "Q4_K_M", "Q4_0", "Q4_K_S", "Q4_1", "Q5_K_M", "Q5_0", "Q5_K_S", "Q5_1", "Q6_K", "Q8_0",
    "Q3_K_M", "Q3_K_L", "Q3_K_S", "Q2_K", "F16", "BF16", "F32",
];

/// The GGUF file to use among `candidates`: the one carrying `quant` in its
/// name when given, else the only one, else the first quantization of
/// [`GGUF_PREFERENCE`] that exactly one file carries. `None`: no single choice.
fn pick_gguf<'c>(candidates: &'c [String], quant: Option<&str>) -> Option<&'c String> {
    let single = |quant: &str| {
        let mut matching = candidates.iter().filter(|c| names_quant(c, quant));
        match (matching.next(), matching.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    };
    match (quant, candidates) {
        (Some(quant), _) => single(quant),
        (None, [one]) => Some(one),
        (None, _) => GGUF_PREFERENCE.iter().find_map(|q| single(q)),
    }
}

/// Whether a file name carries `quant` as a whole word (`Q4_0` is in
/// `model.Q4_0.gguf`, not in `model.Q4_0_4_4.gguf`), ignoring case.
fn names_quant(file: &str, quant: &str) -> bool {
    let (file, quant) = (file.to_ascii_lowercase(), quant.to_ascii_lowercase());
    let bytes = file.as_bytes();
    file.match_indices(&quant).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + quant.len()).copied();
        !before.is_some_and(|b| b.is_ascii_alphanumeric())
            && !after.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn gguf_choice_follows_the_preference_then_the_named_quant() {
        let files = names(&[
            "m.Q8_0.gguf",
            "m-q4_k_m.gguf",
            "m.Q4_0.gguf",
            "m.Q4_0_4_4.gguf",
        ]);
        assert_eq!(pick_gguf(&files, None).unwrap(), "m-q4_k_m.gguf");
        assert_eq!(pick_gguf(&files, Some("Q4_0")).unwrap(), "m.Q4_0.gguf");
        assert_eq!(pick_gguf(&files, Some("q8_0")).unwrap(), "m.Q8_0.gguf");
        assert_eq!(pick_gguf(&files, Some("Q6_K")), None);
        assert_eq!(pick_gguf(&names(&["a.gguf", "b.gguf"]), None), None);
        assert_eq!(pick_gguf(&names(&["a.gguf"]), None).unwrap(), "a.gguf");
        // Split files carry the same quantization twice: no single choice.
        let split = names(&[
            "m-Q4_K_M-00001-of-00002.gguf",
            "m-Q4_K_M-00002-of-00002.gguf",
        ]);
        assert_eq!(pick_gguf(&split, None), None);
    }
}
