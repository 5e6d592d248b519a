//! The reference implementations, through `scripts/reference/bench.py`: each
//! workload runs with the first given python that has its packages.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::cmd::workspace_root;

/// Workloads of bench.py and what each needs.
const WORKLOADS: [(&str, &str); 5] = [
    ("encoder", "sentence-transformers, transformers, torch"),
    (
        "onnx",
        "onnxruntime, tokenizers, torch (to export the model once)",
    ),
    ("llamacpp", "llama-cpp-python"),
    ("llamacpp-long", "llama-cpp-python"),
    ("transformers", "transformers, torch, gguf, accelerate"),
];

/// bench.py's exit status for "packages not importable".
const NOT_INSTALLED: i32 = 3;

/// Every workload's JSON, or why it did not run.
pub(crate) fn run(pythons: &[PathBuf]) -> BTreeMap<String, Result<Value, String>> {
    let script = workspace_root().join("scripts/reference/bench.py");
    WORKLOADS
        .iter()
        .map(|&(workload, needs)| {
            println!("\n==> reference: {workload}");
            let mut tried = Vec::new();
            let mut outcome = None;
            for python in pythons {
                match run_one(python, &script, workload) {
                    Ok(value) => {
                        outcome = Some(Ok(value));
                        break;
                    }
                    Err(why) => tried.push(format!("{}: {why}", python.display())),
                }
            }
            let outcome = outcome.unwrap_or_else(|| {
                Err(format!(
                    "needs {needs} (scripts/reference/install.sh); tried {}",
                    tried.join("; ")
                ))
            });
            match &outcome {
                Ok(value) => println!("{value}"),
                Err(why) => println!("not run: {why}"),
            }
            (workload.to_owned(), outcome)
        })
        .collect()
}

fn run_one(python: &PathBuf, script: &PathBuf, workload: &str) -> Result<Value, String> {
    let output = Command::new(python)
        .arg(script)
        .arg(workload)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .map_err(|e| format!("could not start: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.code() == Some(NOT_INSTALLED) {
        return Err(format!("not installed ({})", stdout.trim()));
    }
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(format!(
            "failed ({}): {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).map_err(|e| format!("printed no JSON ({e}): {last:?}"))
}
