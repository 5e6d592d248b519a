//! What every family shares around its blocks: the token embedding, the RoPE
//! tables, the masks of a forward pass, the final norm and the output head
//! ([`Stack`]), so that a family's file defines only its [`Block`].

use burn::tensor::{Device, Tensor};

use crate::arch::linear::{LinearWeight, tensor_to_vec};
use mdsa_engine::ModelError;

use super::cache::{KvCache, LayerKv};
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

    /// Runs `[n, hidden]` through the block; `layer` carries the RoPE, its
    /// positions and the mask of this layer's attention kind.
    fn forward(
        &self,
        x: Tensor<2>,
        layer: LayerPass<'_>,
        cache: &mut LayerKv,
    ) -> Result<Tensor<2>, ModelError>;

    /// Bytes of weights the block holds.
    fn resident_bytes(&self) -> usize;
}

/// A layer's share of a forward pass.
pub(crate) struct LayerPass<'a> {
    /// The layer's RoPE.
    pub(crate) rope: &'a Rope,
    /// Its table rows for the positions of the pass.
    pub(crate) at: &'a RopeAt,
    /// Its attention mask for burn's attention on a device (`None`: nothing
    /// hidden, or attention runs on the host).
    pub(crate) mask: Option<Tensor<2>>,
    /// Its sliding window, for the host kernel.
    pub(crate) window: Option<usize>,
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
            resident_bytes,
        })
    }
}

impl<B: Block> Decoder for Stack<B> {
    fn config(&self) -> &DecoderConfig {
        &self.config
    }

    fn new_cache_with_capacity(&self, capacity: usize) -> KvCache {
        KvCache::new(&self.config, capacity, &self.device)
    }

    fn resident_bytes(&self) -> usize {
        self.resident_bytes
    }

    fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, ModelError> {
        let config = &self.config;
        let n = tokens.len();
        let past = cache.len();
        check_positions(config, past, n)?;
        if past + n > cache.capacity() {
            return Err(ModelError::ContextOverflow {
                tokens: past + n,
                context: cache.capacity(),
            });
        }
        if self.rope.crosses_switch(past, n) {
            let all = [cache.tokens(), tokens].concat();
            cache.clear();
            return self.forward(&all, cache);
        }
        let mut x = self.embedding.forward(tokens)?;
        let group = config.num_heads / config.num_kv_heads;
        let at = self.rope.at(past, n);
        let local_at = self.local_rope.as_ref().map(|rope| rope.at(past, n));
        // Masks are O(n · positions): only burn's attention on a device needs them.
        let masks = !cache.on_host();
        let full_mask = masks
            .then(|| attention_mask(n, past, group, None, &self.device))
            .flatten();
        let sliding_mask = (masks && config.layer_kinds.contains(&AttentionKind::Sliding))
            .then(|| attention_mask(n, past, group, config.sliding_window, &self.device))
            .flatten();
        for ((block, layer_cache), kind) in self
            .blocks
            .iter()
            .zip(cache.layers_mut())
            .zip(&config.layer_kinds)
        {
            let (rope, at) = match (kind, &self.local_rope, &local_at) {
                (AttentionKind::Sliding, Some(rope), Some(at)) => (rope, at),
                _ => (&self.rope, &at),
            };
            let (mask, window) = match kind {
                AttentionKind::Full => (full_mask.clone(), None),
                AttentionKind::Sliding => (sliding_mask.clone(), config.sliding_window),
            };
            let pass = LayerPass {
                rope,
                at,
                mask,
                window,
            };
            x = block.forward(x, pass, layer_cache)?;
        }
        cache.advance(tokens);
        let last = x.narrow(0, n - 1, 1);
        let mut logits = self.head.forward(self.norm.forward(last))?;
        if let Some(cap) = config.final_logit_softcap {
            let cap = f64::from(cap);
            logits = (logits / cap).tanh() * cap;
        }
        tensor_to_vec(logits)
    }
}
