//! Sentence embeddings: the [`Embedder`] interface and its burn BERT implementation.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;

use crate::arch::bert::{Bert, BertConfig, HostBert};
use crate::arch::linear::uses_block_kernels;
use crate::tokenizer::{EncodedBatch, TextTokenizer};
use crate::weights::SafetensorsWeights;
use mdsa_engine::source::{ModelRef, ResolveOptions, ResolvedModel};
use mdsa_engine::{Embedder, ModelError, WeightFormat};

/// How token states become one sentence vector (sentence-transformers'
/// `pooling_mode_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Average over real (unpadded) tokens.
    Mean,
    /// The first token's state (`[CLS]`).
    Cls,
    /// The largest value of each dimension over real tokens.
    Max,
    /// The last real token's state (decoder-style embedding models).
    LastToken,
}

impl Pooling {
    /// Pools one sequence's token states (`len × d`, row after row) into `out`.
    fn pool(self, states: &[f32], d: usize, out: &mut [f32]) {
        let rows = states.chunks_exact(d);
        match self {
            Self::Cls => {
                if let Some(first) = states.get(..d) {
                    out.copy_from_slice(first);
                }
            }
            Self::LastToken => {
                if let Some(last) = rows.last() {
                    out.copy_from_slice(last);
                }
            }
            Self::Mean => {
                out.fill(0.0);
                let len = rows.len();
                for state in rows {
                    out.iter_mut().zip(state).for_each(|(o, s)| *o += s);
                }
                let inv = 1.0 / len.max(1) as f32;
                out.iter_mut().for_each(|o| *o *= inv);
            }
            Self::Max => {
                out.fill(f32::NEG_INFINITY);
                for state in rows {
                    out.iter_mut().zip(state).for_each(|(o, &s)| *o = o.max(s));
                }
            }
        }
    }
}

/// Which implementation of the encoder runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EncoderPath {
    /// [`EncoderPath::Host`] on the CPU, [`EncoderPath::Burn`] on other devices.
    #[default]
    Auto,
    /// The fused CPU path in plain buffers ([`HostBert`]); CPU only.
    Host,
    /// burn modules ([`Bert`]), on any device.
    Burn,
}

/// Options for loading a sentence embedder.
#[derive(Debug, Clone, Default)]
pub struct EmbedderOptions {
    /// Longest input in tokens; default: the model's `max_seq_length`
    /// (sentence-transformers) or its position limit.
    pub max_length: Option<usize>,
    /// Pooling; default: what `1_Pooling/config.json` says, else mean.
    pub pooling: Option<Pooling>,
    /// L2-normalise; default: whether `modules.json` has a Normalize step.
    pub normalize: Option<bool>,
    /// The name of a prompt in `config_sentence_transformers.json` (`"query"`
    /// for E5 or BGE) put before every text; default: the file's
    /// `default_prompt_name`, as sentence-transformers does, else none.
    pub prompt_name: Option<String>,
    /// Where to run; default: the CPU.
    pub device: Option<Device>,
    /// How linear weights are held: `stored`/`f32` as f32, `f16`/`bf16`, or
    /// quantized at load to `int8` (Q8_0) or `int4` (Q4_0) blocks.
    pub format: WeightFormat,
    /// Which implementation runs; default: the fused one on the CPU.
    pub path: EncoderPath,
}

/// The encoder of a [`BertEmbedder`], as [`EncoderPath`] chose it.
#[derive(Debug)]
enum Encoder {
    Host(Box<HostBert>),
    Burn(Box<Bert>),
}

/// A BERT-family sentence encoder on burn, with its tokenizer and pooling.
#[derive(Debug)]
pub struct BertEmbedder {
    model: Encoder,
    tokenizer: TextTokenizer,
    pooling: Pooling,
    normalize: bool,
    /// Put before every text (a sentence-transformers prompt), or empty.
    prompt: String,
    dimension: usize,
    device: Device,
    dir: PathBuf,
}

impl BertEmbedder {
    /// Loads an encoder from a model reference (a local directory or a Hub id in
    /// the Hugging Face / sentence-transformers layout: `config.json`,
    /// `tokenizer.json`, `model.safetensors` or shards, and optionally
    /// `modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`).
    pub fn load(
        model: &ModelRef,
        resolve: &ResolveOptions,
        options: &EmbedderOptions,
    ) -> Result<Self, ModelError> {
        let (dir, config_path, tokenizer_path, weights) = match model.resolve(resolve)? {
            ResolvedModel::SafetensorsDir {
                dir,
                config,
                tokenizer,
                weights,
                ..
            } => (dir, config, tokenizer, weights),
            ResolvedModel::Gguf { path } => {
                return Err(ModelError::config(
                    &path,
                    "format",
                    "a sentence encoder needs config.json, tokenizer.json and safetensors weights, found a GGUF file",
                ));
            }
        };
        let tokenizer_path = tokenizer_path.ok_or_else(|| {
            ModelError::io(
                dir.join("tokenizer.json"),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the encoder needs tokenizer.json",
                ),
            )
        })?;
        let config = BertConfig::from_file(&config_path)?;
        let weights = SafetensorsWeights::open(&weights)?;
        let device = options
            .device
            .clone()
            .unwrap_or_else(crate::backend::default_device);
        let host = match options.path {
            EncoderPath::Auto => uses_block_kernels(&device),
            EncoderPath::Host if !uses_block_kernels(&device) => {
                return Err(ModelError::Backend(format!(
                    "the fused encoder path runs on the CPU only, not on {device:?}"
                )));
            }
            EncoderPath::Host => true,
            EncoderPath::Burn => false,
        };
        let model = if host {
            Encoder::Host(Box::new(HostBert::load(&config, &weights, options.format)?))
        } else {
            Encoder::Burn(Box::new(Bert::load_as(
                &config,
                &weights,
                options.format,
                &device,
            )?))
        };
        let st = SentenceTransformersConfig::read(&dir)?;
        let max_length = options
            .max_length
            .or(st.max_seq_length)
            .unwrap_or(config.max_tokens())
            .min(config.max_tokens());
        let tokenizer = TextTokenizer::from_file(&tokenizer_path, Some(max_length))?;
        let prompt = match options
            .prompt_name
            .as_ref()
            .or(st.default_prompt_name.as_ref())
        {
            None => String::new(),
            Some(name) => st.prompts.get(name).cloned().ok_or_else(|| {
                let mut known: Vec<&str> = st.prompts.keys().map(String::as_str).collect();
                known.sort_unstable();
                ModelError::config(
                    dir.join("config_sentence_transformers.json"),
                    "prompts",
                    format!(
                        "no prompt named {name:?}; the model has: {}",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                )
            })?,
        };
        Ok(Self {
            model,
            tokenizer,
            pooling: options.pooling.or(st.pooling).unwrap_or(Pooling::Mean),
            normalize: options.normalize.or(st.normalize).unwrap_or(true),
            prompt,
            dimension: config.hidden_size,
            device,
            dir,
        })
    }

    /// Loads an encoder from a local directory (see [`BertEmbedder::load`]).
    pub fn from_dir(dir: &Path, options: &EmbedderOptions) -> Result<Self, ModelError> {
        Self::load(
            &ModelRef::LocalDir(dir.to_path_buf()),
            &ResolveOptions::offline(),
            options,
        )
    }

    /// The directory the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pooling in use.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Whether embeddings are L2-normalised.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// The prompt put before every text (empty for none).
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// Bytes of weights held in memory.
    pub fn resident_bytes(&self) -> usize {
        match &self.model {
            Encoder::Host(model) => model.resident_bytes(),
            Encoder::Burn(model) => model.resident_bytes(),
        }
    }

    /// The implementation that runs.
    pub fn path(&self) -> EncoderPath {
        match self.model {
            Encoder::Host(_) => EncoderPath::Host,
            Encoder::Burn(_) => EncoderPath::Burn,
        }
    }

    /// The tokenizer (for counting tokens).
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The encoder forward pass, pooling and normalisation of a tokenized
    /// batch: `batch × dimension` values, row by row.
    fn pooled(&self, batch: &EncodedBatch) -> Result<Vec<f32>, ModelError> {
        let model = match &self.model {
            Encoder::Host(model) => return self.pooled_host(model, batch),
            Encoder::Burn(model) => model,
        };
        let (b, s) = (batch.batch, batch.seq);
        let ids: Vec<i64> = batch.ids.iter().map(|&id| i64::from(id)).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, s]), &self.device);
        let mask: Vec<f32> = batch.mask.iter().map(|&m| f32::from(m)).collect();
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, s]), &self.device);
        // Padding gets a large negative score so softmax gives it no weight.
        let bias = batch.is_padded().then(|| (mask.clone() - 1.0) * 1e9);
        let hidden: Vec<f32> = model
            .forward(ids, bias)?
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| ModelError::Backend(format!("reading hidden states back: {e:?}")))?;
        // Pooled on the host like the fused path's: [batch, seq] states are
        // small next to the encoder's work, and one pooling serves both paths.
        let d = self.dimension;
        let sequences = (0..b).map(|i| &hidden[i * s * d..][..batch.lengths[i] * d]);
        Ok(self.pool(sequences, b))
    }

    /// Pools (and normalises) each sequence's token states.
    fn pool<'s>(&self, sequences: impl Iterator<Item = &'s [f32]>, count: usize) -> Vec<f32> {
        let d = self.dimension;
        let mut pooled = vec![0.0f32; count * d];
        for (out, states) in pooled.chunks_exact_mut(d).zip(sequences) {
            self.pooling.pool(states, d, out);
            if self.normalize {
                let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                out.iter_mut().for_each(|o| *o /= norm);
            }
        }
        pooled
    }

    /// [`BertEmbedder::pooled`] on the fused CPU path: the batch unpadded.
    fn pooled_host(&self, model: &HostBert, batch: &EncodedBatch) -> Result<Vec<f32>, ModelError> {
        let sequences: Vec<&[u32]> = (0..batch.batch)
            .map(|i| &batch.ids[i * batch.seq..][..batch.lengths[i]])
            .collect();
        let hidden = model.forward(&sequences)?;
        let d = self.dimension;
        let mut at = 0;
        let states = batch.lengths.iter().map(|&len| {
            let states = &hidden[at * d..(at + len) * d];
            at += len;
            states
        });
        Ok(self.pool(states, batch.batch))
    }
}

impl Embedder for BertEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let prompted: Vec<String>;
        let texts = if self.prompt.is_empty() {
            texts
        } else {
            prompted = texts
                .iter()
                .map(|t| format!("{}{t}", self.prompt))
                .collect();
            &prompted.iter().map(String::as_str).collect::<Vec<_>>()
        };
        let batch = self.tokenizer.encode_batch(texts)?;
        let values = self.pooled(&batch)?;
        Ok(values
            .chunks_exact(self.dimension)
            .map(<[f32]>::to_vec)
            .collect())
    }

    fn dimension(&self) -> usize {
        self.dimension
    }
}

/// What a sentence-transformers export says about pooling, normalisation and length.
#[derive(Debug, Default)]
struct SentenceTransformersConfig {
    pooling: Option<Pooling>,
    normalize: Option<bool>,
    max_seq_length: Option<usize>,
    /// `config_sentence_transformers.json`'s named prompts.
    prompts: std::collections::HashMap<String, String>,
    default_prompt_name: Option<String>,
}

impl SentenceTransformersConfig {
    fn read(dir: &Path) -> Result<Self, ModelError> {
        let mut config = Self::default();
        let modules_path = dir.join("modules.json");
        if modules_path.is_file() {
            #[derive(Deserialize)]
            struct Module {
                #[serde(rename = "type")]
                kind: String,
                #[serde(default)]
                path: String,
            }
            let modules: Vec<Module> = read_json(&modules_path)?;
            config.normalize = Some(modules.iter().any(|m| m.kind.ends_with(".Normalize")));
            if let Some(pooling) = modules.iter().find(|m| m.kind.ends_with(".Pooling")) {
                config.pooling = Some(read_pooling(&dir.join(&pooling.path).join("config.json"))?);
            }
        } else if dir.join("1_Pooling/config.json").is_file() {
            config.pooling = Some(read_pooling(&dir.join("1_Pooling/config.json"))?);
        }
        let st_path = dir.join("sentence_bert_config.json");
        if st_path.is_file() {
            #[derive(Deserialize)]
            struct St {
                max_seq_length: Option<usize>,
            }
            config.max_seq_length = read_json::<St>(&st_path)?.max_seq_length;
        }
        // sentence-transformers 6 keeps the limit in the tokenizer's config.
        let tokenizer_config = dir.join("tokenizer_config.json");
        if config.max_seq_length.is_none() && tokenizer_config.is_file() {
            #[derive(Deserialize)]
            struct TokenizerConfig {
                model_max_length: Option<f64>,
            }
            // transformers writes 1e30 for "no limit"; the model's positions decide then.
            config.max_seq_length = read_json::<TokenizerConfig>(&tokenizer_config)?
                .model_max_length
                .filter(|n| (1.0..1e9).contains(n))
                .map(|n| n as usize);
        }
        let prompts_path = dir.join("config_sentence_transformers.json");
        if prompts_path.is_file() {
            #[derive(Deserialize)]
            struct Prompts {
                #[serde(default)]
                prompts: std::collections::HashMap<String, String>,
                #[serde(default)]
                default_prompt_name: Option<String>,
            }
            let file: Prompts = read_json(&prompts_path)?;
            config.prompts = file.prompts;
            config.default_prompt_name = file.default_prompt_name;
        }
        Ok(config)
    }
}

/// Reads `1_Pooling/config.json`: sentence-transformers 6's `pooling_mode`
/// (a name, or a list of one) or the older `pooling_mode_*` flags.
fn read_pooling(path: &Path) -> Result<Pooling, ModelError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Modes {
        One(String),
        Several(Vec<String>),
    }
    #[derive(Deserialize)]
    struct PoolingConfig {
        pooling_mode: Option<Modes>,
        #[serde(default)]
        pooling_mode_cls_token: bool,
        #[serde(default)]
        pooling_mode_mean_tokens: bool,
        #[serde(default)]
        pooling_mode_max_tokens: bool,
        #[serde(default)]
        pooling_mode_lasttoken: bool,
        #[serde(default)]
        pooling_mode_mean_sqrt_len_tokens: bool,
        #[serde(default)]
        pooling_mode_weightedmean_tokens: bool,
        #[serde(default = "yes")]
        include_prompt: bool,
    }
    fn yes() -> bool {
        true
    }
    let config: PoolingConfig = read_json(path)?;
    if !config.include_prompt {
        return Err(ModelError::config(
            path,
            "include_prompt",
            "pooling that leaves the prompt's tokens out (include_prompt: false) is not supported",
        ));
    }
    let modes: Vec<String> = match config.pooling_mode {
        Some(Modes::One(mode)) => vec![mode],
        Some(Modes::Several(modes)) => modes,
        None => [
            (config.pooling_mode_mean_tokens, "mean"),
            (config.pooling_mode_cls_token, "cls"),
            (config.pooling_mode_max_tokens, "max"),
            (config.pooling_mode_lasttoken, "lasttoken"),
            (
                config.pooling_mode_mean_sqrt_len_tokens,
                "mean_sqrt_len_tokens",
            ),
            (config.pooling_mode_weightedmean_tokens, "weightedmean"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, mode)| mode.to_string())
        .collect(),
    };
    let unsupported = || {
        ModelError::config(
            path,
            "pooling_mode",
            format!(
                "expected one of mean, cls, max or lasttoken, found {modes:?} (concatenated, mean-sqrt-len and weighted-mean pooling are not supported)"
            ),
        )
    };
    match modes.as_slice() {
        [mode] => match mode.as_str() {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            "max" => Ok(Pooling::Max),
            "lasttoken" => Ok(Pooling::LastToken),
            _ => Err(unsupported()),
        },
        _ => Err(unsupported()),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::config(path, "(json)", e.to_string()))
}
