//! Every decoder family against transformers, from both file formats.
//!
//! `tests/fixtures/families/<name>/` holds a tiny random-weight model of each
//! family made by `scripts/reference/families.py`: Hugging Face safetensors
//! (`hf/`), llama.cpp's conversion of it to GGUF (`model.f32.gguf`, and
//! quantized files), and transformers' f32 logits at every position of three
//! prompts with its greedy continuation (`reference.json`, `*.logits.f32`).
//!
//! - f32 path, both formats: the logits at every prompt position within 1e-3
//!   of transformers' (position by position through the KV cache, and the
//!   whole prompt in one pass), and greedy tokens identical.
//! - stored quantized GGUFs: top-1 agreement with transformers at ≥ 95 % of
//!   positions.

// The measured differences are printed for the closing notes.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

use mdsa_engine::source::{ModelRef, ResolveOptions};
use mdsa_engine::{ChatMessage, GenerationParams, TextGenerator, WeightFormat};
use mdsa_models::arch::decoder::{self, Decoder, DecoderConfig, RopeScaling};
use mdsa_models::generate::{DecoderGenerator, DecoderOptions};
use mdsa_models::gguf::GgufFile;
use mdsa_models::weights::SafetensorsWeights;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
struct Reference {
    family: String,
    prompts: Vec<Prompt>,
    chat_sample: ChatSample,
    /// The chat prompt as llama.cpp tokenizes it, and transformers' greedy
    /// answer to those ids (`scripts/reference/families_gguf_chat.py`).
    #[serde(default)]
    gguf_chat: Option<ExpectedChat>,
    #[serde(default)]
    eos_token_id: Option<EosIds>,
}

impl Reference {
    /// The ids transformers stops generating at.
    fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            Some(EosIds::One(id)) => vec![*id],
            Some(EosIds::Many(ids)) => ids.clone(),
            None => Vec::new(),
        }
    }
}

/// One id or several (`generation_config.json` style).
#[derive(Deserialize)]
#[serde(untagged)]
enum EosIds {
    One(u32),
    Many(Vec<u32>),
}

/// A chat prompt's ids and the greedy tokens that follow them.
#[derive(Deserialize, Clone)]
struct ExpectedChat {
    ids: Vec<u32>,
    greedy: Vec<u32>,
}

/// transformers' `apply_chat_template` of one user message.
#[derive(Deserialize)]
struct ChatSample {
    messages: Vec<ChatMessage>,
    rendered: String,
}

#[derive(Deserialize)]
struct Prompt {
    kind: String,
    text: String,
    ids: Vec<u32>,
    greedy: Vec<u32>,
    logits_file: String,
    logits_shape: [usize; 2],
}

/// The unquantized conversions, by the dtype they hold.
const UNQUANTIZED_GGUF: [&str; 3] = ["model.f32.gguf", "model.bf16.gguf", "model.f16.gguf"];

struct Fixture {
    dir: PathBuf,
    reference: Reference,
}

impl Fixture {
    fn open(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/families")
            .join(name);
        let text = std::fs::read_to_string(dir.join("reference.json"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let reference = serde_json::from_str(&text).expect("reference.json");
        Self { dir, reference }
    }

    /// transformers' `[positions, vocab]` logits of prompt `i`.
    fn logits(&self, prompt: &Prompt) -> Vec<f32> {
        let bytes = std::fs::read(self.dir.join(&prompt.logits_file)).expect("logits file");
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(
            values.len(),
            prompt.logits_shape[0] * prompt.logits_shape[1]
        );
        values
    }

    /// The GGUF holding the checkpoint's own values, if converted.
    fn unquantized_gguf(&self) -> Option<&'static str> {
        UNQUANTIZED_GGUF
            .into_iter()
            .find(|file| self.dir.join(file).exists())
    }

    fn hf(&self, format: WeightFormat) -> Box<dyn Decoder> {
        let hf = self.dir.join("hf");
        let config = DecoderConfig::from_hf_file(&hf.join("config.json")).expect("config.json");
        let mut shards: Vec<PathBuf> = std::fs::read_dir(&hf)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        shards.sort();
        let weights = SafetensorsWeights::open(&shards).expect("safetensors");
        decoder::load_safetensors(config, &weights, format, &burn_device())
            .unwrap_or_else(|e| panic!("{}: {e}", self.reference.family))
    }

    fn gguf(&self, file: &str, format: WeightFormat) -> Box<dyn Decoder> {
        let file = Arc::new(GgufFile::open(self.dir.join(file)).expect("gguf"));
        decoder::load_gguf(file, format, &burn_device())
            .unwrap_or_else(|e| panic!("{}: {e}", self.reference.family))
    }
}

fn burn_device() -> burn::tensor::Device {
    mdsa_models::backend::default_device()
}

fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Logits at every position of `ids`, one token at a time through the cache.
fn stepwise(model: &dyn Decoder, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = model.new_cache();
    ids.iter()
        .map(|&id| model.forward(&[id], &mut cache).expect("forward"))
        .collect()
}

/// Greedy continuation of `ids`, `n` tokens (the prompt in one pass).
fn greedy(model: &dyn Decoder, ids: &[u32], n: usize) -> Vec<u32> {
    let mut cache = model.new_cache();
    let mut logits = model.forward(ids, &mut cache).expect("prefill");
    let mut out = Vec::new();
    while out.len() < n {
        let next = argmax(&logits);
        out.push(next);
        logits = model.forward(&[next], &mut cache).expect("step");
    }
    out
}

/// Up to which prompt length every position can be checked one step at a
/// time. Scalings whose tables depend on the sequence length (LongRoPE,
/// dynamic NTK) rotate a long prompt run in one pass (as transformers ran it)
/// differently from the same prompt run step by step; such prompts are
/// checked on their one-pass logits and greedy tokens.
fn stepwise_limit(config: &DecoderConfig) -> usize {
    match config.rope_scaling {
        RopeScaling::LongRope {
            original_context, ..
        }
        | RopeScaling::DynamicNtk {
            original_context, ..
        } => original_context,
        _ => usize::MAX,
    }
}

/// The f32 path of `model` against transformers: every position's logits,
/// the one-pass prefill's last logits, and the greedy tokens. `horizon`
/// bounds the positions the file can describe at all (a GGUF converted
/// without the model's sliding window matches only within the window).
fn assert_f32_parity(fixture: &Fixture, model: &dyn Decoder, what: &str, horizon: usize) {
    let mut worst = 0.0f32;
    let limit = stepwise_limit(model.config());
    let horizon = horizon.min(model.config().context_length);
    for (i, prompt) in fixture.reference.prompts.iter().enumerate() {
        let expected = fixture.logits(prompt);
        let vocab = prompt.logits_shape[1];
        let n = prompt.ids.len();
        assert_eq!(model.config().vocab_size, vocab, "{what}: vocabulary size");
        if n <= limit {
            let steps = stepwise(model, &prompt.ids[..n.min(horizon)]);
            for (p, got) in steps.iter().enumerate() {
                let diff = max_diff(got, &expected[p * vocab..(p + 1) * vocab]);
                worst = worst.max(diff);
                assert!(
                    diff <= 1e-3,
                    "{what}: prompt {i} position {p}: max logit difference {diff}"
                );
            }
        }
        if n + prompt.greedy.len() > horizon {
            continue;
        }
        let mut cache = model.new_cache();
        let last = model.forward(&prompt.ids, &mut cache).expect("prefill");
        let diff = max_diff(&last, &expected[(n - 1) * vocab..n * vocab]);
        worst = worst.max(diff);
        assert!(diff <= 1e-3, "{what}: prompt {i} one-pass prefill: {diff}");
        let tokens = greedy(model, &prompt.ids, prompt.greedy.len());
        assert_eq!(tokens, prompt.greedy, "{what}: prompt {i} greedy tokens");
    }
    eprintln!("{what}: max logit difference {worst:e}");
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Share of prompt positions where `model`'s top-1 token is transformers'.
fn top1_agreement(fixture: &Fixture, model: &dyn Decoder) -> f64 {
    let (mut same, mut total) = (0usize, 0usize);
    for prompt in &fixture.reference.prompts {
        let expected = fixture.logits(prompt);
        let vocab = prompt.logits_shape[1];
        for (p, got) in stepwise(model, &prompt.ids).iter().enumerate() {
            total += 1;
            same += usize::from(argmax(got) == argmax(&expected[p * vocab..(p + 1) * vocab]));
        }
    }
    same as f64 / total as f64
}

/// The whole generator of each file: the model's own chat template renders
/// what transformers rendered, the prompt tokenizes to `expected`'s ids, and
/// greedy generation gives `expected`'s tokens up to the first id that ends
/// an answer, where it stops (when the answer fits the `horizon` the file
/// can describe, see [`assert_f32_parity`]).
fn assert_chat_parity(
    fixture: &Fixture,
    generator: &DecoderGenerator,
    expected: &ExpectedChat,
    what: &str,
    horizon: usize,
) {
    let sample = &fixture.reference.chat_sample;
    let rendered = generator
        .render_chat(&sample.messages)
        .expect("chat template");
    assert_eq!(rendered, sample.rendered, "{what}: rendered chat");
    let ids = generator.encode_prompt(&rendered).expect("encode");
    assert_eq!(ids, expected.ids, "{what}: chat prompt ids");
    if ids.len() + expected.greedy.len() > horizon {
        return;
    }
    let params = GenerationParams {
        max_tokens: expected.greedy.len(),
        ..GenerationParams::default()
    };
    let output = generator
        .generate(&rendered, &params, &mut |_| {
            std::ops::ControlFlow::Continue(())
        })
        .expect("generate");
    let eos = fixture.reference.eos_ids();
    let until_eos: Vec<u32> = expected
        .greedy
        .iter()
        .copied()
        .take_while(|id| !eos.contains(id))
        .collect();
    assert_eq!(output.token_ids, until_eos, "{what}: greedy chat answer");
}

/// transformers' chat prompt: its ids and greedy answer.
fn transformers_chat(fixture: &Fixture) -> ExpectedChat {
    let rendered = &fixture.reference.chat_sample.rendered;
    let prompt = fixture
        .reference
        .prompts
        .iter()
        .find(|p| p.kind == "chat" && &p.text == rendered)
        .expect("a reference prompt of the rendered chat");
    ExpectedChat {
        ids: prompt.ids.clone(),
        greedy: prompt.greedy.clone(),
    }
}

fn check_family(name: &str) {
    let fixture = Fixture::open(name);
    let hf = fixture.hf(WeightFormat::F32);
    assert_f32_parity(
        &fixture,
        hf.as_ref(),
        &format!("{name} safetensors"),
        usize::MAX,
    );
    // llama.cpp's converter drops Mistral's sliding window (llama.cpp ignores
    // it too): such a file matches transformers within the window.
    let mut horizon = usize::MAX;
    if let Some(file) = fixture.unquantized_gguf() {
        let gguf = fixture.gguf(file, WeightFormat::F32);
        if let (Some(window), None) = (hf.config().sliding_window, gguf.config().sliding_window) {
            horizon = window;
        }
        assert_f32_parity(&fixture, gguf.as_ref(), &format!("{name} GGUF"), horizon);
    }
    let mut quantized: Vec<String> = std::fs::read_dir(&fixture.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".gguf") && !UNQUANTIZED_GGUF.contains(&f.as_str()))
        .collect();
    quantized.sort();
    for file in quantized {
        let model = fixture.gguf(&file, WeightFormat::Stored);
        let agreement = top1_agreement(&fixture, model.as_ref());
        eprintln!("{name} {file}: top-1 agreement {agreement:.3}");
        assert!(
            agreement >= 0.95,
            "{name} {file}: top-1 agreement {agreement:.3} < 0.95"
        );
    }

    let options = DecoderOptions {
        format: WeightFormat::F32,
        ..DecoderOptions::default()
    };
    let hf_ref = ModelRef::LocalDir(fixture.dir.join("hf"));
    let generator = DecoderGenerator::load(&hf_ref, &ResolveOptions::offline(), &options)
        .unwrap_or_else(|e| panic!("{name} safetensors: {e}"));
    // Every id generation_config.json names ends an answer.
    let stops = generator.stop_token_ids();
    for id in fixture.reference.eos_ids() {
        assert!(
            stops.contains(&id),
            "{name}: {id} does not end an answer ({stops:?})"
        );
    }
    let expected = transformers_chat(&fixture);
    assert_chat_parity(
        &fixture,
        &generator,
        &expected,
        &format!("{name} safetensors"),
        usize::MAX,
    );
    if let Some(gguf) = fixture.unquantized_gguf() {
        let gguf = fixture.dir.join(gguf);
        let generator = DecoderGenerator::from_gguf(&gguf, &options)
            .unwrap_or_else(|e| panic!("{name} GGUF: {e}"));
        let expected = fixture
            .reference
            .gguf_chat
            .clone()
            .expect("gguf_chat (scripts/reference/families_gguf_chat.py)");
        assert_chat_parity(
            &fixture,
            &generator,
            &expected,
            &format!("{name} GGUF"),
            horizon,
        );
    }
}

#[test]
fn llama3_with_llama3_rope_scaling_sharded_bf16_tied() {
    check_family("llama3");
}

#[test]
fn qwen3_with_qk_norm_and_explicit_head_dim_f16() {
    check_family("qwen3");
}

#[test]
fn gemma2_with_softcapping_alternating_windows_and_query_scalar() {
    check_family("gemma2");
}

#[test]
fn gemma3_with_qk_norm_local_rope_base_and_layer_types() {
    check_family("gemma3");
}

#[test]
fn phi3_with_fused_projections_and_longrope() {
    check_family("phi3");
}

#[test]
fn phi4_mini_with_partial_rotary_and_tied_head() {
    check_family("phi4");
}

#[test]
fn mistral_with_a_sliding_window() {
    check_family("mistral");
}

#[test]
fn llama2_plain() {
    check_family("llama2");
}

#[test]
fn llama_with_yarn_scaling() {
    check_family("llama-yarn");
}

#[test]
fn llama_with_dynamic_ntk_scaling() {
    check_family("llama-dynamic");
}

#[test]
fn llama_with_linear_scaling() {
    check_family("llama-linear");
}
