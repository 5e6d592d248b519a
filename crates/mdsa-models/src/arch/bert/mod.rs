//! BERT-family encoders: BERT (MiniLM, BGE, E5...), RoBERTa and XLM-RoBERTa
//! (multilingual models), and DistilBERT.
//!
//! Embeddings (word + position + token type, then LayerNorm) feed N post-norm
//! transformer layers: self-attention with a padding mask, residual + LayerNorm,
//! GELU feed-forward, residual + LayerNorm. The families differ only in their
//! tensor names ([`names`]), RoBERTa's position offset and DistilBERT's
//! missing token types.
//!
//! Two implementations: [`Bert`], burn modules for any device, and
//! [`HostBert`], the same computation in plain buffers for the CPU.

use std::path::Path;

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;

mod host;
mod names;

pub use host::HostBert;
pub use names::{EncoderFamily, LayerNames, TensorNames};

use crate::arch::linear::LinearWeight;
use crate::weights::SafetensorsWeights;
use mdsa_engine::{ModelError, WeightFormat};

/// The fields of a BERT-family `config.json` that the forward pass needs
/// (DistilBERT's own names, `dim`, `n_layers`..., are read as aliases).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    /// Architecture name: `bert`, `roberta`, `xlm-roberta`, `camembert` or `distilbert`.
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of every hidden state.
    #[serde(alias = "dim")]
    pub hidden_size: usize,
    /// Number of transformer layers.
    #[serde(alias = "n_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    #[serde(alias = "n_heads")]
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    #[serde(alias = "hidden_dim")]
    pub intermediate_size: usize,
    /// Rows of the position table (RoBERTa's include its offset).
    pub max_position_embeddings: usize,
    /// Number of token types (segments); DistilBERT has none.
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Feed-forward activation; only GELU variants are supported.
    #[serde(default = "default_hidden_act", alias = "activation")]
    pub hidden_act: String,
    /// The padding token; RoBERTa's positions start after it.
    #[serde(default)]
    pub pad_token_id: Option<usize>,
}

fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_hidden_act() -> String {
    "gelu".into()
}

impl BertConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| {
            // serde_json names the missing or mistyped field in its message.
            ModelError::config(path, "(json)", e.to_string())
        })?;
        let Some(family) = EncoderFamily::of(&config.model_type) else {
            return Err(ModelError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                found: config.model_type,
                supported: EncoderFamily::SUPPORTED,
            });
        };
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(ModelError::config(
                path,
                "num_attention_heads",
                format!(
                    "hidden_size {} is not divisible by num_attention_heads {}",
                    config.hidden_size, config.num_attention_heads
                ),
            ));
        }
        if !matches!(
            config.hidden_act.as_str(),
            "gelu" | "gelu_new" | "gelu_python"
        ) {
            return Err(ModelError::config(
                path,
                "hidden_act",
                format!("expected a GELU activation, found {:?}", config.hidden_act),
            ));
        }
        if config.max_position_embeddings <= config.position_offset() {
            return Err(ModelError::config(
                path,
                "max_position_embeddings",
                format!(
                    "{} positions leave none after the {} that {family:?} skips",
                    config.max_position_embeddings,
                    config.position_offset()
                ),
            ));
        }
        Ok(config)
    }

    /// The family, from `model_type` (checked by [`BertConfig::from_file`]).
    pub fn family(&self) -> EncoderFamily {
        EncoderFamily::of(&self.model_type).unwrap_or(EncoderFamily::Bert)
    }

    /// Rows of the position table before position 0: RoBERTa numbers
    /// positions from `pad_token_id + 1`.
    pub fn position_offset(&self) -> usize {
        match self.family() {
            EncoderFamily::Roberta => self.pad_token_id.unwrap_or(1) + 1,
            EncoderFamily::Bert | EncoderFamily::DistilBert => 0,
        }
    }

    /// Token types the checkpoint holds embeddings for (none for DistilBERT).
    pub fn token_types(&self) -> usize {
        match self.family() {
            EncoderFamily::DistilBert => 0,
            EncoderFamily::Bert | EncoderFamily::Roberta => self.type_vocab_size,
        }
    }

    /// Longest input in tokens.
    pub fn max_tokens(&self) -> usize {
        self.max_position_embeddings - self.position_offset()
    }
}

/// A BERT encoder: token ids in, one hidden state per token out.
///
/// Linear weights are held in the [`WeightFormat`] asked for at load (f32,
/// f16/bf16, int8 or int4 blocks); embeddings and norms stay f32.
#[derive(Debug)]
pub struct Bert {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    /// `None` for DistilBERT, which has no token types.
    token_type_embeddings: Option<Embedding>,
    embeddings_norm: LayerNorm,
    layers: Vec<BertLayer>,
    heads: usize,
    resident_bytes: usize,
}

#[derive(Debug)]
struct BertLayer {
    query: LinearWeight,
    key: LinearWeight,
    value: LinearWeight,
    attention_output: LinearWeight,
    attention_norm: LayerNorm,
    intermediate: LinearWeight,
    output: LinearWeight,
    output_norm: LayerNorm,
}

impl Bert {
    /// Builds the encoder from safetensors weights, checking every tensor's shape
    /// against the configuration. Accepts both prefixed names (`bert.`,
    /// `roberta.`, `distilbert.`, as in `*ForMaskedLM` checkpoints) and bare
    /// names (as sentence-transformers saves).
    pub fn load(
        config: &BertConfig,
        weights: &SafetensorsWeights,
        device: &Device,
    ) -> Result<Self, ModelError> {
        Self::load_as(config, weights, WeightFormat::Stored, device)
    }

    /// [`Bert::load`] with the linear weights held as `format` (`stored` and
    /// `f32` keep f32).
    pub fn load_as(
        config: &BertConfig,
        weights: &SafetensorsWeights,
        format: WeightFormat,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let names = TensorNames::detect(config.family(), weights);
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let mut f32_values = 0usize;
        // `skip` leading rows are dropped: RoBERTa's positions start past them.
        let mut embedding =
            |table: &str, rows: usize, skip: usize| -> Result<Embedding, ModelError> {
                let values = weights.read_f32(&names.embedding(table), &[rows, h])?;
                let kept = rows - skip;
                let mut module = EmbeddingConfig::new(kept, h).init(device);
                module.weight = Param::from_tensor(Tensor::from_data(
                    TensorData::new(values[skip * h..].to_vec(), [kept, h]),
                    device,
                ));
                f32_values += kept * h;
                Ok(module)
            };
        let word_embeddings = embedding("word_embeddings", config.vocab_size, 0)?;
        let position_embeddings = embedding(
            "position_embeddings",
            config.max_position_embeddings,
            config.position_offset(),
        )?;
        let token_type_embeddings = match config.token_types() {
            0 => None,
            types => Some(embedding("token_type_embeddings", types, 0)?),
        };
        let norm = |name: &str| weights.layer_norm(name, h, eps, device);
        let linear = |name: &str, d_in: usize, d_out: usize| -> Result<LinearWeight, ModelError> {
            let values = weights.read_f32(&format!("{name}.weight"), &[d_out, d_in])?;
            let bias = weights.tensor(&format!("{name}.bias"), [d_out], device)?;
            LinearWeight::from_f32(format, values, d_in, d_out, Some(bias), device)
        };
        let i_size = config.intermediate_size;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = names.layer(i);
                Ok(BertLayer {
                    query: linear(&l.query, h, h)?,
                    key: linear(&l.key, h, h)?,
                    value: linear(&l.value, h, h)?,
                    attention_output: linear(&l.attention_output, h, h)?,
                    attention_norm: norm(&l.attention_norm)?,
                    intermediate: linear(&l.intermediate, h, i_size)?,
                    output: linear(&l.output, i_size, h)?,
                    output_norm: norm(&l.output_norm)?,
                })
            })
            .collect::<Result<Vec<BertLayer>, ModelError>>()?;
        // Each LayerNorm holds a weight and a bias of `h` values.
        let norms = (1 + 2 * layers.len()) * 2 * h;
        let linears: usize = layers
            .iter()
            .flat_map(|l| {
                [
                    &l.query,
                    &l.key,
                    &l.value,
                    &l.attention_output,
                    &l.intermediate,
                    &l.output,
                ]
            })
            .map(LinearWeight::resident_bytes)
            .sum();
        Ok(Self {
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            embeddings_norm: norm(&names.embeddings_norm())?,
            layers,
            heads: config.num_attention_heads,
            resident_bytes: (f32_values + norms) * 4 + linears,
        })
    }

    /// Bytes of weights held in memory.
    pub fn resident_bytes(&self) -> usize {
        self.resident_bytes
    }

    /// Runs the encoder.
    ///
    /// `ids` is `[batch, seq]`; `mask_bias` is `[batch, seq]` with 0 for real tokens
    /// and a large negative number for padding, or `None` when nothing is padded
    /// (a single query), which skips the masking work. Returns `[batch, seq, hidden]`.
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        mask_bias: Option<Tensor<2>>,
    ) -> Result<Tensor<3>, ModelError> {
        let [batch, seq] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device)
            .reshape([1, seq])
            .expand([batch, seq]);
        let mut embedded =
            self.word_embeddings.forward(ids) + self.position_embeddings.forward(positions);
        if let Some(token_types) = &self.token_type_embeddings {
            embedded =
                embedded + token_types.forward(Tensor::<2, Int>::zeros([batch, seq], &device));
        }
        let mut hidden = self.embeddings_norm.forward(embedded);
        // [batch, 1, 1, seq]: broadcast over heads and query positions.
        let mask = mask_bias.map(|m| m.reshape([batch, 1, 1, seq]));
        for layer in &self.layers {
            hidden = layer.forward(hidden, mask.clone(), self.heads)?;
        }
        Ok(hidden)
    }
}

impl BertLayer {
    fn forward(
        &self,
        x: Tensor<3>,
        mask: Option<Tensor<4>>,
        heads: usize,
    ) -> Result<Tensor<3>, ModelError> {
        let context = self_attention(
            self.query.forward3(x.clone())?,
            self.key.forward3(x.clone())?,
            self.value.forward3(x.clone())?,
            mask,
            heads,
        );
        let attended = self
            .attention_norm
            .forward(self.attention_output.forward3(context)? + x);
        let fed = self
            .output
            .forward3(gelu(self.intermediate.forward3(attended.clone())?))?;
        Ok(self.output_norm.forward(fed + attended))
    }
}

/// The position table from position 0 (RoBERTa's offset rows dropped) with
/// token type 0's embedding added, `[max_tokens, hidden]` row after row: every
/// input is one segment, so position and type fold into one lookup.
pub fn single_segment_positions(
    config: &BertConfig,
    weights: &SafetensorsWeights,
    names: &TensorNames,
) -> Result<Vec<f32>, ModelError> {
    let h = config.hidden_size;
    let mut position = weights.read_f32(
        &names.embedding("position_embeddings"),
        &[config.max_position_embeddings, h],
    )?;
    position.drain(..config.position_offset() * h);
    if config.token_types() > 0 {
        let types = weights.read_f32(
            &names.embedding("token_type_embeddings"),
            &[config.token_types(), h],
        )?;
        for row in position.chunks_exact_mut(h) {
            row.iter_mut().zip(&types[..h]).for_each(|(p, t)| *p += t);
        }
    }
    Ok(position)
}

/// Multi-head scaled dot-product attention over `[batch, seq, hidden]`
/// projections, with an additive `[batch, 1, 1, seq]` padding mask; the
/// heads' contexts concatenated back to `[batch, seq, hidden]`. Shared by the
/// inference modules and mdsa-tune's trainable ones.
pub fn self_attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    mask: Option<Tensor<4>>,
    heads: usize,
) -> Tensor<3> {
    let [batch, seq, hidden] = q.dims();
    let head_dim = hidden / heads;
    let split = |t: Tensor<3>| t.reshape([batch, seq, heads, head_dim]).swap_dims(1, 2);
    let (q, k, v) = (split(q), split(k), split(v));
    let mut scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (head_dim as f64).sqrt());
    if let Some(mask) = mask {
        scores = scores + mask;
    }
    softmax(scores, 3)
        .matmul(v)
        .swap_dims(1, 2)
        .reshape([batch, seq, hidden])
}
