//! Keyword evidence: whole-word, case-insensitive phrase matching.

use rustc_hash::FxHashMap;

/// Lowercase words of a text: runs of letters and digits.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A domain's keywords, pre-split into words, packed: every word's text back
/// to back in one buffer. Routing runs right after a generation has flushed
/// the caches, and a keyword list of separate strings cost a cache miss per
/// word (a third of a routing decision's time); this one is a few cache lines.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeywordSet {
    /// The keywords as given, reported when they match.
    keywords: Vec<String>,
    /// Per keyword, in order: its first word in `words`, its word count and
    /// its length as given (the longer of two keywords matching at one word wins).
    shapes: Vec<(u32, u32, u32)>,
    /// Per word: its byte range in `text`.
    words: Vec<(u32, u32)>,
    /// The lowercased words of every keyword.
    text: String,
}

/// The keywords of several [`KeywordSet`]s (a router's domains) by their
/// first word: a query is checked only against the keywords that start with
/// one of its words, not against every keyword at every word. One index for
/// every domain, with a fast hasher: a query's words are looked up once, not
/// once per domain, in tables that a generation has pushed out of the caches.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeywordIndex {
    /// (set, keyword) indices, ascending, by the keyword's first word.
    by_first: FxHashMap<String, Vec<(u32, u32)>>,
}

impl KeywordIndex {
    /// The index of `sets`, numbered in order.
    pub(crate) fn new<'s>(sets: impl IntoIterator<Item = &'s KeywordSet>) -> Self {
        let mut index = Self::default();
        for (s, set) in sets.into_iter().enumerate() {
            for (k, &(first, _, _)) in set.shapes.iter().enumerate() {
                index
                    .by_first
                    .entry(set.word(first, 0).to_string())
                    .or_default()
                    .push((s as u32, k as u32));
            }
        }
        index
    }

    /// The (set, keyword) pairs, ascending, that may match in `query` (split
    /// by [`words`]): those whose first word is one of the query's (or, for
    /// a one-word keyword, that word plus `s`/`es`).
    pub(crate) fn candidates(&self, query: &[String]) -> Vec<(u32, u32)> {
        let mut candidates: Vec<(u32, u32)> = query
            .iter()
            .flat_map(|q| {
                let singular = [q.strip_suffix('s'), q.strip_suffix("es")];
                std::iter::once(q.as_str()).chain(singular.into_iter().flatten())
            })
            .filter_map(|w| self.by_first.get(w))
            .flatten()
            .copied()
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates
    }
}

impl KeywordSet {
    pub(crate) fn new(keywords: &[String]) -> Self {
        let mut set = Self::default();
        for keyword in keywords {
            let split = words(keyword);
            if split.is_empty() {
                continue;
            }
            set.shapes.push((
                set.words.len() as u32,
                split.len() as u32,
                keyword.len() as u32,
            ));
            for word in split {
                let start = set.text.len() as u32;
                set.text.push_str(&word);
                set.words.push((start, set.text.len() as u32));
            }
            set.keywords.push(keyword.clone());
        }
        set
    }

    /// Word `j` of the keyword whose first word is `first`.
    fn word(&self, first: u32, j: usize) -> &str {
        let (start, end) = self.words[first as usize + j];
        &self.text[start as usize..end as usize]
    }

    /// The keywords found in `text`, in the keyword list's order. A keyword matches
    /// whole words; its last word also matches with a plural `s`/`es`. Where two
    /// keywords match at the same word ("symptom", "symptoms"), only the longer counts.
    #[cfg(test)]
    pub(crate) fn hits(&self, text: &str) -> Vec<String> {
        self.hits_in(&words(text))
    }

    /// Like `hits`, for a text already split by [`words`].
    #[cfg(test)]
    pub(crate) fn hits_in(&self, query: &[String]) -> Vec<String> {
        let candidates = KeywordIndex::new([self]).candidates(query);
        self.hits_among(query, candidates.into_iter().map(|(_, k)| k as usize))
    }

    /// The keywords among `keywords` (indices, ascending) found in `query`.
    pub(crate) fn hits_among(
        &self,
        query: &[String],
        keywords: impl Iterator<Item = usize>,
    ) -> Vec<String> {
        // (start word, keyword words, index into self.keywords)
        let mut found: Vec<(usize, usize, usize)> = Vec::new();
        for k in keywords {
            let (first, n, _) = self.shapes[k];
            let n = n as usize;
            if n > query.len() {
                continue;
            }
            let start = (0..=query.len() - n).find(|&s| {
                (0..n).all(|j| {
                    let word = self.word(first, j);
                    let q = &query[s + j];
                    q == word
                        || (j + 1 == n
                            && q.strip_prefix(word)
                                .is_some_and(|rest| rest == "s" || rest == "es"))
                })
            });
            if let Some(start) = start {
                let longer = |f: &(usize, usize, usize)| {
                    f.1 < n || (f.1 == n && self.shapes[f.2].2 < self.shapes[k].2)
                };
                match found.iter_mut().find(|f| f.0 == start) {
                    Some(f) if longer(f) => *f = (start, n, k),
                    Some(_) => {}
                    None => found.push((start, n, k)),
                }
            }
        }
        found.sort_by_key(|f| f.2);
        found
            .into_iter()
            .map(|f| self.keywords[f.2].clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(keywords: &[&str]) -> KeywordSet {
        KeywordSet::new(&keywords.iter().map(|k| k.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn matches_whole_words_case_insensitively() {
        let k = set(&["tax", "credit score", "git"]);
        assert_eq!(
            k.hits("My CREDIT score and TAX return"),
            ["tax", "credit score"]
        );
        // Inside other words: no match.
        assert!(k.hits("taxi syntax digital").is_empty());
        assert_eq!(k.hits("Git: push failed"), ["git"]);
    }

    /// Every keyword tried at every word, as `hits_in` did before its index.
    fn hits_by_scanning(set: &KeywordSet, query: &[String]) -> Vec<String> {
        set.hits_among(query, 0..set.shapes.len())
    }

    #[test]
    fn the_index_finds_what_scanning_every_keyword_finds() {
        use rand::{Rng, SeedableRng};
        // A small vocabulary, so that keywords overlap, share first words
        // and meet their plurals.
        let vocabulary = [
            "tax", "taxes", "credit", "score", "scores", "card", "side", "effect", "effects", "s",
            "es", "bank", "bankes",
        ];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let phrase = |rng: &mut rand_chacha::ChaCha8Rng, most: usize| -> String {
            let n = rng.random_range(1..=most);
            (0..n)
                .map(|_| vocabulary[rng.random_range(0..vocabulary.len())])
                .collect::<Vec<_>>()
                .join(" ")
        };
        for _ in 0..300 {
            let keywords: Vec<String> = (0..rng.random_range(1..12))
                .map(|_| phrase(&mut rng, 3))
                .collect();
            let set = KeywordSet::new(&keywords);
            for _ in 0..20 {
                let query = words(&phrase(&mut rng, 8));
                assert_eq!(
                    set.hits_in(&query),
                    hits_by_scanning(&set, &query),
                    "{keywords:?} in {query:?}"
                );
            }
        }
    }

    #[test]
    fn one_index_over_several_sets_finds_each_sets_candidates() {
        let sets = [
            set(&["tax", "credit score", "taxes"]),
            set(&["symptom", "side effect", "tax"]),
            set(&[]),
            set(&["credit", "score"]),
        ];
        let index = KeywordIndex::new(&sets);
        for query in [
            "my credit score and taxes",
            "side effects of a tax",
            "symptoms",
            "nothing here",
        ] {
            let query = words(query);
            let all = index.candidates(&query);
            assert!(all.is_sorted(), "{all:?}");
            for (s, set) in sets.iter().enumerate() {
                let mine: Vec<u32> = all
                    .iter()
                    .filter(|c| c.0 as usize == s)
                    .map(|c| c.1)
                    .collect();
                let alone: Vec<u32> = KeywordIndex::new([set])
                    .candidates(&query)
                    .into_iter()
                    .map(|c| c.1)
                    .collect();
                assert_eq!(mine, alone, "set {s} in {query:?}");
            }
        }
        assert_eq!(
            sets[1].hits_among(&words("side effects of a tax"), [1, 2].into_iter()),
            ["side effect", "tax"]
        );
    }

    #[test]
    fn plurals_match_and_overlaps_count_once() {
        let k = set(&["symptom", "symptoms", "tax", "side effect"]);
        assert_eq!(k.hits("what symptoms"), ["symptoms"]);
        assert_eq!(k.hits("taxes and side effects"), ["tax", "side effect"]);
        assert!(k.hits("").is_empty());
    }
}
