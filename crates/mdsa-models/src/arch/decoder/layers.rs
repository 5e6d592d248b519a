//! The pieces decoder families are built from: token embedding, RMSNorm,
//! grouped-query attention with its causal (and sliding-window) mask, and the
//! gated feed-forward layer (SwiGLU, GeGLU). RoPE is in [`super::rope`].
//!
//! Each piece loads its own tensors through the [`Loader`] and runs on burn
//! tensors; a family's file only wires them into blocks. Variants a family
//! needs (another RoPE scaling, a norm with an offset, another activation) are
//! added to the piece here, so every family gets them.

use std::ops::Range;

use burn::tensor::activation::{gelu_approximate, silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::arch::linear::{
    LinearWeight, Matrix, Packed, SharedInput, recycle, take_buffer, tensor_to_vec,
};
use mdsa_engine::ModelError;
use mdsa_engine::vector::{lane_sum, silu_mul};

use super::attend::{AttendSpec, SeqQueries, attend_all};
use super::cache::{DeviceKv, LayerKv};
use super::config::DecoderConfig;
use super::loader::{Loader, Part};
use super::stack::LayerPass;

/// The token embedding table, dense on the device or packed on the host (rows
/// are dequantized on lookup).
#[derive(Debug)]
pub(crate) struct Embedding {
    table: EmbeddingTable,
    vocab_size: usize,
    hidden_size: usize,
    /// Rows are multiplied by this (Gemma: √hidden_size), else 1.
    scale: f32,
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
            scale: 1.0,
            device: device.clone(),
        })
    }

    /// Multiplies every looked-up row by `scale`.
    pub(crate) fn scaled(self, scale: f32) -> Self {
        Self { scale, ..self }
    }

    /// `[tokens, hidden_size]` rows of the table; an error for an id outside it.
    pub(crate) fn forward(&self, tokens: &[u32]) -> Result<Tensor<2>, ModelError> {
        let rows = self.lookup(tokens)?;
        Ok(if self.scale == 1.0 {
            rows
        } else {
            rows * f64::from(self.scale)
        })
    }

    fn lookup(&self, tokens: &[u32]) -> Result<Tensor<2>, ModelError> {
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

/// RMSNorm over the last axis: `x / sqrt(mean(x²) + eps) * weight`, where
/// Gemma's checkpoints store `weight - 1` (its files on the Hub; llama.cpp's
/// converter adds the 1 back).
#[derive(Debug)]
pub(crate) struct RmsNorm {
    weight: Tensor<1>,
    /// The weight in a host buffer, for [`RmsNorm::forward_host`].
    host_weight: Vec<f32>,
    eps: f32,
}

/// What a stored norm weight is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NormWeight {
    /// The weight itself.
    Plain,
    /// `1 + stored` (Gemma in Hugging Face files).
    OnePlus,
}

impl RmsNorm {
    /// Loads the `[len]` weight `{name}.weight`.
    pub(crate) fn load(
        loader: &Loader<'_>,
        name: &str,
        len: usize,
        eps: f32,
        stored: NormWeight,
    ) -> Result<Self, ModelError> {
        let weight = loader.vector(&format!("{name}.weight"), len)?;
        let weight = match stored {
            NormWeight::Plain => weight,
            NormWeight::OnePlus => weight + 1.0,
        };
        Ok(Self {
            host_weight: tensor_to_vec(weight.clone())?,
            weight,
            eps,
        })
    }

    /// Normalizes each `[.., len]` row of a `[heads, n, len]` tensor.
    pub(crate) fn forward3(&self, x: Tensor<3>) -> Tensor<3> {
        let [a, b, c] = x.dims();
        self.forward(x.reshape([a * b, c])).reshape([a, b, c])
    }

    /// Normalizes each row of `[n, len]`.
    pub(crate) fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let scale = (x.clone().powf_scalar(2.0).mean_dim(1) + f64::from(self.eps))
            .sqrt()
            .recip();
        x * scale * self.weight.clone().unsqueeze::<2>()
    }

    /// Normalizes each row of `x` (rows of the weight's length) into `out`,
    /// in host buffers.
    pub(crate) fn forward_host(&self, x: &[f32], out: &mut [f32]) {
        out.copy_from_slice(x);
        self.forward_host_in_place(out);
    }

    /// [`RmsNorm::forward_host`] in place.
    pub(crate) fn forward_host_in_place(&self, x: &mut [f32]) {
        let len = self.host_weight.len().max(1);
        for row in x.chunks_exact_mut(len) {
            let scale = 1.0 / (lane_sum(row, |v| v * v) / len as f32 + self.eps).sqrt();
            for (v, &w) in row.iter_mut().zip(&self.host_weight) {
                *v = *v * scale * w;
            }
        }
    }

    /// Bytes the weight holds (the device's copy and the host's).
    pub(crate) fn resident_bytes(&self) -> usize {
        self.weight.dims()[0] * 4 + self.host_weight.len() * 4
    }
}

/// `x += y`, element by element.
pub(crate) fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// How a family's attention differs from plain llama's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttentionSpec {
    /// Q, K and V projections have a bias (Qwen2).
    pub(crate) qkv_bias: bool,
    /// Q, K and V are one stored projection (Phi-3's `qkv_proj`).
    pub(crate) fused_qkv: bool,
    /// Per-head RMSNorm of queries and keys before RoPE (Qwen3, Gemma 3),
    /// with how its weight is stored.
    pub(crate) qk_norm: Option<NormWeight>,
}

impl AttentionSpec {
    /// Plain llama attention.
    pub(crate) const PLAIN: Self = Self {
        qkv_bias: false,
        fused_qkv: false,
        qk_norm: None,
    };
}

/// Causal self-attention with grouped-query heads: `heads` query heads share
/// `kv_heads` key/value heads, in groups of `heads / kv_heads`.
#[derive(Debug)]
pub(crate) struct Attention {
    /// Q, K and V, in that order.
    qkv: SharedInput<3>,
    o: LinearWeight,
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    scale: f64,
    softcap: Option<f64>,
}

impl Attention {
    /// Loads block `layer`'s projections as `spec` describes them.
    pub(crate) fn load(
        loader: &Loader<'_>,
        layer: usize,
        config: &DecoderConfig,
        spec: AttentionSpec,
    ) -> Result<Self, ModelError> {
        let names = loader.names();
        let n = |part: Part| names.layer(layer, part);
        let h = config.hidden_size;
        let (heads, kv_heads, head_dim) = (config.num_heads, config.num_kv_heads, config.head_dim);
        let (q_dim, kv_dim) = (heads * head_dim, kv_heads * head_dim);
        let (q, k, v) = if spec.fused_qkv {
            let rows = [
                0..q_dim,
                q_dim..q_dim + kv_dim,
                q_dim + kv_dim..q_dim + 2 * kv_dim,
            ];
            let [q, k, v] = loader.linear_split(&n(Part::Qkv), h, rows)?;
            (q, k, v)
        } else {
            let bias = spec.qkv_bias;
            (
                loader.linear(&n(Part::Q), h, q_dim, bias)?,
                loader.linear(&n(Part::K), h, kv_dim, bias)?,
                loader.linear(&n(Part::V), h, kv_dim, bias)?,
            )
        };
        let eps = config.rms_norm_eps;
        let qk_norm = match spec.qk_norm {
            Some(stored) => Some((
                RmsNorm::load(loader, &n(Part::QNorm), head_dim, eps, stored)?,
                RmsNorm::load(loader, &n(Part::KNorm), head_dim, eps, stored)?,
            )),
            None => None,
        };
        Ok(Self {
            qkv: SharedInput::new([q, k, v]),
            o: loader.linear(&n(Part::O), q_dim, h, false)?,
            qk_norm,
            heads,
            kv_heads,
            head_dim,
            scale: f64::from(config.attention_scale),
            softcap: config.attn_logit_softcap.map(f64::from),
        })
    }

    /// Attends from the `[n, hidden]` (normed) new positions to everything in
    /// `cache` and to themselves, appending their keys and values to `cache`.
    /// On the host the kernel of [`super::attend`] reads the cache in place;
    /// on a device, burn's ops run with `layer.mask` ([`attention_mask`]'s for
    /// this layer's kind).
    pub(crate) fn forward(
        &self,
        x: Tensor<2>,
        layer: &mut LayerPass<'_>,
    ) -> Result<Tensor<2>, ModelError> {
        let [rows, _] = x.dims();
        let (heads, kv_heads, hd) = (self.heads, self.kv_heads, self.head_dim);
        // Every sequence's rows at once through the projections:
        // [rows, heads * hd] → [heads, rows, hd]
        let split = |t: Tensor<2>, h: usize| t.reshape([rows, h, hd]).swap_dims(0, 1);
        let [q, k, v] = self.qkv.forward(x)?;
        let mut q = split(q, heads);
        let mut k = split(k, kv_heads);
        if let Some((q_norm, k_norm)) = &self.qk_norm {
            q = q_norm.forward3(q);
            k = k_norm.forward3(k);
        }
        let v = split(v, kv_heads);
        let on_host = layer
            .seqs
            .iter()
            .all(|seq| matches!(&*seq.cache, LayerKv::Host(_)));
        let context = if on_host {
            self.attend_host(q, k, v, layer)?
        } else {
            // Every row rotated by its own position in one go.
            let q = layer.rope.apply(q, layer.at);
            let k = layer.rope.apply(k, layer.at);
            // Then each sequence against its own cache, on the device.
            let single = layer.seqs.len() == 1;
            let mut contexts = Vec::with_capacity(layer.seqs.len());
            for seq in &mut layer.seqs {
                let own = |t: &Tensor<3>| {
                    if single {
                        t.clone()
                    } else {
                        t.clone().narrow(1, seq.rows.start, seq.rows.len())
                    }
                };
                let mask = seq.mask.take();
                let LayerKv::Device(kv) = &mut *seq.cache else {
                    return Err(ModelError::Backend(
                        "a batch mixed host and device KV caches".into(),
                    ));
                };
                contexts.push(self.attend_device(own(&q), own(&k), own(&v), kv, mask)?);
            }
            if single {
                contexts.pop().unwrap_or_else(|| unreachable!())
            } else {
                Tensor::cat(contexts, 0)
            }
        };
        self.o.forward(context)
    }

    /// Whether [`Attention::forward_host`] can run it: Q, K and V one
    /// projection, and every projection multiplied on the host.
    pub(crate) fn runs_on_host(&self) -> bool {
        self.qkv.fused().is_some_and(|(qkv, _)| qkv.on_host()) && self.o.on_host()
    }

    /// [`Attention::forward`] in host buffers: `x` is the pass's `[rows,
    /// hidden]` (normed) input, the result its `[rows, hidden]` output. Only
    /// where [`Attention::runs_on_host`] and the caches are on the host.
    pub(crate) fn forward_host(
        &self,
        x: &[f32],
        rows: usize,
        layer: &mut LayerPass<'_>,
    ) -> Result<Vec<f32>, ModelError> {
        let Some((qkv, _)) = self.qkv.fused() else {
            return Err(ModelError::Backend(
                "separate Q, K and V projections were run on the host".into(),
            ));
        };
        let (heads, kv_heads, hd) = (self.heads, self.kv_heads, self.head_dim);
        let y = qkv.forward_host(x, rows)?;
        // [rows, (heads + 2 · kv_heads) · hd] → [h, rows, hd] for each of Q, K, V.
        let width = (heads + 2 * kv_heads) * hd;
        let split = |first: usize, h: usize| {
            let mut out = vec![0.0f32; h * rows * hd];
            for (r, row) in y.chunks_exact(width).enumerate() {
                for head in 0..h {
                    out[(head * rows + r) * hd..][..hd]
                        .copy_from_slice(&row[(first + head) * hd..][..hd]);
                }
            }
            out
        };
        let (mut q, mut k) = (split(0, heads), split(heads, kv_heads));
        let v = split(heads + kv_heads, kv_heads);
        recycle(y);
        if let Some((q_norm, k_norm)) = &self.qk_norm {
            q_norm.forward_host_in_place(&mut q);
            k_norm.forward_host_in_place(&mut k);
        }
        let context = self.attend_buffers(q, k, v, rows, layer)?;
        let out = self.o.forward_host(&context, rows);
        recycle(context);
        out
    }

    /// The `[rows, heads · hd]` context of every sequence of the pass, whose
    /// caches are on the host, from the pass's (not yet rotated) `[heads, rows, hd]`
    /// queries and `[kv_heads, rows, hd]` new keys and values: each sequence's
    /// keys and values are appended to its cache, then all attend in one
    /// parallel pass ([`attend_all`]).
    fn attend_host(
        &self,
        q: Tensor<3>,
        k: Tensor<3>,
        v: Tensor<3>,
        layer: &mut LayerPass<'_>,
    ) -> Result<Tensor<2>, ModelError> {
        let [heads, rows, hd] = q.dims();
        let device = q.device();
        let (q, k, v) = (tensor_to_vec(q)?, tensor_to_vec(k)?, tensor_to_vec(v)?);
        let context = self.attend_buffers(q, k, v, rows, layer)?;
        Ok(Tensor::from_data(
            TensorData::new(context, [rows, heads * hd]),
            &device,
        ))
    }

    /// [`Attention::attend_host`] on host buffers.
    fn attend_buffers(
        &self,
        mut q: Vec<f32>,
        mut k: Vec<f32>,
        v: Vec<f32>,
        rows: usize,
        layer: &mut LayerPass<'_>,
    ) -> Result<Vec<f32>, ModelError> {
        let (heads, hd) = (self.heads, self.head_dim);
        // Every row rotated by its own position in one go.
        layer.rope.apply_host(&mut q, heads, hd, layer.at)?;
        layer.rope.apply_host(&mut k, self.kv_heads, hd, layer.at)?;
        let single = layer.seqs.len() == 1;
        // One sequence's rows of a [h, rows, hd] buffer, as [h, n, hd].
        let own = |all: &[f32], h: usize, range: &Range<usize>| -> Vec<f32> {
            let mut out = Vec::with_capacity(h * range.len() * hd);
            for head in 0..h {
                out.extend_from_slice(
                    &all[(head * rows + range.start) * hd..(head * rows + range.end) * hd],
                );
            }
            out
        };
        let mut queries = Vec::with_capacity(layer.seqs.len());
        for seq in &mut layer.seqs {
            let n = seq.rows.len();
            let LayerKv::Host(kv) = &mut *seq.cache else {
                return Err(ModelError::Backend(
                    "a batch mixed host and device KV caches".into(),
                ));
            };
            if single {
                kv.write(&k, &v, n);
            } else {
                let range = &seq.rows;
                kv.write(
                    &own(&k, self.kv_heads, range),
                    &own(&v, self.kv_heads, range),
                    n,
                );
                queries.push(own(&q, heads, range));
            }
        }
        let spec = AttendSpec {
            heads,
            kv_heads: self.kv_heads,
            head_dim: hd,
            scale: self.scale as f32,
            softcap: self.softcap.map(|c| c as f32),
            // Every sequence of a pass runs this layer's kind.
            window: layer.seqs.first().and_then(|seq| seq.window),
        };
        let seqs: Vec<SeqQueries<'_>> = layer
            .seqs
            .iter()
            .enumerate()
            .filter_map(|(s, seq)| match &*seq.cache {
                LayerKv::Host(cache) => Some(SeqQueries {
                    q: if single { &q } else { &queries[s] },
                    n: seq.rows.len(),
                    cache,
                }),
                LayerKv::Device(_) => None,
            })
            .collect();
        // The sequences' rows are consecutive and in order: their contexts
        // concatenated are the pass's.
        Ok(attend_all(&seqs, &spec).concat())
    }

    /// One sequence's `[n, heads · hd]` context on a device, from its
    /// `[heads, n, hd]` queries and `[kv_heads, n, hd]` new keys and values,
    /// which it appends to its cache.
    fn attend_device(
        &self,
        q: Tensor<3>,
        k: Tensor<3>,
        v: Tensor<3>,
        kv: &mut DeviceKv,
        mask: Option<Tensor<2>>,
    ) -> Result<Tensor<2>, ModelError> {
        let [heads, n, hd] = q.dims();
        let group = heads / self.kv_heads;
        let (k, v) = kv.append(k, v);
        // Grouped-query attention without copying K/V: the `group` query
        // heads that share one KV head are stacked along the query axis.
        let q = q.reshape([self.kv_heads, group * n, hd]);
        let mut scores = q.matmul(k.swap_dims(1, 2)) * self.scale;
        if let Some(cap) = self.softcap {
            scores = (scores / cap).tanh() * cap;
        }
        if let Some(mask) = mask {
            scores = scores + mask.unsqueeze::<3>();
        }
        Ok(softmax(scores, 2)
            .matmul(v) // [kv, group * n, hd]
            .reshape([heads, n, hd])
            .swap_dims(0, 1)
            .reshape([n, heads * hd]))
    }

    /// Bytes the projections and norms hold.
    pub(crate) fn resident_bytes(&self) -> usize {
        let norms = self
            .qk_norm
            .as_ref()
            .map_or(0, |(q, k)| q.resident_bytes() + k.resident_bytes());
        self.qkv.resident_bytes() + self.o.resident_bytes() + norms
    }
}

/// `[group * n, past + n]`: 0 where a query may look, -inf where it may not,
/// for `n` new positions after `past` cached ones and `group` query heads per
/// KV head (stacked along the query axis, as [`Attention::forward`] does).
/// A query sees earlier positions, or with a `window` only the last `window`
/// of them (itself included). `None` when nothing is hidden.
pub(crate) fn attention_mask(
    n: usize,
    past: usize,
    group: usize,
    window: Option<usize>,
    device: &Device,
) -> Option<Tensor<2>> {
    let total = past + n;
    let window = window.filter(|&w| w < total);
    if n == 1 && window.is_none() {
        return None;
    }
    let mut mask = vec![0.0f32; group * n * total];
    for g in 0..group {
        for i in 0..n {
            let row = (g * n + i) * total;
            let position = past + i;
            let first = window.map_or(0, |w| (position + 1).saturating_sub(w));
            for (j, value) in mask[row..row + total].iter_mut().enumerate() {
                if j > position || j < first {
                    *value = f32::NEG_INFINITY;
                }
            }
        }
    }
    Some(Tensor::from_data(
        TensorData::new(mask, [group * n, total]),
        device,
    ))
}

/// The activation of a gated feed-forward layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// SiLU (SwiGLU: llama, qwen, phi3).
    Silu,
    /// GELU, tanh approximation (GeGLU: Gemma).
    GeluTanh,
}

/// The gated feed-forward layer: `down(act(gate(x)) * up(x))`.
#[derive(Debug)]
pub(crate) struct Mlp {
    /// Gate and up, in that order.
    gate_up: SharedInput<2>,
    down: LinearWeight,
    activation: Activation,
}

impl Mlp {
    /// Loads block `layer`'s `[hidden → ffn → hidden]` projections; `fused`
    /// reads gate and up from one stored `[2 · ffn, hidden]` projection (gate
    /// first, as Phi-3 stores it).
    pub(crate) fn load(
        loader: &Loader<'_>,
        layer: usize,
        config: &DecoderConfig,
        activation: Activation,
        fused: bool,
    ) -> Result<Self, ModelError> {
        let names = loader.names();
        let n = |part: Part| names.layer(layer, part);
        let (hidden, ffn) = (config.hidden_size, config.intermediate_size);
        let (gate, up) = if fused {
            let rows: [Range<usize>; 2] = [0..ffn, ffn..2 * ffn];
            let [gate, up] = loader.linear_split(&n(Part::GateUp), hidden, rows)?;
            (gate, up)
        } else {
            (
                loader.linear(&n(Part::Gate), hidden, ffn, false)?,
                loader.linear(&n(Part::Up), hidden, ffn, false)?,
            )
        };
        Ok(Self {
            gate_up: SharedInput::new([gate, up]),
            down: loader.linear(&n(Part::Down), ffn, hidden, false)?,
            activation,
        })
    }

    /// Runs `[n, hidden]` through the layer.
    pub(crate) fn forward(&self, x: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        if self.runs_on_host() {
            let [n, _] = x.dims();
            let device = x.device();
            let y = self.forward_host(&tensor_to_vec(x)?, n)?;
            let width = y.len() / n.max(1);
            return Ok(Tensor::from_data(TensorData::new(y, [n, width]), &device));
        }
        let [gate, up] = self.gate_up.forward(x)?;
        let gate = match self.activation {
            Activation::Silu => silu(gate),
            Activation::GeluTanh => gelu_approximate(gate),
        };
        self.down.forward(gate * up)
    }

    /// Whether [`Mlp::forward_host`] can run it: SwiGLU, gate and up one
    /// projection, and every projection multiplied on the host.
    pub(crate) fn runs_on_host(&self) -> bool {
        self.activation == Activation::Silu
            && self
                .gate_up
                .fused()
                .is_some_and(|(gate_up, _)| gate_up.on_host())
            && self.down.on_host()
    }

    /// SwiGLU on the CPU's quantized path, in host buffers from the `[n,
    /// hidden]` input to the output (the gate's SiLU fused with the product);
    /// only where [`Mlp::runs_on_host`].
    pub(crate) fn forward_host(&self, x: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        let Some((gate_up, &[ffn, _])) = self.gate_up.fused() else {
            return Err(ModelError::Backend(
                "separate gate and up projections were run on the host".into(),
            ));
        };
        let both = gate_up.forward_host(x, n)?;
        let mut hidden = take_buffer(n * ffn);
        crate::team::for_each_piece_mut(&mut hidden, ffn, |i, out| {
            let (gate, up) = both[i * 2 * ffn..(i + 1) * 2 * ffn].split_at(ffn);
            silu_mul(gate, up, out);
        });
        recycle(both);
        let out = self.down.forward_host(&hidden, n);
        recycle(hidden);
        out
    }

    /// Bytes the projections hold.
    pub(crate) fn resident_bytes(&self) -> usize {
        self.gate_up.resident_bytes() + self.down.resident_bytes()
    }
}
