//! The KV cache: every layer's keys and values for the positions seen so far,
//! in buffers allocated once per sequence and written in place.
//!
//! - On the CPU backend ([`LayerKv::Host`]) each layer holds plain
//!   `[kv_heads, capacity, head_dim]` buffers; the host attention kernel
//!   ([`super::attend`]) reads them directly. They are zero-filled by the
//!   allocator, which hands out untouched pages lazily: a sequence's memory
//!   grows with the positions it writes, up to its capacity. Values are f32,
//!   or f16 ([`KvPrecision`]) as llama.cpp keeps them: half the memory, and
//!   half the bytes a decode step reads, which over a long context is what
//!   attention waits for.
//! - On a GPU ([`LayerKv::Device`]) each layer holds one device tensor per K
//!   and V of the full capacity, allocated on the first write; new positions
//!   are written with `slice_assign` (in place: the cache holds the only
//!   reference between passes) and attention reads a view of the filled part.

use burn::tensor::{Device, Tensor};
use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

use crate::arch::linear::uses_block_kernels;

use super::config::DecoderConfig;

/// Keys and values of every layer for the tokens seen so far, for one sequence.
/// Made by [`Decoder::new_cache`](super::Decoder::new_cache).
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    /// The tokens cached, in order (a model whose RoPE changes with the
    /// sequence length re-runs them).
    tokens: Vec<u32>,
    capacity: usize,
}

/// How a CPU KV cache holds keys and values (a GPU's holds f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvPrecision {
    /// 4 bytes a value: exactly what the projections computed.
    #[default]
    F32,
    /// 2 bytes a value (rounded to nearest): half the memory and traffic.
    F16,
}

impl KvPrecision {
    /// Bytes one value takes.
    pub fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
        }
    }
}

impl KvCache {
    /// An empty cache of `capacity` positions for the model `config`
    /// describes, in the storage `device` computes with (`precision` on the CPU).
    pub(crate) fn new(
        config: &DecoderConfig,
        capacity: usize,
        device: &Device,
        precision: KvPrecision,
    ) -> Self {
        let shape = Shape {
            kv_heads: config.num_kv_heads,
            capacity,
            head_dim: config.head_dim,
        };
        let host = uses_block_kernels(device);
        let layers = (0..config.num_layers)
            .map(|_| {
                if host {
                    LayerKv::Host(HostKv::new(shape, precision))
                } else {
                    LayerKv::Device(Box::new(DeviceKv::new(shape, device)))
                }
            })
            .collect();
        Self {
            layers,
            tokens: Vec::new(),
            capacity,
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

    /// The most positions it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The tokens cached, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Makes this cache hold what `prefix` holds (its tokens, keys and
    /// values) and nothing else: a shared prompt prefix computed once is
    /// copied in instead of run again. Both must come from the same model;
    /// `false` (and nothing changed) when they do not match or `prefix`
    /// does not fit.
    pub fn copy_from(&mut self, prefix: &KvCache) -> bool {
        let fits = prefix.len() <= self.capacity
            && self.layers.len() == prefix.layers.len()
            && self
                .layers
                .iter()
                .zip(&prefix.layers)
                .all(|(a, b)| a.same_shape_as(b));
        if !fits {
            return false;
        }
        for (layer, from) in self.layers.iter_mut().zip(&prefix.layers) {
            layer.copy_from(from);
        }
        self.tokens.clone_from(&prefix.tokens);
        true
    }

    /// A new cache holding this one's first `len` positions (and room for no
    /// more): a prompt prefix to keep.
    pub fn prefix(&self, len: usize) -> KvCache {
        let len = len.min(self.len());
        KvCache {
            layers: self.layers.iter().map(|l| l.prefix(len)).collect(),
            tokens: self.tokens[..len].to_vec(),
            capacity: len,
        }
    }

    /// Bytes of keys and values held for the positions cached.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(LayerKv::bytes).sum()
    }

    /// Forgets everything cached (the buffers stay allocated).
    pub(crate) fn clear(&mut self) {
        self.tokens.clear();
        for layer in &mut self.layers {
            layer.clear();
        }
    }

    /// Whether attention runs on the host kernel (no masks to build).
    pub(crate) fn on_host(&self) -> bool {
        matches!(self.layers.first(), Some(LayerKv::Host(_)))
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

/// The size of one layer's keys (and of its values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) kv_heads: usize,
    pub(crate) capacity: usize,
    pub(crate) head_dim: usize,
}

impl Shape {
    fn values(&self) -> usize {
        self.kv_heads * self.capacity * self.head_dim
    }
}

/// One layer's keys and values.
#[derive(Debug)]
pub(crate) enum LayerKv {
    /// Host buffers, for the host attention kernel.
    Host(HostKv),
    /// Device tensors, for burn's attention (boxed: a tensor handle is large).
    Device(Box<DeviceKv>),
}

impl LayerKv {
    fn clear(&mut self) {
        match self {
            Self::Host(kv) => kv.len = 0,
            Self::Device(kv) => kv.len = 0,
        }
    }

    fn prefix(&self, len: usize) -> Self {
        match self {
            Self::Host(kv) => {
                let mut copy = HostKv::new(
                    Shape {
                        capacity: len,
                        ..kv.shape
                    },
                    kv.keys.precision(),
                );
                copy.copy_rows_from(kv, len);
                Self::Host(copy)
            }
            Self::Device(kv) => {
                let mut copy = DeviceKv::new(
                    Shape {
                        capacity: len,
                        ..kv.shape
                    },
                    &kv.device,
                );
                copy.copy_rows_from(kv, len);
                Self::Device(Box::new(copy))
            }
        }
    }

    fn bytes(&self) -> usize {
        let (shape, len, value) = match self {
            Self::Host(kv) => (kv.shape, kv.len, kv.keys.precision().bytes()),
            Self::Device(kv) => (kv.shape, kv.len, 4),
        };
        2 * shape.kv_heads * len * shape.head_dim * value
    }

    fn same_shape_as(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Host(a), Self::Host(b)) => {
                a.shape.kv_heads == b.shape.kv_heads
                    && a.shape.head_dim == b.shape.head_dim
                    && a.keys.precision() == b.keys.precision()
            }
            (Self::Device(a), Self::Device(b)) => {
                a.shape.kv_heads == b.shape.kv_heads && a.shape.head_dim == b.shape.head_dim
            }
            _ => false,
        }
    }

    fn copy_from(&mut self, other: &Self) {
        match (self, other) {
            (Self::Host(a), Self::Host(b)) => a.copy_rows_from(b, b.len),
            (Self::Device(a), Self::Device(b)) => a.copy_rows_from(b, b.len),
            // `same_shape_as` was checked first.
            _ => {}
        }
    }
}

/// Values of a host cache buffer, in their precision.
#[derive(Debug)]
enum Buffer {
    F32(Vec<f32>),
    /// f16 bit patterns: a `u16` buffer is zeroed by the allocator (untouched
    /// pages) where an `f16` one would be written element by element.
    F16(Vec<u16>),
}

impl Buffer {
    fn new(precision: KvPrecision, len: usize) -> Self {
        match precision {
            KvPrecision::F32 => Self::F32(vec![0.0; len]),
            KvPrecision::F16 => Self::F16(vec![0; len]),
        }
    }

    fn precision(&self) -> KvPrecision {
        match self {
            Self::F32(_) => KvPrecision::F32,
            Self::F16(_) => KvPrecision::F16,
        }
    }

    /// Stores `values` from `at` on.
    fn write(&mut self, at: usize, values: &[f32]) {
        let end = at + values.len();
        match self {
            Self::F32(b) => b[at..end].copy_from_slice(values),
            Self::F16(b) => b[at..end]
                .reinterpret_cast_mut::<f16>()
                .convert_from_f32_slice(values),
        }
    }

    /// Copies `len` values of `other` from `from` to `at` (same precision).
    fn copy_from(&mut self, at: usize, other: &Self, from: usize, len: usize) {
        match (self, other) {
            (Self::F32(a), Self::F32(b)) => a[at..at + len].copy_from_slice(&b[from..from + len]),
            (Self::F16(a), Self::F16(b)) => a[at..at + len].copy_from_slice(&b[from..from + len]),
            (a, b) => {
                // Not made by this module: caches of one model share a precision.
                debug_assert_eq!(a.precision(), b.precision());
            }
        }
    }

    fn rows(&self, range: std::ops::Range<usize>) -> KvRows<'_> {
        match self {
            Self::F32(b) => KvRows::F32(&b[range]),
            Self::F16(b) => KvRows::F16(b[range].reinterpret_cast::<f16>()),
        }
    }
}

/// Some positions of one KV head's keys or values, as stored.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KvRows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

impl<'a> KvRows<'a> {
    /// Values `range` of these.
    pub(crate) fn slice(self, range: std::ops::Range<usize>) -> Self {
        match self {
            Self::F32(values) => Self::F32(&values[range]),
            Self::F16(values) => Self::F16(&values[range]),
        }
    }

    /// These values as f32: borrowed, or widened into `scratch`.
    pub(crate) fn f32_in<'s>(self, scratch: &'s mut Vec<f32>) -> &'s [f32]
    where
        'a: 's,
    {
        match self {
            Self::F32(values) => values,
            Self::F16(values) => {
                scratch.resize(values.len(), 0.0);
                mdsa_engine::vector::widen_f16(values, scratch);
                scratch
            }
        }
    }

    /// Values `range` as f32 in a new vector.
    #[cfg(test)]
    pub(crate) fn to_vec(self, range: std::ops::Range<usize>) -> Vec<f32> {
        let mut scratch = Vec::new();
        self.slice(range).f32_in(&mut scratch).to_vec()
    }
}

/// `[kv_heads, capacity, head_dim]` keys and values in host memory.
#[derive(Debug)]
pub(crate) struct HostKv {
    shape: Shape,
    keys: Buffer,
    values: Buffer,
    len: usize,
}

impl HostKv {
    pub(crate) fn new(shape: Shape, precision: KvPrecision) -> Self {
        // Zeroed allocations come from untouched pages: nothing is resident
        // until a position is written.
        Self {
            shape,
            keys: Buffer::new(precision, shape.values()),
            values: Buffer::new(precision, shape.values()),
            len: 0,
        }
    }

    /// Positions held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Writes `n` new positions after those held: `keys` and `values` are
    /// `[kv_heads, n, head_dim]`. The caller has checked the capacity.
    pub(crate) fn write(&mut self, keys: &[f32], values: &[f32], n: usize) {
        let Shape {
            kv_heads,
            capacity,
            head_dim,
        } = self.shape;
        assert!(self.len + n <= capacity, "KV cache overflow");
        let rows = n * head_dim;
        for head in 0..kv_heads {
            let at = (head * capacity + self.len) * head_dim;
            let from = head * rows;
            self.keys.write(at, &keys[from..from + rows]);
            self.values.write(at, &values[from..from + rows]);
        }
        self.len += n;
    }

    /// The `[len, head_dim]` keys of KV head `head`.
    pub(crate) fn keys(&self, head: usize) -> KvRows<'_> {
        self.keys.rows(self.head(head))
    }

    /// The `[len, head_dim]` values of KV head `head`.
    pub(crate) fn values(&self, head: usize) -> KvRows<'_> {
        self.values.rows(self.head(head))
    }

    fn head(&self, head: usize) -> std::ops::Range<usize> {
        let start = head * self.shape.capacity * self.shape.head_dim;
        start..start + self.len * self.shape.head_dim
    }

    /// Holds `other`'s first `len` positions and nothing else.
    fn copy_rows_from(&mut self, other: &Self, len: usize) {
        let hd = self.shape.head_dim;
        let rows = len * hd;
        for head in 0..self.shape.kv_heads {
            let to = head * self.shape.capacity * hd;
            let from = head * other.shape.capacity * hd;
            self.keys.copy_from(to, &other.keys, from, rows);
            self.values.copy_from(to, &other.values, from, rows);
        }
        self.len = len;
    }
}

/// `[kv_heads, capacity, head_dim]` keys and values as device tensors.
#[derive(Debug)]
pub(crate) struct DeviceKv {
    shape: Shape,
    /// Allocated on the first write.
    tensors: Option<(Tensor<3>, Tensor<3>)>,
    len: usize,
    device: Device,
}

impl DeviceKv {
    fn new(shape: Shape, device: &Device) -> Self {
        Self {
            shape,
            tensors: None,
            len: 0,
            device: device.clone(),
        }
    }

    /// Writes the new positions' `[kv_heads, n, head_dim]` keys and values
    /// after those held and returns views of everything held, new positions
    /// included. The caller has checked the capacity.
    pub(crate) fn append(&mut self, k: Tensor<3>, v: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let Shape {
            kv_heads,
            capacity,
            head_dim,
        } = self.shape;
        let n = k.dims()[1];
        let (keys, values) = self.tensors.take().unwrap_or_else(|| {
            let zeros = || Tensor::<3>::zeros([kv_heads, capacity, head_dim], &self.device);
            (zeros(), zeros())
        });
        let rows = [0..kv_heads, self.len..self.len + n, 0..head_dim];
        let keys = keys.slice_assign(rows.clone(), k);
        let values = values.slice_assign(rows, v);
        self.len += n;
        let views = (
            keys.clone().narrow(1, 0, self.len),
            values.clone().narrow(1, 0, self.len),
        );
        self.tensors = Some((keys, values));
        views
    }

    /// Holds `other`'s first `len` positions and nothing else.
    fn copy_rows_from(&mut self, other: &Self, len: usize) {
        self.len = 0;
        if let Some((keys, values)) = &other.tensors
            && len > 0
        {
            let held = |t: &Tensor<3>| t.clone().narrow(1, 0, len);
            self.append(held(keys), held(values));
        }
    }
}
