//! `cargo xtask wheel`: builds the `mdsa` Python wheel with maturin, installs
//! it into a fresh virtual environment and runs the Python tests there.
//!
//! Both environments are throwaway ones under `target/`: maturin (pinned) in
//! one, the wheel and what the tests and examples import (pinned) in the
//! other, so nothing on the machine's own Python changes and every run tests
//! the wheel as a user's `pip install` would see it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::cmd::{step, target_dir, workspace_root};

/// The maturin the wheel is known to build with.
const MATURIN: &str = "maturin==1.16.0";

/// What the tests and the Python examples import, pinned.
const TEST_PACKAGES: &[&str] = &[
    "pytest==9.2.0",
    "numpy==2.4.6",
    "fastapi==0.165.0",
    "httpx==0.29.0",
    "streamlit==1.67.0",
];

/// Arguments of `cargo xtask wheel`.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct WheelArgs {
    /// Build with the release profile (the wheel to distribute). By default
    /// the dev profile, whose dependencies are optimised already and shared
    /// with `cargo test`, so CI builds them once.
    #[arg(long)]
    release: bool,
    /// Only build the wheel; do not install it or run the tests.
    #[arg(long)]
    no_test: bool,
    /// Extra arguments for pytest (after `--`), e.g. `-- -k stream -x`.
    #[arg(last = true)]
    pytest_args: Vec<String>,
}

pub(crate) fn run(args: &WheelArgs) -> anyhow::Result<()> {
    let wheel = build(args.release)?;
    let bytes = std::fs::metadata(&wheel)
        .with_context(|| format!("reading {}", wheel.display()))?
        .len();
    println!(
        "\nwheel: {} ({:.1} MiB)",
        wheel.display(),
        bytes as f64 / (1024.0 * 1024.0)
    );
    if args.no_test {
        return Ok(());
    }
    let python = test_env(&wheel)?;
    let root = workspace_root();
    let mut pytest = Command::new(&python);
    pytest
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root.join("crates/mdsa-py/tests"))
        .args(&args.pytest_args)
        // Import the installed wheel, never the source tree.
        .current_dir(target_dir())
        .env("MDSA_EXAMPLES_DIR", root.join("examples/python"));
    // The tests use the models `cargo xtask fetch-models` put in the cache.
    if std::env::var_os("HF_HUB_OFFLINE").is_none() {
        pytest.env("HF_HUB_OFFLINE", "1");
    }
    step("python tests", pytest)
}

/// Builds the wheel into `target/wheels/` and returns its path.
fn build(release: bool) -> anyhow::Result<PathBuf> {
    let tools = venv("wheel-build", &[MATURIN])?;
    let out = target_dir().join("wheels");
    // A fresh folder, so the one wheel in it is the one just built.
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let mut maturin = Command::new(tools.join("maturin"));
    maturin
        .current_dir(workspace_root())
        .args([
            "build",
            "--locked",
            "--manifest-path",
            "crates/mdsa-py/Cargo.toml",
        ])
        .args(["--profile", if release { "release" } else { "dev" }])
        .arg("--out")
        .arg(&out)
        .arg("--strip");
    step("wheel: maturin build", maturin)?;
    let wheels: Vec<PathBuf> = std::fs::read_dir(&out)
        .with_context(|| format!("reading {}", out.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "whl"))
        .collect();
    match wheels.as_slice() {
        [wheel] => Ok(wheel.clone()),
        _ => bail!(
            "expected one wheel in {}, found {}",
            out.display(),
            wheels.len()
        ),
    }
}

/// A fresh environment with the wheel and the test packages; its python.
fn test_env(wheel: &Path) -> anyhow::Result<PathBuf> {
    let bin = venv("wheel-test", TEST_PACKAGES)?;
    let mut install = pip_install(&bin);
    install.args(["--force-reinstall", "--no-deps"]).arg(wheel);
    step("wheel: pip install", install)?;
    Ok(bin.join("python"))
}

/// Makes `target/NAME` a new virtual environment with `packages`; its `bin`.
fn venv(name: &str, packages: &[&str]) -> anyhow::Result<PathBuf> {
    let dir = target_dir().join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let mut create = Command::new("python3");
    create.arg("-m").arg("venv").arg(&dir);
    step(&format!("{name}: virtual environment"), create)?;
    let bin = dir.join(if cfg!(windows) { "Scripts" } else { "bin" });
    let mut install = pip_install(&bin);
    install.args(packages);
    step(&format!("{name}: pip install"), install)?;
    Ok(bin)
}

/// `pip install` in the environment whose `bin` folder this is.
fn pip_install(bin: &Path) -> Command {
    let mut pip = Command::new(bin.join("python"));
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]);
    pip
}
