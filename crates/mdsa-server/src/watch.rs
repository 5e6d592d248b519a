//! Reloads the domains when their file changes on disk.
//!
//! It polls the file's modification time and size rather than subscribing to
//! file-system events: one `stat` a second costs nothing, and it also works
//! where inotify does not (network file systems, some container mounts, and
//! editors that replace the file instead of writing it).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use mdsa::domains::DomainRegistry;

use crate::state::AppState;

/// What identifies a version of the file.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Watches `path` every `interval` until the task is dropped; each change is
/// parsed and, when valid, swapped in atomically. A file with an error is
/// reported and changes nothing: the server keeps answering with the domains
/// it has.
pub async fn watch_domains(state: AppState, path: PathBuf, interval: Duration) {
    let mut last = stamp(&path);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = stamp(&path);
        if now == last || now.is_none() {
            // Missing for a moment is normal while an editor swaps files.
            continue;
        }
        last = now;
        let mdsa = state.mdsa().clone();
        let file = path.clone();
        let result = tokio::task::spawn_blocking(move || {
            let domains = DomainRegistry::from_file(&file).map_err(|e| e.to_string())?;
            mdsa.reload_domains(domains).map_err(|e| e.to_string())?;
            Ok::<_, String>(mdsa.domain_ids())
        })
        .await;
        match result {
            Ok(Ok(ids)) => {
                tracing::info!(path = %path.display(), domains = ?ids, "domains file changed: reloaded")
            }
            Ok(Err(error)) => {
                tracing::warn!(path = %path.display(), "domains file changed but was not reloaded: {error}")
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), "reloading the domains failed: {error}")
            }
        }
    }
}
