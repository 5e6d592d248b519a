//! Choosing the next token from logits: greedy, temperature, top-k, top-p, and a
//! repetition penalty over a window of recent tokens, reproducible with a seed.

pub use mdsa_engine::SamplingParams;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Stateful sampler: owns the random generator so a seeded run is reproducible.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A sampler with the given parameters.
    pub fn new(params: SamplingParams) -> Self {
        let rng = match params.seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_os_rng(),
        };
        Self { params, rng }
    }

    /// The parameters in use.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token. `logits` is modified in place (penalty, temperature);
    /// `history` is every token so far (prompt and generated).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.apply_repetition_penalty(logits, history);
        if self.params.temperature == 0.0 {
            return argmax(logits);
        }
        let inv_t = 1.0 / self.params.temperature;
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, l * inv_t))
            .collect();
        if candidates.is_empty() {
            return argmax(logits);
        }
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        if self.params.top_k > 0 {
            candidates.truncate(self.params.top_k);
        }
        // Softmax over the survivors, shifted by the maximum for stability.
        let max = candidates[0].1;
        let mut total = 0.0f32;
        for candidate in &mut candidates {
            candidate.1 = (candidate.1 - max).exp();
            total += candidate.1;
        }
        let mut cumulative = 0.0f32;
        let mut keep = candidates.len();
        for (i, candidate) in candidates.iter_mut().enumerate() {
            candidate.1 /= total;
            cumulative += candidate.1;
            if cumulative >= self.params.top_p {
                keep = i + 1;
                break;
            }
        }
        candidates.truncate(keep);
        let mass: f32 = candidates.iter().map(|c| c.1).sum();
        let mut draw = self.rng.random::<f32>() * mass;
        for &(id, p) in &candidates {
            if draw < p {
                return id;
            }
            draw -= p;
        }
        candidates[candidates.len() - 1].0
    }

    fn apply_repetition_penalty(&self, logits: &mut [f32], history: &[u32]) {
        let penalty = self.params.repetition_penalty;
        if penalty == 1.0 {
            return;
        }
        let start = history.len().saturating_sub(self.params.repetition_window);
        let mut seen = std::collections::HashSet::new();
        for &token in &history[start..] {
            if !seen.insert(token) {
                continue;
            }
            if let Some(logit) = logits.get_mut(token as usize) {
                *logit = if *logit > 0.0 {
                    *logit / penalty
                } else {
                    *logit * penalty
                };
            }
        }
    }
}

/// Index of the largest value (the first on ties); NaN never wins.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in values.iter().enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            seed: Some(7),
            ..SamplingParams::default()
        }
    }

    #[test]
    fn greedy_takes_the_maximum() {
        let mut sampler = Sampler::new(params(0.0));
        assert_eq!(sampler.sample(&mut [0.1, 3.0, 2.0], &[]), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0, f32::NAN]), 1);
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_follows_probabilities() {
        let logits = [0.0f32, 1.0, 2.0, 3.0];
        let draw = |seed| {
            let mut s = Sampler::new(SamplingParams {
                seed: Some(seed),
                ..params(1.0)
            });
            (0..2000)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        let counts = draw(3).iter().fold([0usize; 4], |mut c, &t| {
            c[t as usize] += 1;
            c
        });
        // softmax([0,1,2,3]) ≈ [0.032, 0.087, 0.237, 0.644]
        assert!(counts[3] > 1150 && counts[3] < 1430, "{counts:?}");
        assert!(counts[0] > 20 && counts[0] < 110, "{counts:?}");
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        let logits = [0.0f32, 1.0, 2.0, 3.0];
        let mut top1 = Sampler::new(SamplingParams {
            top_k: 1,
            ..params(5.0)
        });
        assert!((0..200).all(|_| top1.sample(&mut logits.clone(), &[]) == 3));
        let mut top_p = Sampler::new(SamplingParams {
            top_p: 0.8,
            ..params(1.0)
        });
        // 0.644 + 0.237 reaches 0.8: only tokens 3 and 2 survive.
        assert!((0..500).all(|_| top_p.sample(&mut logits.clone(), &[]) >= 2));
    }

    #[test]
    fn repetition_penalty_pushes_recent_tokens_down_within_its_window() {
        let mut sampler = Sampler::new(SamplingParams {
            repetition_penalty: 2.0,
            repetition_window: 2,
            ..params(0.0)
        });
        let mut logits = [2.0f32, 1.5, -1.0];
        assert_eq!(sampler.sample(&mut logits, &[0, 0, 2]), 1);
        assert_eq!(
            logits,
            [1.0, 1.5, -2.0],
            "penalised once per token, negatives pushed down"
        );
        let mut logits = [2.0f32, 1.5, -1.0];
        assert_eq!(
            sampler.sample(&mut logits, &[0, 1, 2]),
            0,
            "token 0 is outside the window"
        );
    }

    #[test]
    fn invalid_params_are_named() {
        let bad = SamplingParams {
            temperature: -1.0,
            ..SamplingParams::default()
        };
        assert!(bad.validate().unwrap_err().contains("temperature"));
        let bad = SamplingParams {
            top_p: 1.5,
            ..SamplingParams::default()
        };
        assert!(bad.validate().unwrap_err().contains("top_p"));
        assert!(SamplingParams::default().validate().is_ok());
    }
}
