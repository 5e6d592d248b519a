//! Append-only JSONL file of request records, rotated by size.
//!
//! One JSON object per line: JSON escapes newlines inside strings, so a line
//! is always exactly one record, and a torn last line after a crash loses
//! one record rather than the file.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::MonitorError;
use crate::export::read_jsonl_from;
use crate::record::RequestRecord;

/// Where and how big the JSONL request log may grow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkConfig {
    /// The active file, e.g. `logs/requests.jsonl`.
    pub path: PathBuf,
    /// Rotate before a write would make the active file larger than this.
    /// A single record larger than this still goes, alone, into a fresh file.
    pub max_bytes: u64,
    /// How many rotated files (`path.1` newest … `path.N` oldest) to keep;
    /// older ones are deleted. With 0, rotating discards the active file.
    pub max_files: usize,
}

impl SinkConfig {
    /// A sink at `path` rotating at 64 MiB and keeping 5 rotated files.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SinkConfig {
            path: path.into(),
            max_bytes: 64 * 1024 * 1024,
            max_files: 5,
        }
    }

    /// Sets the rotation size.
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets how many rotated files are kept.
    #[must_use]
    pub fn with_max_files(mut self, max_files: usize) -> Self {
        self.max_files = max_files;
        self
    }
}

/// The `n`-th rotated file of `path`: `path.n` (`requests.jsonl.1` is the
/// most recent).
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    // Appending to the OsString keeps non-UTF-8 paths intact.
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Reads every record of one JSONL file, in file order.
///
/// Errors name the file and the 1-based line that failed.
pub fn read_jsonl(path: &Path) -> Result<Vec<RequestRecord>, MonitorError> {
    let origin = path.display().to_string();
    let file = File::open(path).map_err(|source| MonitorError::Read {
        origin: origin.clone(),
        source,
    })?;
    read_jsonl_from(file, &origin)
}

/// Reads the rotated files of `path` and then `path` itself, oldest record
/// first. Missing files are skipped, so a log that never rotated (or was
/// never written) reads fine.
pub fn read_jsonl_with_rotations(path: &Path) -> Result<Vec<RequestRecord>, MonitorError> {
    let mut files = Vec::new();
    // Rotated files are numbered without gaps, so the first missing one ends
    // the scan.
    for n in 1.. {
        let rotated = rotated_path(path, n);
        if !rotated.exists() {
            break;
        }
        files.push(rotated);
    }
    files.reverse();
    if path.exists() {
        files.push(path.to_owned());
    }
    let mut records = Vec::new();
    for file in files {
        records.extend(read_jsonl(&file)?);
    }
    Ok(records)
}

/// The open sink. Not thread-safe by itself; the logger wraps it in a mutex.
#[derive(Debug)]
pub(crate) struct JsonlSink {
    config: SinkConfig,
    /// Opened on first write and after rotation, and dropped after an error,
    /// so a sink whose directory appears later recovers by itself.
    file: Option<File>,
    size: u64,
}

impl JsonlSink {
    pub(crate) fn new(config: SinkConfig) -> Self {
        JsonlSink {
            config,
            file: None,
            size: 0,
        }
    }

    /// Appends one line (which must end in `\n`) for record `id`.
    ///
    /// When rotation fails the line is still appended to the active file,
    /// beyond `max_bytes`, and the rotation error is returned: an oversized
    /// log is better than a lost record.
    pub(crate) fn write_line(&mut self, line: &[u8], id: &str) -> Result<(), MonitorError> {
        let len = line.len() as u64;
        self.ensure_open()?;
        let mut rotate_error = None;
        if self.size > 0 && self.size.saturating_add(len) > self.config.max_bytes {
            if let Err(e) = self.rotate() {
                rotate_error = Some(e);
            }
            self.ensure_open()?;
        }
        let write = match self.file.as_mut() {
            // A single write_all on an O_APPEND file: each record lands
            // whole and in order, and nothing sits in a user-space buffer
            // if the process dies.
            Some(file) => file.write_all(line),
            None => Err(io::Error::other("sink file not open")),
        };
        match write {
            Ok(()) => {
                self.size += len;
                rotate_error.map_or(Ok(()), Err)
            }
            Err(source) => {
                self.file = None;
                Err(MonitorError::SinkWrite {
                    path: self.config.path.clone(),
                    id: id.to_owned(),
                    source,
                })
            }
        }
    }

    fn ensure_open(&mut self) -> Result<(), MonitorError> {
        if self.file.is_some() {
            return Ok(());
        }
        let open_error = |source| MonitorError::SinkOpen {
            path: self.config.path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.path)
            .map_err(open_error)?;
        // Existing content counts towards max_bytes, so restarts rotate on
        // schedule instead of growing the file forever.
        self.size = file.metadata().map_err(open_error)?.len();
        self.file = Some(file);
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), MonitorError> {
        self.file = None;
        let path = &self.config.path;
        let max = self.config.max_files;
        if max == 0 {
            remove_if_exists(path)?;
        } else {
            remove_if_exists(&rotated_path(path, max))?;
            for n in (1..max).rev() {
                rename_if_exists(&rotated_path(path, n), &rotated_path(path, n + 1))?;
            }
            rename_if_exists(path, &rotated_path(path, 1))?;
        }
        Ok(())
    }
}

fn remove_if_exists(path: &Path) -> Result<(), MonitorError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(MonitorError::SinkRotate {
            from: path.to_owned(),
            to: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> Result<(), MonitorError> {
    // Renaming and checking NotFound avoids a racy exists() check.
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(MonitorError::SinkRotate {
            from: from.to_owned(),
            to: to.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: usize) -> (Vec<u8>, RequestRecord) {
        let record = RequestRecord::new(format!("r{id:03}"), "q");
        let mut bytes = serde_json::to_vec(&record).unwrap();
        bytes.push(b'\n');
        (bytes, record)
    }

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let line_len = line(0).0.len() as u64;
        // Three lines per file.
        let config = SinkConfig::new(&path)
            .with_max_bytes(line_len * 3)
            .with_max_files(2);
        let mut sink = JsonlSink::new(config);
        let mut all = Vec::new();
        for i in 0..10 {
            let (bytes, record) = line(i);
            sink.write_line(&bytes, &record.id).unwrap();
            all.push(record);
        }
        // 10 lines at 3 per file: [0..3) [3..6) [6..9) [9]; only two rotated
        // files survive.
        let ids = |p: &Path| {
            read_jsonl(p)
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&path), ["r009"]);
        assert_eq!(ids(&rotated_path(&path, 1)), ["r006", "r007", "r008"]);
        assert_eq!(ids(&rotated_path(&path, 2)), ["r003", "r004", "r005"]);
        assert!(!rotated_path(&path, 3).exists());
        for p in [path.clone(), rotated_path(&path, 1), rotated_path(&path, 2)] {
            assert!(fs::metadata(&p).unwrap().len() <= line_len * 3);
        }
        let kept = read_jsonl_with_rotations(&path).unwrap();
        assert_eq!(kept, all[3..]);
    }

    #[test]
    fn zero_max_files_discards_on_rotation_and_oversized_lines_go_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let mut sink = JsonlSink::new(SinkConfig::new(&path).with_max_bytes(1).with_max_files(0));
        for i in 0..3 {
            let (bytes, record) = line(i);
            sink.write_line(&bytes, &record.id).unwrap();
        }
        let records = read_jsonl(&path).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].id, "r002");
        assert!(!rotated_path(&path, 1).exists());
    }

    #[test]
    fn reopening_counts_existing_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let (bytes, record) = line(0);
        let config = SinkConfig::new(&path).with_max_bytes(bytes.len() as u64 + 1);
        JsonlSink::new(config.clone())
            .write_line(&bytes, &record.id)
            .unwrap();
        // A new sink (a restart) must rotate instead of appending.
        JsonlSink::new(config)
            .write_line(&bytes, &record.id)
            .unwrap();
        assert_eq!(read_jsonl(&path).unwrap().len(), 1);
        assert_eq!(read_jsonl(&rotated_path(&path, 1)).unwrap().len(), 1);
    }

    #[test]
    fn missing_directory_is_an_open_error_naming_the_path_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("log.jsonl");
        let mut sink = JsonlSink::new(SinkConfig::new(&path));
        let (bytes, record) = line(0);
        let err = sink.write_line(&bytes, &record.id).unwrap_err();
        assert!(matches!(&err, MonitorError::SinkOpen { path: p, .. } if *p == path));
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        fs::create_dir(dir.path().join("missing")).unwrap();
        sink.write_line(&bytes, &record.id).unwrap();
        assert_eq!(read_jsonl(&path).unwrap(), [record]);
    }

    #[test]
    fn read_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let (bytes, _) = line(0);
        let mut content = bytes.clone();
        content.extend_from_slice(b"\n");
        content.extend_from_slice(&bytes[..bytes.len() / 2]);
        fs::write(&path, content).unwrap();
        let err = read_jsonl(&path).unwrap_err();
        assert!(
            matches!(err, MonitorError::JsonlLine { line: 3, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("{}:3:", path.display())),
            "{err}"
        );

        let err = read_jsonl(&dir.path().join("nope.jsonl")).unwrap_err();
        assert!(err.to_string().contains("nope.jsonl"), "{err}");
        assert!(
            read_jsonl_with_rotations(&dir.path().join("nope.jsonl"))
                .unwrap()
                .is_empty()
        );
    }
}
