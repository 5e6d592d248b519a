//! The KV cache: every layer's keys and values for the positions seen so far.
//!
//! Its own type so that every family shares it and a later change of strategy
//! (preallocated buffers instead of growing by concatenation) happens here
//! alone. Today each step concatenates the new keys and values onto the old.

use burn::tensor::Tensor;

/// Keys and values of every layer for the tokens seen so far, for one sequence.
/// Made by [`Decoder::new_cache`](super::Decoder::new_cache).
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    /// The tokens cached, in order (a model whose RoPE changes with the
    /// sequence length re-runs them).
    tokens: Vec<u32>,
}

impl KvCache {
    /// An empty cache for a model with `num_layers` layers.
    pub(crate) fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers).map(|_| LayerKv(None)).collect(),
            tokens: Vec::new(),
        }
    }

    /// Number of positions cached.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens cached, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets everything cached.
    pub(crate) fn clear(&mut self) {
        self.tokens.clear();
        for layer in &mut self.layers {
            layer.0 = None;
        }
    }

    /// The layers' caches, in order, for one forward pass.
    pub(crate) fn layers_mut(&mut self) -> &mut [LayerKv] {
        &mut self.layers
    }

    /// Records that a forward pass cached `tokens`.
    pub(crate) fn advance(&mut self, tokens: &[u32]) {
        self.tokens.extend_from_slice(tokens);
    }
}

/// One layer's `[kv_heads, positions, head_dim]` keys and values.
#[derive(Debug)]
pub(crate) struct LayerKv(Option<(Tensor<3>, Tensor<3>)>);

impl LayerKv {
    /// Appends the new positions' keys and values (along the position axis) and
    /// returns everything cached, new positions included.
    pub(crate) fn append(&mut self, k: Tensor<3>, v: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let (k, v) = match self.0.take() {
            Some((past_k, past_v)) => (
                Tensor::cat(vec![past_k, k], 1),
                Tensor::cat(vec![past_v, v], 1),
            ),
            None => (k, v),
        };
        self.0 = Some((k.clone(), v.clone()));
        (k, v)
    }
}
