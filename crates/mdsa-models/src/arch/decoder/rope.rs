//! Rotary position embeddings: cos/sin tables for every position, computed
//! once at load from the base, the rotary width and the [`RopeScaling`], and
//! their application to queries and keys.
//!
//! Frequencies and angles are computed in f32 the way transformers computes
//! them (`1 / base^(2i/d)`, then `position · freq`), so the tables agree with
//! the reference to the last bits that matter.

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

/// `[context, rotary_dim / 2]` cos and sin of one set of frequencies.
#[derive(Debug)]
struct Tables {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

/// RoPE for one kind of layer.
#[derive(Debug)]
pub(crate) struct Rope {
    /// The tables; LongRoPE has a second, used past `long_after` positions.
    short: Tables,
    long: Option<(Tables, usize)>,
    rotary_dim: usize,
    layout: RopeLayout,
}

/// The cos and sin rows of the positions one forward pass covers.
#[derive(Debug, Clone)]
pub(crate) struct RopeAt {
    cos: Tensor<2>,
    sin: Tensor<2>,
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
        // Dynamic NTK changes the base only past the trained context, which a
        // sequence here never exceeds (generation stops at the context).
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

fn tables(freqs: &[f32], scale: f32, positions: usize, device: &Device) -> Tables {
    let half = freqs.len();
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for p in 0..positions {
        for &f in freqs {
            let angle = p as f32 * f;
            cos.push(angle.cos() * scale);
            sin.push(angle.sin() * scale);
        }
    }
    Tables {
        cos: Tensor::from_data(TensorData::new(cos, [positions, half]), device),
        sin: Tensor::from_data(TensorData::new(sin, [positions, half]), device),
    }
}

impl Rope {
    /// Tables for `config.context_length` positions of `config.rotary_dim`,
    /// with base `theta` and `scaling`.
    pub(crate) fn new(
        config: &DecoderConfig,
        theta: f32,
        scaling: &RopeScaling,
        layout: RopeLayout,
        device: &Device,
    ) -> Self {
        let (dim, positions) = (config.rotary_dim, config.context_length);
        let (freqs, scale) = frequencies(theta, dim, scaling, false);
        let short = tables(&freqs, scale, positions, device);
        let long = match scaling {
            RopeScaling::LongRope {
                original_context, ..
            } => {
                let (freqs, scale) = frequencies(theta, dim, scaling, true);
                Some((tables(&freqs, scale, positions, device), *original_context))
            }
            _ => None,
        };
        Self {
            short,
            long,
            rotary_dim: dim,
            layout,
        }
    }

    /// The table rows of positions `past..past + n`. LongRoPE, as
    /// transformers, switches to its long factors for a pass that reaches
    /// beyond the original context.
    pub(crate) fn at(&self, past: usize, n: usize) -> RopeAt {
        let tables = match &self.long {
            Some((long, original)) if past + n > *original => long,
            _ => &self.short,
        };
        RopeAt {
            cos: tables.cos.clone().narrow(0, past, n),
            sin: tables.sin.clone().narrow(0, past, n),
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
