//! The training loop: supervised contrastive batches, AdamW, early stopping
//! on the held-out examples.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use mdsa_engine::source::{ModelRef, ResolveOptions, ResolvedModel};
use mdsa_models::arch::bert::{BertConfig, TensorNames};
use mdsa_models::weights::SafetensorsWeights;
use mdsa_models::{BertEmbedder, EmbedderOptions, EncoderPath, Pooling};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::{LabelledText, batches, nearest_accuracy, split};
use crate::error::{Result, TuneError};
use crate::model::{Batch, Embeddings, Encoder};

/// How to tune.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TuneOptions {
    /// Most passes over the training examples.
    pub epochs: usize,
    /// Examples per step (each one's positives are the others of its label in the batch).
    pub batch_size: usize,
    /// AdamW's learning rate.
    pub learning_rate: f64,
    /// Softmax temperature of the contrastive loss.
    pub temperature: f32,
    /// Share of each label's examples held out to measure and stop on.
    pub heldout_share: f32,
    /// Epochs without a better held-out accuracy before stopping.
    pub patience: usize,
    /// Nearest examples averaged per label when measuring (the router's `top_k`).
    pub top_k: usize,
    /// Seed of the split and the batches: the same seed, the same model.
    pub seed: u64,
}

impl Default for TuneOptions {
    fn default() -> Self {
        Self {
            epochs: 8,
            batch_size: 32,
            learning_rate: 3e-5,
            temperature: 0.05,
            heldout_share: 0.2,
            patience: 2,
            top_k: 3,
            seed: 0,
        }
    }
}

impl TuneOptions {
    fn check(&self) -> Result<()> {
        let bad = |option, message: String| Err(TuneError::Option { option, message });
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1, found 0".into());
        }
        if self.batch_size < 2 {
            return bad(
                "batch_size",
                format!("must be at least 2, found {}", self.batch_size),
            );
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(
                "learning_rate",
                format!("must be > 0, found {}", self.learning_rate),
            );
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(
                "temperature",
                format!("must be > 0, found {}", self.temperature),
            );
        }
        if !(self.heldout_share > 0.0 && self.heldout_share < 1.0) {
            return bad(
                "heldout_share",
                format!("must be in (0, 1), found {}", self.heldout_share),
            );
        }
        if self.top_k == 0 {
            return bad("top_k", "must be at least 1, found 0".into());
        }
        Ok(())
    }
}

/// Progress of [`tune`], in order: `Started`, then per epoch its `Step`s and an `Epoch`.
#[derive(Debug, Clone, PartialEq)]
pub enum TuneEvent {
    /// Examples split and measured before any training.
    Started {
        /// Training examples.
        train: usize,
        /// Held-out examples.
        heldout: usize,
        /// Steps per epoch.
        steps_per_epoch: usize,
        /// Most epochs.
        epochs: usize,
        /// Held-out accuracy of the model as given.
        before: f64,
    },
    /// One optimizer step.
    Step {
        /// From 1.
        epoch: usize,
        /// From 1 within the epoch.
        step: usize,
        /// The batch's loss.
        loss: f32,
    },
    /// An epoch ended.
    Epoch(EpochReport),
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochReport {
    /// From 1.
    pub epoch: usize,
    /// Mean loss of its steps.
    pub loss: f32,
    /// Held-out accuracy after it.
    pub heldout_accuracy: f64,
}

/// What tuning did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TuneReport {
    /// The model tuned.
    pub base: PathBuf,
    /// Where the tuned model was written (`None` when no epoch beat the base
    /// model on the held-out examples: nothing is written then).
    pub out: Option<PathBuf>,
    /// Held-out accuracy of the base model.
    pub before: f64,
    /// Held-out accuracy of the model kept (the base's when none was better).
    pub after: f64,
    /// The epoch kept (0: the base model).
    pub best_epoch: usize,
    /// Every epoch run.
    pub epochs: Vec<EpochReport>,
    /// Training examples.
    pub train: usize,
    /// Held-out examples.
    pub heldout: usize,
    /// The settings.
    pub options: TuneOptions,
}

/// The model to tune, loaded for training.
struct Model {
    dir: PathBuf,
    config: BertConfig,
    weights: SafetensorsWeights,
    names: TensorNames,
    pooling: Pooling,
    embedder: BertEmbedder,
}

impl Model {
    fn load(dir: &Path) -> Result<Self> {
        let resolved = ModelRef::LocalDir(dir.to_path_buf())
            .resolve(&ResolveOptions::offline())
            .map_err(|e| TuneError::Unsupported {
                model: dir.to_path_buf(),
                reason: e.to_string(),
            })?;
        let ResolvedModel::SafetensorsDir {
            config, weights, ..
        } = resolved
        else {
            return Err(TuneError::Unsupported {
                model: dir.to_path_buf(),
                reason: "only safetensors encoders can be tuned".into(),
            });
        };
        let config = BertConfig::from_file(&config)?;
        let weights = SafetensorsWeights::open(&weights)?;
        // The inference encoder supplies the tokenizer, prompt and pooling.
        let embedder = BertEmbedder::from_dir(
            dir,
            &EmbedderOptions {
                path: EncoderPath::Host,
                ..EmbedderOptions::default()
            },
        )?;
        let pooling = embedder.pooling();
        if !matches!(pooling, Pooling::Mean | Pooling::Cls) {
            return Err(TuneError::Unsupported {
                model: dir.to_path_buf(),
                reason: format!(
                    "tuning supports mean and CLS pooling, the model pools by {pooling:?}"
                ),
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            names: TensorNames::detect(config.family(), &weights),
            config,
            weights,
            pooling,
            embedder,
        })
    }

    /// Token ids of every text, with the model's prompt and special tokens.
    fn tokenize(&self, data: &[LabelledText]) -> Result<Vec<Vec<i64>>> {
        data.iter()
            .map(|t| {
                let prompted = format!("{}{}", self.embedder.prompt(), t.text);
                let encoded = self.embedder.tokenizer().encode_batch(&[&prompted])?;
                Ok(encoded.ids.iter().map(|&id| i64::from(id)).collect())
            })
            .collect()
    }
}

/// A padded batch of the texts at `indices`.
fn batch(tokens: &[Vec<i64>], indices: &[usize]) -> Batch {
    let seq = indices.iter().map(|&i| tokens[i].len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(indices.len() * seq);
    let mut mask = Vec::with_capacity(indices.len() * seq);
    for &i in indices {
        let t = &tokens[i];
        ids.extend_from_slice(t);
        ids.extend(std::iter::repeat_n(0, seq - t.len()));
        mask.extend(std::iter::repeat_n(1.0, t.len()));
        mask.extend(std::iter::repeat_n(0.0, seq - t.len()));
    }
    Batch {
        ids,
        mask,
        batch: indices.len(),
        seq,
    }
}

/// Supervised contrastive loss: each example's softmax over its similarities
/// to the rest of the batch should put its mass on the same label's examples.
/// `None` when no example has another of its label in the batch.
fn contrastive_loss(vectors: Tensor<2>, labels: &[usize], temperature: f32) -> Option<Tensor<1>> {
    let n = labels.len();
    let device = vectors.device();
    let mut weights = vec![0.0f32; n * n];
    let mut self_bias = vec![0.0f32; n * n];
    let mut anchors = 0;
    for i in 0..n {
        self_bias[i * n + i] = -1e9;
        let positives = (0..n).filter(|&j| j != i && labels[j] == labels[i]).count();
        if positives > 0 {
            anchors += 1;
            for j in (0..n).filter(|&j| j != i && labels[j] == labels[i]) {
                weights[i * n + j] = 1.0 / positives as f32;
            }
        }
    }
    if anchors == 0 {
        return None;
    }
    let sims = vectors.clone().matmul(vectors.transpose()) / temperature;
    let self_bias = Tensor::<2>::from_data(TensorData::new(self_bias, [n, n]), &device);
    let weights = Tensor::<2>::from_data(TensorData::new(weights, [n, n]), &device);
    let log_prob = log_softmax(sims + self_bias, 1);
    Some((log_prob * weights).sum().neg() / anchors as f32)
}

/// Unit vectors of every text through `encoder` (without gradients).
fn embed_all(
    encoder: &Encoder,
    embeddings: &Embeddings,
    tokens: &[Vec<i64>],
    heads: usize,
    pooling: Pooling,
) -> Vec<Vec<f32>> {
    let all: Vec<usize> = (0..tokens.len()).collect();
    let mut vectors = Vec::with_capacity(tokens.len());
    for chunk in all.chunks(64) {
        let out = encoder.forward(embeddings, &batch(tokens, chunk), heads, pooling);
        let [_, h] = out.dims();
        let values = crate::model::to_vec(out);
        vectors.extend(values.chunks_exact(h).map(<[f32]>::to_vec));
    }
    vectors
}

/// Fine-tunes the encoder in `model_dir` (a sentence-transformers directory
/// of a BERT-family model with mean or CLS pooling) so that texts of a label
/// embed close together and away from other labels' texts, and writes the
/// best model to `out` (a sentence-transformers directory that mdsa and
/// sentence-transformers load) if it beats the base model on the held-out
/// examples. `labels` is the number of labels; each text's label is below it.
pub fn tune(
    model_dir: &Path,
    data: &[LabelledText],
    labels: usize,
    options: &TuneOptions,
    out: &Path,
    on_event: &mut dyn FnMut(TuneEvent),
) -> Result<TuneReport> {
    options.check()?;
    let model = Model::load(model_dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let split = split(data, labels, options.heldout_share, &mut rng)?;
    let tokens = model.tokenize(data)?;
    let base: Device = mdsa_models::backend::default_device();
    let device = base.clone().autodiff();
    let heads = model.config.num_attention_heads;
    let embeddings = Embeddings::load(&model.config, &model.weights, &model.names, &base)?;
    let mut encoder = Encoder::load(&model.config, &model.weights, &model.names, &device)?;
    let measure = |encoder: &Encoder| {
        let vectors = embed_all(&encoder.valid(), &embeddings, &tokens, heads, model.pooling);
        nearest_accuracy(&vectors, data, &split, labels, options.top_k)
    };
    let before = measure(&encoder);
    let steps_per_epoch = split.train.len().div_ceil(options.batch_size);
    on_event(TuneEvent::Started {
        train: split.train.len(),
        heldout: split.heldout.len(),
        steps_per_epoch,
        epochs: options.epochs,
        before,
    });
    let mut optimizer = AdamWConfig::new().with_weight_decay(0.01).init();
    let mut best: Option<(usize, f64, Encoder)> = None;
    let mut epochs = Vec::new();
    let mut stale = 0;
    for epoch in 1..=options.epochs {
        let mut losses = Vec::new();
        for (step, indices) in batches(&split.train, options.batch_size, options.seed, epoch)
            .iter()
            .enumerate()
        {
            let labels_of: Vec<usize> = indices.iter().map(|&i| data[i].label).collect();
            let vectors =
                encoder.forward(&embeddings, &batch(&tokens, indices), heads, model.pooling);
            let Some(loss) = contrastive_loss(vectors, &labels_of, options.temperature) else {
                continue;
            };
            let value = crate::model::to_vec(loss.clone())
                .first()
                .copied()
                .unwrap_or(f32::NAN);
            let grads = GradientsParams::from_grads(loss.backward(), &encoder);
            encoder = optimizer.step(options.learning_rate, encoder, grads);
            losses.push(value);
            on_event(TuneEvent::Step {
                epoch,
                step: step + 1,
                loss: value,
            });
        }
        let accuracy = measure(&encoder);
        let report = EpochReport {
            epoch,
            loss: losses.iter().sum::<f32>() / losses.len().max(1) as f32,
            heldout_accuracy: accuracy,
        };
        on_event(TuneEvent::Epoch(report.clone()));
        epochs.push(report);
        let best_so_far = best.as_ref().map_or(before, |b| b.1);
        if accuracy > best_so_far {
            best = Some((epoch, accuracy, encoder.clone()));
            stale = 0;
        } else {
            stale += 1;
            if stale > options.patience {
                break;
            }
        }
    }
    let mut report = TuneReport {
        base: model.dir.clone(),
        out: None,
        before,
        after: before,
        best_epoch: 0,
        epochs,
        train: split.train.len(),
        heldout: split.heldout.len(),
        options: options.clone(),
    };
    if let Some((epoch, accuracy, encoder)) = best {
        crate::save::write_model(
            &model.dir,
            &model.weights,
            &model.names,
            &encoder.valid(),
            out,
            &report_for_file(&report, epoch, accuracy),
        )?;
        report.out = Some(out.to_path_buf());
        report.after = accuracy;
        report.best_epoch = epoch;
    }
    Ok(report)
}

/// The report as the tuned model's `mdsa_tune.json` records it.
fn report_for_file(report: &TuneReport, best_epoch: usize, after: f64) -> TuneReport {
    TuneReport {
        best_epoch,
        after,
        ..report.clone()
    }
}
