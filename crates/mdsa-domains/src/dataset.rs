//! Domains from labelled data: a user's own intents (`{"text", "domain"}`
//! lines) become a domains file, K examples per label, with the rest kept
//! aside as a held-out set for `routes eval` and `routes fit`.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::{DomainConfig, DomainsFile, NONE_LABEL};
use crate::error::{DomainError, Result};
use crate::eval::LabelledQuery;

/// A domains file built from labelled data, and what was kept out of it.
#[derive(Debug, Clone)]
pub struct LabelledSplit {
    /// One domain per label, its examples sampled from the label's queries.
    pub file: DomainsFile,
    /// Every query not taken as an example (out-of-domain ones included),
    /// labelled with the domain ids, in the data's order.
    pub heldout: Vec<LabelledQuery>,
    /// Per domain: the label it came from and its example and held-out counts.
    pub domains: Vec<SplitDomain>,
}

/// One label's share of a [`LabelledSplit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitDomain {
    /// The domain id.
    pub id: String,
    /// The label in the data.
    pub label: String,
    /// Queries taken as examples.
    pub examples: usize,
    /// Queries left for the held-out set.
    pub heldout: usize,
}

/// A domain id for a label: lowercase ASCII letters and digits, other runs of
/// characters turned into one `_` (`"Card Declined"` → `card_declined`).
pub fn domain_id(label: &str) -> String {
    let mut id = String::with_capacity(label.len());
    for c in label.trim().chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            id.push(c.to_ascii_lowercase());
        } else if !id.ends_with('_') {
            id.push('_');
        }
    }
    id.trim_matches('_').to_string()
}

/// Builds domains from labelled queries: per label, up to `examples` distinct
/// queries drawn at random (reproducibly, from `seed`) become the domain's
/// examples; the rest, with every out-of-domain query, are held out. `origin`
/// names the data in errors. Domains get the label as their name, no
/// description or keywords, and the default model and settings.
pub fn split_labelled(
    data: &[LabelledQuery],
    examples: usize,
    seed: u64,
    origin: &Path,
) -> Result<LabelledSplit> {
    let error = |line: usize, message: String| DomainError::Data {
        path: origin.to_path_buf(),
        line,
        message,
    };
    if examples == 0 {
        return Err(error(0, "--examples must be at least 1".into()));
    }
    // Labels in order of first appearance, with their ids and query indices.
    let mut labels: Vec<(String, String, Vec<usize>)> = Vec::new();
    for (i, query) in data.iter().enumerate() {
        let Some(label) = &query.domain else { continue };
        match labels.iter_mut().find(|(l, _, _)| l == label) {
            Some((_, _, members)) => members.push(i),
            None => {
                let id = domain_id(label);
                if id.is_empty() || id == NONE_LABEL {
                    return Err(error(
                        query.line,
                        format!(
                            "label {label:?} makes no usable domain id (ids are lowercase letters, digits, '-' and '_'; {NONE_LABEL:?} is reserved)"
                        ),
                    ));
                }
                if let Some((other, _, _)) = labels.iter().find(|(_, other_id, _)| *other_id == id)
                {
                    return Err(error(
                        query.line,
                        format!(
                            "labels {other:?} and {label:?} both make the domain id {id:?}; rename one"
                        ),
                    ));
                }
                labels.push((label.clone(), id, vec![i]));
            }
        }
    }
    if labels.is_empty() {
        return Err(error(
            0,
            "no labelled queries (every \"domain\" is null)".into(),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut taken = vec![false; data.len()];
    let mut domains = Vec::with_capacity(labels.len());
    let mut split = Vec::with_capacity(labels.len());
    for (label, id, mut members) in labels {
        members.shuffle(&mut rng);
        let mut texts: Vec<&str> = Vec::with_capacity(examples);
        for &i in &members {
            if texts.len() == examples {
                break;
            }
            let text = data[i].text.trim();
            // A duplicate is neither a new example nor a fair held-out query.
            taken[i] = true;
            if !texts.contains(&text) {
                texts.push(text);
            }
        }
        let heldout = members.iter().filter(|&&i| !taken[i]).count();
        split.push(SplitDomain {
            id: id.clone(),
            label: label.clone(),
            examples: texts.len(),
            heldout,
        });
        domains.push(DomainConfig::new(id, "").name(label).examples(texts));
    }
    let heldout = data
        .iter()
        .zip(&taken)
        .filter(|(_, taken)| !**taken)
        .map(|(query, _)| LabelledQuery {
            domain: query.domain.as_deref().map(domain_id),
            ..query.clone()
        })
        .collect();
    let file = DomainsFile {
        domains,
        ..DomainsFile::default()
    };
    // Checked as a file read back would be, so what is written loads.
    file.check().map_err(|(field, message)| {
        error(
            0,
            format!("the domains built are invalid at {field}: {message}"),
        )
    })?;
    Ok(LabelledSplit {
        file,
        heldout,
        domains: split,
    })
}

/// Writes labelled queries as JSONL (`{"text", "domain"}` per line).
pub fn write_jsonl(path: &Path, queries: &[LabelledQuery]) -> Result<()> {
    let mut out = String::new();
    for query in queries {
        let line = serde_json::json!({"text": query.text, "domain": query.domain});
        out.push_str(&line.to_string());
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|e| DomainError::io(path, e))
}

/// Where `mdsa domains from-jsonl` writes by default: beside the data, as
/// `NAME.ron` and `NAME.heldout.jsonl`.
pub fn default_outputs(data: &Path) -> (PathBuf, PathBuf) {
    (
        data.with_extension("ron"),
        data.with_extension("heldout.jsonl"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Vec<LabelledQuery> {
        let mut data = Vec::new();
        for i in 0..10 {
            data.push(LabelledQuery::new(
                format!("card {i}"),
                Some("Card Declined"),
            ));
            data.push(LabelledQuery::new(format!("balance {i}"), Some("balance")));
        }
        data.push(LabelledQuery::new("weather?", None));
        data.push(LabelledQuery::new("balance 0", Some("balance")));
        data
    }

    #[test]
    fn each_label_gives_k_examples_and_the_rest_is_held_out() {
        let split = split_labelled(&data(), 4, 7, Path::new("d.jsonl")).unwrap();
        let ids: Vec<_> = split.file.domains.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["card_declined", "balance"]);
        assert_eq!(split.file.domains[0].name, "Card Declined");
        assert!(split.file.domains.iter().all(|d| d.examples.len() == 4));
        // 20 labelled + 1 duplicate + 1 out-of-domain, minus 8 examples (and
        // the duplicate of an example, if it was drawn).
        let examples: Vec<&String> = split
            .file
            .domains
            .iter()
            .flat_map(|d| &d.examples)
            .collect();
        assert!(split.heldout.iter().all(|q| !examples.contains(&&q.text)));
        assert!(split.heldout.iter().any(|q| q.domain.is_none()));
        assert!(
            split
                .heldout
                .iter()
                .filter_map(|q| q.domain.as_deref())
                .all(|d| ids.contains(&d))
        );
        assert_eq!(
            split
                .domains
                .iter()
                .map(|d| d.examples + d.heldout)
                .sum::<usize>(),
            21
        );
        // Reproducible with the seed, different without it.
        let again = split_labelled(&data(), 4, 7, Path::new("d.jsonl")).unwrap();
        assert_eq!(again.file, split.file);
        let other = split_labelled(&data(), 4, 8, Path::new("d.jsonl")).unwrap();
        assert_ne!(other.file, split.file);
        // The file reads back.
        let text = split.file.to_ron().unwrap();
        assert_eq!(DomainsFile::parse(&text, "t").unwrap(), split.file);
    }

    #[test]
    fn bad_labels_and_settings_are_named() {
        let clash = vec![
            LabelledQuery::new("a", Some("Card Declined")),
            LabelledQuery::new("b", Some("card-declined ")),
            LabelledQuery::new("c", Some("card declined")),
        ];
        let err = split_labelled(&clash, 2, 0, Path::new("d.jsonl")).unwrap_err();
        assert!(err.to_string().contains("both make the domain id"), "{err}");
        let err = split_labelled(
            &[LabelledQuery::new("a", Some("???"))],
            2,
            0,
            Path::new("d.jsonl"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no usable domain id"), "{err}");
        let err = split_labelled(&data(), 0, 0, Path::new("d.jsonl")).unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
        let err = split_labelled(&[LabelledQuery::new("a", None)], 2, 0, Path::new("d.jsonl"))
            .unwrap_err();
        assert!(err.to_string().contains("no labelled queries"), "{err}");
        assert_eq!(domain_id("  Card  Declined! "), "card_declined");
    }
}
