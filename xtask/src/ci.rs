//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use std::time::Instant;

use crate::cmd::{cargo, has_cargo_subcommand, step};

pub(crate) fn run() -> anyhow::Result<()> {
    let started = Instant::now();

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    step("format", fmt)?;

    // The tests run real models; fetching is a no-op when they are already cached.
    println!("\n==> models: cargo xtask fetch-models");
    crate::fetch_models::run(&crate::fetch_models::FetchModelsArgs::default())?;

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    step("clippy", clippy)?;

    // Every publishable crate packs with complete metadata; without verifying
    // (that would rebuild each crate from its .crate file) this takes seconds.
    let mut package = cargo();
    package.args([
        "package",
        "--workspace",
        "--exclude",
        "xtask",
        "--exclude",
        "mdsa-backend-command",
        "--exclude",
        "mdsa-py",
        "--no-verify",
        "--locked",
    ]);
    step("package", package)?;

    // Optional backends must keep compiling even though tests run without them.
    let mut gpu = cargo();
    gpu.args([
        "check",
        "--locked",
        "--package",
        "mdsa-cli",
        "--features",
        "gpu,wgpu",
    ]);
    step("feature check (gpu, wgpu)", gpu)?;

    // nextest prints one summary for the whole workspace; fall back to cargo test.
    let mut tests = cargo();
    if has_cargo_subcommand("nextest") {
        tests.args([
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--no-fail-fast",
        ]);
    } else {
        tests.args(["test", "--workspace", "--locked", "--no-fail-fast"]);
    }
    tests.env("HF_HUB_OFFLINE", "1");
    // The server test with the official OpenAI client runs when a python
    // can host it.
    let client = crate::openai_client::python();
    if let Ok(Some(python)) = &client {
        tests.env("MDSA_OPENAI_PYTHON", python);
    }
    // In CI the dashboard's browser test and the OpenAI client test must run,
    // not skip: .ci/run installs chromium and chromedriver, and python3 is there.
    if std::env::var_os("CI").is_some() {
        client?;
        tests.env("MDSA_REQUIRE_BROWSER", "1");
        tests.env("MDSA_REQUIRE_OPENAI_CLIENT", "1");
    } else if let Err(error) = &client {
        println!("note: the OpenAI client test will skip: {error:#}");
    }
    step("tests", tests)?;

    // Every example builds; those that finish in seconds run and are checked.
    crate::examples::run()?;

    // The Python package: built by maturin, installed in a fresh venv, tested
    // with pytest on the fetched models (with the examples in examples/python).
    crate::wheel::run(&crate::wheel::WheelArgs::default())?;

    // nextest does not run doc tests.
    let mut doc = cargo();
    doc.args(["test", "--workspace", "--locked", "--doc"]);
    step("doc tests", doc)?;

    println!(
        "\nci: all steps passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
