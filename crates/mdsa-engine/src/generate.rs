//! Text generation as an interface: what a caller asks of one generation
//! ([`GenerationParams`], [`SamplingParams`]), what it gets back
//! ([`GenerationOutput`]), and the [`TextGenerator`] every engine implements.

use std::ops::ControlFlow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::chat::ChatMessage;
use crate::error::ModelError;

/// Limits and sampling for one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How tokens are chosen.
    pub sampling: SamplingParams,
    /// Generation stops when the text ends with any of these (they are not returned).
    pub stop: Vec<String>,
    /// When the prompt is too long for the context: `false` is an error, `true`
    /// keeps the end of the prompt (the most recent turns).
    pub truncate_prompt: bool,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            truncate_prompt: false,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced an end-of-sequence token.
    Eos,
    /// A stop string appeared.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The caller stopped the stream.
    Cancelled,
}

impl FinishReason {
    /// OpenAI's name for it (`stop`, `length`).
    pub fn openai_name(self) -> &'static str {
        match self {
            Self::Eos | Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Token counts of one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt (after truncation).
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Prompt tokens whose keys and values came from a cached prefix instead
    /// of being run (OpenAI's `prompt_tokens_details.cached_tokens`).
    #[serde(default)]
    pub cached_prompt_tokens: usize,
}

/// Where the time of one generation went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Prompt processing (prefill) time.
    pub prefill: Duration,
    /// From the start to the first generated token.
    pub time_to_first_token: Duration,
    /// Time spent generating after the first token.
    pub decode: Duration,
    /// Whole call.
    pub total: Duration,
}

impl Timings {
    /// Prompt tokens per second.
    pub fn prefill_tokens_per_second(&self, usage: &Usage) -> f64 {
        per_second(usage.prompt_tokens, self.prefill)
    }

    /// Generated tokens per second after the first one.
    pub fn decode_tokens_per_second(&self, usage: &Usage) -> f64 {
        per_second(usage.completion_tokens.saturating_sub(1), self.decode)
    }
}

fn per_second(count: usize, time: Duration) -> f64 {
    if time.is_zero() {
        0.0
    } else {
        count as f64 / time.as_secs_f64()
    }
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationOutput {
    /// The generated text (stop strings removed).
    pub text: String,
    /// The generated token ids.
    pub token_ids: Vec<u32>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// Timings.
    pub timings: Timings,
}

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingParams {
    /// 0 is greedy (always the most likely token); higher is more random.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1 = all).
    pub top_p: f32,
    /// Divide positive logits (multiply negative ones) of recently generated
    /// tokens by this; 1 disables it.
    pub repetition_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repetition_window: usize,
    /// Seed for reproducible sampling; `None` draws one from the OS.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            repetition_window: 64,
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Checks the ranges; the message names the field, what is allowed and what was found.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "temperature must be >= 0, found {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], found {}", self.top_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(format!(
                "repetition_penalty must be > 0, found {}",
                self.repetition_penalty
            ));
        }
        Ok(())
    }
}

/// How a generator has been serving: its batched passes since it loaded, and
/// the keys and values it holds now. Engines that run one request at a time,
/// or elsewhere, report none ([`TextGenerator::serving_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServingStats {
    /// Forward passes run (each one step for every sequence in it).
    pub steps: u64,
    /// Sequences summed over those passes: `sequence_steps / steps` is the
    /// mean batch size.
    pub sequence_steps: u64,
    /// The most sequences one pass ran.
    pub largest_batch: usize,
    /// Sequences running now.
    pub active_sequences: usize,
    /// Bytes of keys and values held now: the running sequences' positions
    /// and the kept prompt prefixes.
    pub kv_cache_bytes: u64,
    /// Bytes allocated for keys and values now: every cache that exists
    /// (running or kept for the next request) at its full capacity, and the
    /// kept prefixes. What a memory budget must cover.
    #[serde(default)]
    pub kv_allocated_bytes: u64,
}

/// Writes text from prompts. Shared between threads; each call keeps its own KV
/// cache, so concurrent generations do not interfere, and a cancelled or finished
/// call frees its cache when it returns.
pub trait TextGenerator: Send + Sync {
    /// Generates a continuation of `prompt` (already rendered text), calling
    /// `on_text` with every new piece; returning `ControlFlow::Break` cancels.
    fn generate(
        &self,
        prompt: &str,
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationOutput, ModelError>;

    /// Renders a conversation through the model's own chat template, ending where
    /// the assistant's answer starts.
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, ModelError>;

    /// Answers a conversation, streaming like [`generate`](Self::generate).
    /// The default renders it with [`render_chat`](Self::render_chat) and
    /// generates from that text; an engine that applies its own template (a
    /// remote server's chat endpoint) overrides it to send the messages as they are.
    fn generate_chat(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationOutput, ModelError> {
        let prompt = self.render_chat(messages)?;
        self.generate(&prompt, params, on_text)
    }

    /// Counts the tokens of a text as the model sees it.
    fn count_tokens(&self, text: &str) -> Result<usize, ModelError>;

    /// Longest prompt plus answer, in tokens.
    fn context_length(&self) -> usize;

    /// Drops whatever the generator keeps from earlier prompts (cached prompt
    /// prefixes); called when the domains, and so their prompts, change. The
    /// default keeps nothing.
    fn forget_prefixes(&self) {}

    /// Batching and KV-cache figures, for engines that batch requests; the
    /// default has none.
    fn serving_stats(&self) -> Option<ServingStats> {
        None
    }
}
