//! The encoder as burn modules with trainable parameters.
//!
//! mdsa-models' inference encoders hold weights packed or quantized for
//! speed; training needs them as burn `Param`s that autodiff tracks, so this
//! is the same computation (post-norm BERT layers, the family's tensor names
//! and position offset) over `burn::nn` modules. The embedding tables stay
//! frozen: they are most of the parameters and a few hundred examples cannot
//! move them usefully, while the layers can.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use mdsa_models::Pooling;
use mdsa_models::arch::bert::{BertConfig, TensorNames, self_attention, single_segment_positions};
use mdsa_models::weights::SafetensorsWeights;

use crate::error::Result;

/// The frozen embedding tables (on the plain device; never trained).
#[derive(Debug, Clone)]
pub(crate) struct Embeddings {
    /// `[vocab, hidden]`.
    word: Tensor<2>,
    /// `[positions, hidden]` from position 0, token type 0 added.
    position: Tensor<2>,
}

/// One post-norm transformer layer.
#[derive(Module, Debug)]
pub(crate) struct Layer {
    pub(crate) query: Linear,
    pub(crate) key: Linear,
    pub(crate) value: Linear,
    pub(crate) attention_output: Linear,
    pub(crate) attention_norm: LayerNorm,
    pub(crate) intermediate: Linear,
    pub(crate) output: Linear,
    pub(crate) output_norm: LayerNorm,
}

/// The trainable part of the encoder: the embeddings' LayerNorm and every layer.
#[derive(Module, Debug)]
pub(crate) struct Encoder {
    pub(crate) embeddings_norm: LayerNorm,
    pub(crate) layers: Vec<Layer>,
}

/// A token batch: ids and mask `[batch, seq]`.
pub(crate) struct Batch {
    pub(crate) ids: Vec<i64>,
    pub(crate) mask: Vec<f32>,
    pub(crate) batch: usize,
    pub(crate) seq: usize,
}

/// A `Linear` from a Hugging Face `[out, in]` weight and its bias.
fn linear(
    weights: &SafetensorsWeights,
    name: &str,
    d_in: usize,
    d_out: usize,
    device: &Device,
) -> Result<Linear> {
    let values = weights.read_f32(&format!("{name}.weight"), &[d_out, d_in])?;
    // burn keeps `[in, out]`.
    let mut transposed = vec![0.0f32; values.len()];
    for (o, row) in values.chunks_exact(d_in).enumerate() {
        for (i, v) in row.iter().enumerate() {
            transposed[i * d_out + o] = *v;
        }
    }
    let mut module = LinearConfig::new(d_in, d_out).init(device);
    module.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(transposed, [d_in, d_out]),
        device,
    ));
    module.bias = Some(Param::from_tensor(weights.tensor(
        &format!("{name}.bias"),
        [d_out],
        device,
    )?));
    Ok(module)
}

/// Reads a `Linear`'s weight back in Hugging Face's `[out, in]` order, and its bias.
pub(crate) fn linear_values(module: &Linear) -> (Vec<f32>, Vec<f32>) {
    let [d_in, d_out] = module.weight.val().dims();
    let values = to_vec(module.weight.val());
    let mut weight = vec![0.0f32; values.len()];
    for (i, row) in values.chunks_exact(d_out).enumerate() {
        for (o, v) in row.iter().enumerate() {
            weight[o * d_in + i] = *v;
        }
    }
    let bias = module
        .bias
        .as_ref()
        .map(|b| to_vec(b.val()))
        .unwrap_or_default();
    (weight, bias)
}

/// A LayerNorm's weight and bias.
pub(crate) fn norm_values(module: &LayerNorm) -> (Vec<f32>, Vec<f32>) {
    (
        to_vec(module.gamma.val()),
        module
            .beta
            .as_ref()
            .map(|b| to_vec(b.val()))
            .unwrap_or_default(),
    )
}

pub(crate) fn to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_into_vec::<f32>().unwrap_or_default()
}

impl Embeddings {
    pub(crate) fn load(
        config: &BertConfig,
        weights: &SafetensorsWeights,
        names: &TensorNames,
        device: &Device,
    ) -> Result<Self> {
        let h = config.hidden_size;
        let word = weights.tensor(
            &names.embedding("word_embeddings"),
            [config.vocab_size, h],
            device,
        )?;
        let position = single_segment_positions(config, weights, names)?;
        let rows = position.len() / h;
        Ok(Self {
            word,
            position: Tensor::from_data(TensorData::new(position, [rows, h]), device),
        })
    }

    /// Word plus position embeddings of a batch, `[batch, seq, hidden]`, on `device`.
    fn embed(&self, batch: &Batch, device: &Device) -> Tensor<3> {
        let [_, h] = self.word.dims();
        let ids = Tensor::<1, Int>::from_data(
            TensorData::new(batch.ids.clone(), [batch.batch * batch.seq]),
            &self.word.device(),
        );
        let words = self
            .word
            .clone()
            .select(0, ids)
            .reshape([batch.batch, batch.seq, h]);
        let positions = self
            .position
            .clone()
            .narrow(0, 0, batch.seq)
            .reshape([1, batch.seq, h]);
        (words + positions).to_device(device)
    }
}

impl Encoder {
    pub(crate) fn load(
        config: &BertConfig,
        weights: &SafetensorsWeights,
        names: &TensorNames,
        device: &Device,
    ) -> Result<Self> {
        let h = config.hidden_size;
        let inner = config.intermediate_size;
        let eps = config.layer_norm_eps;
        let norm = |name: &str| weights.layer_norm(name, h, eps, device);
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = names.layer(i);
                Ok(Layer {
                    query: linear(weights, &l.query, h, h, device)?,
                    key: linear(weights, &l.key, h, h, device)?,
                    value: linear(weights, &l.value, h, h, device)?,
                    attention_output: linear(weights, &l.attention_output, h, h, device)?,
                    attention_norm: norm(&l.attention_norm)?,
                    intermediate: linear(weights, &l.intermediate, h, inner, device)?,
                    output: linear(weights, &l.output, inner, h, device)?,
                    output_norm: norm(&l.output_norm)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings_norm: norm(&names.embeddings_norm())?,
            layers,
        })
    }

    /// Pooled, unit-length sentence vectors `[batch, hidden]`.
    pub(crate) fn forward(
        &self,
        embeddings: &Embeddings,
        batch: &Batch,
        heads: usize,
        pooling: Pooling,
    ) -> Tensor<2> {
        let device = self.embeddings_norm.gamma.val().device();
        let (b, s) = (batch.batch, batch.seq);
        let mask = Tensor::<2>::from_data(TensorData::new(batch.mask.clone(), [b, s]), &device);
        // Padding gets a large negative score so softmax gives it no weight.
        let bias = (mask.clone() - 1.0).reshape([b, 1, 1, s]) * 1e9;
        let mut hidden = self
            .embeddings_norm
            .forward(embeddings.embed(batch, &device));
        for layer in &self.layers {
            hidden = layer.forward(hidden, bias.clone(), heads);
        }
        let [_, _, h] = hidden.dims();
        let pooled = match pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1).reshape([b, h]),
            // `Encoder::check_pooling` lets only mean and CLS through.
            _ => {
                let weights = mask.clone().reshape([b, s, 1]);
                let summed = (hidden * weights).sum_dim(1).reshape([b, h]);
                summed / mask.sum_dim(1).clamp_min(1e-9)
            }
        };
        let norms = pooled
            .clone()
            .powf_scalar(2.0)
            .sum_dim(1)
            .sqrt()
            .clamp_min(1e-12);
        pooled / norms
    }
}

impl Layer {
    fn forward(&self, x: Tensor<3>, mask: Tensor<4>, heads: usize) -> Tensor<3> {
        let context = self_attention(
            self.query.forward(x.clone()),
            self.key.forward(x.clone()),
            self.value.forward(x.clone()),
            Some(mask),
            heads,
        );
        let attended = self
            .attention_norm
            .forward(self.attention_output.forward(context) + x);
        let fed = self
            .output
            .forward(gelu(self.intermediate.forward(attended.clone())));
        self.output_norm.forward(fed + attended)
    }
}
