//! Downloading Hub files into the Hugging Face cache, on ureq 3.
//!
//! hf-hub 0.4.3 has a blocking downloader, but it brings a second HTTP client
//! (ureq 2, about a hundred more crates in the default build), never checks a
//! file's sha256, gives up instead of waiting when another process holds the
//! file's lock, and reports a 401 as a bare status. This module does the same
//! job on the ureq 3 the workspace already builds (with rustls):
//!
//! 1. `HEAD {endpoint}/{repo}/resolve/{revision}/{file}`, following only
//!    same-host redirects (a renamed repo), for the commit (`X-Repo-Commit`), the
//!    blob id (`X-Linked-Etag`, else `ETag`) and the size (`X-Linked-Size`, else
//!    `Content-Length`);
//! 2. with `blobs/{etag}` missing, an exclusive lock on `blobs/{etag}.lock`
//!    (blocking: a second process pulling the same file waits, then finds it);
//! 3. the body into `blobs/{etag}.incomplete`, resuming with `Range` from what an
//!    earlier, interrupted attempt left there, and retrying a cut connection;
//! 4. the size checked and, for LFS files (whose etag is their sha256), the
//!    sha256; a mismatch deletes the partial file;
//! 5. a rename to `blobs/{etag}` (atomic: a killed pull never leaves a file
//!    under a name that loads), then the `snapshots/{commit}/{file}` link and
//!    `refs/{revision}`, as hf-hub and Python's `huggingface_hub` lay them out.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The public Hub, used when `HF_ENDPOINT` is unset.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How many times a body cut short is resumed within one download.
const RESUMES: usize = 5;

/// The largest model-info answer read (a repo listing; far above real ones).
const MAX_LISTING_BYTES: u64 = 16 << 20;

/// A Hub access token; its `Debug` form hides the value.
#[derive(Clone, PartialEq, Eq)]
pub struct HubToken(String);

impl HubToken {
    /// Wraps a token; empty or whitespace-only text is no token.
    pub fn new(token: impl Into<String>) -> Option<Self> {
        let token = token.into().trim().to_owned();
        (!token.is_empty()).then_some(Self(token))
    }

    /// `HF_TOKEN`, else the token file (`HF_TOKEN_PATH`, else `$HF_HOME/token`,
    /// else `~/.cache/huggingface/token`), as Python's `huggingface_hub` reads them.
    pub fn from_env() -> Option<Self> {
        if let Some(token) = std::env::var("HF_TOKEN").ok().and_then(Self::new) {
            return Some(token);
        }
        let set = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let path = set("HF_TOKEN_PATH").map(PathBuf::from).or_else(|| {
            set("HF_HOME")
                .map(PathBuf::from)
                .or_else(|| dirs::home_dir().map(|h| h.join(".cache").join("huggingface")))
                .map(|home| home.join("token"))
        })?;
        fs::read_to_string(path).ok().and_then(Self::new)
    }
}

impl fmt::Debug for HubToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HubToken(…)")
    }
}

/// The endpoint from `HF_ENDPOINT`, else [`DEFAULT_ENDPOINT`], without a trailing `/`.
pub fn endpoint_from_env() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
        .trim()
        .trim_end_matches('/')
        .to_owned()
}

/// How far a download has come, handed to the progress callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownloadProgress<'a> {
    /// The file within the repo.
    pub file: &'a str,
    /// Bytes on disk so far (including a resumed prefix).
    pub downloaded: u64,
    /// The file's size as the Hub reports it.
    pub total: u64,
    /// Whether the file is complete and verified.
    pub done: bool,
}

/// Why a download failed; shown to the user as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The Hub refused access (401/403): a gated or private repo.
    #[error(
        "the Hub answered {status} for {url}: the repo is gated or private{hint}",
        hint = if *token_sent {
            "; the token in HF_TOKEN (or the token file) has no access to it"
        } else {
            "; set HF_TOKEN to a token that has access (https://huggingface.co/settings/tokens)"
        }
    )]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// The URL asked for.
        url: String,
        /// Whether a token was sent.
        token_sent: bool,
    },
    /// The Hub has no such repo, revision or file (404).
    #[error("the Hub has no {url} (404): check the repo id, revision and file name")]
    NotFound {
        /// The URL asked for.
        url: String,
    },
    /// Any other unexpected HTTP status.
    #[error("the Hub answered {status} for {url}")]
    Status {
        /// The status code.
        status: u16,
        /// The URL asked for.
        url: String,
    },
    /// The connection failed or broke (after the resumes allowed).
    #[error("cannot reach {url}: {message}")]
    Transport {
        /// The URL asked for.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A header the Hub always sends is missing or malformed.
    #[error("the Hub's answer for {url} lacks a usable {header} header")]
    Header {
        /// The URL asked for.
        url: String,
        /// The header.
        header: &'static str,
    },
    /// The downloaded bytes are not the file the Hub described.
    #[error(
        "{file} failed verification ({what}: expected {expected}, got {found}); the partial \
         download was deleted, try again"
    )]
    Corrupt {
        /// The file within the repo.
        file: String,
        /// `sha256` or `size`.
        what: &'static str,
        /// What the Hub announced.
        expected: String,
        /// What arrived.
        found: String,
    },
    /// Writing into the cache failed.
    #[error("cannot write {}: {cause}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        cause: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |cause| FetchError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// A blocking Hub client: an endpoint, an optional token, and an HTTP agent.
#[derive(Clone)]
pub struct HubClient {
    endpoint: String,
    token: Option<HubToken>,
    agent: ureq::Agent,
}

impl fmt::Debug for HubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubClient")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// What the resolve endpoint says about one file.
struct Metadata {
    commit: String,
    etag: String,
    size: u64,
}

impl HubClient {
    /// A client for `endpoint` (no trailing `/`) sending `token` when given.
    pub fn new(endpoint: impl Into<String>, token: Option<HubToken>) -> Self {
        let agent = ureq::Agent::config_builder()
            // Statuses are answers to explain, not transport errors.
            .http_status_as_error(false)
            // Redirects are followed by hand: the headers that describe a file
            // are on the Hub's own answer, not the CDN's.
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(30)))
            // A stalled body is retried with `Range` rather than waited on forever.
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .user_agent(concat!("mdsa/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            endpoint: endpoint.into().trim_end_matches('/').to_owned(),
            token,
            agent,
        }
    }

    /// `HF_ENDPOINT` and `HF_TOKEN` / the token file.
    pub fn from_env() -> Self {
        Self::new(endpoint_from_env(), HubToken::from_env())
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn get(&self, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let request = self.agent.get(url);
        match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {}", token.0)),
            None => request,
        }
    }

    fn head(&self, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let request = self.agent.head(url);
        match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {}", token.0)),
            None => request,
        }
    }

    fn check_status(&self, url: &str, status: u16) -> Result<(), FetchError> {
        match status {
            200..=399 => Ok(()),
            401 | 403 => Err(FetchError::Unauthorized {
                status,
                url: url.to_owned(),
                token_sent: self.token.is_some(),
            }),
            404 => Err(FetchError::NotFound {
                url: url.to_owned(),
            }),
            _ => Err(FetchError::Status {
                status,
                url: url.to_owned(),
            }),
        }
    }

    /// The files of `repo` at `revision`, from the model-info API.
    pub fn list_files(&self, repo: &str, revision: &str) -> Result<Vec<String>, FetchError> {
        #[derive(serde::Deserialize)]
        struct Info {
            #[serde(default)]
            siblings: Vec<Sibling>,
        }
        #[derive(serde::Deserialize)]
        struct Sibling {
            rfilename: String,
        }
        let url = format!("{}/api/models/{repo}/revision/{revision}", self.endpoint);
        let response = self.get(&url).call().map_err(|e| transport(&url, e))?;
        self.check_status(&url, response.status().as_u16())?;
        let reader = response.into_body().into_reader().take(MAX_LISTING_BYTES);
        let info: Info = serde_json::from_reader(reader).map_err(|e| FetchError::Transport {
            url: url.clone(),
            message: format!("the model info is not the JSON expected: {e}"),
        })?;
        Ok(info.siblings.into_iter().map(|s| s.rfilename).collect())
    }

    fn metadata(&self, url: &str) -> Result<(Metadata, String), FetchError> {
        let mut current = url.to_owned();
        for _ in 0..5 {
            let response = self.head(&current).call().map_err(|e| transport(url, e))?;
            let status = response.status().as_u16();
            self.check_status(url, status)?;
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let location = header("location");
            // A relative redirect is the Hub itself (a renamed repo): follow it.
            if (300..400).contains(&status)
                && let Some(location) = &location
                && location.starts_with('/')
            {
                current = format!("{}{location}", self.endpoint);
                continue;
            }
            let missing = |header| FetchError::Header {
                url: url.to_owned(),
                header,
            };
            let commit = header("x-repo-commit").ok_or_else(|| missing("X-Repo-Commit"))?;
            let etag = header("x-linked-etag")
                .or_else(|| header("etag"))
                .map(|e| clean_etag(&e))
                .filter(|e| is_safe_component(e))
                .ok_or_else(|| missing("ETag"))?;
            if !is_safe_component(&commit) {
                return Err(missing("X-Repo-Commit"));
            }
            let size = header("x-linked-size")
                .or_else(|| header("content-length"))
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| missing("X-Linked-Size"))?;
            // The body comes from where the Hub points (a CDN for LFS files).
            let target = match location {
                Some(location) if (300..400).contains(&status) => location,
                _ => current,
            };
            return Ok((Metadata { commit, etag, size }, target));
        }
        Err(FetchError::Transport {
            url: url.to_owned(),
            message: "too many redirects".into(),
        })
    }

    /// Downloads `file` of `repo` at `revision` into the cache at `cache_dir`
    /// (unless its blob is already there) and returns its snapshot path.
    pub fn download(
        &self,
        cache_dir: &Path,
        repo: &str,
        revision: &str,
        file: &str,
        progress: &mut dyn FnMut(DownloadProgress<'_>),
    ) -> Result<PathBuf, FetchError> {
        let url = format!("{}/{repo}/resolve/{revision}/{file}", self.endpoint);
        let (meta, body_url) = self.metadata(&url)?;
        let repo_dir = cache_dir.join(format!("models--{}", repo.replace('/', "--")));
        let blobs = repo_dir.join("blobs");
        fs::create_dir_all(&blobs).map_err(io_error(&blobs))?;
        let blob = blobs.join(&meta.etag);
        if !blob.is_file() {
            let lock_path = blobs.join(format!("{}.lock", meta.etag));
            let lock = File::create(&lock_path).map_err(io_error(&lock_path))?;
            // Blocks while another process (or thread) downloads the same blob.
            lock.lock().map_err(io_error(&lock_path))?;
            if !blob.is_file() {
                self.fetch_blob(&body_url, &meta, &blob, file, progress)?;
            }
            // Unlocked when `lock` drops; the lock file stays, as hf-hub's does.
            drop(lock);
        }
        progress(DownloadProgress {
            file,
            downloaded: meta.size,
            total: meta.size,
            done: true,
        });
        let pointer = repo_dir.join("snapshots").join(&meta.commit).join(file);
        link_blob(&blob, &pointer)?;
        if revision != meta.commit {
            write_ref(&repo_dir.join("refs").join(revision), &meta.commit)?;
        }
        Ok(pointer)
    }

    fn fetch_blob(
        &self,
        url: &str,
        meta: &Metadata,
        blob: &Path,
        file: &str,
        progress: &mut dyn FnMut(DownloadProgress<'_>),
    ) -> Result<(), FetchError> {
        let mut partial = blob.as_os_str().to_owned();
        partial.push(".incomplete");
        let partial = PathBuf::from(partial);
        let mut out = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&partial)
            .map_err(io_error(&partial))?;
        // What an earlier attempt left is kept if it can still be the file's start.
        let mut have = out.metadata().map_err(io_error(&partial))?.len();
        if have > meta.size {
            out.set_len(0).map_err(io_error(&partial))?;
            have = 0;
        }
        let mut hasher = Sha256::new();
        out.seek(SeekFrom::Start(0)).map_err(io_error(&partial))?;
        io::copy(&mut (&out).take(have), &mut hasher).map_err(io_error(&partial))?;
        let mut failures = 0;
        while have < meta.size {
            let attempt = self.fetch_range(url, have, &mut out, &mut hasher, &partial, |done| {
                progress(DownloadProgress {
                    file,
                    downloaded: done,
                    total: meta.size,
                    done: false,
                })
            });
            let error = match attempt {
                // The body ended cleanly: the checks below judge it.
                Ok(now) => {
                    have = now;
                    break;
                }
                Err(Fetch::Restart) => {
                    hasher = Sha256::new();
                    have = 0;
                    continue;
                }
                Err(Fetch::Cut(error)) => error,
                Err(Fetch::Fatal(error)) => return Err(error),
            };
            // Resume from what reached the disk; past the limit the partial file
            // stays for the next pull to resume.
            have = out.metadata().map_err(io_error(&partial))?.len();
            failures += 1;
            if failures > RESUMES {
                return Err(error);
            }
            std::thread::sleep(Duration::from_millis(200 * failures as u64));
        }
        let verified = verify(meta, have, hasher, file);
        if let Err(error) = verified {
            // Never keep bytes that failed verification: the next try starts clean.
            drop(out);
            let _ = fs::remove_file(&partial);
            return Err(error);
        }
        out.sync_all().map_err(io_error(&partial))?;
        drop(out);
        fs::rename(&partial, blob).map_err(io_error(blob))
    }

    /// One GET from `start`; returns the bytes on disk after it.
    fn fetch_range(
        &self,
        url: &str,
        start: u64,
        out: &mut File,
        hasher: &mut Sha256,
        partial: &Path,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, Fetch> {
        let mut request = self.get(url);
        if start > 0 {
            request = request.header("Range", format!("bytes={start}-"));
        }
        let response = request.call().map_err(|e| Fetch::Cut(transport(url, e)))?;
        let status = response.status().as_u16();
        self.check_status(url, status).map_err(Fetch::Fatal)?;
        if start > 0 && status == 200 {
            // The server ignored the range: start over.
            out.set_len(0)
                .map_err(|e| Fetch::Fatal(io_error(partial)(e)))?;
            return Err(Fetch::Restart);
        }
        let mut reader = response.into_body().into_reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut have = start;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(have),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Fetch::Cut(FetchError::Transport {
                        url: url.to_owned(),
                        message: format!("the download broke off at byte {have}: {e}"),
                    }));
                }
            };
            let chunk = &buf[..n];
            out.write_all(chunk)
                .map_err(|e| Fetch::Fatal(io_error(partial)(e)))?;
            hasher.update(chunk);
            have += n as u64;
            progress(have);
        }
    }
}

/// How one ranged GET ended, when not with the bytes it promised.
enum Fetch {
    /// The connection broke: resume from what is on disk.
    Cut(FetchError),
    /// The server sent the whole file again: the partial file was emptied.
    Restart,
    /// Retrying cannot help.
    Fatal(FetchError),
}

fn verify(meta: &Metadata, have: u64, hasher: Sha256, file: &str) -> Result<(), FetchError> {
    if have != meta.size {
        return Err(FetchError::Corrupt {
            file: file.to_owned(),
            what: "size",
            expected: meta.size.to_string(),
            found: have.to_string(),
        });
    }
    // LFS files are named by their sha256; small git files by a git sha1, which
    // only the size check above covers.
    if is_sha256(&meta.etag) {
        let found: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !found.eq_ignore_ascii_case(&meta.etag) {
            return Err(FetchError::Corrupt {
                file: file.to_owned(),
                what: "sha256",
                expected: meta.etag.clone(),
                found,
            });
        }
    }
    Ok(())
}

fn transport(url: &str, error: ureq::Error) -> FetchError {
    FetchError::Transport {
        url: url.to_owned(),
        message: error.to_string(),
    }
}

/// `W/"abc"` → `abc`.
fn clean_etag(etag: &str) -> String {
    etag.trim().trim_start_matches("W/").replace('"', "")
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Header values become file names: one plain path component only.
fn is_safe_component(text: &str) -> bool {
    !text.is_empty()
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `snapshots/COMMIT/FILE` → `../../blobs/ETAG` (a copy where symlinks fail).
fn link_blob(blob: &Path, pointer: &Path) -> Result<(), FetchError> {
    let parent = pointer.parent().unwrap_or(pointer);
    fs::create_dir_all(parent).map_err(io_error(parent))?;
    if pointer.is_file() {
        return Ok(());
    }
    // Removing the pointer first and linking it was a race.
    let tmp = private_tmp(pointer);
    let _ = fs::remove_file(&tmp);
    #[cfg(unix)]
    {
        // Relative, like hf-hub's links, so a moved cache keeps working.
        let depth = pointer
            .strip_prefix(blob.parent().and_then(Path::parent).unwrap_or(blob))
            .map(|p| p.components().count().saturating_sub(1))
            .unwrap_or(0);
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(blob.file_name().unwrap_or_default());
        if std::os::unix::fs::symlink(&target, &tmp).is_ok() {
            return fs::rename(&tmp, pointer).map_err(io_error(pointer));
        }
    }
    fs::copy(blob, &tmp).map_err(io_error(&tmp))?;
    fs::rename(&tmp, pointer).map_err(io_error(pointer))
}

/// Writes `refs/REVISION` atomically (a reader never sees half a commit hash).
fn write_ref(path: &Path, commit: &str) -> Result<(), FetchError> {
    let parent = path.parent().unwrap_or(path);
    fs::create_dir_all(parent).map_err(io_error(parent))?;
    // One shared temporary name was a race: a second pull's rename found it
    // already renamed by the first ("cannot write refs/main").
    let tmp = private_tmp(path);
    fs::write(&tmp, commit).map_err(io_error(&tmp))?;
    fs::rename(&tmp, path).map_err(io_error(path))
}

/// A name beside `path` that no other call, thread or process, uses: a file
/// written there and renamed over `path` is never missing or half written,
/// even while another call writes the same one.
fn private_tmp(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_extension(format!("mdsa-tmp-{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_and_components() {
        assert_eq!(clean_etag("W/\"abc\""), "abc");
        assert!(is_safe_component("abc-1.2"));
        assert!(!is_safe_component(".."));
        assert!(!is_safe_component("a/b"));
        assert!(is_sha256(&"a".repeat(64)));
        assert!(!is_sha256("abc"));
    }

    #[test]
    fn a_ref_written_by_many_threads_at_once_is_always_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refs").join("main");
        std::thread::scope(|scope| {
            for t in 0..4 {
                let path = &path;
                scope.spawn(move || {
                    for i in 0..200 {
                        write_ref(path, &format!("commit-{t}-{i}")).unwrap();
                    }
                });
            }
        });
        assert!(fs::read_to_string(&path).unwrap().starts_with("commit-"));
        // Every temporary name was renamed over the ref: none is left.
        assert_eq!(fs::read_dir(dir.path().join("refs")).unwrap().count(), 1);
    }

    #[test]
    fn tokens_stay_out_of_debug_output() {
        let token = HubToken::new(" secret \n").unwrap();
        assert_eq!(token.0, "secret");
        assert!(!format!("{token:?}").contains("secret"));
        assert!(HubToken::new("  ").is_none());
    }
}
