//! `mdsa models`: what the Hugging Face cache holds and what the configuration
//! refers to, with size, format, architecture, quantization and users.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use mdsa::engine::{ModelRef, ResolveOptions, ResolvedModel};
use mdsa::hw::format_bytes;
use mdsa::local::GgufSummary;

use super::fetch::file_len;
use super::system::SystemArgs;

/// Arguments of `mdsa models`.
#[derive(Debug, clap::Args)]
pub(crate) struct ModelsArgs {
    /// One JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

/// One row: a cached model, a configured one, or both.
#[derive(Debug, Default)]
struct Row {
    /// The reference (`org/name`, `org/name:file.gguf` or a local path).
    reference: String,
    /// Whether its files are on disk.
    cached: bool,
    /// Bytes on disk.
    bytes: u64,
    /// `gguf` or `safetensors`.
    format: Option<String>,
    /// `llama`, `bert`, ... (GGUF `general.architecture`, `config.json` `model_type`).
    architecture: Option<String>,
    /// The GGUF file type (`Q4_K_M`, ...) or `config.json`'s `torch_dtype`.
    quantization: Option<String>,
    /// The config's model ids with this source.
    models: Vec<String>,
    /// `router` and the domains answered by it.
    used_by: Vec<String>,
}

impl Row {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "reference": self.reference,
            "cached": self.cached,
            "bytes": self.bytes,
            "format": self.format,
            "architecture": self.architecture,
            "quantization": self.quantization,
            "models": self.models,
            "used_by": self.used_by,
        })
    }
}

pub(crate) fn run(args: &ModelsArgs, system: &SystemArgs) -> anyhow::Result<()> {
    let (config, registry) = super::domains::load(system)?;
    let opts = ResolveOptions {
        allow_download: false,
        ..config.resolve_options()
    };
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    if let Some(cache) = opts.effective_cache_dir() {
        for reference in cached_references(&cache) {
            rows.insert(reference.clone(), describe(&reference, &opts));
        }
    }
    for spec in &config.models {
        let key = canonical(&spec.source);
        let row = rows
            .entry(key.clone())
            .or_insert_with(|| describe(&key, &opts));
        row.models.push(spec.id.clone());
        if spec.id == config.encoder {
            row.used_by.push("router".into());
        }
        for domain in registry.iter() {
            let model = registry
                .model_for(domain)
                .unwrap_or(&config.default_generator);
            if model == spec.id || canonical(model) == key {
                row.used_by.push(domain.id.clone());
            }
        }
    }
    let rows: Vec<Row> = rows.into_values().collect();
    if args.json {
        let rows: Vec<serde_json::Value> = rows.iter().map(Row::to_json).collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "model",
        "size",
        "format",
        "arch",
        "quant",
        "config id",
        "used by",
    ]);
    let dash = || "-".to_string();
    for row in &rows {
        table.add_row([
            row.reference.clone(),
            if row.cached {
                format_bytes(row.bytes)
            } else {
                "missing".into()
            },
            row.format.clone().unwrap_or_else(dash),
            row.architecture.clone().unwrap_or_else(dash),
            row.quantization.clone().unwrap_or_else(dash),
            row.models.join(", "),
            row.used_by.join(", "),
        ]);
    }
    outln!("{table}");
    if let Some(cache) = opts.effective_cache_dir() {
        outln!("cache: {}", cache.display());
    }
    Ok(())
}

/// The reference as `ModelRef` displays it (so `org/name` matches itself
/// however it was written); unparsable text stays as written.
fn canonical(text: &str) -> String {
    text.parse::<ModelRef>()
        .map_or_else(|_| text.to_owned(), |r| r.to_string())
}

/// Every model in the cache: `org/name` for a Hugging Face layout,
/// `org/name:FILE` for each GGUF file, over all snapshots.
fn cached_references(cache: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir(cache).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(repo) = name
            .strip_prefix("models--")
            .and_then(|r| r.split_once("--"))
            .map(|(org, name)| format!("{org}/{name}"))
        else {
            continue;
        };
        for snapshot in super::fetch::subdirs(&entry.path().join("snapshots")) {
            let mut ggufs = Vec::new();
            gguf_files(&snapshot, &snapshot, &mut ggufs);
            if snapshot.join("config.json").is_file() {
                found.push(repo.clone());
            }
            found.extend(ggufs.into_iter().map(|file| format!("{repo}:{file}")));
        }
    }
    found.sort();
    found.dedup();
    found
}

fn gguf_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            gguf_files(root, &path, out);
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
            && let Ok(relative) = path.strip_prefix(root)
        {
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// What can be read about `reference` from the cache (nothing is downloaded).
fn describe(reference: &str, opts: &ResolveOptions) -> Row {
    let mut row = Row {
        reference: reference.to_owned(),
        ..Row::default()
    };
    let Ok(resolved) = reference.parse::<ModelRef>().and_then(|r| r.resolve(opts)) else {
        return row;
    };
    row.cached = true;
    match resolved {
        ResolvedModel::Gguf { path } => {
            row.bytes = file_len(&path);
            row.format = Some("gguf".into());
            if let Some(summary) = GgufSummary::read(&path) {
                row.architecture = summary.architecture;
                row.quantization = summary.file_type;
            }
        }
        ResolvedModel::SafetensorsDir {
            config, weights, ..
        } => {
            row.bytes = weights.iter().map(|w| file_len(w)).sum();
            row.format = Some("safetensors".into());
            let json: Option<serde_json::Value> = fs::read(&config)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let field = |name: &str| {
                json.as_ref()
                    .and_then(|j| j.get(name))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            row.architecture = field("model_type");
            row.quantization = field("torch_dtype").or_else(|| field("dtype"));
        }
    }
    row
}
