//! Keyword evidence: whole-word, case-insensitive phrase matching.

/// Lowercase words of a text: runs of letters and digits.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A domain's keywords, pre-split into words.
#[derive(Debug, Clone)]
pub(crate) struct KeywordSet {
    keywords: Vec<(String, Vec<String>)>,
}

impl KeywordSet {
    pub(crate) fn new(keywords: &[String]) -> Self {
        Self {
            keywords: keywords
                .iter()
                .map(|k| (k.clone(), words(k)))
                .filter(|(_, w)| !w.is_empty())
                .collect(),
        }
    }

    /// The keywords found in `text`, in the keyword list's order. A keyword matches
    /// whole words; its last word also matches with a plural `s`/`es`. Where two
    /// keywords match at the same word ("symptom", "symptoms"), only the longer counts.
    #[cfg(test)]
    pub(crate) fn hits(&self, text: &str) -> Vec<String> {
        self.hits_in(&words(text))
    }

    /// Like `hits`, for a text already split by [`words`] (the router splits a
    /// query once for every domain).
    pub(crate) fn hits_in(&self, query: &[String]) -> Vec<String> {
        // (start word, keyword words, index into self.keywords)
        let mut found: Vec<(usize, usize, usize)> = Vec::new();
        for (k, (_, kw)) in self.keywords.iter().enumerate() {
            let n = kw.len();
            if n > query.len() {
                continue;
            }
            let start = (0..=query.len() - n).find(|&s| {
                kw.iter().enumerate().all(|(j, word)| {
                    let q = &query[s + j];
                    q == word
                        || (j + 1 == n
                            && q.strip_prefix(word.as_str())
                                .is_some_and(|rest| rest == "s" || rest == "es"))
                })
            });
            if let Some(start) = start {
                match found.iter_mut().find(|f| f.0 == start) {
                    Some(f)
                        if f.1 < n
                            || (f.1 == n
                                && self.keywords[f.2].0.len() < self.keywords[k].0.len()) =>
                    {
                        *f = (start, n, k);
                    }
                    Some(_) => {}
                    None => found.push((start, n, k)),
                }
            }
        }
        found.sort_by_key(|f| f.2);
        found
            .into_iter()
            .map(|f| self.keywords[f.2].0.clone())
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

    #[test]
    fn plurals_match_and_overlaps_count_once() {
        let k = set(&["symptom", "symptoms", "tax", "side effect"]);
        assert_eq!(k.hits("what symptoms"), ["symptoms"]);
        assert_eq!(k.hits("taxes and side effects"), ["tax", "side effect"]);
        assert!(k.hits("").is_empty());
    }
}
