//! The pieces decoder families are built from: token embedding, RMSNorm,
//! rotary position embeddings, grouped-query attention with its causal mask,
//! and the SwiGLU feed-forward layer.
//!
//! Each piece loads its own tensors through the [`Loader`] and runs on burn
//! tensors; a family's file only wires them into blocks. Variants a family
//! needs (another RoPE scaling, a norm with an offset, another activation) are
//! added to the piece here, so every family gets them.

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::arch::linear::{LinearWeight, Matrix, Packed};
use mdsa_engine::ModelError;

use super::cache::LayerKv;
use super::config::{DecoderConfig, RopeScaling};
use super::loader::{Loader, Part};

/// The token embedding table, dense on the device or packed on the host (rows
/// are dequantized on lookup).
#[derive(Debug)]
pub(crate) struct Embedding {
    table: EmbeddingTable,
    vocab_size: usize,
    hidden_size: usize,
    device: Device,
}

#[derive(Debug)]
enum EmbeddingTable {
    Dense(Tensor<2>),
    Packed(Packed),
}

impl Embedding {
    /// Loads the `[vocab_size, hidden_size]` table `{name}.weight`.
    pub(crate) fn load(
        loader: &Loader<'_>,
        name: &str,
        vocab_size: usize,
        hidden_size: usize,
    ) -> Result<Self, ModelError> {
        let device = loader.device();
        let table = match loader.matrix(&format!("{name}.weight"), vocab_size, hidden_size)? {
            Matrix::Packed(m) => EmbeddingTable::Packed(m),
            Matrix::Dense(rows) => EmbeddingTable::Dense(Tensor::from_data(
                TensorData::new(rows, [vocab_size, hidden_size]),
                device,
            )),
        };
        Ok(Self {
            table,
            vocab_size,
            hidden_size,
            device: device.clone(),
        })
    }

    /// `[tokens, hidden_size]` rows of the table; an error for an id outside it.
    pub(crate) fn forward(&self, tokens: &[u32]) -> Result<Tensor<2>, ModelError> {
        let h = self.hidden_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.vocab_size) {
            return Err(ModelError::Backend(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.vocab_size
            )));
        }
        match &self.table {
            EmbeddingTable::Dense(table) => {
                let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
                let ids =
                    Tensor::<1, Int>::from_data(TensorData::new(ids, [tokens.len()]), &self.device);
                Ok(table.clone().select(0, ids))
            }
            EmbeddingTable::Packed(matrix) => {
                let mut rows = vec![0.0f32; tokens.len() * h];
                for (row, &token) in rows.chunks_exact_mut(h).zip(tokens) {
                    matrix.row_into(token as usize, row)?;
                }
                Ok(Tensor::from_data(
                    TensorData::new(rows, [tokens.len(), h]),
                    &self.device,
                ))
            }
        }
    }

    /// Bytes the table holds.
    pub(crate) fn resident_bytes(&self) -> usize {
        match &self.table {
            EmbeddingTable::Dense(t) => t.dims().iter().product::<usize>() * 4,
            EmbeddingTable::Packed(m) => m.resident_bytes(),
        }
    }
}

/// RMSNorm over the last axis: `x / sqrt(mean(x²) + eps) * weight`.
#[derive(Debug)]
pub(crate) struct RmsNorm {
    weight: Tensor<1>,
    eps: f32,
}

impl RmsNorm {
    /// Loads the `[len]` weight `{name}.weight`.
    pub(crate) fn load(
        loader: &Loader<'_>,
        name: &str,
        len: usize,
        eps: f32,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            weight: loader.vector(&format!("{name}.weight"), len)?,
            eps,
        })
    }

    /// Normalizes each row of `[n, len]`.
    pub(crate) fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let scale = (x.clone().powf_scalar(2.0).mean_dim(1) + f64::from(self.eps))
            .sqrt()
            .recip();
        x * scale * self.weight.clone().unsqueeze::<2>()
    }

    /// Bytes the weight holds.
    pub(crate) fn resident_bytes(&self) -> usize {
        self.weight.dims()[0] * 4
    }
}

/// Which elements of a head RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RopeLayout {
    /// Adjacent pairs `(x[2i], x[2i+1])`: llama.cpp's permuted Q/K weights.
    Interleaved,
    /// Halves `(x[i], x[i + hd/2])`: Hugging Face's `rotate_half`.
    Halves,
}

/// Rotary position embeddings: `[context, head_dim / 2]` cos and sin tables
/// for every position, computed once at load, and their application to
/// queries and keys. The scaling variants ([`RopeScaling`]) change the tables
/// only, in [`Rope::new`].
#[derive(Debug)]
pub(crate) struct Rope {
    cos: Tensor<2>,
    sin: Tensor<2>,
    layout: RopeLayout,
}

/// The cos and sin rows of the positions one forward pass covers.
#[derive(Debug)]
pub(crate) struct RopeAt {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl Rope {
    /// Tables for `config.context_length` positions of `config.head_dim`.
    pub(crate) fn new(config: &DecoderConfig, layout: RopeLayout, device: &Device) -> Self {
        let half = config.head_dim / 2;
        let positions = config.context_length;
        let theta = f64::from(config.rope_theta);
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / theta.powf(2.0 * i as f64 / config.head_dim as f64))
            .collect();
        let position_scale = match config.rope_scaling {
            RopeScaling::None => 1.0,
            RopeScaling::Linear { factor } => f64::from(factor),
        };
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            let position = p as f64 / position_scale;
            for freq in &inv_freq {
                let angle = position * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [positions, half]), device),
            sin: Tensor::from_data(TensorData::new(sin, [positions, half]), device),
            layout,
        }
    }

    /// The table rows of positions `past..past + n`.
    pub(crate) fn at(&self, past: usize, n: usize) -> RopeAt {
        RopeAt {
            cos: self.cos.clone().narrow(0, past, n),
            sin: self.sin.clone().narrow(0, past, n),
        }
    }

    /// Rotates `[heads, n, hd]` by the positions of `at`.
    pub(crate) fn apply(&self, x: Tensor<3>, at: &RopeAt) -> Tensor<3> {
        let [heads, n, hd] = x.dims();
        let half = hd / 2;
        let cos = at.cos.clone().reshape([1, n, half]);
        let sin = at.sin.clone().reshape([1, n, half]);
        match self.layout {
            RopeLayout::Interleaved => {
                let pairs = x.reshape([heads, n, half, 2]);
                let a = pairs.clone().narrow(3, 0, 1).reshape([heads, n, half]);
                let b = pairs.narrow(3, 1, 1).reshape([heads, n, half]);
                let ra = a.clone() * cos.clone() - b.clone() * sin.clone();
                let rb = a * sin + b * cos;
                Tensor::stack::<4>(vec![ra, rb], 3).reshape([heads, n, hd])
            }
            RopeLayout::Halves => {
                let a = x.clone().narrow(2, 0, half);
                let b = x.narrow(2, half, half);
                let ra = a.clone() * cos.clone() - b.clone() * sin.clone();
                let rb = a * sin + b * cos;
                Tensor::cat(vec![ra, rb], 2)
            }
        }
    }
}

/// Causal self-attention with grouped-query heads: `heads` query heads share
/// `kv_heads` key/value heads, in groups of `heads / kv_heads`.
#[derive(Debug)]
pub(crate) struct Attention {
    q: LinearWeight,
    k: LinearWeight,
    v: LinearWeight,
    o: LinearWeight,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// Loads block `layer`'s projections; `qkv_bias` reads a bias for Q, K and V.
    pub(crate) fn load(
        loader: &Loader<'_>,
        layer: usize,
        config: &DecoderConfig,
        qkv_bias: bool,
    ) -> Result<Self, ModelError> {
        let names = loader.names();
        let n = |part: Part| names.layer(layer, part);
        let h = config.hidden_size;
        let (heads, kv_heads, head_dim) = (config.num_heads, config.num_kv_heads, config.head_dim);
        let (q_dim, kv_dim) = (heads * head_dim, kv_heads * head_dim);
        Ok(Self {
            q: loader.linear(&n(Part::Q), h, q_dim, qkv_bias)?,
            k: loader.linear(&n(Part::K), h, kv_dim, qkv_bias)?,
            v: loader.linear(&n(Part::V), h, kv_dim, qkv_bias)?,
            o: loader.linear(&n(Part::O), q_dim, h, false)?,
            heads,
            kv_heads,
            head_dim,
        })
    }

    /// Attends from the `[n, hidden]` (normed) new positions to everything in
    /// `cache` and to themselves, appending their keys and values to `cache`.
    /// `mask` is [`causal_mask`]'s, for `n > 1`.
    pub(crate) fn forward(
        &self,
        x: Tensor<2>,
        rope: &Rope,
        at: &RopeAt,
        mask: Option<Tensor<2>>,
        cache: &mut LayerKv,
    ) -> Result<Tensor<2>, ModelError> {
        let [n, _] = x.dims();
        let (heads, kv_heads, hd) = (self.heads, self.kv_heads, self.head_dim);
        let group = heads / kv_heads;
        // [n, heads * hd] → [heads, n, hd]
        let split = |t: Tensor<2>, h: usize| t.reshape([n, h, hd]).swap_dims(0, 1);
        let q = rope.apply(split(self.q.forward(x.clone())?, heads), at);
        let k = rope.apply(split(self.k.forward(x.clone())?, kv_heads), at);
        let v = split(self.v.forward(x)?, kv_heads);
        let (k, v) = cache.append(k, v);
        // Grouped-query attention without copying K/V: the `group` query heads
        // that share one KV head are stacked along the query axis.
        let q = q.reshape([kv_heads, group * n, hd]);
        let mut scores = q.matmul(k.swap_dims(1, 2)) * (1.0 / (hd as f64).sqrt());
        if let Some(mask) = mask {
            scores = scores + mask.unsqueeze::<3>();
        }
        let context = softmax(scores, 2)
            .matmul(v) // [kv, group * n, hd]
            .reshape([heads, n, hd])
            .swap_dims(0, 1)
            .reshape([n, heads * hd]);
        self.o.forward(context)
    }

    /// Bytes the projections hold.
    pub(crate) fn resident_bytes(&self) -> usize {
        [&self.q, &self.k, &self.v, &self.o]
            .iter()
            .map(|l| l.resident_bytes())
            .sum()
    }
}

/// `[group * n, past + n]`: 0 where a query may look, -inf where it may not,
/// for `n` new positions after `past` cached ones and `group` query heads per
/// KV head (stacked along the query axis, as [`Attention::forward`] does).
pub(crate) fn causal_mask(n: usize, past: usize, group: usize, device: &Device) -> Tensor<2> {
    let total = past + n;
    let mut mask = vec![0.0f32; group * n * total];
    for g in 0..group {
        for i in 0..n {
            let row = (g * n + i) * total;
            for j in (past + i + 1)..total {
                mask[row + j] = f32::NEG_INFINITY;
            }
        }
    }
    Tensor::from_data(TensorData::new(mask, [group * n, total]), device)
}

/// The SwiGLU feed-forward layer: `down(silu(gate(x)) * up(x))`.
#[derive(Debug)]
pub(crate) struct Mlp {
    gate: LinearWeight,
    up: LinearWeight,
    down: LinearWeight,
}

impl Mlp {
    /// Loads block `layer`'s `[hidden → ffn → hidden]` projections.
    pub(crate) fn load(
        loader: &Loader<'_>,
        layer: usize,
        hidden: usize,
        ffn: usize,
    ) -> Result<Self, ModelError> {
        let names = loader.names();
        let n = |part: Part| names.layer(layer, part);
        Ok(Self {
            gate: loader.linear(&n(Part::Gate), hidden, ffn, false)?,
            up: loader.linear(&n(Part::Up), hidden, ffn, false)?,
            down: loader.linear(&n(Part::Down), ffn, hidden, false)?,
        })
    }

    /// Runs `[n, hidden]` through the layer.
    pub(crate) fn forward(&self, x: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        let gated = silu(self.gate.forward(x.clone())?) * self.up.forward(x)?;
        self.down.forward(gated)
    }

    /// Bytes the projections hold.
    pub(crate) fn resident_bytes(&self) -> usize {
        [&self.gate, &self.up, &self.down]
            .iter()
            .map(|l| l.resident_bytes())
            .sum()
    }
}
