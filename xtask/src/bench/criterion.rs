//! Reading criterion's results back: `target/criterion/<group>/<bench>/new/`
//! holds `benchmark.json` (ids, throughput) and `sample.json` (every sample's
//! iteration count and total time).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;
use serde_json::Value;

/// One benchmark's per-iteration times, from criterion's samples.
#[derive(Debug, Clone)]
pub(crate) struct Measurement {
    /// `group/function`, as criterion names it.
    pub(crate) id: String,
    /// Seconds per iteration of each sample (sorted ascending).
    pub(crate) samples: Vec<f64>,
    /// Elements or bytes one iteration processes, if the bench declared it.
    pub(crate) throughput: Option<Throughput>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Throughput {
    Elements(u64),
    Bytes(u64),
}

impl Measurement {
    pub(crate) fn median(&self) -> f64 {
        let n = self.samples.len();
        if n % 2 == 1 {
            self.samples[n / 2]
        } else {
            (self.samples[n / 2 - 1] + self.samples[n / 2]) / 2.0
        }
    }
    pub(crate) fn min(&self) -> f64 {
        self.samples[0]
    }
    pub(crate) fn max(&self) -> f64 {
        self.samples[self.samples.len() - 1]
    }
}

/// Every benchmark under `dir` whose results were written at or after `since`
/// (older ones are from earlier runs), keyed by id.
pub(crate) fn read_results(
    dir: &Path,
    since: SystemTime,
) -> anyhow::Result<BTreeMap<String, Measurement>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error).context(format!("reading {}", folder.display())),
        };
        for entry in entries {
            let path = entry?.path();
            if !path.is_dir() {
                continue;
            }
            let new = path.join("new");
            let benchmark = new.join("benchmark.json");
            if benchmark.is_file() {
                let written = std::fs::metadata(&benchmark)?.modified()?;
                if written >= since {
                    let m = read_one(&new).with_context(|| {
                        format!("reading criterion results in {}", new.display())
                    })?;
                    found.insert(m.id.clone(), m);
                }
            } else if path.file_name().is_some_and(|n| n != "report") {
                pending.push(path);
            }
        }
    }
    Ok(found)
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn read_one(new: &Path) -> anyhow::Result<Measurement> {
    let benchmark = read_json(&new.join("benchmark.json"))?;
    let id = benchmark["full_id"]
        .as_str()
        .context("benchmark.json has no full_id")?
        .to_owned();
    let throughput = match &benchmark["throughput"] {
        Value::Object(map) => map.iter().find_map(|(kind, n)| {
            let n = n.as_u64()?;
            match kind.as_str() {
                "Elements" | "ElementsAndBytes" => Some(Throughput::Elements(n)),
                "Bytes" | "BytesDecimal" => Some(Throughput::Bytes(n)),
                _ => None,
            }
        }),
        _ => None,
    };
    let sample = read_json(&new.join("sample.json"))?;
    let numbers = |key: &str| -> anyhow::Result<Vec<f64>> {
        sample[key]
            .as_array()
            .with_context(|| format!("sample.json has no {key} array"))?
            .iter()
            .map(|v| v.as_f64().context("a sample is not a number"))
            .collect()
    };
    let (iters, times) = (numbers("iters")?, numbers("times")?);
    anyhow::ensure!(
        !iters.is_empty() && iters.len() == times.len(),
        "sample.json: {} iteration counts for {} times",
        iters.len(),
        times.len()
    );
    // Criterion records nanoseconds per sample of `iters` iterations.
    let mut samples: Vec<f64> = times.iter().zip(&iters).map(|(t, i)| t / i / 1e9).collect();
    samples.sort_by(f64::total_cmp);
    Ok(Measurement {
        id,
        samples,
        throughput,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_per_iteration_times_and_skips_old_runs() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let new = dir.path().join("encoder_minilm/batch32/new");
        std::fs::create_dir_all(&new)?;
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"encoder/minilm","function_id":"batch32","full_id":"encoder/minilm/batch32","throughput":{"Elements":32}}"#,
        )?;
        std::fs::write(
            new.join("sample.json"),
            r#"{"sampling_mode":"Linear","iters":[1.0,2.0,4.0],"times":[3.0e6,4.0e6,20.0e6]}"#,
        )?;
        let since = SystemTime::now() - std::time::Duration::from_secs(60);
        let found = read_results(dir.path(), since)?;
        let m = &found["encoder/minilm/batch32"];
        assert_eq!(m.samples, vec![2e-3, 3e-3, 5e-3]);
        assert_eq!(m.median(), 3e-3);
        assert_eq!((m.min(), m.max()), (2e-3, 5e-3));
        assert_eq!(m.throughput, Some(Throughput::Elements(32)));

        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        assert!(read_results(dir.path(), later)?.is_empty());
        Ok(())
    }

    #[test]
    fn a_broken_sample_file_names_itself() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let new = dir.path().join("g/f/new");
        std::fs::create_dir_all(&new)?;
        std::fs::write(new.join("benchmark.json"), r#"{"full_id":"g/f"}"#)?;
        std::fs::write(new.join("sample.json"), r#"{"iters":[1.0],"times":[]}"#)?;
        let error = read_results(dir.path(), SystemTime::UNIX_EPOCH)
            .err()
            .context("should fail")?;
        let text = format!("{error:#}");
        assert!(text.contains("g/f/new"), "{text}");
        assert!(text.contains("1 iteration counts for 0 times"), "{text}");
        Ok(())
    }
}
