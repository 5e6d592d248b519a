//! The generation loop for decoder models: prefill, then sample-decode one token
//! at a time, streaming UTF-8-safe text pieces until EOS, a stop string, the
//! token limit or the caller says stop.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use burn::tensor::Device;
use mdsa_engine::WeightFormat;

use super::batch::{BatchStats, Core, Scheduler};
use super::caches::CachePool;
use super::prefix::{PrefixCache, PrefixStats};
use super::sequence::{Event, Job};
use crate::arch::decoder::{self, Decoder, DecoderConfig};
use crate::chat::ChatTemplate;
use crate::gguf::GgufFile;
use crate::tokenizer::TextTokenizer;
use crate::weights::SafetensorsWeights;
use mdsa_engine::ModelError;
use mdsa_engine::source::{ModelRef, ResolveOptions, ResolvedModel};
use mdsa_engine::{ChatMessage, FinishReason, GenerationOutput, GenerationParams, TextGenerator};

/// Options for loading a decoder.
#[derive(Debug, Clone, Default)]
pub struct DecoderOptions {
    /// How to hold the weights.
    pub format: WeightFormat,
    /// Where to run; default: the CPU.
    pub device: Option<Device>,
    /// A chat template that replaces (or supplies) the model's own.
    pub chat_template: Option<String>,
    /// Cap on prompt plus answer in tokens, below the model's own context length
    /// (a smaller KV cache per request).
    pub max_context: Option<usize>,
    /// Requests generated together at most (default [`DEFAULT_SEQUENCES`]);
    /// more wait for a place.
    pub max_sequences: Option<usize>,
}

/// Requests one generator runs together unless told otherwise: on 2 cores, 8
/// SmolLM2 sequences decode 588 tokens/s together against 478 for 4 (`--example
/// batched_decode`), and each reserves 47 MB of KV cache at `max_context: 2048`.
pub const DEFAULT_SEQUENCES: usize = 8;

/// A decoder language model with its tokenizer and chat template. Concurrent
/// [`generate`](TextGenerator::generate) calls are batched: a scheduler
/// thread runs every active request in one forward pass per step.
#[derive(Debug)]
pub struct DecoderGenerator {
    /// The model and what the scheduler needs beside it.
    core: Arc<Core>,
    /// Started by the first generation.
    scheduler: OnceLock<Result<Scheduler, String>>,
    template: Option<ChatTemplate>,
    bos_id: Option<u32>,
    add_bos: bool,
    context: usize,
    source: String,
}

impl DecoderGenerator {
    /// Loads a decoder from a model reference: a `.gguf` file (or a Hub id naming
    /// one), or a Hugging Face directory with `config.json`, `tokenizer.json`,
    /// safetensors weights and (for chat) `tokenizer_config.json`.
    pub fn load(
        model: &ModelRef,
        resolve: &ResolveOptions,
        options: &DecoderOptions,
    ) -> Result<Self, ModelError> {
        match model.resolve(resolve)? {
            ResolvedModel::Gguf { path } => Self::from_gguf(&path, options),
            ResolvedModel::SafetensorsDir {
                dir,
                config,
                tokenizer,
                tokenizer_config,
                weights,
                ..
            } => {
                let tokenizer = tokenizer.ok_or_else(|| {
                    ModelError::io(
                        dir.join("tokenizer.json"),
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "a decoder needs tokenizer.json",
                        ),
                    )
                })?;
                let config = DecoderConfig::from_hf_file(&config)?;
                let weights = SafetensorsWeights::open(&weights)?;
                let device = device_of(options);
                let model = decoder::load_safetensors(config, &weights, options.format, &device)?;
                let tokenizer = TextTokenizer::from_file(&tokenizer, None)?;
                let special = match tokenizer_config {
                    Some(path) => HfTokenizerConfig::read(&path)?,
                    None => HfTokenizerConfig::default(),
                };
                let token_id =
                    |t: &Option<String>| t.as_deref().and_then(|t| tokenizer.token_to_id(t));
                let parts = Parts {
                    bos_id: token_id(&special.bos_token),
                    eos_id: token_id(&special.eos_token),
                    end_of_turn_ids: generation_config_eos_ids(
                        &dir.join("generation_config.json"),
                    )?,
                    add_bos: special.add_bos_token,
                    template: special.chat_template,
                    origin: format!("{}: tokenizer_config.json chat_template", dir.display()),
                    source: dir.display().to_string(),
                };
                Self::assemble(model, tokenizer, parts, options)
            }
        }
    }

    /// Loads a decoder from a GGUF file.
    pub fn from_gguf(path: &Path, options: &DecoderOptions) -> Result<Self, ModelError> {
        let file = Arc::new(GgufFile::open(path)?);
        let (tokenizer, info) = file.text_tokenizer()?;
        let model = decoder::load_gguf(Arc::clone(&file), options.format, &device_of(options))?;
        // llama.cpp's end-of-turn and end-of-message tokens (Llama 3's
        // `<|eot_id|>`, `<|eom_id|>`) end an answer as EOS does.
        let mut end_of_turn_ids = Vec::new();
        for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            end_of_turn_ids.extend(file.get_u32_opt(key)?);
        }
        let parts = Parts {
            bos_id: info.bos_token_id,
            eos_id: info.eos_token_id,
            end_of_turn_ids,
            add_bos: info.add_bos_token,
            template: info.chat_template,
            origin: format!("{}: tokenizer.chat_template", path.display()),
            source: path.display().to_string(),
        };
        Self::assemble(model, tokenizer, parts, options)
    }

    fn assemble(
        model: Box<dyn Decoder>,
        tokenizer: TextTokenizer,
        parts: Parts,
        options: &DecoderOptions,
    ) -> Result<Self, ModelError> {
        let token = |id: Option<u32>| {
            id.and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let (bos, eos) = (token(parts.bos_id), token(parts.eos_id));
        let template = match (&options.chat_template, &parts.template) {
            (Some(source), _) => Some(ChatTemplate::new(source, bos, eos, "configuration")?),
            (None, Some(source)) => Some(ChatTemplate::new(source, bos, eos, parts.origin)?),
            (None, None) => None,
        };
        // Chat models end a turn with their own marker (`<|im_end|>`) as well as
        // EOS; files name some of them, the rest are known by their text.
        let mut eos_ids: HashSet<u32> = parts.eos_id.into_iter().collect();
        eos_ids.extend(&parts.end_of_turn_ids);
        for marker in END_OF_TURN_MARKERS {
            if let Some(id) = tokenizer.token_to_id(marker) {
                eos_ids.insert(id);
            }
        }
        let context = options
            .max_context
            .map_or(model.config().context_length, |cap| {
                cap.clamp(2, model.config().context_length)
            });
        // Kept prefixes may take as much as one sequence of the whole context
        // (the local backend counts it in the model's KV reservation).
        let prefixes = PrefixCache::new(model.kv_bytes_per_token() * context);
        let max_sequences = options.max_sequences.unwrap_or(DEFAULT_SEQUENCES).max(1);
        let core = Core {
            caches: CachePool::new(context, max_sequences),
            prefixes,
            model,
            tokenizer,
            eos_ids,
            max_sequences,
            steps: AtomicU64::new(0),
            sequence_steps: AtomicU64::new(0),
            largest: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            active_kv_bytes: AtomicU64::new(0),
        };
        Ok(Self {
            core: Arc::new(core),
            scheduler: OnceLock::new(),
            context,
            template,
            bos_id: parts.bos_id,
            add_bos: parts.add_bos,
            source: parts.source,
        })
    }

    fn scheduler(&self) -> Result<&Scheduler, ModelError> {
        self.scheduler
            .get_or_init(|| Scheduler::start(Arc::clone(&self.core)).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| ModelError::Backend(e.clone()))
    }

    /// The model underneath (configuration, resident bytes).
    pub fn model(&self) -> &dyn Decoder {
        self.core.model.as_ref()
    }

    /// The token ids that end an answer (EOS and the end-of-turn markers), sorted.
    pub fn stop_token_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.core.eos_ids.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.core.tokenizer
    }

    /// Tokens of a rendered prompt, with BOS when the model wants it and the
    /// prompt does not already start with it (chat templates often write
    /// `bos_token` themselves; llama.cpp strips the duplicate likewise).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, ModelError> {
        let text = self.core.tokenizer.encode_plain(prompt)?;
        let mut ids = Vec::with_capacity(text.len() + 1);
        if self.add_bos && text.first() != self.bos_id.as_ref() {
            ids.extend(self.bos_id);
        }
        ids.extend(text);
        Ok(ids)
    }

    /// How the scheduler has batched: passes, mean and largest batch.
    pub fn batch_stats(&self) -> BatchStats {
        self.core.batch_stats()
    }

    /// How the prefix cache has done: entries, bytes, hits and misses.
    pub fn prefix_stats(&self) -> PrefixStats {
        self.core.prefixes.stats()
    }

    /// Next-token logits after `tokens`, from an empty cache (for parity tests).
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        let model = self.model();
        model.forward(tokens, &mut model.new_cache())
    }
}

impl TextGenerator for DecoderGenerator {
    fn generate(
        &self,
        prompt: &str,
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationOutput, ModelError> {
        let started = Instant::now();
        params
            .sampling
            .validate()
            .map_err(|reason| ModelError::InvalidParams { reason })?;
        if params.max_tokens == 0 {
            return Err(ModelError::InvalidParams {
                reason: "max_tokens must be at least 1".into(),
            });
        }
        let context = self.context_length();
        let mut prompt_ids = self.encode_prompt(prompt)?;
        if prompt_ids.len() + 1 > context {
            if !params.truncate_prompt {
                return Err(ModelError::ContextOverflow {
                    tokens: prompt_ids.len() + 1,
                    context,
                });
            }
            let keep = context
                .saturating_sub(params.max_tokens.min(context / 2))
                .max(1);
            prompt_ids.drain(..prompt_ids.len() - keep);
        }
        // Never run past the context: fewer tokens, not an error mid-stream.
        let max_tokens = params.max_tokens.min(context - prompt_ids.len());
        let (events, answers) = channel();
        let cancel = Arc::new(AtomicBool::new(false));
        self.scheduler()?.submit(Job {
            prompt: prompt_ids,
            max_tokens,
            params: params.clone(),
            started,
            events,
            cancel: Arc::clone(&cancel),
        })?;
        let mut streaming = true;
        loop {
            match answers.recv() {
                Ok(Event::Text(piece)) => {
                    if streaming && on_text(&piece).is_break() {
                        // The scheduler ends it before its next step.
                        cancel.store(true, Ordering::Relaxed);
                        streaming = false;
                    }
                }
                Ok(Event::Done(output)) => {
                    let mut output = output?;
                    if !streaming {
                        output.finish_reason = FinishReason::Cancelled;
                    }
                    return Ok(output);
                }
                Err(_) => {
                    return Err(ModelError::Backend(
                        "the batch scheduler stopped before the answer was done".into(),
                    ));
                }
            }
        }
    }

    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, ModelError> {
        let template = self.template.as_ref().ok_or_else(|| ModelError::ChatTemplate {
            origin: self.source.clone(),
            reason: "the model has no chat template (tokenizer.chat_template) and none is configured".into(),
        })?;
        template.render(messages, true)
    }

    fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        Ok(self.encode_prompt(text)?.len())
    }

    fn context_length(&self) -> usize {
        self.context
    }

    fn forget_prefixes(&self) {
        self.core.prefixes.clear();
    }

    fn serving_stats(&self) -> Option<mdsa_engine::ServingStats> {
        Some(self.core.serving_stats())
    }
}

/// Tokens that end a chat turn in the families mdsa runs (ChatML, Llama 3,
/// Gemma, Phi-3, Llama 2 / Mistral), when the vocabulary has them.
const END_OF_TURN_MARKERS: [&str; 8] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
    "</s>",
];

/// The ids `generation_config.json` says end generation (`eos_token_id`: one
/// id or a list); none when the file is absent.
fn generation_config_eos_ids(path: &Path) -> Result<Vec<u32>, ModelError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ModelError::io(path, e)),
    };
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::config(path, "(json)", e.to_string()))?;
    let ids = match json.get("eos_token_id") {
        None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
        Some(serde_json::Value::Array(list)) => list.iter().collect(),
        Some(one) => vec![one],
    };
    ids.into_iter()
        .map(|id| {
            id.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| {
                    ModelError::config(
                        path,
                        "eos_token_id",
                        format!("expected token ids, found {id}"),
                    )
                })
        })
        .collect()
}

/// What a model file says about its tokens and template, whatever its format.
struct Parts {
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    /// Further ids that end an answer (end of turn / message).
    end_of_turn_ids: Vec<u32>,
    add_bos: bool,
    template: Option<String>,
    origin: String,
    source: String,
}

fn device_of(options: &DecoderOptions) -> Device {
    options
        .device
        .clone()
        .unwrap_or_else(crate::backend::default_device)
}

/// The parts of `tokenizer_config.json` a decoder needs.
#[derive(Debug, Default, serde::Deserialize)]
struct HfTokenizerConfig {
    #[serde(default)]
    chat_template: Option<String>,
    #[serde(default, deserialize_with = "token_string")]
    bos_token: Option<String>,
    #[serde(default, deserialize_with = "token_string")]
    eos_token: Option<String>,
    #[serde(default)]
    add_bos_token: bool,
}

impl HfTokenizerConfig {
    fn read(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| ModelError::config(path, "(json)", e.to_string()))
    }
}

/// A special token written as `"<s>"` or as `{"content": "<s>", ...}`.
fn token_string<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Token {
        Text(String),
        Added { content: String },
    }
    let token: Option<Token> = serde::Deserialize::deserialize(deserializer)?;
    Ok(token.map(|t| match t {
        Token::Text(text) | Token::Added { content: text } => text,
    }))
}

/// Length of `text` that cannot be the beginning of a stop string.
pub(crate) fn safe_prefix(text: &str, stops: &[String]) -> usize {
    let mut safe = text.len();
    for stop in stops {
        for (i, _) in text.char_indices().rev().take(stop.chars().count()) {
            if stop.starts_with(&text[i..]) {
                safe = safe.min(i);
            }
        }
    }
    safe
}

#[cfg(test)]
mod tests {
    use super::safe_prefix;

    #[test]
    fn text_that_may_start_a_stop_string_is_held_back() {
        let stops = vec!["\nUser:".to_string()];
        assert_eq!(safe_prefix("Hello", &stops), 5);
        assert_eq!(safe_prefix("Hello\nUs", &stops), 5);
        assert_eq!(safe_prefix("Hello\n", &stops), 5);
        assert_eq!(safe_prefix("naïve", &[]), "naïve".len());
    }
}
