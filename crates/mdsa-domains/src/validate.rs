//! Checks on generated answers, with a structured verdict saying what failed.

use std::fmt;

use mdsa_engine::{FinishReason, GenerationOutput};
use regex::Regex;
use serde::Serialize;

use crate::config::ValidationRules;
use crate::error::{DomainError, Result};

/// Compiles a banned pattern (case-insensitive).
pub(crate) fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ValidationFailure {
    /// Nothing but whitespace.
    Empty,
    /// Fewer characters than allowed.
    TooShort {
        /// The minimum.
        min: usize,
        /// Characters found (trimmed).
        found: usize,
    },
    /// More characters than allowed.
    TooLong {
        /// The maximum.
        max: usize,
        /// Characters found (trimmed).
        found: usize,
    },
    /// The same run of words again and again.
    RepetitionLoop {
        /// The repeated words.
        ngram: String,
        /// How often they occur.
        count: usize,
    },
    /// Cut off by the token limit.
    Truncated {
        /// Tokens generated.
        tokens: usize,
    },
    /// A banned pattern matched.
    BannedPattern {
        /// The pattern.
        pattern: String,
        /// The text it matched.
        matched: String,
    },
}

impl fmt::Display for ValidationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty answer"),
            Self::TooShort { min, found } => {
                write!(f, "too short: {found} characters, at least {min} required")
            }
            Self::TooLong { max, found } => {
                write!(f, "too long: {found} characters, at most {max} allowed")
            }
            Self::RepetitionLoop { ngram, count } => {
                write!(f, "repetition loop: {ngram:?} {count} times")
            }
            Self::Truncated { tokens } => write!(f, "cut off by the token limit ({tokens} tokens)"),
            Self::BannedPattern { pattern, matched } => {
                write!(f, "banned pattern {pattern:?} matched {matched:?}")
            }
        }
    }
}

/// The outcome of validating one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// No check failed.
    pub passed: bool,
    /// What failed, in check order.
    pub failures: Vec<ValidationFailure>,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed {
            return f.write_str("passed");
        }
        let failures: Vec<String> = self.failures.iter().map(ToString::to_string).collect();
        write!(f, "failed: {}", failures.join("; "))
    }
}

/// Runs a domain's [`ValidationRules`] on answers.
#[derive(Debug, Clone)]
pub struct ResponseValidator {
    rules: ValidationRules,
    patterns: Vec<(String, Regex)>,
    /// Every pattern as one alternation, when there are several: an answer
    /// that passes (nearly every one) is searched once, not once per pattern.
    any_pattern: Option<Regex>,
}

impl ResponseValidator {
    /// Compiles the rules (banned patterns are regular expressions, case-insensitive).
    pub fn new(rules: &ValidationRules) -> Result<Self> {
        let patterns: Vec<(String, Regex)> = rules
            .banned_patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                compile_pattern(p)
                    .map(|re| (p.clone(), re))
                    .map_err(|message| {
                        DomainError::Config(mdsa_config::ConfigError {
                            origin: "validation rules".into(),
                            line: None,
                            column: None,
                            field: format!("validation.banned_patterns[{i}]"),
                            message,
                        })
                    })
            })
            .collect::<Result<_>>()?;
        // Each pattern compiled on its own, so the union does too, unless it
        // is over the size limit: then each pattern is searched in turn.
        let any_pattern = (patterns.len() > 1)
            .then(|| {
                let union: Vec<String> = patterns.iter().map(|(p, _)| format!("(?:{p})")).collect();
                compile_pattern(&union.join("|")).ok()
            })
            .flatten();
        Ok(Self {
            rules: rules.clone(),
            patterns,
            any_pattern,
        })
    }

    /// Checks an answer; `output` supplies why generation ended.
    pub fn validate(&self, text: &str, output: &GenerationOutput) -> Verdict {
        let mut failures = Vec::new();
        let trimmed = text.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            failures.push(ValidationFailure::Empty);
        } else if chars < self.rules.min_chars {
            failures.push(ValidationFailure::TooShort {
                min: self.rules.min_chars,
                found: chars,
            });
        }
        if self.rules.max_chars > 0 && chars > self.rules.max_chars {
            failures.push(ValidationFailure::TooLong {
                max: self.rules.max_chars,
                found: chars,
            });
        }
        if self.rules.max_repeats >= 2
            && let Some((ngram, count)) = most_repeated(trimmed, self.rules.repetition_ngram)
            && count >= self.rules.max_repeats
        {
            failures.push(ValidationFailure::RepetitionLoop { ngram, count });
        }
        if self.rules.reject_truncated && output.finish_reason == FinishReason::Length {
            failures.push(ValidationFailure::Truncated {
                tokens: output.usage.completion_tokens,
            });
        }
        let may_match = self
            .any_pattern
            .as_ref()
            .is_none_or(|any| any.is_match(text));
        if may_match {
            for (pattern, re) in &self.patterns {
                if let Some(m) = re.find(text) {
                    failures.push(ValidationFailure::BannedPattern {
                        pattern: pattern.clone(),
                        matched: m.as_str().to_string(),
                    });
                }
            }
        }
        Verdict {
            passed: failures.is_empty(),
            failures,
        }
    }
}

/// The most frequent run of `n` words (lowercased, punctuation ignored) and its
/// count; the earliest wins a tie.
///
/// Validation runs right after a generation has flushed the caches, so this
/// touches little memory: the words lowercased back to back in one buffer,
/// and the runs sorted by their words (equal runs side by side, earliest
/// first) rather than hashed, with no allocation per word.
fn most_repeated(text: &str, n: usize) -> Option<(String, usize)> {
    let mut buffer = String::with_capacity(text.len());
    let mut words: Vec<(usize, usize)> = Vec::new();
    for word in text.split_whitespace() {
        let word = word.trim_matches(|c: char| !c.is_alphanumeric());
        if word.is_empty() {
            continue;
        }
        let start = buffer.len();
        if word.is_ascii() {
            buffer.extend(word.chars().map(|c| c.to_ascii_lowercase()));
        } else {
            buffer.push_str(&word.to_lowercase());
        }
        words.push((start, buffer.len()));
    }
    if n == 0 || words.len() < n {
        return None;
    }
    let word = |i: usize| &buffer[words[i].0..words[i].1];
    let run = |start: usize| (start..start + n).map(word);
    let mut starts: Vec<usize> = (0..=words.len() - n).collect();
    // Stable: equal runs keep their order, so each group starts with its earliest.
    starts.sort_by(|&a, &b| run(a).cmp(run(b)));
    starts
        .chunk_by(|&a, &b| run(a).eq(run(b)))
        .max_by_key(|group| (group.len(), std::cmp::Reverse(group[0])))
        .map(|group| (run(group[0]).collect::<Vec<_>>().join(" "), group.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdsa_engine::{Timings, Usage};

    fn output(text: &str, finish_reason: FinishReason) -> GenerationOutput {
        GenerationOutput {
            text: text.into(),
            token_ids: Vec::new(),
            finish_reason,
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 50,
                ..Usage::default()
            },
            timings: Timings::default(),
        }
    }

    fn check(rules: &ValidationRules, text: &str, finish: FinishReason) -> Verdict {
        ResponseValidator::new(rules)
            .unwrap()
            .validate(text, &output(text, finish))
    }

    #[test]
    fn each_failure_kind_is_reported() {
        let rules = ValidationRules {
            min_chars: 10,
            max_chars: 60,
            repetition_ngram: 2,
            max_repeats: 3,
            reject_truncated: true,
            banned_patterns: vec!["as an ai".into()],
        };
        let good = check(&rules, "A fine, short answer.", FinishReason::Eos);
        assert!(good.passed, "{good}");
        assert_eq!(
            check(&rules, "  \n", FinishReason::Eos).failures,
            [ValidationFailure::Empty]
        );
        assert_eq!(
            check(&rules, "Too short", FinishReason::Eos).failures,
            [ValidationFailure::TooShort { min: 10, found: 9 }]
        );
        let long = "x".repeat(61);
        assert_eq!(
            check(&rules, &long, FinishReason::Stop).failures,
            [ValidationFailure::TooLong { max: 60, found: 61 }]
        );
        let looped = check(
            &rules,
            "Drink water. Drink water! drink WATER, drink water.",
            FinishReason::Eos,
        );
        assert_eq!(
            looped.failures,
            [ValidationFailure::RepetitionLoop {
                ngram: "drink water".into(),
                count: 4
            }]
        );
        assert_eq!(
            check(&rules, "A fine, short answer.", FinishReason::Length).failures,
            [ValidationFailure::Truncated { tokens: 50 }]
        );
        let banned = check(&rules, "As an AI, I cannot say.", FinishReason::Eos);
        assert_eq!(
            banned.failures,
            [ValidationFailure::BannedPattern {
                pattern: "as an ai".into(),
                matched: "As an AI".into()
            }]
        );
        assert!(banned.to_string().contains("banned pattern"), "{banned}");
        let json = serde_json::to_value(&banned).unwrap();
        assert_eq!(json["failures"][0]["kind"], "banned_pattern");
    }

    #[test]
    fn several_banned_patterns_each_report_their_own_match() {
        // Searched as one alternation first: each pattern keeps its own
        // alternatives (`foo|bar` must not swallow its neighbours).
        let rules = ValidationRules {
            banned_patterns: vec![
                "as an ai".into(),
                "<\\|im_(start|end)\\|>".into(),
                "foo|bar".into(),
            ],
            ..ValidationRules::default()
        };
        let banned = |text: &str| -> Vec<(String, String)> {
            check(&rules, text, FinishReason::Eos)
                .failures
                .into_iter()
                .filter_map(|f| match f {
                    ValidationFailure::BannedPattern { pattern, matched } => {
                        Some((pattern, matched))
                    }
                    _ => None,
                })
                .collect()
        };
        assert_eq!(banned("Nothing wrong with this answer at all."), []);
        assert_eq!(
            banned("As an AI model I say <|im_end|> then more."),
            [
                ("as an ai".to_string(), "As an AI".to_string()),
                (
                    "<\\|im_(start|end)\\|>".to_string(),
                    "<|im_end|>".to_string()
                ),
            ]
        );
        assert_eq!(
            banned("Order a BAR of soap."),
            [("foo|bar".to_string(), "BAR".to_string())]
        );
    }

    /// The most frequent run by hashing every run, as `most_repeated` did
    /// before it sorted them.
    fn most_repeated_by_hashing(text: &str, n: usize) -> Option<(String, usize)> {
        let words: Vec<String> = text
            .split_whitespace()
            .map(|w| {
                w.trim_matches(|c: char| !c.is_alphanumeric())
                    .to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .collect();
        if n == 0 || words.len() < n {
            return None;
        }
        let mut counts = std::collections::HashMap::<&[String], (usize, usize)>::new();
        for (i, window) in words.windows(n).enumerate() {
            counts.entry(window).or_insert((0, i)).0 += 1;
        }
        counts
            .into_iter()
            .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.1.1.cmp(&a.1.1)))
            .map(|(ngram, (count, _))| (ngram.join(" "), count))
    }

    #[test]
    fn sorting_runs_finds_what_hashing_them_finds() {
        use rand::{Rng, SeedableRng};
        // Few words, so that runs repeat and counts tie; case, punctuation
        // and a non-ASCII word to lowercase.
        let vocabulary = [
            "the", "The", "cat,", "sat", "on", "mat.", "ÉTÉ", "été", "--", "a",
        ];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..2000 {
            let len = rng.random_range(0..40);
            let text = (0..len)
                .map(|_| vocabulary[rng.random_range(0..vocabulary.len())])
                .collect::<Vec<_>>()
                .join(" ");
            for n in 0..4 {
                assert_eq!(
                    most_repeated(&text, n),
                    most_repeated_by_hashing(&text, n),
                    "{text:?}, n = {n}"
                );
            }
        }
    }

    #[test]
    fn truncation_and_repetition_checks_can_be_off() {
        let rules = ValidationRules {
            max_repeats: 0,
            ..ValidationRules::default()
        };
        let text = "go go go go go go go go";
        assert!(check(&rules, text, FinishReason::Length).passed);
    }
}
