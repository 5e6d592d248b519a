//! Labelled routing data (JSONL), evaluation reports and threshold fitting.
//!
//! A data file has one JSON object per line: `{"text": "...", "domain": "finance"}`,
//! with `"domain": null` for a query that belongs to no domain. Other fields are
//! ignored; blank lines and lines starting with `//` or `#` are skipped.

use std::fmt;
use std::path::{Path, PathBuf};

use comfy_table::Table;
use serde::Serialize;

use crate::config::{DomainsFile, NONE_LABEL};
use crate::error::{DomainError, Result};
use crate::router::{RouteDecision, Router, Thresholds};

/// A query with the domain it should go to (`None`: no domain, abstain).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelledQuery {
    /// The query.
    pub text: String,
    /// The expected domain id.
    pub domain: Option<String>,
    /// 1-based line in the data file (0 when not read from one).
    #[serde(skip)]
    pub line: usize,
}

impl LabelledQuery {
    /// A labelled query not read from a file.
    pub fn new(text: impl Into<String>, domain: Option<&str>) -> Self {
        Self {
            text: text.into(),
            domain: domain.map(str::to_string),
            line: 0,
        }
    }
}

/// Reads a JSONL data file; errors name the file and line.
pub fn read_jsonl(path: impl AsRef<Path>) -> Result<Vec<LabelledQuery>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| DomainError::io(path, e))?;
    parse_jsonl(&text, path)
}

/// Parses JSONL text; `path` names it in errors.
pub fn parse_jsonl(text: &str, path: &Path) -> Result<Vec<LabelledQuery>> {
    let error = |line: usize, message: String| DomainError::Data {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut queries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with("//") || trimmed.starts_with('#') {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| error(line, format!("not JSON: {e}")))?;
        let object = value.as_object().ok_or_else(|| {
            error(
                line,
                "expected an object {\"text\": ..., \"domain\": ...}".into(),
            )
        })?;
        let text = match object.get("text") {
            Some(serde_json::Value::String(t)) if !t.trim().is_empty() => t.clone(),
            Some(serde_json::Value::String(_)) => {
                return Err(error(line, "\"text\" is empty".into()));
            }
            _ => return Err(error(line, "needs a string field \"text\"".into())),
        };
        // "domain" must be present: a misspelt key must not turn a query out-of-domain.
        let domain = match object.get("domain") {
            Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(d)) if d == NONE_LABEL => None,
            Some(serde_json::Value::String(d)) => Some(d.clone()),
            Some(other) => {
                return Err(error(
                    line,
                    format!("\"domain\" must be a string or null, found {other}"),
                ));
            }
            None => {
                return Err(error(
                    line,
                    "needs a field \"domain\" (a domain id, or null for out-of-domain)".into(),
                ));
            }
        };
        queries.push(LabelledQuery { text, domain, line });
    }
    Ok(queries)
}

/// Precision, recall and F1 of one label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// Domain id, or `none` for abstention.
    pub label: String,
    /// Of the queries given this label, the share that had it.
    pub precision: f64,
    /// Of the queries that had this label, the share given it.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Queries that had this label.
    pub support: usize,
    /// Queries given this label.
    pub predicted: usize,
}

/// Counts of (expected, predicted) label pairs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfusionMatrix {
    /// Row and column labels: the domains, then `none`.
    pub labels: Vec<String>,
    /// `counts[expected][predicted]`.
    pub counts: Vec<Vec<usize>>,
}

/// Routing latency over the evaluated queries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// How well a router did on labelled data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// Queries evaluated.
    pub total: usize,
    /// Queries routed as labelled (abstaining on an out-of-domain query counts).
    pub correct: usize,
    /// `correct / total`.
    pub accuracy: f64,
    /// Mean F1 over the labels that occur (domains and `none`).
    pub macro_f1: f64,
    /// Per domain.
    pub per_domain: Vec<ClassMetrics>,
    /// Abstention as a label (`none`): precision and recall of abstaining.
    pub abstention: ClassMetrics,
    /// Expected against predicted.
    pub confusion: ConfusionMatrix,
    /// Per-query routing latency.
    pub latency: LatencySummary,
    /// The thresholds evaluated.
    pub thresholds: Thresholds,
}

/// The label a decision predicts: the domain, or `None` when the router abstained
/// (even if a fallback domain took the query).
pub fn predicted_label(decision: &RouteDecision) -> Option<&str> {
    if decision.abstained {
        None
    } else {
        decision.domain.as_deref()
    }
}

/// Checks every label names a domain of the router.
fn check_labels(router: &Router, data: &[LabelledQuery]) -> Result<()> {
    let ids = router.domain_ids();
    for q in data {
        if let Some(d) = &q.domain
            && !ids.contains(&d.as_str())
        {
            return Err(DomainError::Data {
                path: PathBuf::from("<labelled data>"),
                line: q.line,
                message: format!("unknown domain {d:?}; known: {}", ids.join(", ")),
            });
        }
    }
    Ok(())
}

/// Routes every query (one at a time, as a user would) and scores the decisions.
pub fn evaluate(router: &Router, data: &[LabelledQuery]) -> Result<EvalReport> {
    check_labels(router, data)?;
    let decisions = data
        .iter()
        .map(|q| router.route(&q.text))
        .collect::<Result<Vec<_>>>()?;
    let pairs: Vec<(Option<&str>, Option<&str>)> = data
        .iter()
        .zip(&decisions)
        .map(|(q, d)| (q.domain.as_deref(), predicted_label(d)))
        .collect();
    let latencies: Vec<f64> = decisions.iter().map(|d| d.latency_ms).collect();
    Ok(report(
        &router.domain_ids(),
        &pairs,
        &latencies,
        router.thresholds(),
    ))
}

/// Builds a report from (expected, predicted) pairs.
pub fn report(
    domains: &[&str],
    pairs: &[(Option<&str>, Option<&str>)],
    latencies_ms: &[f64],
    thresholds: Thresholds,
) -> EvalReport {
    let mut labels: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
    labels.push(NONE_LABEL.to_string());
    let index = |label: Option<&str>| {
        label
            .and_then(|l| domains.iter().position(|d| *d == l))
            .unwrap_or(domains.len())
    };
    let mut counts = vec![vec![0usize; labels.len()]; labels.len()];
    for (expected, predicted) in pairs {
        counts[index(*expected)][index(*predicted)] += 1;
    }
    let correct: usize = (0..labels.len()).map(|i| counts[i][i]).sum();
    let mut classes: Vec<ClassMetrics> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let support: usize = counts[i].iter().sum();
            let predicted: usize = counts.iter().map(|row| row[i]).sum();
            let tp = counts[i][i] as f64;
            let precision = ratio(tp, predicted as f64);
            let recall = ratio(tp, support as f64);
            ClassMetrics {
                label: label.clone(),
                precision,
                recall,
                f1: ratio(2.0 * precision * recall, precision + recall),
                support,
                predicted,
            }
        })
        .collect();
    let occurring: Vec<f64> = classes
        .iter()
        .filter(|c| c.support + c.predicted > 0)
        .map(|c| c.f1)
        .collect();
    let abstention = classes.pop().unwrap_or_else(|| ClassMetrics {
        label: NONE_LABEL.into(),
        precision: 0.0,
        recall: 0.0,
        f1: 0.0,
        support: 0,
        predicted: 0,
    });
    EvalReport {
        total: pairs.len(),
        correct,
        accuracy: ratio(correct as f64, pairs.len() as f64),
        macro_f1: ratio(occurring.iter().sum(), occurring.len() as f64),
        per_domain: classes,
        abstention,
        confusion: ConfusionMatrix { labels, counts },
        latency: latency_summary(latencies_ms),
        thresholds,
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn latency_summary(values: &[f64]) -> LatencySummary {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Nearest-rank percentile.
    let pick = |p: f64| {
        if sorted.is_empty() {
            0.0
        } else {
            let rank = (p * sorted.len() as f64).ceil() as usize;
            sorted[rank.clamp(1, sorted.len()) - 1]
        }
    };
    LatencySummary {
        p50_ms: pick(0.50),
        p95_ms: pick(0.95),
        mean_ms: ratio(sorted.iter().sum(), sorted.len() as f64),
        max_ms: sorted.last().copied().unwrap_or(0.0),
    }
}

impl EvalReport {
    /// The report as tables for a terminal.
    pub fn render_table(&self) -> String {
        let mut summary = Table::new();
        summary.set_header([
            "queries",
            "accuracy",
            "macro F1",
            "p50 ms",
            "p95 ms",
            "min_score",
            "min_confidence",
        ]);
        summary.add_row([
            self.total.to_string(),
            format!("{:.3} ({}/{})", self.accuracy, self.correct, self.total),
            format!("{:.3}", self.macro_f1),
            format!("{:.2}", self.latency.p50_ms),
            format!("{:.2}", self.latency.p95_ms),
            format!("{:.3}", self.thresholds.min_score),
            format!("{:.3}", self.thresholds.min_confidence),
        ]);
        let mut classes = Table::new();
        classes.set_header(["label", "precision", "recall", "F1", "support", "predicted"]);
        for c in self.per_domain.iter().chain([&self.abstention]) {
            let label = if c.label == NONE_LABEL {
                "none (abstain)".to_string()
            } else {
                c.label.clone()
            };
            classes.add_row([
                label,
                format!("{:.3}", c.precision),
                format!("{:.3}", c.recall),
                format!("{:.3}", c.f1),
                c.support.to_string(),
                c.predicted.to_string(),
            ]);
        }
        let mut confusion = Table::new();
        let mut header = vec!["expected \\ predicted".to_string()];
        header.extend(self.confusion.labels.iter().cloned());
        confusion.set_header(header);
        for (label, row) in self.confusion.labels.iter().zip(&self.confusion.counts) {
            let mut cells = vec![label.clone()];
            cells.extend(row.iter().map(usize::to_string));
            confusion.add_row(cells);
        }
        format!("{summary}\n{classes}\n{confusion}")
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_table())
    }
}

/// Thresholds chosen by [`fit`], with the figures before and after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitReport {
    /// The chosen thresholds.
    pub thresholds: Thresholds,
    /// Macro F1 (domains and abstention) with them.
    pub macro_f1: f64,
    /// Accuracy with them.
    pub accuracy: f64,
    /// The router's thresholds before fitting.
    pub previous: Thresholds,
    /// Macro F1 with the previous thresholds.
    pub previous_macro_f1: f64,
    /// Accuracy with the previous thresholds.
    pub previous_accuracy: f64,
    /// Queries fitted on.
    pub total: usize,
}

impl fmt::Display for FitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "min_score {:.4} -> {:.4}, min_confidence {:.4} -> {:.4}; on {} queries: macro F1 {:.3} -> {:.3}, accuracy {:.3} -> {:.3}",
            self.previous.min_score,
            self.thresholds.min_score,
            self.previous.min_confidence,
            self.thresholds.min_confidence,
            self.total,
            self.previous_macro_f1,
            self.macro_f1,
            self.previous_accuracy,
            self.accuracy
        )
    }
}

/// One routed query, reduced to what thresholds act on.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredQuery {
    /// The expected label.
    pub expected: Option<String>,
    /// The best-scoring domain.
    pub best: String,
    /// Its score.
    pub score: f32,
    /// The router's confidence.
    pub confidence: f32,
}

/// Chooses `min_score` and `min_confidence` that maximise macro F1 (domains and
/// abstention) on labelled data. Each query is routed once; thresholds are then
/// tried on the recorded scores.
pub fn fit(router: &Router, data: &[LabelledQuery]) -> Result<FitReport> {
    check_labels(router, data)?;
    let scored = data
        .iter()
        .map(|q| {
            let d = router.route(&q.text)?;
            let best = d.best().ok_or(DomainError::NoDomains)?;
            Ok(ScoredQuery {
                expected: q.domain.clone(),
                best: best.domain.clone(),
                score: best.score,
                confidence: d.confidence,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(fit_scores(
        &router.domain_ids(),
        &scored,
        router.thresholds(),
    ))
}

/// Candidate thresholds: below every value, and midway between neighbours, so a
/// threshold sits in the middle of the gap it falls in.
fn candidates(mut values: Vec<f32>, floor: f32) -> Vec<f32> {
    values.sort_by(f32::total_cmp);
    values.dedup();
    let mut out = vec![floor];
    out.extend(values.windows(2).map(|w| (w[0] + w[1]) / 2.0));
    out.extend(values.last().map(|v| v + 1e-3));
    out
}

/// [`fit`] on already-routed queries. Among equally good thresholds it prefers
/// the lowest `min_confidence`, then the middle of the tied `min_score` range.
pub fn fit_scores(domains: &[&str], scored: &[ScoredQuery], previous: Thresholds) -> FitReport {
    let evaluate = |t: Thresholds| {
        let pairs: Vec<(Option<&str>, Option<&str>)> = scored
            .iter()
            .map(|q| {
                let predicted = t.accepts(q.score, q.confidence).then_some(q.best.as_str());
                (q.expected.as_deref(), predicted)
            })
            .collect();
        report(domains, &pairs, &[], t)
    };
    let score_floor = scored.iter().map(|q| q.score).fold(0.0f32, f32::min) - 1e-3;
    let scores = candidates(scored.iter().map(|q| q.score).collect(), score_floor);
    let confidences = candidates(scored.iter().map(|q| q.confidence).collect(), 0.0);
    let mut best: Option<(f64, f64, f32, Vec<f32>)> = None; // (f1, accuracy, min_confidence, tied scores)
    for &min_confidence in &confidences {
        if min_confidence > 1.0 {
            continue;
        }
        for &min_score in &scores {
            let r = evaluate(Thresholds {
                min_score,
                min_confidence,
            });
            match &mut best {
                Some((f1, acc, _, _)) if (r.macro_f1, r.accuracy) < (*f1 - 1e-12, *acc) => {}
                Some((f1, acc, c, tied))
                    if (r.macro_f1 - *f1).abs() <= 1e-12 && (r.accuracy - *acc).abs() <= 1e-12 =>
                {
                    if *c == min_confidence {
                        tied.push(min_score);
                    }
                }
                _ => best = Some((r.macro_f1, r.accuracy, min_confidence, vec![min_score])),
            }
        }
    }
    let (_, _, min_confidence, tied) = best.unwrap_or((0.0, 0.0, 0.0, vec![previous.min_score]));
    let thresholds = Thresholds {
        min_score: round4(tied[tied.len() / 2]),
        min_confidence: round4(min_confidence),
    };
    let after = evaluate(thresholds);
    let before = evaluate(previous);
    FitReport {
        thresholds,
        macro_f1: after.macro_f1,
        accuracy: after.accuracy,
        previous,
        previous_macro_f1: before.macro_f1,
        previous_accuracy: before.accuracy,
        total: scored.len(),
    }
}

/// Four decimals: enough for a threshold, and readable in the file.
fn round4(x: f32) -> f32 {
    (x * 1e4).round() / 1e4
}

/// Writes thresholds into a domains file. When `min_score` and `min_confidence`
/// each appear once, only their numbers change (comments and layout survive);
/// otherwise the file is re-serialised. Returns whether the text was patched in place.
pub fn write_thresholds(path: impl AsRef<Path>, thresholds: Thresholds) -> Result<bool> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| DomainError::io(path, e))?;
    let (updated, patched) = with_thresholds(&text, &path.display().to_string(), thresholds)?;
    std::fs::write(path, updated).map_err(|e| DomainError::io(path, e))?;
    Ok(patched)
}

/// The text of a domains file with new thresholds, and whether it was patched in
/// place (see [`write_thresholds`]).
pub fn with_thresholds(text: &str, origin: &str, thresholds: Thresholds) -> Result<(String, bool)> {
    let mut file = DomainsFile::parse(text, origin)?;
    file.router.min_score = thresholds.min_score;
    file.router.min_confidence = thresholds.min_confidence;
    let mut patched = text.to_string();
    let mut ok = true;
    for (key, value) in [
        ("min_score", thresholds.min_score),
        ("min_confidence", thresholds.min_confidence),
    ] {
        let re = regex::Regex::new(&format!(
            r"\b{key}\s*:\s*(-?[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?)"
        ))
        .map_err(|e| {
            DomainError::Config(mdsa_config::ConfigError {
                origin: origin.into(),
                line: None,
                column: None,
                field: format!("router.{key}"),
                message: e.to_string(),
            })
        })?;
        let hits: Vec<_> = re.captures_iter(&patched).collect();
        if hits.len() != 1 {
            ok = false;
            break;
        }
        let number = hits[0].get(1).map(|m| m.range()).unwrap_or_default();
        patched.replace_range(number, &format!("{value:?}"));
    }
    // Keep the patch only if it reads back as exactly the intended file.
    if ok && DomainsFile::parse(&patched, origin).ok().as_ref() == Some(&file) {
        return Ok((patched, true));
    }
    Ok((file.to_ron()?, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_errors_name_file_and_line() {
        let path = Path::new("data.jsonl");
        let ok = "{\"text\": \"a\", \"domain\": \"x\"}\n\n# c\n{\"text\": \"b\", \"domain\": null, \"note\": 1}\n";
        let data = parse_jsonl(ok, path).unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!((data[1].domain.as_deref(), data[1].line), (None, 4));
        for (bad, needle) in [
            ("{\"text\": \"a\"}", "domain"),
            ("{\"text\": \"a\", \"domain\": 3}", "string or null"),
            ("{\"txt\": \"a\", \"domain\": null}", "text"),
            ("{nope", "not JSON"),
        ] {
            let err = parse_jsonl(
                &format!("{{\"text\": \"ok\", \"domain\": null}}\n{bad}\n"),
                path,
            )
            .unwrap_err()
            .to_string();
            assert!(err.starts_with("data.jsonl:2: "), "{err}");
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn report_counts_confusion_and_abstention() {
        let pairs = [
            (Some("a"), Some("a")),
            (Some("a"), Some("b")),
            (Some("b"), Some("b")),
            (None, None),
            (None, Some("a")),
            (Some("b"), None),
        ];
        let t = Thresholds::NEVER_ABSTAIN;
        let r = report(&["a", "b"], &pairs, &[1.0, 2.0, 3.0, 4.0], t);
        assert_eq!(r.correct, 3);
        assert_eq!(r.confusion.counts, [[1, 1, 0], [0, 1, 1], [1, 0, 1]]);
        let a = &r.per_domain[0];
        assert_eq!((a.precision, a.recall), (0.5, 0.5));
        assert_eq!((r.abstention.precision, r.abstention.recall), (0.5, 0.5));
        assert_eq!((r.latency.p50_ms, r.latency.p95_ms), (2.0, 4.0));
        assert!(r.render_table().contains("none (abstain)"));
    }

    fn q(expected: Option<&str>, best: &str, score: f32, confidence: f32) -> ScoredQuery {
        ScoredQuery {
            expected: expected.map(str::to_string),
            best: best.into(),
            score,
            confidence,
        }
    }

    #[test]
    fn fit_puts_min_score_in_the_gap_between_in_and_out_of_domain() {
        let scored = [
            q(Some("a"), "a", 0.70, 0.9),
            q(Some("a"), "a", 0.50, 0.8),
            q(Some("b"), "b", 0.45, 0.9),
            q(None, "a", 0.25, 0.6),
            q(None, "b", 0.15, 0.5),
        ];
        let previous = Thresholds {
            min_score: 0.6,
            min_confidence: 0.0,
        };
        let r = fit_scores(&["a", "b"], &scored, previous);
        assert_eq!(r.accuracy, 1.0);
        assert!(r.previous_accuracy < 1.0);
        assert!((0.25..0.45).contains(&r.thresholds.min_score), "{r}");
        assert!((r.thresholds.min_score - 0.35).abs() < 1e-3, "{r}");
        assert_eq!(r.thresholds.min_confidence, 0.0);
    }

    #[test]
    fn fit_uses_confidence_when_scores_cannot_separate() {
        // The out-of-domain query scores high but is ambiguous between domains.
        let scored = [
            q(Some("a"), "a", 0.6, 0.95),
            q(Some("b"), "b", 0.5, 0.90),
            q(None, "a", 0.65, 0.40),
        ];
        let r = fit_scores(&["a", "b"], &scored, Thresholds::NEVER_ABSTAIN);
        assert_eq!(r.accuracy, 1.0, "{r}");
        assert!((0.40..0.90).contains(&r.thresholds.min_confidence), "{r}");
    }

    #[test]
    fn thresholds_are_patched_in_place_keeping_comments() {
        let text = "// keep me\n(\n    router: (min_score: 0.3, min_confidence: 0.0), // and me\n    domains: [(id: \"a\", name: \"A\", examples: [\"x\"])],\n)\n";
        let t = Thresholds {
            min_score: 0.4125,
            min_confidence: 0.25,
        };
        let (out, patched) = with_thresholds(text, "f.ron", t).unwrap();
        assert!(patched);
        assert!(
            out.contains("// keep me") && out.contains("min_score: 0.4125"),
            "{out}"
        );
        // No router section: re-serialised with the thresholds.
        let bare = "(domains: [(id: \"a\", name: \"A\", examples: [\"x\"])])";
        let (out, patched) = with_thresholds(bare, "f.ron", t).unwrap();
        assert!(!patched);
        let file = DomainsFile::parse(&out, "f.ron").unwrap();
        assert_eq!(file.router.min_score, 0.4125);
        assert_eq!(file.router.min_confidence, 0.25);
    }
}
