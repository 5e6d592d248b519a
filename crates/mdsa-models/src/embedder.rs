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

/// How token states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Average over real (unpadded) tokens.
    Mean,
    /// The first token's state (`[CLS]`).
    Cls,
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
    Host(HostBert),
    Burn(Box<Bert>),
}

/// A BERT-family sentence encoder on burn, with its tokenizer and pooling.
#[derive(Debug)]
pub struct BertEmbedder {
    model: Encoder,
    tokenizer: TextTokenizer,
    pooling: Pooling,
    normalize: bool,
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
            Encoder::Host(HostBert::load(&config, &weights, options.format)?)
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
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        let tokenizer = TextTokenizer::from_file(&tokenizer_path, Some(max_length))?;
        Ok(Self {
            model,
            tokenizer,
            pooling: options.pooling.or(st.pooling).unwrap_or(Pooling::Mean),
            normalize: options.normalize.or(st.normalize).unwrap_or(true),
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
        let hidden = model.forward(ids, bias)?;
        let pooled: Tensor<2> = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1).reshape([b, self.dimension]),
            Pooling::Mean => {
                let weights = mask.clone().reshape([b, s, 1]);
                let summed = (hidden * weights).sum_dim(1).reshape([b, self.dimension]);
                let counts = mask.sum_dim(1).clamp_min(1e-9);
                summed / counts
            }
        };
        let pooled = if self.normalize {
            let norms = pooled
                .clone()
                .powf_scalar(2.0)
                .sum_dim(1)
                .sqrt()
                .clamp_min(1e-12);
            pooled / norms
        } else {
            pooled
        };
        let values: Vec<f32> = pooled
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| ModelError::Backend(format!("reading embeddings back: {e:?}")))?;
        Ok(values)
    }
}

impl BertEmbedder {
    /// [`BertEmbedder::pooled`] on the fused CPU path: the batch unpadded,
    /// pooled and normalised in place.
    fn pooled_host(&self, model: &HostBert, batch: &EncodedBatch) -> Result<Vec<f32>, ModelError> {
        let sequences: Vec<&[u32]> = (0..batch.batch)
            .map(|i| &batch.ids[i * batch.seq..][..batch.lengths[i]])
            .collect();
        let hidden = model.forward(&sequences)?;
        let d = self.dimension;
        let mut pooled = vec![0.0f32; batch.batch * d];
        let mut at = 0;
        for (out, &len) in pooled.chunks_exact_mut(d).zip(&batch.lengths) {
            let states = &hidden[at * d..(at + len) * d];
            match self.pooling {
                Pooling::Cls => {
                    if let Some(first) = states.get(..d) {
                        out.copy_from_slice(first);
                    }
                }
                Pooling::Mean => {
                    for state in states.chunks_exact(d) {
                        out.iter_mut().zip(state).for_each(|(o, s)| *o += s);
                    }
                    let inv = 1.0 / len.max(1) as f32;
                    out.iter_mut().for_each(|o| *o *= inv);
                }
            }
            if self.normalize {
                let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                out.iter_mut().for_each(|o| *o /= norm);
            }
            at += len;
        }
        Ok(pooled)
    }
}

impl Embedder for BertEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.tokenizer.encode_batch(texts)?;
        // On a rayon worker, burn-flex's parallel ops run without handing each
        // one from this thread to the pool and back (see `run_in_pool`).
        let values = crate::quant::run_in_pool(|| self.pooled(&batch))?;
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
        Ok(config)
    }
}

fn read_pooling(path: &Path) -> Result<Pooling, ModelError> {
    #[derive(Deserialize)]
    struct PoolingConfig {
        #[serde(default)]
        pooling_mode_cls_token: bool,
        #[serde(default)]
        pooling_mode_mean_tokens: bool,
        #[serde(default)]
        pooling_mode_max_tokens: bool,
    }
    let pooling: PoolingConfig = read_json(path)?;
    match (
        pooling.pooling_mode_mean_tokens,
        pooling.pooling_mode_cls_token,
        pooling.pooling_mode_max_tokens,
    ) {
        (true, false, false) => Ok(Pooling::Mean),
        (false, true, false) => Ok(Pooling::Cls),
        _ => Err(ModelError::config(
            path,
            "pooling_mode_*",
            "exactly one of pooling_mode_mean_tokens or pooling_mode_cls_token must be true (max pooling is not supported)",
        )),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::config(path, "(json)", e.to_string()))
}
