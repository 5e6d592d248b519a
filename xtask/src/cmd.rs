//! Running commands with a visible header and timing.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// The workspace root (xtask lives one level below it).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or(manifest_dir.clone(), PathBuf::from)
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, relative to the workspace
/// root when relative, else `target/`).
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
    {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// `cargo` as the running toolchain knows it.
pub(crate) fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Runs a step, printing what runs and how long it took; fails on a non-zero exit.
pub(crate) fn step(name: &str, mut command: Command) -> anyhow::Result<()> {
    println!("\n==> {name}: {}", describe(&command));
    let started = Instant::now();
    let status = command
        .status()
        .with_context(|| format!("could not start {}", describe(&command)))?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("step {name:?} failed ({status}) after {seconds:.1} s");
    }
    println!("==> {name}: ok in {seconds:.1} s");
    Ok(())
}

/// Whether a cargo subcommand such as `nextest` is installed.
pub(crate) fn has_cargo_subcommand(name: &str) -> bool {
    cargo()
        .args([name, "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
