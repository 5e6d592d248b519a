//! `cargo xtask gpu-check`: what to run on a machine with a GPU.
//!
//! Builds the CLI with the wgpu backend (and CUDA where its toolkit is present),
//! prints the GPUs wgpu sees, and generates on `gpu:0`, reporting tokens/s. CI
//! only checks that these features compile.

use crate::cmd::{cargo, step};

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let backend = match args.first().map(String::as_str) {
        None | Some("wgpu") => "wgpu",
        Some("cuda") => "cuda",
        Some(other) => anyhow::bail!("unknown backend {other:?}: expected wgpu or cuda"),
    };
    crate::fetch_models::run(&[])?;
    let features = format!("gpu,{backend}");
    let mdsa = |args: &[&str]| {
        let mut command = cargo();
        command.args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "mdsa-cli",
            "--features",
            &features,
            "--",
        ]);
        command.args(args);
        command
    };
    step("hardware", mdsa(&["hw"]))?;
    step(
        "generate on gpu:0",
        mdsa(&[
            "generate",
            "--device",
            "gpu:0",
            "--dtype",
            "f32",
            "--chat",
            "--stats",
            "--max-tokens",
            "64",
            "What is the capital of France?",
        ]),
    )?;
    step(
        "generate on cpu (same binary, for the ratio)",
        mdsa(&[
            "generate",
            "--device",
            "cpu",
            "--chat",
            "--stats",
            "--max-tokens",
            "64",
            "What is the capital of France?",
        ]),
    )
}
