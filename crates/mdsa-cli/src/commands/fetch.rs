//! `mdsa pull` and `mdsa rm`: the Hugging Face cache, by model reference; and
//! the download progress every command shows while it fetches a model.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use mdsa::engine::{DownloadProgress, ModelRef, ResolveOptions, ResolvedModel};
use mdsa::hw::format_bytes;

use super::system::SystemArgs;

/// Arguments of `mdsa pull`.
#[derive(Debug, clap::Args)]
pub(crate) struct PullArgs {
    /// Models to download: Hub ids such as `org/name`, `org/name@revision` or
    /// `org/name:file.gguf` (local paths are only checked).
    #[arg(required = true, value_name = "REF")]
    refs: Vec<String>,
}

/// Arguments of `mdsa rm`.
#[derive(Debug, clap::Args)]
pub(crate) struct RmArgs {
    /// What to remove: `org/name` (the whole repo), `org/name@revision` (one
    /// snapshot) or `org/name:file.gguf` (one file).
    #[arg(value_name = "REF")]
    reference: String,
}

/// `mdsa pull REF...`.
pub(crate) fn pull(args: &PullArgs, system: &SystemArgs) -> anyhow::Result<()> {
    let opts = system.resolve_options()?;
    for text in &args.refs {
        let model: ModelRef = text.parse()?;
        let resolved = fetch(&model, &opts).with_context(|| format!("pulling {model}"))?;
        let (path, bytes) = match &resolved {
            ResolvedModel::Gguf { path } => (path.clone(), file_len(path)),
            ResolvedModel::SafetensorsDir { dir, weights, .. } => {
                (dir.clone(), weights.iter().map(|w| file_len(w)).sum())
            }
        };
        outln!("{model}\t{}\t{}", format_bytes(bytes), path.display());
    }
    Ok(())
}

/// Resolves `model`, downloading what is missing with progress on stderr: bars
/// (bytes, rate, ETA) on a terminal, a line per file otherwise.
pub(crate) fn fetch(model: &ModelRef, opts: &ResolveOptions) -> anyhow::Result<ResolvedModel> {
    let mut progress = Progress::default();
    let resolved = model.resolve_with_progress(opts, &mut |p| progress.update(p));
    progress.clear();
    Ok(resolved?)
}

/// Download progress on stderr, one bar (or line) per file.
#[derive(Default)]
pub(crate) struct Progress {
    bars: HashMap<String, ProgressBar>,
    /// Files announced in plain mode (not a terminal).
    announced: BTreeSet<String>,
}

impl Progress {
    pub(crate) fn update(&mut self, p: DownloadProgress<'_>) {
        if !std::io::stderr().is_terminal() {
            self.plain(p);
            return;
        }
        let bar = self.bars.entry(p.file.to_owned()).or_insert_with(|| {
            let bar = ProgressBar::new(p.total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(p.file.to_owned());
            bar
        });
        bar.set_position(p.downloaded);
        if p.done {
            bar.finish();
        }
    }

    #[allow(clippy::print_stderr)]
    fn plain(&mut self, p: DownloadProgress<'_>) {
        // A file already cached reports only `done`: nothing to say about it.
        if !p.done && self.announced.insert(p.file.to_owned()) {
            eprintln!("downloading {} ({})", p.file, format_bytes(p.total));
        } else if p.done && self.announced.remove(p.file) {
            eprintln!("downloaded {} ({})", p.file, format_bytes(p.total));
        }
    }

    pub(crate) fn clear(&mut self) {
        for bar in self.bars.values() {
            bar.finish_and_clear();
        }
    }
}

/// `mdsa rm REF`.
pub(crate) fn rm(args: &RmArgs, system: &SystemArgs) -> anyhow::Result<()> {
    let model: ModelRef = args.reference.parse()?;
    let ModelRef::Hub {
        repo,
        revision,
        file,
    } = &model
    else {
        bail!("{model} is a local path; `mdsa rm` removes only Hub models from the cache");
    };
    let opts = system.resolve_options()?;
    let cache = opts
        .effective_cache_dir()
        .context("cannot locate the Hugging Face cache (set HF_HUB_CACHE or HF_HOME)")?;
    let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    if !repo_dir.is_dir() {
        bail!("{repo} is not in the cache at {}", cache.display());
    }
    let before = dir_size(&repo_dir.join("blobs"));
    if revision.is_none() && file.is_none() {
        fs::remove_dir_all(&repo_dir)
            .with_context(|| format!("removing {}", repo_dir.display()))?;
        outln!("removed {repo} ({})", format_bytes(before));
        return Ok(());
    }
    let snapshots = match revision {
        Some(revision) => vec![
            snapshot_of(&repo_dir, revision)
                .with_context(|| format!("{repo}@{revision} is not in the cache"))?,
        ],
        None => subdirs(&repo_dir.join("snapshots")),
    };
    let mut removed = false;
    for snapshot in snapshots {
        match file {
            Some(file) => {
                let path = snapshot.join(file);
                if path.symlink_metadata().is_ok() {
                    fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                    removed = true;
                }
            }
            None => {
                fs::remove_dir_all(&snapshot)
                    .with_context(|| format!("removing {}", snapshot.display()))?;
                removed = true;
            }
        }
    }
    if !removed {
        bail!("{model} is not in the cache at {}", cache.display());
    }
    if let Some(revision) = revision
        && file.is_none()
    {
        // The ref named a snapshot that is gone.
        let _ = fs::remove_file(repo_dir.join("refs").join(revision));
    }
    remove_unlinked_blobs(&repo_dir)?;
    let freed = before.saturating_sub(dir_size(&repo_dir.join("blobs")));
    outln!("removed {model} ({})", format_bytes(freed));
    Ok(())
}

/// `snapshots/COMMIT` for a revision: `refs/REVISION` or the commit itself.
fn snapshot_of(repo_dir: &Path, revision: &str) -> Option<PathBuf> {
    let commit = fs::read_to_string(repo_dir.join("refs").join(revision))
        .map(|c| c.trim().to_owned())
        .unwrap_or_else(|_| revision.to_owned());
    let snapshot = repo_dir.join("snapshots").join(commit);
    snapshot.is_dir().then_some(snapshot)
}

/// The folders directly inside `dir` (none when it is missing).
pub(crate) fn subdirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// Deletes blobs no snapshot links to any more (snapshot files are symlinks
/// into `blobs/`, as hf-hub and Python's `huggingface_hub` write them).
fn remove_unlinked_blobs(repo_dir: &Path) -> anyhow::Result<()> {
    let mut linked = BTreeSet::new();
    let mut stack = subdirs(&repo_dir.join("snapshots"));
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            } else if let Ok(target) = fs::read_link(&path)
                && let Some(name) = target.file_name()
            {
                linked.insert(name.to_owned());
            }
        }
    }
    for entry in fs::read_dir(repo_dir.join("blobs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name();
        // Lock files belong to pulls that may be running.
        if !linked.contains(&name) && !name.to_string_lossy().ends_with(".lock") {
            fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// The size of `path`; 0 when it cannot be read.
pub(crate) fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or_default()
}
