//! What every family shares around its blocks: the token embedding, the RoPE
//! tables, the masks of a forward pass, the final norm and the output head
//! ([`Stack`]), so that a family's file defines only its [`Block`].

use std::ops::Range;

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::arch::linear::{LinearWeight, recycle, take_buffer, tensor_to_vec, uses_block_kernels};
use crate::team;
use mdsa_engine::ModelError;

use super::BatchItem;
use super::cache::{KvCache, KvPrecision, LayerKv};
use super::config::{AttentionKind, DecoderConfig, RopeScaling};
use super::layers::{Embedding, NormWeight, RmsNorm, attention_mask};
use super::loader::{Loader, Names};
use super::rope::{Rope, RopeAt, RopeLayout};
use super::{Decoder, check_positions};

/// One transformer block of a family.
pub(crate) trait Block: Send + Sync + std::fmt::Debug + Sized {
    /// What sets the family's members apart (biases, fused projections...).
    type Spec: Copy;

    /// Loads block `layer`.
    fn load(
        loader: &Loader<'_>,
        layer: usize,
        config: &DecoderConfig,
        spec: Self::Spec,
    ) -> Result<Self, ModelError>;

    /// Runs the `[rows, hidden]` of every sequence of the pass through the
    /// block; `layer` says which rows are whose, with each sequence's RoPE
    /// rows, mask and KV cache for this layer.
    fn forward(&self, x: Tensor<2>, layer: &mut LayerPass<'_>) -> Result<Tensor<2>, ModelError>;

    /// Whether [`Block::forward_host`] can run the block: every layer of it
    /// computes on the host (the CPU's quantized and packed weights).
    fn runs_on_host(&self) -> bool {
        false
    }

    /// [`Block::forward`] in host buffers, `x` (`[rows, hidden]`) updated in
    /// place, for passes whose caches are on the host: no tensor is built
    /// between the layers. Only called where [`Block::runs_on_host`].
    fn forward_host(&self, x: &mut [f32], layer: &mut LayerPass<'_>) -> Result<(), ModelError> {
        let _ = (x, layer);
        Err(ModelError::Backend("this block has no host path".into()))
    }

    /// Bytes of weights the block holds.
    fn resident_bytes(&self) -> usize;
}

/// A layer's share of a forward pass over one or more sequences.
pub(crate) struct LayerPass<'a> {
    /// The layer's RoPE.
    pub(crate) rope: &'a Rope,
    /// RoPE rows for every row of the pass (each sequence's new positions,
    /// in the order of the sequences).
    pub(crate) at: &'a RopeAt,
    /// The sequences, in the order of their rows.
    pub(crate) seqs: Vec<SeqPass<'a>>,
}

impl LayerPass<'_> {
    /// Rows of the pass, every sequence's together.
    pub(crate) fn rows(&self) -> usize {
        self.seqs.iter().map(|seq| seq.rows.len()).sum()
    }
}

/// One sequence's share of a layer's pass.
pub(crate) struct SeqPass<'a> {
    /// Its rows in the pass's `[rows, hidden]` input.
    pub(crate) rows: Range<usize>,
    /// Its attention mask for burn's attention on a device (`None`: nothing
    /// hidden, or attention runs on the host).
    pub(crate) mask: Option<Tensor<2>>,
    /// The layer's sliding window, for the host kernel.
    pub(crate) window: Option<usize>,
    /// Its keys and values of this layer.
    pub(crate) cache: &'a mut LayerKv,
}

/// How a family's embedding, norms and RoPE are stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StackSpec {
    /// The RoPE layout of a GGUF file's Q/K weights (safetensors rotate halves).
    pub(crate) gguf_rope: RopeLayout,
    /// How Hugging Face files store norm weights (GGUF files store them plain).
    pub(crate) hf_norm: NormWeight,
    /// Whether embedding rows are multiplied by √hidden_size (Gemma).
    pub(crate) scale_embedding: bool,
}

impl StackSpec {
    /// How a norm weight of this loader's format is stored.
    pub(crate) fn norm(&self, loader: &Loader<'_>) -> NormWeight {
        match loader.names() {
            Names::Gguf => NormWeight::Plain,
            Names::HuggingFace => self.hf_norm,
        }
    }
}

/// A decoder: embedding → blocks → final norm → output head.
#[derive(Debug)]
pub(crate) struct Stack<B> {
    config: DecoderConfig,
    embedding: Embedding,
    blocks: Vec<B>,
    norm: RmsNorm,
    head: LinearWeight,
    rope: Rope,
    /// RoPE of sliding-window layers when it differs (Gemma 3).
    local_rope: Option<Rope>,
    device: Device,
    kv_precision: KvPrecision,
    resident_bytes: usize,
}

impl<B: Block + 'static> Stack<B> {
    /// Loads the model `config` describes.
    pub(crate) fn boxed(
        config: DecoderConfig,
        loader: &Loader<'_>,
        spec: StackSpec,
        block: B::Spec,
    ) -> Result<Box<dyn Decoder>, ModelError> {
        Ok(Box::new(Self::load(config, loader, spec, block)?))
    }

    fn load(
        config: DecoderConfig,
        loader: &Loader<'_>,
        spec: StackSpec,
        block: B::Spec,
    ) -> Result<Self, ModelError> {
        let device = loader.device();
        let names = loader.names();
        let h = config.hidden_size;
        let blocks = (0..config.num_layers)
            .map(|layer| B::load(loader, layer, &config, block))
            .collect::<Result<Vec<_>, _>>()?;
        let mut embedding = Embedding::load(loader, names.embedding(), config.vocab_size, h)?;
        if spec.scale_embedding {
            embedding = embedding.scaled((h as f32).sqrt());
        }
        let head_weight = format!("{}.weight", names.head());
        let head_name = match config.tie_word_embeddings {
            Some(true) => names.embedding(),
            Some(false) if !loader.contains(&head_weight) => {
                return Err(ModelError::Backend(format!(
                    "tie_word_embeddings is false but the weights have no {head_weight}"
                )));
            }
            // Without an output weight the head is the embedding table.
            _ if loader.contains(&head_weight) => names.head(),
            _ => names.embedding(),
        };
        let head = loader.linear(head_name, h, config.vocab_size, false)?;
        let layout = match names {
            Names::Gguf => spec.gguf_rope,
            Names::HuggingFace => RopeLayout::Halves,
        };
        let rope = Rope::new(
            &config,
            config.rope_theta,
            &config.rope_scaling,
            layout,
            device,
        );
        let local_rope = config
            .rope_local_theta
            .map(|theta| Rope::new(&config, theta, &RopeScaling::None, layout, device));
        let norm = RmsNorm::load(
            loader,
            names.final_norm(),
            h,
            config.rms_norm_eps,
            spec.norm(loader),
        )?;
        let resident_bytes = embedding.resident_bytes()
            + blocks.iter().map(B::resident_bytes).sum::<usize>()
            + norm.resident_bytes()
            + head.resident_bytes();
        Ok(Self {
            config,
            embedding,
            blocks,
            norm,
            head,
            rope,
            local_rope,
            device: device.clone(),
            kv_precision: loader.kv_precision(),
            resident_bytes,
        })
    }
}

impl<B: Block> Stack<B> {
    /// Each sequence's next-token logits from the host pass's final
    /// activations `x`: its last row normed and through the output head.
    fn logits_host(
        &self,
        x: &[f32],
        rows: &[Range<usize>],
        hidden_size: usize,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut last = take_buffer(rows.len() * hidden_size);
        for (out, r) in last.chunks_exact_mut(hidden_size).zip(rows) {
            out.copy_from_slice(&x[(r.end - 1) * hidden_size..r.end * hidden_size]);
        }
        self.norm.forward_host_in_place(&mut last);
        let logits = self.head.forward_host(&last, rows.len())?;
        recycle(last);
        let vocab = logits.len() / rows.len().max(1);
        let each = logits
            .chunks_exact(vocab.max(1))
            .map(<[f32]>::to_vec)
            .collect();
        recycle(logits);
        Ok(each)
    }
}

impl<B: Block> Decoder for Stack<B> {
    fn config(&self) -> &DecoderConfig {
        &self.config
    }

    fn new_cache_with_capacity(&self, capacity: usize) -> KvCache {
        KvCache::new(&self.config, capacity, &self.device, self.kv_precision)
    }

    fn kv_bytes_per_token(&self) -> usize {
        let c = &self.config;
        let value = if uses_block_kernels(&self.device) {
            self.kv_precision.bytes()
        } else {
            4
        };
        2 * c.num_layers * c.num_kv_heads * c.head_dim * value
    }

    fn resident_bytes(&self) -> usize {
        self.resident_bytes
    }

    fn forward_batch(&self, batch: &mut [BatchItem<'_>]) -> Result<Vec<Vec<f32>>, ModelError> {
        match self.decode_split(batch) {
            Some(per_thread) => self.forward_split(batch, per_thread),
            None => self.forward_together(batch),
        }
    }
}

impl<B: Block> Stack<B> {
    /// Sequences per thread when a pass is better run as one smaller pass per
    /// thread: a decode step of many sequences on the host. There each
    /// thread's pass reads the weights once for its sequences (2 threads:
    /// twice per step, mostly from L3 as the passes go through the layers
    /// side by side), and no thread waits for the others between the ~150
    /// matrix products and attentions of a step, as the threads of one
    /// shared pass do. A step with prompt chunks stays one pass: its rows
    /// would not split evenly.
    fn decode_split(&self, batch: &[BatchItem<'_>]) -> Option<usize> {
        let threads = team::threads();
        let split = threads > 1
            && batch.len() >= SPLIT_MIN_SEQUENCES_PER_THREAD * threads
            && batch
                .iter()
                .all(|item| item.tokens.len() == 1 && item.cache.on_host())
            && self.head.on_host()
            && self.config.final_logit_softcap.is_none()
            && self.blocks.iter().all(B::runs_on_host);
        split.then(|| batch.len().div_ceil(threads))
    }

    /// [`Decoder::forward_batch`] as one pass per team thread, over runs of
    /// `per_thread` sequences.
    fn forward_split(
        &self,
        batch: &mut [BatchItem<'_>],
        per_thread: usize,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let sequences = batch.len();
        let mut parts: Vec<(&mut [BatchItem<'_>], Option<PassResult>)> = batch
            .chunks_mut(per_thread)
            .map(|items| (items, None))
            .collect();
        team::for_each_piece_mut(&mut parts, 1, |_, part| {
            for (items, logits) in part {
                *logits = Some(self.forward_together(items));
            }
        });
        let mut all = Vec::with_capacity(sequences);
        for (_, logits) in parts {
            all.extend(logits.unwrap_or_else(|| {
                Err(ModelError::Backend(
                    "a part of a split pass did not run".into(),
                ))
            })?);
        }
        Ok(all)
    }

    /// [`Decoder::forward_batch`] as one pass over every sequence.
    fn forward_together(&self, batch: &mut [BatchItem<'_>]) -> Result<Vec<Vec<f32>>, ModelError> {
        let config = &self.config;
        // Each sequence's tokens to run: all of its tokens again when its
        // RoPE switches tables at this length (LongRoPE).
        let mut runs: Vec<Vec<u32>> = Vec::with_capacity(batch.len());
        for item in batch.iter_mut() {
            let (past, n) = (item.cache.len(), item.tokens.len());
            check_positions(config, past, n)?;
            if past + n > item.cache.capacity() {
                return Err(ModelError::ContextOverflow {
                    tokens: past + n,
                    context: item.cache.capacity(),
                });
            }
            if item.cache.layers_mut().len() != config.num_layers {
                return Err(ModelError::Backend(format!(
                    "a KV cache of {} layers was given to a model of {}",
                    item.cache.layers_mut().len(),
                    config.num_layers
                )));
            }
            if self.rope.crosses_switch(past, n) {
                runs.push([item.cache.tokens(), item.tokens].concat());
                item.cache.clear();
            } else {
                runs.push(item.tokens.to_vec());
            }
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let pasts: Vec<usize> = batch.iter().map(|item| item.cache.len()).collect();
        let mut rows = Vec::with_capacity(runs.len());
        let mut start = 0;
        for run in &runs {
            rows.push(start..start + run.len());
            start += run.len();
        }
        let x = self.embedding.forward(&runs.concat())?;
        let hidden_size = x.dims()[1];
        let device = x.device();
        let on_host = batch.iter().all(|item| item.cache.on_host());
        // Between blocks that run on the host, the activations stay a host buffer.
        let mut x = Hidden::Tensor(x);
        let group = config.num_heads / config.num_kv_heads;
        let at_of = |rope: &Rope| -> Vec<RopeAt> {
            runs.iter()
                .zip(&pasts)
                .map(|(run, &past)| rope.at(past, run.len()))
                .collect()
        };
        let at = RopeAt::concat(&at_of(&self.rope));
        let local_at = self
            .local_rope
            .as_ref()
            .map(|rope| RopeAt::concat(&at_of(rope)));
        // Masks are O(n · positions): only burn's attention on a device needs them.
        let sliding = config.layer_kinds.contains(&AttentionKind::Sliding);
        let masks: Vec<[Option<Tensor<2>>; 2]> = batch
            .iter()
            .zip(&runs)
            .zip(&pasts)
            .map(|((item, run), &past)| {
                if item.cache.on_host() {
                    return [None, None];
                }
                let mask = |window| attention_mask(run.len(), past, group, window, &self.device);
                [
                    mask(None),
                    sliding.then(|| mask(config.sliding_window)).flatten(),
                ]
            })
            .collect();
        let mut caches: Vec<_> = batch
            .iter_mut()
            .map(|item| item.cache.layers_mut().iter_mut())
            .collect();
        for (block, kind) in self.blocks.iter().zip(&config.layer_kinds) {
            let (rope, at) = match (kind, &self.local_rope, &local_at) {
                (AttentionKind::Sliding, Some(rope), Some(at)) => (rope, at),
                _ => (&self.rope, &at),
            };
            let mut seqs = Vec::with_capacity(caches.len());
            for (s, layers) in caches.iter_mut().enumerate() {
                let (mask, window) = match kind {
                    AttentionKind::Full => (masks[s][0].clone(), None),
                    AttentionKind::Sliding => (masks[s][1].clone(), config.sliding_window),
                };
                seqs.push(SeqPass {
                    rows: rows[s].clone(),
                    mask,
                    window,
                    // Checked above: one cache per layer.
                    cache: layers.next().unwrap_or_else(|| unreachable!()),
                });
            }
            let mut pass = LayerPass { rope, at, seqs };
            x = if on_host && block.runs_on_host() {
                let mut values = x.into_host()?;
                block.forward_host(&mut values, &mut pass)?;
                Hidden::Host(values)
            } else {
                Hidden::Tensor(block.forward(x.into_tensor(hidden_size, &device), &mut pass)?)
            };
        }
        drop(caches);
        for (item, run) in batch.iter_mut().zip(&runs) {
            item.cache.advance(run);
        }
        if let Hidden::Host(values) = &x
            && self.head.on_host()
            && config.final_logit_softcap.is_none()
        {
            return self.logits_host(values, &rows, hidden_size);
        }
        let x = x.into_tensor(hidden_size, &device);
        // The next-token logits of each sequence: its last row only.
        let last: Vec<i64> = rows.iter().map(|r| (r.end - 1) as i64).collect();
        let last = Tensor::<1, Int>::from_data(TensorData::new(last, [rows.len()]), &self.device);
        let mut logits = self.head.forward(self.norm.forward(x.select(0, last)))?;
        if let Some(cap) = config.final_logit_softcap {
            let cap = f64::from(cap);
            logits = (logits / cap).tanh() * cap;
        }
        let vocab = logits.dims()[1];
        Ok(tensor_to_vec(logits)?
            .chunks_exact(vocab)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

/// Each sequence's next-token logits, or why the pass failed.
type PassResult = Result<Vec<Vec<f32>>, ModelError>;

/// Decode sequences per thread from which a step runs as one pass per
/// thread: on the 2-core reference machine, 6 SmolLM2 sequences decode ~19 %
/// faster split in two passes than in one shared pass, 8 ~8 % faster, and 4
/// ~3 % slower (medians of alternating runs of `--example batched_decode`).
const SPLIT_MIN_SEQUENCES_PER_THREAD: usize = 3;

/// A forward pass's activations between blocks (one per pass, so the
/// tensor's size is no cost).
#[allow(clippy::large_enum_variant)]
enum Hidden {
    Tensor(Tensor<2>),
    /// `[rows, hidden]`, row-major.
    Host(Vec<f32>),
}

impl Hidden {
    fn into_host(self) -> Result<Vec<f32>, ModelError> {
        match self {
            Self::Tensor(t) => tensor_to_vec(t),
            Self::Host(values) => Ok(values),
        }
    }

    fn into_tensor(self, hidden_size: usize, device: &Device) -> Tensor<2> {
        match self {
            Self::Tensor(t) => t,
            Self::Host(values) => {
                let rows = values.len() / hidden_size.max(1);
                Tensor::from_data(TensorData::new(values, [rows, hidden_size]), device)
            }
        }
    }
}
