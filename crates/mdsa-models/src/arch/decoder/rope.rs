//! Rotary position embeddings: frequencies computed once at load from the
//! base, the rotary width and the [`RopeScaling`]; the cos/sin rows of the
//! positions of each forward pass; their application to queries and keys.
//!
//! Rows are computed per pass rather than tabled for the whole context: a
//! 128k-token context would hold tens of megabytes of tables per model, while
//! a decode step needs `rotary_dim / 2` cosines.
//!
//! Frequencies and angles are computed in f32 the way transformers computes
//! them (`1 / base^(2i/d)`, then `position · freq`), so the tables agree with
//! the reference to the last bits that matter.

use std::sync::Arc;

use mdsa_engine::ModelError;

use burn::tensor::{Device, Tensor, TensorData};

use super::config::{DecoderConfig, RopeScaling};

/// Which elements of a head RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RopeLayout {
    /// Adjacent pairs `(x[2i], x[2i+1])`: llama.cpp's permuted Q/K weights.
    Interleaved,
    /// Halves `(x[i], x[i + d/2])`: Hugging Face's `rotate_half` (NeoX).
    Halves,
}

/// Frequencies and the factor cos/sin are multiplied by.
#[derive(Debug, Clone)]
struct Frequencies {
    freqs: Vec<f32>,
    scale: f32,
}

/// RoPE for one kind of layer.
#[derive(Debug)]
pub(crate) struct Rope {
    /// The frequencies of sequences within the original context.
    short: Frequencies,
    /// What longer sequences use, if it differs.
    beyond: Beyond,
    rotary_dim: usize,
    layout: RopeLayout,
    device: Device,
}

/// How a scaling treats a sequence longer than its original context, the
/// same way for every position of a pass (as transformers does: keys already
/// cached keep the rotation they were given).
#[derive(Debug)]
enum Beyond {
    /// No change.
    Same,
    /// LongRoPE: the long factors' frequencies.
    Long {
        frequencies: Frequencies,
        original: usize,
    },
    /// Dynamic NTK: frequencies from a base grown with the sequence length.
    Dynamic {
        theta: f32,
        factor: f32,
        original: usize,
    },
}

/// The cos and sin rows of the positions one forward pass covers.
#[derive(Debug, Clone)]
pub(crate) struct RopeAt {
    cos: Tensor<2>,
    sin: Tensor<2>,
    /// The same `[n, rotary_dim / 2]` values on the host, for
    /// [`Rope::apply_host`].
    cos_host: Arc<[f32]>,
    sin_host: Arc<[f32]>,
}

impl RopeAt {
    /// The rows of several sequences' positions, one after another: a
    /// batched pass rotates all its rows in one go.
    pub(crate) fn concat(parts: &[RopeAt]) -> RopeAt {
        if let [one] = parts {
            return one.clone();
        }
        let host = |pick: fn(&RopeAt) -> &[f32]| -> Arc<[f32]> {
            parts.iter().flat_map(|p| pick(p).iter().copied()).collect()
        };
        RopeAt {
            cos: Tensor::cat(parts.iter().map(|p| p.cos.clone()).collect(), 0),
            sin: Tensor::cat(parts.iter().map(|p| p.sin.clone()).collect(), 0),
            cos_host: host(|p| &p.cos_host),
            sin_host: host(|p| &p.sin_host),
        }
    }
}

/// `1 / base^(2i/d)` for `i < d/2`, in f32 as transformers computes it.
fn base_frequencies(theta: f32, dim: usize) -> Vec<f32> {
    (0..dim / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f32 / dim as f32))
        .collect()
}

/// The frequencies `scaling` gives, and the factor cos/sin are multiplied by.
/// `long` picks LongRoPE's long factors.
fn frequencies(theta: f32, dim: usize, scaling: &RopeScaling, long: bool) -> (Vec<f32>, f32) {
    let base = base_frequencies(theta, dim);
    match scaling {
        // Dynamic NTK changes nothing within the original context.
        RopeScaling::None | RopeScaling::DynamicNtk { .. } => (base, 1.0),
        RopeScaling::Linear { factor } => (base.iter().map(|f| f / factor).collect(), 1.0),
        RopeScaling::Divisors(divisors) => (
            base.iter()
                .zip(divisors.iter().chain(std::iter::repeat(&1.0)))
                .map(|(f, d)| f / d)
                .collect(),
            1.0,
        ),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_context,
        } => {
            let old = *original_context as f32;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            let scaled = base
                .iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect();
            (scaled, 1.0)
        }
        RopeScaling::Yarn {
            factor,
            original_context,
            beta_fast,
            beta_slow,
            attention_factor,
            truncate,
        } => {
            // transformers' `_compute_yarn_parameters`.
            let d = dim as f32;
            let correction = |rotations: f32| {
                d * (*original_context as f32 / (rotations * 2.0 * std::f32::consts::PI)).ln()
                    / (2.0 * theta.ln())
            };
            let (mut low, mut high) = (correction(*beta_fast), correction(*beta_slow));
            if *truncate {
                (low, high) = (low.floor(), high.ceil());
            }
            let (low, mut high) = (low.max(0.0), high.min(d - 1.0));
            if low == high {
                high += 0.001;
            }
            let scaled = base
                .iter()
                .enumerate()
                .map(|(i, &extrapolation)| {
                    let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
                    let extrapolation_weight = 1.0 - ramp;
                    let interpolation = extrapolation / factor;
                    interpolation * (1.0 - extrapolation_weight)
                        + extrapolation * extrapolation_weight
                })
                .collect();
            (scaled, *attention_factor)
        }
        RopeScaling::LongRope {
            short,
            long: long_factors,
            attention_factor,
            ..
        } => {
            let factors = if long { long_factors } else { short };
            let scaled = (0..dim / 2)
                .map(|i| {
                    let divisor = factors.get(i).copied().unwrap_or(1.0);
                    1.0 / (divisor * theta.powf((2 * i) as f32 / dim as f32))
                })
                .collect();
            (scaled, *attention_factor)
        }
    }
}

/// transformers' dynamic-NTK base for a sequence of `len` positions.
fn dynamic_base(theta: f32, factor: f32, original: usize, len: usize, dim: usize) -> f32 {
    let (factor, ratio) = (f64::from(factor), len as f64 / original as f64);
    let exponent = dim as f64 / (dim as f64 - 2.0);
    (f64::from(theta) * (factor * ratio - (factor - 1.0)).powf(exponent)) as f32
}

/// The `[positions, freqs]` cos and sin rows of `positions`.
fn rows(freqs: &[f32], scale: f32, positions: std::ops::Range<usize>, device: &Device) -> RopeAt {
    let (half, count) = (freqs.len(), positions.len());
    let mut cos = Vec::with_capacity(count * half);
    let mut sin = Vec::with_capacity(count * half);
    for p in positions {
        for &f in freqs {
            let angle = p as f32 * f;
            cos.push(angle.cos() * scale);
            sin.push(angle.sin() * scale);
        }
    }
    RopeAt {
        cos_host: cos.as_slice().into(),
        sin_host: sin.as_slice().into(),
        cos: Tensor::from_data(TensorData::new(cos, [count, half]), device),
        sin: Tensor::from_data(TensorData::new(sin, [count, half]), device),
    }
}

impl Rope {
    /// RoPE over `config.rotary_dim` dimensions with base `theta` and `scaling`.
    pub(crate) fn new(
        config: &DecoderConfig,
        theta: f32,
        scaling: &RopeScaling,
        layout: RopeLayout,
        device: &Device,
    ) -> Self {
        let dim = config.rotary_dim;
        let at = |long: bool| {
            let (freqs, scale) = frequencies(theta, dim, scaling, long);
            Frequencies { freqs, scale }
        };
        let beyond = match scaling {
            RopeScaling::LongRope {
                original_context, ..
            } => Beyond::Long {
                frequencies: at(true),
                original: *original_context,
            },
            RopeScaling::DynamicNtk {
                factor,
                original_context,
            } => Beyond::Dynamic {
                theta,
                factor: *factor,
                original: *original_context,
            },
            _ => Beyond::Same,
        };
        Self {
            short: at(false),
            beyond,
            rotary_dim: dim,
            layout,
            device: device.clone(),
        }
    }

    /// The cos and sin rows of positions `past..past + n`. A pass that reaches
    /// beyond the original context uses LongRoPE's long factors, or dynamic
    /// NTK's grown base, for all its positions.
    pub(crate) fn at(&self, past: usize, n: usize) -> RopeAt {
        let len = past + n;
        let Frequencies { freqs, scale } = match &self.beyond {
            Beyond::Long {
                frequencies,
                original,
            } if len > *original => frequencies,
            Beyond::Dynamic {
                theta,
                factor,
                original,
            } if len > *original => {
                let base = dynamic_base(*theta, *factor, *original, len, self.rotary_dim);
                let freqs = base_frequencies(base, self.rotary_dim);
                return rows(&freqs, 1.0, past..len, &self.device);
            }
            _ => &self.short,
        };
        rows(freqs, *scale, past..len, &self.device)
    }

    /// Whether a pass of `n` positions after `past` cached ones must re-run
    /// the cached ones: LongRoPE's switch to its long factors, as transformers'
    /// Phi-3 does (it drops its cache there), so that every key is rotated
    /// with the factors of the sequence's length.
    pub(crate) fn crosses_switch(&self, past: usize, n: usize) -> bool {
        match &self.beyond {
            Beyond::Long { original, .. } => past > 0 && past <= *original && past + n > *original,
            _ => false,
        }
    }

    /// Rotates the first `rotary_dim` values of each head of `[heads, n, hd]`
    /// by the positions of `at`; the rest pass through.
    pub(crate) fn apply(&self, x: Tensor<3>, at: &RopeAt) -> Tensor<3> {
        let [heads, n, hd] = x.dims();
        let rot = self.rotary_dim;
        if rot < hd {
            let rotated = self.rotate(x.clone().narrow(2, 0, rot), at);
            return Tensor::cat(vec![rotated, x.narrow(2, rot, hd - rot)], 2);
        }
        self.rotate(x, at).reshape([heads, n, hd])
    }

    /// [`Rope::apply`] on host values: `x` is `[heads, n, hd]`, rotated in
    /// place with the same f32 products and sums (so the same results).
    pub(crate) fn apply_host(
        &self,
        x: &mut [f32],
        heads: usize,
        hd: usize,
        at: &RopeAt,
    ) -> Result<(), ModelError> {
        let half = self.rotary_dim / 2;
        if half == 0 {
            return Ok(());
        }
        let n = at.cos_host.len() / half;
        if x.len() != heads * n * hd || 2 * half > hd {
            return Err(ModelError::Backend(format!(
                "RoPE of {n} positions over {} dimensions given {} values for {heads} heads of {hd}",
                2 * half,
                x.len()
            )));
        }
        for (i, row) in x.chunks_exact_mut(hd).enumerate() {
            let position = i % n;
            let cos = &at.cos_host[position * half..(position + 1) * half];
            let sin = &at.sin_host[position * half..(position + 1) * half];
            let rotated = &mut row[..2 * half];
            match self.layout {
                RopeLayout::Interleaved => {
                    for ((pair, &c), &s) in rotated.chunks_exact_mut(2).zip(cos).zip(sin) {
                        let (a, b) = (pair[0], pair[1]);
                        pair[0] = a * c - b * s;
                        pair[1] = a * s + b * c;
                    }
                }
                RopeLayout::Halves => {
                    let (first, second) = rotated.split_at_mut(half);
                    for (((a, b), &c), &s) in first.iter_mut().zip(second).zip(cos).zip(sin) {
                        let (x, y) = (*a, *b);
                        *a = x * c - y * s;
                        *b = x * s + y * c;
                    }
                }
            }
        }
        Ok(())
    }

    fn rotate(&self, x: Tensor<3>, at: &RopeAt) -> Tensor<3> {
        let [heads, n, d] = x.dims();
        let half = d / 2;
        let cos = at.cos.clone().reshape([1, n, half]);
        let sin = at.sin.clone().reshape([1, n, half]);
        match self.layout {
            RopeLayout::Interleaved => {
                let pairs = x.reshape([heads, n, half, 2]);
                let a = pairs.clone().narrow(3, 0, 1).reshape([heads, n, half]);
                let b = pairs.narrow(3, 1, 1).reshape([heads, n, half]);
                let ra = a.clone() * cos.clone() - b.clone() * sin.clone();
                let rb = a * sin + b * cos;
                Tensor::stack::<4>(vec![ra, rb], 3).reshape([heads, n, d])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let scaling = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_context: 32,
        };
        let base = base_frequencies(500_000.0, 16);
        let (scaled, scale) = frequencies(500_000.0, 16, &scaling, false);
        assert_eq!(scale, 1.0);
        // The highest frequency (wavelength 2π < 8) is kept, the lowest divided.
        assert_eq!(scaled[0], base[0]);
        assert!((scaled[7] - base[7] / 8.0).abs() < 1e-12);
    }

    #[test]
    fn yarn_interpolates_low_frequencies_and_scales_attention() {
        let scaling = RopeScaling::Yarn {
            factor: 4.0,
            original_context: 32,
            beta_fast: 32.0,
            beta_slow: 1.0,
            attention_factor: 1.1386,
            truncate: true,
        };
        let base = base_frequencies(10_000.0, 16);
        let (scaled, scale) = frequencies(10_000.0, 16, &scaling, false);
        assert_eq!(scale, 1.1386);
        assert_eq!(scaled[0], base[0]);
        assert!((scaled[7] - base[7] / 4.0).abs() < 1e-9);
    }
}
