//! `cargo xtask gpu-check`: what to run on a machine with a GPU.
//!
//! Builds the CLI with the wgpu backend (and CUDA where its toolkit is present),
//! prints the GPUs wgpu sees, and generates on `gpu:0` with f32, int8 and int4
//! weights, reporting device, dtype, resident bytes and tokens/s for each. CI
//! only checks that these features compile.

use crate::cmd::{cargo, step};

/// On a GPU machine: build with the GPU backend and generate on gpu:0.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub(crate) struct GpuCheckArgs {
    /// The GPU backend of mdsa-cli to build.
    #[arg(value_enum, default_value_t)]
    backend: Backend,
}

/// A GPU backend, by its cargo feature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    /// Vulkan, Metal or DX12.
    #[default]
    Wgpu,
    /// CUDA, where its toolkit is present.
    Cuda,
}

impl Backend {
    /// The cargo feature that selects it.
    fn feature(self) -> &'static str {
        match self {
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }
}

pub(crate) fn run(args: &GpuCheckArgs) -> anyhow::Result<()> {
    let backend = args.backend.feature();
    crate::fetch_models::run(&crate::fetch_models::FetchModelsArgs::default())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<GpuCheckArgs, clap::Error> {
        match crate::tests::parse(&[&["gpu-check"], args].concat())?.task {
            Some(crate::Task::GpuCheck(args)) => Ok(args),
            other => panic!("not gpu-check: {other:?}"),
        }
    }

    #[test]
    fn the_backend_is_wgpu_or_cuda() {
        assert_eq!(parse(&[]).unwrap().backend.feature(), "wgpu");
        assert_eq!(parse(&["wgpu"]).unwrap().backend.feature(), "wgpu");
        assert_eq!(parse(&["cuda"]).unwrap().backend.feature(), "cuda");
        let error = parse(&["metal"]).unwrap_err();
        assert!(
            error.to_string().contains("[possible values: wgpu, cuda]"),
            "{error}"
        );
    }
}
