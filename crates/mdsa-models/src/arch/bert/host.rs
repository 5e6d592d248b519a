//! The BERT encoder on the CPU in plain buffers, without burn tensors.
//!
//! A routed query is 10–30 tokens: through general tensor code each of the
//! ~20 operations of a layer costs more in dispatch, allocation and weight
//! packing than in arithmetic. Here the weights are packed once at load
//! ([`Packed`]: f32 panels for the register-blocked product, or int8/int4
//! blocks), query, key and value are one product, bias and GELU are applied
//! in place after each product, residual and LayerNorm are one pass, and the
//! buffers of one call are reused by every layer. A batch is not padded: its
//! sequences' tokens are stacked into one block of rows for the products, and
//! attention runs per sequence.

use crate::team;
use mdsa_engine::vector::lane_sum;

use super::{BertConfig, TensorNames};
use crate::arch::linear::Packed;
use crate::weights::SafetensorsWeights;
use mdsa_engine::vector;
use mdsa_engine::{ModelError, WeightFormat};

/// Most rows per parallel task of the row-wise passes (LayerNorm, bias and GELU).
const ROWS_PER_TASK: usize = 32;

/// Rows per task of a row-wise pass over `rows` rows: a short query's rows
/// are shared by the team's threads too (its GELU alone took a tenth of the
/// encoder's time on one thread), a batch's go 32 at a time.
fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(team::threads()).clamp(1, ROWS_PER_TASK)
}

/// A BERT encoder computed on the host: token ids in, one hidden state per token out.
#[derive(Debug)]
pub struct HostBert {
    hidden: usize,
    heads: usize,
    eps: f32,
    vocab: usize,
    /// `[vocab, hidden]`.
    word: Vec<f32>,
    /// `[max_positions, hidden]` from position 0 (RoBERTa's offset rows
    /// dropped), token type 0's embedding added (every input is one segment).
    position: Vec<f32>,
    embeddings_norm: Norm,
    layers: Vec<Layer>,
    resident_bytes: usize,
    /// The last call's buffers (a concurrent call makes its own).
    spare: std::sync::Mutex<Option<Buffers>>,
}

#[derive(Debug)]
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// `y = x Wᵀ + b`.
#[derive(Debug)]
struct Dense {
    matrix: Packed,
    bias: Vec<f32>,
}

#[derive(Debug)]
struct Layer {
    /// Query, key and value side by side: `[3 · hidden]` outputs.
    qkv: Dense,
    attention_output: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

/// One call's buffers, reused by every layer, and kept for the next call:
/// a batch's buffers are megabytes, which the allocator would otherwise map
/// afresh (and the kernel zero, page by page) on every call.
#[derive(Debug, Default)]
struct Buffers {
    qkv: Vec<f32>,
    context: Vec<f32>,
    projected: Vec<f32>,
    intermediate: Vec<f32>,
}

impl HostBert {
    /// Builds the encoder from safetensors weights (names as in
    /// [`super::Bert::load`]), holding its linear weights as `format`.
    pub fn load(
        config: &BertConfig,
        weights: &SafetensorsWeights,
        format: WeightFormat,
    ) -> Result<Self, ModelError> {
        let names = TensorNames::detect(config.family(), weights);
        let h = config.hidden_size;
        let word =
            weights.read_f32(&names.embedding("word_embeddings"), &[config.vocab_size, h])?;
        let position = super::single_segment_positions(config, weights, &names)?;
        let norm = |prefix: &str| -> Result<Norm, ModelError> {
            let (weight, bias) = weights.layer_norm_values(prefix, h)?;
            Ok(Norm { weight, bias })
        };
        let dense = |names: &[String], d_in: usize, d_out: usize| -> Result<Dense, ModelError> {
            let mut values = Vec::with_capacity(names.len() * d_in * d_out);
            let mut bias = Vec::with_capacity(names.len() * d_out);
            for name in names {
                values.extend(weights.read_f32(&format!("{name}.weight"), &[d_out, d_in])?);
                bias.extend(weights.read_f32(&format!("{name}.bias"), &[d_out])?);
            }
            let rows = names.len() * d_out;
            Ok(Dense {
                matrix: Packed::from_f32(format, rows, d_in, values)?,
                bias,
            })
        };
        let inner = config.intermediate_size;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = names.layer(i);
                Ok(Layer {
                    qkv: dense(&[l.query, l.key, l.value], h, h)?,
                    attention_output: dense(&[l.attention_output], h, h)?,
                    attention_norm: norm(&l.attention_norm)?,
                    intermediate: dense(&[l.intermediate], h, inner)?,
                    output: dense(&[l.output], inner, h)?,
                    output_norm: norm(&l.output_norm)?,
                })
            })
            .collect::<Result<Vec<Layer>, ModelError>>()?;
        let floats = word.len() + position.len() + (1 + 2 * layers.len()) * 2 * h;
        let dense_bytes: usize = layers
            .iter()
            .flat_map(|l| [&l.qkv, &l.attention_output, &l.intermediate, &l.output])
            .map(|d| d.matrix.resident_bytes() + d.bias.len() * 4)
            .sum();
        Ok(Self {
            hidden: h,
            heads: config.num_attention_heads,
            eps: config.layer_norm_eps as f32,
            vocab: config.vocab_size,
            word,
            position,
            embeddings_norm: norm(&names.embeddings_norm())?,
            layers,
            resident_bytes: floats * 4 + dense_bytes,
            spare: std::sync::Mutex::new(None),
        })
    }

    /// Bytes of weights held in memory.
    pub fn resident_bytes(&self) -> usize {
        self.resident_bytes
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Runs the encoder over `sequences` (token ids, unpadded). Returns the
    /// hidden states of all their tokens, sequence after sequence: `Σ len`
    /// rows of [`HostBert::hidden_size`].
    pub fn forward(&self, sequences: &[&[u32]]) -> Result<Vec<f32>, ModelError> {
        let h = self.hidden;
        let positions = self.position.len() / h;
        let rows: usize = sequences.iter().map(|s| s.len()).sum();
        let mut x = vec![0.0f32; rows * h];
        let mut at = 0;
        for (s, ids) in sequences.iter().enumerate() {
            if ids.len() > positions {
                return Err(ModelError::Backend(format!(
                    "encoder input {s} has {} tokens; the model takes at most {positions}",
                    ids.len()
                )));
            }
            for (i, &id) in ids.iter().enumerate() {
                let id = id as usize;
                if id >= self.vocab {
                    return Err(ModelError::Backend(format!(
                        "encoder input {s}: token id {id} is outside the vocabulary of {}",
                        self.vocab
                    )));
                }
                let row = &mut x[at * h..(at + 1) * h];
                let (word, position) = (&self.word[id * h..][..h], &self.position[i * h..][..h]);
                for ((x, w), p) in row.iter_mut().zip(word).zip(position) {
                    *x = w + p;
                }
                at += 1;
            }
        }
        self.embeddings_norm.apply(&mut x, None, h, self.eps);
        let lengths: Vec<usize> = sequences.iter().map(|s| s.len()).collect();
        let mut buffers = self
            .spare
            .try_lock()
            .ok()
            .and_then(|mut spare| spare.take())
            .unwrap_or_default();
        buffers.context.resize(rows * h, 0.0);
        for layer in &self.layers {
            layer.forward(&mut x, &lengths, self, &mut buffers)?;
        }
        if let Ok(mut spare) = self.spare.try_lock() {
            *spare = Some(buffers);
        }
        Ok(x)
    }
}

impl Layer {
    /// `x ← LN(x' + FFN(x'))` with `x' = LN(x + Attention(x))`.
    fn forward(
        &self,
        x: &mut [f32],
        lengths: &[usize],
        model: &HostBert,
        b: &mut Buffers,
    ) -> Result<(), ModelError> {
        let (h, eps) = (model.hidden, model.eps);
        let rows = x.len() / h;
        self.qkv.forward(x, rows, &mut b.qkv)?;
        attend(&b.qkv, lengths, h, model.heads, &mut b.context);
        self.attention_output
            .forward(&b.context, rows, &mut b.projected)?;
        self.attention_norm.apply(x, Some(&b.projected), h, eps);
        self.intermediate
            .forward_then(x, rows, &mut b.intermediate, vector::gelu)?;
        self.output
            .forward(&b.intermediate, rows, &mut b.projected)?;
        self.output_norm.apply(x, Some(&b.projected), h, eps);
        Ok(())
    }
}

impl Dense {
    /// `out ← x Wᵀ + b` for `rows` rows of `x` (`out` resized to fit).
    fn forward(&self, x: &[f32], rows: usize, out: &mut Vec<f32>) -> Result<(), ModelError> {
        self.forward_then(x, rows, out, |_| {})
    }

    /// [`Dense::forward`], then `activation` on each output row, in the same
    /// pass as the bias (over the threads for a batch).
    fn forward_then(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut Vec<f32>,
        activation: impl Fn(&mut [f32]) + Sync,
    ) -> Result<(), ModelError> {
        let width = self.bias.len();
        out.resize(rows * width, 0.0);
        self.matrix.matmul(x, rows, out)?;
        let each = |row: &mut [f32]| {
            row.iter_mut().zip(&self.bias).for_each(|(o, b)| *o += b);
            activation(row);
        };
        let per_task = rows_per_task(rows);
        if per_task < rows {
            team::for_each_piece_mut(out, width * per_task, |_, rows| {
                rows.chunks_exact_mut(width).for_each(each)
            });
        } else {
            out.chunks_exact_mut(width).for_each(each);
        }
        Ok(())
    }
}

impl Norm {
    /// `x ← LN(x + add)` (or `LN(x)`), row by row.
    fn apply(&self, x: &mut [f32], add: Option<&[f32]>, h: usize, eps: f32) {
        let each = |(i, row): (usize, &mut [f32])| {
            if let Some(add) = add {
                let add = &add[i * h..(i + 1) * h];
                row.iter_mut().zip(add).for_each(|(x, a)| *x += a);
            }
            let mean = lane_sum(row, |v| v) / h as f32;
            let var = lane_sum(row, |v| (v - mean) * (v - mean)) / h as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
                *v = (*v - mean) * inv * w + b;
            }
        };
        let rows = x.len() / h;
        let per_task = rows_per_task(rows);
        if per_task < rows {
            team::for_each_piece_mut(x, h * per_task, |k, rows| {
                for (j, row) in rows.chunks_mut(h).enumerate() {
                    each((k * per_task + j, row));
                }
            });
        } else {
            x.chunks_mut(h).enumerate().for_each(each);
        }
    }
}

/// Self-attention of each sequence on its own: `qkv` holds every token's
/// query, key and value side by side (`3 · h` values a row); `context`
/// receives every token's `h` attended values.
fn attend(qkv: &[f32], lengths: &[usize], h: usize, heads: usize, context: &mut [f32]) {
    let mut pieces: Vec<(&[f32], &mut [f32])> = Vec::with_capacity(lengths.len());
    let (mut qkv, mut context) = (qkv, context);
    for &len in lengths {
        let (q, rest) = qkv.split_at(len * 3 * h);
        let (c, rest_c) = std::mem::take(&mut context).split_at_mut(len * h);
        pieces.push((q, c));
        (qkv, context) = (rest, rest_c);
    }
    let each = |(qkv, context): &mut (&[f32], &mut [f32])| attend_one(qkv, h, heads, context);
    if pieces.len() > 1 {
        team::for_each_piece_mut(&mut pieces, 1, |_, piece| each(&mut piece[0]));
    } else {
        pieces.iter_mut().for_each(each);
    }
}

/// [`attend`] for one sequence (no padding, so no mask). The heads are
/// split over the team (a head is a block of `context`'s columns); each
/// head's queries, keys and values are gathered into contiguous tiles first,
/// so that the scores and the weighted sum run as the tiled kernels of
/// [`vector::scores`] and [`vector::weighted_sum`].
fn attend_one(qkv: &[f32], h: usize, heads: usize, context: &mut [f32]) {
    let hd = h / heads;
    let len = context.len() / h;
    let scale = 1.0 / (hd as f32).sqrt();
    let per_task = heads.div_ceil(team::threads().min(heads).max(1));
    team::for_each_column_block(context, h, per_task * hd, |k, mut block| {
        let mut tiles = vec![0.0f32; 4 * len * hd];
        let mut scores = vec![0.0f32; len * len];
        for j in 0..block.width() / hd {
            let head = k * per_task + j;
            let (q, rest) = tiles.split_at_mut(len * hd);
            let (keys, rest) = rest.split_at_mut(len * hd);
            let (v, out) = rest.split_at_mut(len * hd);
            for t in 0..len {
                let row = &qkv[t * 3 * h + head * hd..];
                q[t * hd..][..hd].copy_from_slice(&row[..hd]);
                keys[t * hd..][..hd].copy_from_slice(&row[h..h + hd]);
                v[t * hd..][..hd].copy_from_slice(&row[2 * h..2 * h + hd]);
            }
            vector::scores(q, keys, hd, &mut scores);
            vector::softmax_rows(&mut scores, len, scale);
            out.fill(0.0);
            vector::weighted_sum(&scores, v, hd, out);
            for (t, attended) in out.chunks_exact(hd).enumerate() {
                block.row_mut(t)[j * hd..][..hd].copy_from_slice(attended);
            }
        }
    });
}
