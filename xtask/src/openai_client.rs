//! A Python virtual environment with the official OpenAI client, for the
//! server test that drives `mdsa serve` with it (`MDSA_OPENAI_PYTHON`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

use crate::cmd::step;

/// The client version the test is known to pass with.
const OPENAI_VERSION: &str = "3.51.0";

/// The venv's python, made (once) under `target/openai-client` with the
/// pinned client. `None` when there is no `python3` on this machine.
pub(crate) fn python() -> anyhow::Result<Option<PathBuf>> {
    if Command::new("python3").arg("--version").output().is_err() {
        return Ok(None);
    }
    let venv = crate::cmd::target_dir().join("openai-client");
    let python = venv.join("bin").join("python");
    let marker = venv.join(format!("openai-{OPENAI_VERSION}"));
    if marker.exists() {
        return Ok(Some(python));
    }
    let mut create = Command::new("python3");
    create.arg("-m").arg("venv").arg(&venv);
    step("openai client: virtual environment", create)?;
    let mut install = Command::new(&python);
    install.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("openai=={OPENAI_VERSION}"),
    ]);
    step("openai client: pip install", install)?;
    std::fs::write(&marker, "").with_context(|| format!("writing {}", marker.display()))?;
    Ok(Some(python))
}
