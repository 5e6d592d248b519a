//! Labelled texts: the held-out split, batches, and nearest-example accuracy.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TuneError};

/// A text and the index of its label (a domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledText {
    /// The text.
    pub text: String,
    /// Its label, `0..labels`.
    pub label: usize,
}

/// Indices of the training and held-out texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Split {
    pub(crate) train: Vec<usize>,
    pub(crate) heldout: Vec<usize>,
}

/// Holds out `share` of each label's texts (at least one when it has two or
/// more, never its last one), chosen with `rng`.
pub(crate) fn split(
    data: &[LabelledText],
    labels: usize,
    share: f32,
    rng: &mut ChaCha8Rng,
) -> Result<Split> {
    let mut by_label = vec![Vec::new(); labels];
    for (i, text) in data.iter().enumerate() {
        by_label
            .get_mut(text.label)
            .ok_or_else(|| {
                TuneError::Data(format!(
                    "text {i} has label {} but there are {labels} labels",
                    text.label
                ))
            })?
            .push(i);
    }
    if by_label.iter().filter(|m| m.len() >= 2).count() < 2 {
        return Err(TuneError::Data(
            "needs at least two labels with two or more examples each".into(),
        ));
    }
    let mut split = Split {
        train: Vec::new(),
        heldout: Vec::new(),
    };
    for mut members in by_label {
        members.shuffle(rng);
        let held = if members.len() >= 2 {
            ((members.len() as f32 * share).round() as usize).clamp(1, members.len() - 1)
        } else {
            0
        };
        split.heldout.extend_from_slice(&members[..held]);
        split.train.extend_from_slice(&members[held..]);
    }
    split.train.sort_unstable();
    split.heldout.sort_unstable();
    Ok(split)
}

/// The training indices in batches of `size`, shuffled with a generator
/// seeded by `seed` and the epoch (so an epoch's batches do not depend on
/// how many epochs ran before).
pub(crate) fn batches(train: &[usize], size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut order = train.to_vec();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(
        seed ^ (epoch as u64 + 1) << 32,
    ));
    order.chunks(size).map(<[usize]>::to_vec).collect()
}

/// Nearest-example accuracy, as the router scores: each held-out text goes to
/// the label whose `top_k` most similar training texts are, on average, most
/// similar to it. `vectors` are unit vectors, one per text of the data.
pub(crate) fn nearest_accuracy(
    vectors: &[Vec<f32>],
    data: &[LabelledText],
    split: &Split,
    labels: usize,
    top_k: usize,
) -> f64 {
    if split.heldout.is_empty() {
        return 0.0;
    }
    let mut correct = 0;
    for &q in &split.heldout {
        let mut per_label: Vec<Vec<f32>> = vec![Vec::new(); labels];
        for &t in &split.train {
            per_label[data[t].label].push(mdsa_engine::dot(&vectors[q], &vectors[t]));
        }
        let score = |sims: &mut Vec<f32>| {
            sims.sort_by(|a, b| b.total_cmp(a));
            let k = top_k.min(sims.len());
            if k == 0 {
                f32::NEG_INFINITY
            } else {
                sims[..k].iter().sum::<f32>() / k as f32
            }
        };
        let best = per_label
            .iter_mut()
            .map(score)
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(label, _)| label);
        correct += usize::from(best == Some(data[q].label));
    }
    correct as f64 / split.heldout.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(counts: &[usize]) -> Vec<LabelledText> {
        counts
            .iter()
            .enumerate()
            .flat_map(|(label, &n)| {
                (0..n).map(move |i| LabelledText {
                    text: format!("{label}-{i}"),
                    label,
                })
            })
            .collect()
    }

    #[test]
    fn every_label_keeps_training_texts_and_gives_some_to_the_held_out_set() {
        let data = labelled(&[10, 5, 2, 1]);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let s = split(&data, 4, 0.2, &mut rng).unwrap();
        let held = |label| {
            s.heldout
                .iter()
                .filter(|&&i| data[i].label == label)
                .count()
        };
        assert_eq!((held(0), held(1), held(2), held(3)), (2, 1, 1, 0));
        assert_eq!(s.train.len() + s.heldout.len(), data.len());
        // The same seed, the same split.
        assert_eq!(
            split(&data, 4, 0.2, &mut ChaCha8Rng::seed_from_u64(3)).unwrap(),
            s
        );
        assert!(split(&data, 3, 0.2, &mut rng).is_err());
        assert!(split(&labelled(&[5, 1]), 2, 0.2, &mut rng).is_err());
    }

    #[test]
    fn batches_cover_the_training_set_once_per_epoch() {
        let train: Vec<usize> = (0..10).collect();
        let b = batches(&train, 4, 1, 0);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
        let mut all: Vec<usize> = b.concat();
        all.sort_unstable();
        assert_eq!(all, train);
        assert_ne!(batches(&train, 4, 1, 1), b);
        assert_eq!(batches(&train, 4, 1, 0), b);
    }

    #[test]
    fn accuracy_counts_the_nearest_label() {
        let data = labelled(&[2, 2]);
        let s = Split {
            train: vec![0, 2],
            heldout: vec![1, 3],
        };
        let vectors = vec![
            vec![1.0, 0.0],
            vec![0.9, 0.1],
            vec![0.0, 1.0],
            vec![0.8, 0.2],
        ];
        // Text 3 (label 1) sits near label 0's example: one of two right.
        assert_eq!(nearest_accuracy(&vectors, &data, &s, 2, 3), 0.5);
    }
}
