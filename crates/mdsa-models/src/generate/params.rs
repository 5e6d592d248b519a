//! What a caller asks of one generation, and what it gets back.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::sampling::SamplingParams;

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
