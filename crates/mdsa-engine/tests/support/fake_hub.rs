//! A fake Hugging Face Hub on loopback, for download tests that never touch the
//! network.
//!
//! It answers like the real Hub where mdsa's downloader looks:
//! - `HEAD|GET /{org}/{name}/resolve/{rev}/{file}`: small files directly (an
//!   `ETag` that is not a sha256, as git blob ids are not); LFS files (`.gguf`,
//!   `.safetensors`) with a 302 to `/cdn/...` carrying `X-Linked-Etag` (their
//!   sha256) and `X-Linked-Size`; both with `X-Repo-Commit`. A renamed repo
//!   answers with a relative 307 to its new name.
//! - `GET /cdn/{org}/{name}/{file}`: the bytes, honouring `Range: bytes=N-`.
//! - `GET /api/models/{org}/{name}[/revision/{rev}]`: `{"siblings": [{"rfilename"}]}`.
//!
//! Repos can be gated (401 without the right bearer token) and files can be
//! served cut off once, corrupted, or slowly. Every request is logged.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// The commit every fake repo is at.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// How a file is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Normally.
    #[default]
    None,
    /// The first body GET breaks off after half the bytes.
    CutOnce,
    /// One byte of the body is flipped (the headers describe the real file).
    Corrupt,
    /// In eight chunks 100 ms apart.
    Slow,
}

/// One repo's files.
#[derive(Clone, Debug, Default)]
pub struct FakeRepo {
    /// Name → bytes.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The bearer token the repo requires; `None`: public.
    pub token: Option<String>,
    /// Name → fault.
    pub faults: BTreeMap<String, Fault>,
}

impl FakeRepo {
    /// A repo serving the files under `dir` (a Hugging Face model folder or
    /// cache snapshot, whose links are followed), subfolders included.
    pub fn from_dir(dir: &Path) -> Self {
        let mut repo = Self::default();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(folder) = stack.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let name = path.strip_prefix(dir).unwrap().to_str().unwrap();
                    repo.files
                        .insert(name.replace('\\', "/"), std::fs::read(&path).unwrap());
                }
            }
        }
        repo
    }

    /// A repo with one file.
    pub fn one(name: &str, bytes: Vec<u8>) -> Self {
        let mut repo = Self::default();
        repo.files.insert(name.to_owned(), bytes);
        repo
    }
}

#[derive(Default)]
struct Hub {
    repos: Mutex<BTreeMap<String, FakeRepo>>,
    renamed: Mutex<BTreeMap<String, String>>,
    log: Mutex<Vec<String>>,
    cut_done: Mutex<Vec<String>>,
}

/// A running fake Hub; its server thread ends with the test process.
pub struct FakeHub {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    hub: Arc<Hub>,
}

impl FakeHub {
    /// Starts a fake Hub on a free loopback port.
    pub fn start() -> Self {
        let hub = Arc::new(Hub::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/{org}/{name}/resolve/{rev}/{*file}", get(resolve))
            .route("/cdn/{org}/{name}/{*file}", get(cdn))
            .route("/api/models/{org}/{name}", get(info))
            .route("/api/models/{org}/{name}/revision/{rev}", get(info_rev))
            .with_state(hub.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Self { url, hub }
    }

    /// Adds (or replaces) `repo` (`org/name`).
    pub fn add(&self, repo: &str, files: FakeRepo) {
        self.hub
            .repos
            .lock()
            .unwrap()
            .insert(repo.to_owned(), files);
    }

    /// Makes `old` (`org/name`) redirect to `new`.
    pub fn rename(&self, old: &str, new: &str) {
        self.hub
            .renamed
            .lock()
            .unwrap()
            .insert(old.to_owned(), new.to_owned());
    }

    /// Every request so far, as `METHOD /path [range]`.
    pub fn log(&self) -> Vec<String> {
        self.hub.log.lock().unwrap().clone()
    }

    /// The body GETs of `file` so far (requests to the CDN for it).
    pub fn body_gets(&self, file: &str) -> Vec<String> {
        let suffix = format!("/{file}");
        self.log()
            .into_iter()
            .filter(|l| {
                l.starts_with("GET /cdn/") && l.split(' ').nth(1).unwrap().ends_with(&suffix)
            })
            .collect()
    }
}

/// The sha256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_lfs(file: &str) -> bool {
    file.ends_with(".gguf") || file.ends_with(".safetensors")
}

fn record(hub: &Hub, method: &Method, path: &str, headers: &HeaderMap) {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    hub.log
        .lock()
        .unwrap()
        .push(format!("{method} {path}{range}"));
}

fn authorized(repo: &FakeRepo, headers: &HeaderMap) -> bool {
    match &repo.token {
        None => true,
        Some(token) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {token}")),
    }
}

fn status(code: StatusCode) -> Response {
    (code, code.canonical_reason().unwrap_or_default()).into_response()
}

async fn resolve(
    State(hub): State<Arc<Hub>>,
    method: Method,
    headers: HeaderMap,
    UrlPath((org, name, rev, file)): UrlPath<(String, String, String, String)>,
) -> Response {
    let id = format!("{org}/{name}");
    record(
        &hub,
        &method,
        &format!("/{id}/resolve/{rev}/{file}"),
        &headers,
    );
    if let Some(new) = hub.renamed.lock().unwrap().get(&id) {
        let location = format!("/{new}/resolve/{rev}/{file}");
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response();
    }
    let Some(repo) = hub.repos.lock().unwrap().get(&id).cloned() else {
        return status(StatusCode::NOT_FOUND);
    };
    if !authorized(&repo, &headers) {
        return status(StatusCode::UNAUTHORIZED);
    }
    if rev != "main" && rev != COMMIT {
        return status(StatusCode::NOT_FOUND);
    }
    let Some(bytes) = repo.files.get(&file) else {
        return status(StatusCode::NOT_FOUND);
    };
    if is_lfs(&file) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let location = format!("http://{host}/cdn/{id}/{file}");
        return (
            StatusCode::FOUND,
            [
                (header::LOCATION, location),
                (
                    header::HeaderName::from_static("x-repo-commit"),
                    COMMIT.to_owned(),
                ),
                (
                    header::HeaderName::from_static("x-linked-etag"),
                    format!("\"{}\"", sha256_hex(bytes)),
                ),
                (
                    header::HeaderName::from_static("x-linked-size"),
                    bytes.len().to_string(),
                ),
                (header::ETAG, "\"not-the-blob\"".to_owned()),
            ],
        )
            .into_response();
    }
    // Small files: the body itself, with a git-style (not sha256) etag.
    let etag = format!("\"{}\"", &sha256_hex(bytes)[..40]);
    (
        StatusCode::OK,
        [
            (
                header::HeaderName::from_static("x-repo-commit"),
                COMMIT.to_owned(),
            ),
            (header::ETAG, etag),
            (header::CONTENT_LENGTH, bytes.len().to_string()),
        ],
        bytes.clone(),
    )
        .into_response()
}

async fn cdn(
    State(hub): State<Arc<Hub>>,
    method: Method,
    headers: HeaderMap,
    UrlPath((org, name, file)): UrlPath<(String, String, String)>,
) -> Response {
    let id = format!("{org}/{name}");
    record(&hub, &method, &format!("/cdn/{id}/{file}"), &headers);
    let Some(repo) = hub.repos.lock().unwrap().get(&id).cloned() else {
        return status(StatusCode::NOT_FOUND);
    };
    let Some(bytes) = repo.files.get(&file) else {
        return status(StatusCode::NOT_FOUND);
    };
    let mut bytes = bytes.clone();
    let fault = repo.faults.get(&file).copied().unwrap_or_default();
    if fault == Fault::Corrupt {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
    }
    let total = bytes.len();
    let start = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (code, body) = match start {
        Some(start) if start < total => (StatusCode::PARTIAL_CONTENT, bytes[start..].to_vec()),
        Some(_) => return status(StatusCode::RANGE_NOT_SATISFIABLE),
        None => (StatusCode::OK, bytes),
    };
    let mut response_headers = vec![(header::CONTENT_LENGTH, body.len().to_string())];
    if code == StatusCode::PARTIAL_CONTENT {
        let start = start.unwrap_or_default();
        response_headers.push((
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{total}", total - 1),
        ));
    }
    let cut = fault == Fault::CutOnce && method == Method::GET && {
        let mut done = hub.cut_done.lock().unwrap();
        let first = !done.contains(&file);
        done.push(file.clone());
        first
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let slow = fault == Fault::Slow;
    tokio::spawn(async move {
        if cut {
            let half = body.len() / 2;
            let _ = sender.send(Ok(Bytes::copy_from_slice(&body[..half]))).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = sender
                .send(Err(std::io::Error::other("connection cut by the fake Hub")))
                .await;
            return;
        }
        let chunk = if slow {
            body.len().div_ceil(8).max(1)
        } else {
            body.len().max(1)
        };
        for piece in body.chunks(chunk) {
            if slow {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if sender
                .send(Ok(Bytes::copy_from_slice(piece)))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = code;
    for (name, value) in response_headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

async fn info(
    State(hub): State<Arc<Hub>>,
    method: Method,
    headers: HeaderMap,
    UrlPath((org, name)): UrlPath<(String, String)>,
) -> Response {
    listing(&hub, &method, &headers, &format!("{org}/{name}"), "main")
}

async fn info_rev(
    State(hub): State<Arc<Hub>>,
    method: Method,
    headers: HeaderMap,
    UrlPath((org, name, rev)): UrlPath<(String, String, String)>,
) -> Response {
    listing(&hub, &method, &headers, &format!("{org}/{name}"), &rev)
}

fn listing(hub: &Hub, method: &Method, headers: &HeaderMap, id: &str, rev: &str) -> Response {
    record(
        hub,
        method,
        &format!("/api/models/{id}/revision/{rev}"),
        headers,
    );
    let Some(repo) = hub.repos.lock().unwrap().get(id).cloned() else {
        return status(StatusCode::NOT_FOUND);
    };
    if !authorized(&repo, headers) {
        return status(StatusCode::UNAUTHORIZED);
    }
    let siblings: Vec<_> = repo
        .files
        .keys()
        .map(|name| serde_json::json!({ "rfilename": name }))
        .collect();
    axum::Json(serde_json::json!({ "id": id, "sha": COMMIT, "siblings": siblings })).into_response()
}
