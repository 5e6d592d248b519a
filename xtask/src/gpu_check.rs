//! `cargo xtask gpu-check`: what to run on a machine with a GPU.
//!
//! Builds the CLI with the wgpu backend (and CUDA where its toolkit is present),
//! prints the GPUs wgpu sees, and generates on `gpu:0` with f32, int8 and int4
//! weights, reporting device, dtype, resident bytes and tokens/s for each. CI
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
    // One generation per dtype on the GPU: `--stats` prints the device, dtype,
    // resident MiB and tokens/s of each (int8/int4 are burn's packed quantization there).
    for dtype in ["f32", "int8", "int4"] {
        step(
            &format!("generate on gpu:0, {dtype}"),
            mdsa(&generate_args("gpu:0", dtype)),
        )?;
    }
    step(
        "generate on cpu (same binary, for the ratio)",
        mdsa(&generate_args("cpu", "stored")),
    )
}

fn generate_args<'a>(device: &'a str, dtype: &'a str) -> [&'a str; 10] {
    [
        "generate",
        "--device",
        device,
        "--dtype",
        dtype,
        "--chat",
        "--stats",
        "--max-tokens",
        "64",
        "What is the capital of France?",
    ]
}
