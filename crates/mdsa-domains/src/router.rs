//! Routing a query to a domain: nearest examples, description and keywords make a
//! score per domain; a softmax over the scores makes a confidence; thresholds on
//! both decide between a domain and abstaining.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use half::f16;
use mdsa_engine::{Embedder, vector};
use serde::Serialize;

use crate::cache::{EmbeddingCache, embed_checked};
use crate::config::RouterConfig;
use crate::error::{DomainError, Result};
use crate::keywords::{KeywordIndex, KeywordSet, words};
use crate::registry::DomainRegistry;

/// Queries embedded per encoder call in [`Router::route_batch`].
const QUERY_BATCH: usize = 32;

/// Nearest examples reported in an explanation.
const EXPLAIN_NEAREST: usize = 3;

/// Where a query goes, how sure the router is, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteDecision {
    /// The query.
    pub query: String,
    /// The chosen domain; `None` when the router abstained and there is no fallback.
    pub domain: Option<String>,
    /// The best domain's share of a softmax over all domain scores, in [0, 1].
    pub confidence: f32,
    /// The router found no domain good enough (the domain, if any, is the fallback).
    pub abstained: bool,
    /// The domain is the configured fallback, not a match.
    pub fallback: bool,
    /// Every domain's score, best first.
    pub scores: Vec<DomainScore>,
    /// Evidence for the decision.
    pub explanation: Explanation,
    /// Time spent routing this query (for a batch, its share of the batch).
    pub latency_ms: f64,
    /// The part of `latency_ms` spent in the encoder (the rest is scoring).
    pub encode_ms: f64,
}

impl RouteDecision {
    /// A decision made by the caller, not the router (a request that names its
    /// domain): full confidence, no scores.
    pub fn forced(query: &str, domain: &str) -> Self {
        Self {
            query: query.to_string(),
            domain: Some(domain.to_string()),
            confidence: 1.0,
            abstained: false,
            fallback: false,
            scores: Vec::new(),
            explanation: Explanation {
                nearest: Vec::new(),
                keywords: Vec::new(),
                reason: format!("domain {domain} chosen by the caller"),
            },
            latency_ms: 0.0,
            encode_ms: 0.0,
        }
    }

    /// The best-scoring domain, whether or not it was chosen.
    pub fn best(&self) -> Option<&DomainScore> {
        self.scores.first()
    }
}

/// One domain's score for a query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainScore {
    /// Domain id.
    pub domain: String,
    /// `similarity` plus the keyword bonus.
    pub score: f32,
    /// Cosine similarity: mean over the nearest examples, blended with the description.
    pub similarity: f32,
    /// Keywords of this domain found in the query.
    pub keyword_hits: Vec<String>,
}

/// Why the router decided as it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The examples most similar to the query, from any domain, most similar first.
    pub nearest: Vec<NearestExample>,
    /// Keywords of the best domain found in the query.
    pub keywords: Vec<String>,
    /// One sentence for humans.
    pub reason: String,
}

/// An example close to the query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NearestExample {
    /// The example's domain.
    pub domain: String,
    /// The example.
    pub text: String,
    /// Its cosine similarity to the query.
    pub similarity: f32,
}

/// The two abstention thresholds (both in [`RouterConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// Abstain when the best score is below this.
    pub min_score: f32,
    /// Abstain when the confidence is below this.
    pub min_confidence: f32,
}

impl Thresholds {
    /// Thresholds that never abstain.
    pub const NEVER_ABSTAIN: Self = Self {
        min_score: f32::NEG_INFINITY,
        min_confidence: 0.0,
    };

    /// The thresholds of a router configuration.
    pub fn of(config: &RouterConfig) -> Self {
        Self {
            min_score: config.min_score,
            min_confidence: config.min_confidence,
        }
    }

    /// Whether a query with this best score and confidence is routed (not abstained).
    pub fn accepts(&self, best_score: f32, confidence: f32) -> bool {
        best_score >= self.min_score && confidence >= self.min_confidence
    }
}

/// A domain's embedded evidence; its examples are rows `examples` of the
/// router's [`ExampleMatrix`].
#[derive(Debug)]
struct DomainIndex {
    id: String,
    examples: Range<usize>,
    /// The row of the domain's description, if it has one.
    description: Option<usize>,
    keywords: KeywordSet,
    /// The domain's own `min_score`, if it has one.
    min_score: Option<f32>,
}

/// Every domain's example and description vectors in one contiguous
/// row-major matrix of f16, with their texts: scoring a query is one pass of
/// [`vector::scores`] over it. Routing runs right after a generation has
/// filled the caches with model weights, so the pass is bound by reading the
/// matrix from memory: f16 halves that (its rounding moves a similarity of
/// unit vectors by ~1e-5), and one contiguous matrix is read as a stream where
/// separate per-example allocations missed the cache one by one.
#[derive(Debug, Default)]
struct ExampleMatrix {
    dim: usize,
    vectors: Vec<f16>,
    texts: Vec<String>,
}

impl ExampleMatrix {
    /// Appends rows, returning their indices.
    fn push<'t>(
        &mut self,
        texts: impl IntoIterator<Item = &'t str>,
        vectors: &[Arc<[f32]>],
    ) -> Range<usize> {
        let start = self.texts.len();
        for (text, vector) in texts.into_iter().zip(vectors) {
            if self.texts.is_empty() {
                self.dim = vector.len();
            }
            // Cached vectors all come from one encoder, so they share a width;
            // a stray one is cut or padded rather than misaligning every row after it.
            let row = &vector[..vector.len().min(self.dim)];
            self.vectors.extend(row.iter().map(|&x| f16::from_f32(x)));
            self.vectors
                .extend(std::iter::repeat_n(f16::ZERO, self.dim - row.len()));
            self.texts.push(text.to_string());
        }
        start..self.texts.len()
    }

    /// The similarity of `query` (a unit vector) to every row.
    fn similarities(&self, query: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; self.texts.len()];
        if self.dim > 0 && query.len() == self.dim {
            vector::scores(query, &self.vectors, self.dim, &mut out);
        }
        out
    }
}

/// Inserts `item` into `best` (sorted by `score`, highest first, at most `cap`
/// long), after any equal scores so that earlier items win ties.
fn keep_best<T>(best: &mut Vec<T>, cap: usize, item: T, score: impl Fn(&T) -> f32) {
    let s = score(&item);
    if best.len() == cap && best.last().is_some_and(|last| score(last) >= s) {
        return;
    }
    let at = best.partition_point(|b| score(b).total_cmp(&s).is_ge());
    best.insert(at, item);
    best.truncate(cap);
}

/// Routes queries between the domains of a registry. Cheap to share (`&self`
/// everywhere); build a new one (with the same cache) when the domains change.
pub struct Router {
    encoder: Arc<dyn Embedder>,
    encoder_id: String,
    config: RouterConfig,
    fallback: Option<String>,
    domains: Vec<DomainIndex>,
    /// Every domain's keywords by first word (domain `i` is set `i`).
    keywords: KeywordIndex,
    examples: ExampleMatrix,
    cache: Arc<EmbeddingCache>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("encoder_id", &self.encoder_id)
            .field("config", &self.config)
            .field("fallback", &self.fallback)
            .field("domains", &self.domain_ids())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// Embeds every domain's examples and description with `encoder` (named
    /// `encoder_id`, the cache key) in a fresh in-memory cache.
    pub fn new(
        encoder: Arc<dyn Embedder>,
        encoder_id: &str,
        registry: &DomainRegistry,
        config: RouterConfig,
    ) -> Result<Self> {
        Self::with_cache(
            encoder,
            encoder_id,
            registry,
            config,
            Arc::new(EmbeddingCache::new()),
        )
    }

    /// Like [`Router::new`], reusing `cache`: only texts it lacks are embedded,
    /// and a persistent cache is saved when anything new was embedded.
    pub fn with_cache(
        encoder: Arc<dyn Embedder>,
        encoder_id: &str,
        registry: &DomainRegistry,
        config: RouterConfig,
        cache: Arc<EmbeddingCache>,
    ) -> Result<Self> {
        if registry.is_empty() {
            return Err(DomainError::NoDomains);
        }
        let misses_before = cache.stats().misses;
        let mut domains = Vec::with_capacity(registry.len());
        let mut examples = ExampleMatrix::default();
        for domain in registry.iter() {
            let mut texts: Vec<&str> = domain.examples.iter().map(String::as_str).collect();
            let has_description = !domain.description.trim().is_empty();
            if has_description {
                texts.push(&domain.description);
            }
            let vectors = cache.embed(encoder.as_ref(), encoder_id, &texts)?;
            let rows = examples.push(texts, &vectors);
            let description = has_description.then_some(rows.end - 1);
            domains.push(DomainIndex {
                id: domain.id.clone(),
                examples: rows.start..rows.start + domain.examples.len(),
                description,
                keywords: KeywordSet::new(&domain.keywords),
                min_score: domain.min_score,
            });
        }
        if cache.stats().misses > misses_before {
            cache.save()?;
        }
        Ok(Self {
            encoder,
            encoder_id: encoder_id.to_string(),
            config,
            fallback: registry.fallback_domain().map(str::to_string),
            keywords: KeywordIndex::new(domains.iter().map(|d| &d.keywords)),
            domains,
            examples,
            cache,
        })
    }

    /// A router for the same encoder and cache over changed domains or settings.
    pub fn rebuild(&self, registry: &DomainRegistry, config: RouterConfig) -> Result<Self> {
        Self::with_cache(
            Arc::clone(&self.encoder),
            &self.encoder_id,
            registry,
            config,
            Arc::clone(&self.cache),
        )
    }

    /// The embedding cache.
    pub fn cache(&self) -> &Arc<EmbeddingCache> {
        &self.cache
    }

    /// The settings in use.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// The encoder id.
    pub fn encoder_id(&self) -> &str {
        &self.encoder_id
    }

    /// The domain ids, in registry order.
    pub fn domain_ids(&self) -> Vec<&str> {
        self.domains.iter().map(|d| d.id.as_str()).collect()
    }

    /// The current abstention thresholds.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds::of(&self.config)
    }

    /// The thresholds a query whose best domain is `domain` is held to: the
    /// router's, with the domain's own `min_score` if it has one.
    pub fn thresholds_for(&self, domain: Option<&str>) -> Thresholds {
        let mut thresholds = self.thresholds();
        if let Some(own) = domain
            .and_then(|id| self.domains.iter().find(|d| d.id == id))
            .and_then(|d| d.min_score)
        {
            thresholds.min_score = own;
        }
        thresholds
    }

    /// The domains' own `min_score`s (`None`: the router's), in registry order.
    pub fn domain_min_scores(&self) -> Vec<(&str, Option<f32>)> {
        self.domains
            .iter()
            .map(|d| (d.id.as_str(), d.min_score))
            .collect()
    }

    /// Changes the abstention thresholds (no re-embedding needed).
    pub fn set_thresholds(&mut self, thresholds: Thresholds) {
        self.config.min_score = thresholds.min_score;
        self.config.min_confidence = thresholds.min_confidence;
    }

    /// Routes one query.
    pub fn route(&self, query: &str) -> Result<RouteDecision> {
        let start = Instant::now();
        let vector = embed_checked(self.encoder.as_ref(), &self.encoder_id, &[query])?
            .pop()
            .ok_or_else(|| DomainError::Encoder {
                encoder: self.encoder_id.clone(),
                message: "returned no vector".into(),
            })?;
        let encoded = start.elapsed();
        let mut decision = self.decide(query, &vector);
        decision.encode_ms = encoded.as_secs_f64() * 1e3;
        decision.latency_ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(decision)
    }

    /// Routes many queries, embedding them in batches; each decision's latency is
    /// its share of its batch.
    pub fn route_batch(&self, queries: &[&str]) -> Result<Vec<RouteDecision>> {
        let mut decisions = Vec::with_capacity(queries.len());
        for chunk in queries.chunks(QUERY_BATCH) {
            let start = Instant::now();
            let vectors = embed_checked(self.encoder.as_ref(), &self.encoder_id, chunk)?;
            let encode_share = start.elapsed().as_secs_f64() * 1e3 / chunk.len() as f64;
            let first = decisions.len();
            for (query, vector) in chunk.iter().zip(&vectors) {
                decisions.push(self.decide(query, vector));
            }
            let share = start.elapsed().as_secs_f64() * 1e3 / chunk.len() as f64;
            decisions[first..].iter_mut().for_each(|d| {
                d.latency_ms = share;
                d.encode_ms = encode_share;
            });
        }
        Ok(decisions)
    }

    /// Scores every domain and decides, given the query's unit embedding.
    fn decide(&self, query: &str, vector: &[f32]) -> RouteDecision {
        let query_words = words(query);
        let top_k = self.config.top_k.max(1);
        // (similarity, example row) of the nearest examples over all domains.
        let mut nearest: Vec<(f32, usize)> = Vec::with_capacity(EXPLAIN_NEAREST + 1);
        let mut top: Vec<f32> = Vec::with_capacity(top_k + 1);
        let mut scores: Vec<DomainScore> = Vec::with_capacity(self.domains.len());
        let similarities = self.examples.similarities(vector);
        let candidates = self.keywords.candidates(&query_words);
        let mut candidates = candidates.as_slice();
        for (d, domain) in self.domains.iter().enumerate() {
            top.clear();
            for row in domain.examples.clone() {
                let similarity = similarities[row];
                keep_best(&mut top, top_k, similarity, |&s| s);
                keep_best(&mut nearest, EXPLAIN_NEAREST, (similarity, row), |n| n.0);
            }
            let description = domain.description.map(|row| similarities[row]);
            let similarity = blend(&top, description, &self.config);
            let mine = candidates.partition_point(|&(set, _)| set as usize == d);
            let keyword_hits = domain.keywords.hits_among(
                &query_words,
                candidates[..mine].iter().map(|&(_, k)| k as usize),
            );
            candidates = &candidates[mine..];
            let bonus = (keyword_hits.len() as f32 * self.config.keyword_bonus)
                .min(self.config.max_keyword_bonus);
            scores.push(DomainScore {
                domain: domain.id.clone(),
                score: similarity + bonus,
                similarity,
                keyword_hits,
            });
        }
        let nearest: Vec<NearestExample> = nearest
            .into_iter()
            .map(|(similarity, row)| NearestExample {
                domain: self.domain_of(row).to_string(),
                text: self.examples.texts[row].clone(),
                similarity,
            })
            .collect();
        scores.sort_by(|a, b| b.score.total_cmp(&a.score));
        let confidence = confidence(&scores, self.config.temperature);
        let outcome = outcome(
            &scores,
            confidence,
            self.thresholds_for(scores.first().map(|s| s.domain.as_str())),
            self.fallback.as_deref(),
        );
        RouteDecision {
            query: query.to_string(),
            domain: outcome.domain,
            confidence,
            abstained: outcome.abstained,
            fallback: outcome.fallback,
            explanation: Explanation {
                nearest,
                keywords: scores
                    .first()
                    .map(|s| s.keyword_hits.clone())
                    .unwrap_or_default(),
                reason: outcome.reason,
            },
            scores,
            latency_ms: 0.0,
            encode_ms: 0.0,
        }
    }
}

impl Router {
    /// The id of the domain an example row belongs to.
    fn domain_of(&self, row: usize) -> &str {
        self.domains
            .iter()
            .find(|d| d.examples.contains(&row))
            .map_or("", |d| d.id.as_str())
    }
}

/// A domain's similarity from its example similarities (sorted, most similar
/// first) and its description's: the mean of the `top_k` nearest examples,
/// blended with the description by `description_weight`. Several neighbours
/// rather than one make a single stray example matter less.
pub(crate) fn blend(sorted: &[f32], description: Option<f32>, config: &RouterConfig) -> f32 {
    let k = config.top_k.min(sorted.len()).max(1);
    let examples = if sorted.is_empty() {
        0.0
    } else {
        sorted[..k].iter().sum::<f32>() / k as f32
    };
    match description {
        Some(d) => (1.0 - config.description_weight) * examples + config.description_weight * d,
        None => examples,
    }
}

/// The best score's softmax probability at `temperature`, over all domains (1
/// with a single domain: confidence measures separation, `min_score` absolute fit).
pub fn confidence(sorted_scores: &[DomainScore], temperature: f32) -> f32 {
    let Some(best) = sorted_scores.first() else {
        return 0.0;
    };
    let total: f32 = sorted_scores
        .iter()
        .map(|s| ((s.score - best.score) / temperature).exp())
        .sum();
    1.0 / total
}

/// What a decision comes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The domain chosen (the fallback when abstaining with one).
    pub domain: Option<String>,
    /// Whether the router abstained.
    pub abstained: bool,
    /// Whether the domain is the fallback.
    pub fallback: bool,
    /// A sentence explaining it.
    pub reason: String,
}

/// Decides from scores (best first) and confidence: the best domain when both
/// thresholds are met, otherwise abstain (to the fallback domain if there is one).
pub fn outcome(
    sorted_scores: &[DomainScore],
    confidence: f32,
    thresholds: Thresholds,
    fallback: Option<&str>,
) -> Outcome {
    let Some(best) = sorted_scores.first() else {
        return Outcome {
            domain: fallback.map(str::to_string),
            abstained: true,
            fallback: fallback.is_some(),
            reason: "no domains".into(),
        };
    };
    let keywords = if best.keyword_hits.is_empty() {
        String::new()
    } else {
        format!(", keywords: {}", best.keyword_hits.join(", "))
    };
    let runner_up = sorted_scores
        .get(1)
        .map(|r| format!(", {:.3} ahead of {}", best.score - r.score, r.domain))
        .unwrap_or_default();
    if thresholds.accepts(best.score, confidence) {
        return Outcome {
            domain: Some(best.domain.clone()),
            abstained: false,
            fallback: false,
            reason: format!(
                "{}: score {:.3} (similarity {:.3}{keywords}){runner_up}, confidence {:.2}",
                best.domain, best.score, best.similarity, confidence
            ),
        };
    }
    let why = if best.score < thresholds.min_score {
        format!(
            "best score {:.3} ({}) is below min_score {:.3}",
            best.score, best.domain, thresholds.min_score
        )
    } else {
        format!(
            "confidence {:.2} ({}{runner_up}) is below min_confidence {:.2}",
            confidence, best.domain, thresholds.min_confidence
        )
    };
    let reason = match fallback {
        Some(f) => format!("abstained, sent to fallback {f}: {why}"),
        None => format!("abstained: {why}"),
    };
    Outcome {
        domain: fallback.map(str::to_string),
        abstained: true,
        fallback: fallback.is_some(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(domain: &str, score: f32) -> DomainScore {
        DomainScore {
            domain: domain.into(),
            score,
            similarity: score,
            keyword_hits: Vec::new(),
        }
    }

    #[test]
    fn thresholds_decide_between_a_domain_and_abstaining() {
        let scores = [score("a", 0.6), score("b", 0.3)];
        let c = confidence(&scores, 0.05);
        assert!(c > 0.99, "{c}");
        let t = Thresholds {
            min_score: 0.5,
            min_confidence: 0.5,
        };
        let o = outcome(&scores, c, t, None);
        assert_eq!(o.domain.as_deref(), Some("a"));
        assert!(!o.abstained);

        let low = [score("a", 0.2), score("b", 0.1)];
        let o = outcome(&low, confidence(&low, 0.05), t, None);
        assert_eq!((o.domain, o.abstained), (None, true));
        assert!(o.reason.contains("min_score"), "{}", o.reason);

        // Close scores: confident enough only with a low min_confidence.
        let close = [score("a", 0.6), score("b", 0.59)];
        let c = confidence(&close, 0.05);
        assert!((0.5..0.6).contains(&c), "{c}");
        let o = outcome(
            &close,
            c,
            Thresholds {
                min_confidence: 0.7,
                ..t
            },
            Some("b"),
        );
        assert_eq!(o.domain.as_deref(), Some("b"));
        assert!(o.abstained && o.fallback);
        assert!(o.reason.contains("min_confidence"), "{}", o.reason);
    }

    #[test]
    fn similarity_blends_the_nearest_examples_and_the_description() {
        let config = RouterConfig {
            top_k: 2,
            description_weight: 0.5,
            ..RouterConfig::default()
        };
        assert!((blend(&[0.8, 0.6, 0.0], Some(0.2), &config) - 0.45).abs() < 1e-6);
        assert!((blend(&[0.8], None, &config) - 0.8).abs() < 1e-6);
    }
}
