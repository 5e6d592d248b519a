//! Labelled routing data (JSONL), evaluation reports and threshold fitting.
//!
//! A data file has one JSON object per line: `{"text": "...", "domain": "finance"}`,
//! with `"domain": null` for a query that belongs to no domain (`"label"` or
//! `"intent"` may stand for `"domain"`). Other fields are ignored; blank lines and lines starting with `//` or `#` are skipped.

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
        // "domain" (or "label"/"intent", as intent datasets name it) must be
        // present: a misspelt key must not turn a query out-of-domain.
        let label = ["domain", "label", "intent"]
            .iter()
            .find_map(|key| object.get(*key));
        let domain = match label {
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
                    "needs a field \"domain\" (or \"label\"/\"intent\"): a domain id, or null for out-of-domain".into(),
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
    /// Whether the confidence means what it says (from [`evaluate`], which
    /// has every decision; `None` from [`report`] alone).
    pub calibration: Option<Calibration>,
}

/// How well the router's confidence matches how often its best domain is right.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Expected calibration error: per confidence bin, the gap between mean
    /// confidence and accuracy, weighted by the bin's share of the queries.
    pub ece: f64,
    /// The non-empty bins, lowest confidence first.
    pub bins: Vec<CalibrationBin>,
}

/// Queries whose confidence fell in `[lower, upper)` (the last bin includes 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationBin {
    /// Lower edge.
    pub lower: f64,
    /// Upper edge.
    pub upper: f64,
    /// Queries in the bin.
    pub count: usize,
    /// Their mean confidence.
    pub confidence: f64,
    /// The share whose best-scoring domain was their label.
    pub accuracy: f64,
}

/// Confidence bins of [`calibration`], as commonly reported.
const CALIBRATION_BINS: usize = 10;

/// Calibration of (confidence, whether the best domain was right) pairs over
/// equal-width bins. An out-of-domain query counts as wrong whatever its best
/// domain: a confidence of 0.9 should mean the best domain is right 9 times in
/// 10 over the traffic the router really sees.
pub fn calibration(outcomes: &[(f32, bool)]) -> Calibration {
    let mut sums = [(0usize, 0.0f64, 0usize); CALIBRATION_BINS];
    for &(confidence, right) in outcomes {
        let c = f64::from(confidence).clamp(0.0, 1.0);
        let bin = ((c * CALIBRATION_BINS as f64) as usize).min(CALIBRATION_BINS - 1);
        sums[bin].0 += 1;
        sums[bin].1 += c;
        sums[bin].2 += usize::from(right);
    }
    let total = outcomes.len() as f64;
    let mut ece = 0.0;
    let mut bins = Vec::new();
    for (i, &(count, confidence_sum, right)) in sums.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let confidence = confidence_sum / count as f64;
        let accuracy = right as f64 / count as f64;
        ece += count as f64 / total * (accuracy - confidence).abs();
        bins.push(CalibrationBin {
            lower: i as f64 / CALIBRATION_BINS as f64,
            upper: (i + 1) as f64 / CALIBRATION_BINS as f64,
            count,
            confidence,
            accuracy,
        });
    }
    Calibration { ece, bins }
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
    let outcomes: Vec<(f32, bool)> = data
        .iter()
        .zip(&decisions)
        .map(|(q, d)| {
            let best = d.best().map(|b| b.domain.as_str());
            (
                d.confidence,
                q.domain.is_some() && q.domain.as_deref() == best,
            )
        })
        .collect();
    let mut report = report(
        &router.domain_ids(),
        &pairs,
        &latencies,
        router.thresholds(),
    );
    report.calibration = Some(calibration(&outcomes));
    Ok(report)
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
        calibration: None,
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
            "ECE",
        ]);
        summary.add_row([
            self.total.to_string(),
            format!("{:.3} ({}/{})", self.accuracy, self.correct, self.total),
            format!("{:.3}", self.macro_f1),
            format!("{:.2}", self.latency.p50_ms),
            format!("{:.2}", self.latency.p95_ms),
            format!("{:.3}", self.thresholds.min_score),
            format!("{:.3}", self.thresholds.min_confidence),
            self.calibration
                .as_ref()
                .map_or_else(|| "-".to_string(), |c| format!("{:.3}", c.ece)),
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
    /// Domains given their own `min_score` ([`fit_per_domain`]); empty for one
    /// threshold for all.
    pub per_domain: Vec<DomainMinScore>,
}

/// A domain's own `min_score`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainMinScore {
    /// The domain.
    pub domain: String,
    /// Its threshold.
    pub min_score: f32,
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
        )?;
        for own in &self.per_domain {
            write!(f, "; {} min_score {:.4}", own.domain, own.min_score)?;
        }
        Ok(())
    }
}

/// The report of `scored` routed with `thresholds`, and `own` per-domain
/// `min_score`s for the queries whose best domain has one.
fn report_with(
    domains: &[&str],
    scored: &[ScoredQuery],
    thresholds: Thresholds,
    own: &[DomainMinScore],
) -> EvalReport {
    let pairs: Vec<(Option<&str>, Option<&str>)> = scored
        .iter()
        .map(|q| {
            let mut t = thresholds;
            if let Some(o) = own.iter().find(|o| o.domain == q.best) {
                t.min_score = o.min_score;
            }
            let predicted = t.accepts(q.score, q.confidence).then_some(q.best.as_str());
            (q.expected.as_deref(), predicted)
        })
        .collect();
    report(domains, &pairs, &[], thresholds)
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
    fit_with(router, data, false)
}

/// [`fit`], and with `per_domain` [`fit_per_domain`] after it. The figures
/// before fitting are the router's as it is, its domains' own thresholds included.
pub fn fit_with(router: &Router, data: &[LabelledQuery], per_domain: bool) -> Result<FitReport> {
    check_labels(router, data)?;
    // In batches: only the scores matter here, not each query's latency.
    let texts: Vec<&str> = data.iter().map(|q| q.text.as_str()).collect();
    let decisions = router.route_batch(&texts)?;
    let scored = data
        .iter()
        .zip(&decisions)
        .map(|(q, d)| {
            let best = d.best().ok_or(DomainError::NoDomains)?;
            Ok(ScoredQuery {
                expected: q.domain.clone(),
                best: best.domain.clone(),
                score: best.score,
                confidence: d.confidence,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let domains = router.domain_ids();
    let mut fitted = fit_scores(&domains, &scored, router.thresholds());
    if per_domain {
        fitted = fit_per_domain(&domains, &scored, fitted);
    }
    let own: Vec<DomainMinScore> = router
        .domain_min_scores()
        .into_iter()
        .filter_map(|(domain, s)| {
            s.map(|min_score| DomainMinScore {
                domain: domain.to_string(),
                min_score,
            })
        })
        .collect();
    let before = report_with(&domains, &scored, router.thresholds(), &own);
    fitted.previous_macro_f1 = before.macro_f1;
    fitted.previous_accuracy = before.accuracy;
    Ok(fitted)
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

/// Most `min_confidence` candidates [`fit_scores`] tries: every one for small
/// data, evenly spaced quantiles of them beyond (each costs one sweep of the scores).
const MAX_CONFIDENCE_CANDIDATES: usize = 256;

/// At most `max` of `sorted` candidates, evenly spaced, keeping the first and last.
fn thin(sorted: Vec<f32>, max: usize) -> Vec<f32> {
    if sorted.len() <= max {
        return sorted;
    }
    let last = sorted.len() - 1;
    let mut out: Vec<f32> = (0..max).map(|i| sorted[i * last / (max - 1)]).collect();
    out.dedup();
    out
}

/// A confusion matrix kept up to date one query at a time, with its row and
/// column sums, so that macro F1 and accuracy cost O(labels) after each change.
struct RunningConfusion {
    counts: Vec<usize>,
    labels: usize,
    support: Vec<usize>,
    predicted: Vec<usize>,
    correct: usize,
    total: usize,
}

impl RunningConfusion {
    fn new(labels: usize) -> Self {
        Self {
            counts: vec![0; labels * labels],
            labels,
            support: vec![0; labels],
            predicted: vec![0; labels],
            correct: 0,
            total: 0,
        }
    }

    fn add(&mut self, expected: usize, predicted: usize) {
        self.counts[expected * self.labels + predicted] += 1;
        self.support[expected] += 1;
        self.predicted[predicted] += 1;
        self.correct += usize::from(expected == predicted);
        self.total += 1;
    }

    fn remove(&mut self, expected: usize, predicted: usize) {
        self.counts[expected * self.labels + predicted] -= 1;
        self.support[expected] -= 1;
        self.predicted[predicted] -= 1;
        self.correct -= usize::from(expected == predicted);
        self.total -= 1;
    }

    /// Macro F1 over the labels that occur, and accuracy, as [`report`] computes them.
    fn macro_f1_and_accuracy(&self) -> (f64, f64) {
        let (mut sum, mut occurring) = (0.0, 0usize);
        for i in 0..self.labels {
            let (support, predicted) = (self.support[i], self.predicted[i]);
            if support + predicted == 0 {
                continue;
            }
            let tp = self.counts[i * self.labels + i] as f64;
            let precision = ratio(tp, predicted as f64);
            let recall = ratio(tp, support as f64);
            sum += ratio(2.0 * precision * recall, precision + recall);
            occurring += 1;
        }
        (
            ratio(sum, occurring as f64),
            ratio(self.correct as f64, self.total as f64),
        )
    }
}

/// [`fit`] on already-routed queries. Among equally good thresholds it prefers
/// the lowest `min_confidence`, then the middle of the tied `min_score` range.
///
/// The queries are sorted by score once; for each `min_confidence` candidate one
/// sweep raises `min_score` past them in order, moving each query it passes to
/// abstention in a running confusion matrix: O(n log n + c·n·labels) for `c`
/// confidence candidates (at most [`MAX_CONFIDENCE_CANDIDATES`]), where
/// re-evaluating every pair of thresholds was O(n³).
pub fn fit_scores(domains: &[&str], scored: &[ScoredQuery], previous: Thresholds) -> FitReport {
    let evaluate = |t: Thresholds| report_with(domains, scored, t, &[]);
    let none = domains.len();
    let index = |label: Option<&str>| {
        label
            .and_then(|l| domains.iter().position(|d| *d == l))
            .unwrap_or(none)
    };
    // (score, confidence, expected, best), by score.
    let mut by_score: Vec<(f32, f32, usize, usize)> = scored
        .iter()
        .map(|q| {
            (
                q.score,
                q.confidence,
                index(q.expected.as_deref()),
                index(Some(&q.best)),
            )
        })
        .collect();
    by_score.sort_by(|a, b| a.0.total_cmp(&b.0));
    let score_floor = scored.iter().map(|q| q.score).fold(0.0f32, f32::min) - 1e-3;
    let scores = candidates(scored.iter().map(|q| q.score).collect(), score_floor);
    let confidences = thin(
        candidates(scored.iter().map(|q| q.confidence).collect(), 0.0),
        MAX_CONFIDENCE_CANDIDATES,
    );
    let mut best: Option<(f64, f64, f32, Vec<f32>)> = None; // (f1, accuracy, min_confidence, tied scores)
    for &min_confidence in &confidences {
        if min_confidence > 1.0 {
            continue;
        }
        // Below every score: only confidence abstains.
        let mut confusion = RunningConfusion::new(none + 1);
        for &(_, confidence, expected, best) in &by_score {
            let accepted = confidence >= min_confidence;
            confusion.add(expected, if accepted { best } else { none });
        }
        let mut passed = 0;
        for &min_score in &scores {
            while let Some(&(score, confidence, expected, best)) = by_score.get(passed)
                && score < min_score
            {
                if confidence >= min_confidence {
                    confusion.remove(expected, best);
                    confusion.add(expected, none);
                }
                passed += 1;
            }
            let (macro_f1, accuracy) = confusion.macro_f1_and_accuracy();
            match &mut best {
                Some((f1, acc, _, _)) if (macro_f1, accuracy) < (*f1 - 1e-12, *acc) => {}
                Some((f1, acc, c, tied))
                    if (macro_f1 - *f1).abs() <= 1e-12 && (accuracy - *acc).abs() <= 1e-12 =>
                {
                    if *c == min_confidence {
                        tied.push(min_score);
                    }
                }
                _ => best = Some((macro_f1, accuracy, min_confidence, vec![min_score])),
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
        per_domain: Vec::new(),
    }
}

/// Adds per-domain `min_score`s to a fit of one threshold for all: for each
/// domain in turn, the queries whose best domain it is are swept as
/// [`fit_scores`] sweeps them all, the others held as they are, and the domain
/// keeps its own threshold only where that raises macro F1 (ties: the
/// threshold nearest the shared one). Each domain costs one pass over the
/// queries and a sort of its own.
pub fn fit_per_domain(domains: &[&str], scored: &[ScoredQuery], fitted: FitReport) -> FitReport {
    let shared = fitted.thresholds;
    let none = domains.len();
    let index = |label: Option<&str>| {
        label
            .and_then(|l| domains.iter().position(|d| *d == l))
            .unwrap_or(none)
    };
    let mut own: Vec<DomainMinScore> = Vec::new();
    let mut best_f1 = report_with(domains, scored, shared, &own).macro_f1;
    for &domain in domains {
        // Every other query as the thresholds so far decide it; this domain's
        // queries below every candidate, so that only confidence abstains.
        let mut confusion = RunningConfusion::new(none + 1);
        let mut mine: Vec<(f32, f32, usize, usize)> = Vec::new();
        for q in scored {
            let (expected, best) = (index(q.expected.as_deref()), index(Some(&q.best)));
            if q.best == domain {
                mine.push((q.score, q.confidence, expected, best));
                let accepted = q.confidence >= shared.min_confidence;
                confusion.add(expected, if accepted { best } else { none });
            } else {
                let mut t = shared;
                if let Some(o) = own.iter().find(|o| o.domain == q.best) {
                    t.min_score = o.min_score;
                }
                let accepted = t.accepts(q.score, q.confidence);
                confusion.add(expected, if accepted { best } else { none });
            }
        }
        if mine.is_empty() {
            continue;
        }
        mine.sort_by(|a, b| a.0.total_cmp(&b.0));
        let floor = mine[0].0 - 1e-3;
        let mut chosen: Option<(f64, f32)> = None;
        let mut passed = 0;
        for candidate in candidates(mine.iter().map(|q| q.0).collect(), floor) {
            while let Some(&(score, confidence, expected, best)) = mine.get(passed)
                && score < candidate
            {
                if confidence >= shared.min_confidence {
                    confusion.remove(expected, best);
                    confusion.add(expected, none);
                }
                passed += 1;
            }
            let (f1, _) = confusion.macro_f1_and_accuracy();
            let better = match chosen {
                None => true,
                Some((f, c)) => {
                    f1 > f + 1e-12
                        || ((f1 - f).abs() <= 1e-12
                            && (candidate - shared.min_score).abs() < (c - shared.min_score).abs())
                }
            };
            if better {
                chosen = Some((f1, candidate));
            }
        }
        if let Some((f1, min_score)) = chosen
            && f1 > best_f1 + 1e-12
        {
            best_f1 = f1;
            own.push(DomainMinScore {
                domain: domain.to_string(),
                min_score: round4(min_score),
            });
        }
    }
    let after = report_with(domains, scored, shared, &own);
    FitReport {
        macro_f1: after.macro_f1,
        accuracy: after.accuracy,
        per_domain: own,
        ..fitted
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

/// The comment that marks a domain's own `min_score` as written by
/// [`write_domain_min_scores`], so that the next fit replaces it.
const PER_DOMAIN_MARK: &str = "// per-domain, set by routes fit";

/// Writes each domain's own `min_score` into a domains file, and removes it
/// from every domain not in `own` (a fit with one threshold for all clears
/// them). Lines are added after each domain's `id` and marked with a comment,
/// so comments and layout survive; a file that cannot be patched so is
/// re-serialised. Returns whether the text was patched in place.
pub fn write_domain_min_scores(path: impl AsRef<Path>, own: &[DomainMinScore]) -> Result<bool> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| DomainError::io(path, e))?;
    let (updated, patched) = with_domain_min_scores(&text, &path.display().to_string(), own)?;
    if updated != text {
        std::fs::write(path, updated).map_err(|e| DomainError::io(path, e))?;
    }
    Ok(patched)
}

/// The text of a domains file with per-domain `min_score`s (see [`write_domain_min_scores`]).
pub fn with_domain_min_scores(
    text: &str,
    origin: &str,
    own: &[DomainMinScore],
) -> Result<(String, bool)> {
    let mut file = DomainsFile::parse(text, origin)?;
    for domain in &mut file.domains {
        domain.min_score = own
            .iter()
            .find(|o| o.domain == domain.id)
            .map(|o| o.min_score);
    }
    let marked = regex::Regex::new(&format!(
        r"(?m)^[ \t]*min_score\s*:[^\n]*{}[ \t]*\n",
        regex::escape(PER_DOMAIN_MARK)
    ))
    .expect("a valid pattern");
    let mut patched = marked.replace_all(text, "").into_owned();
    let mut ok = true;
    for o in own {
        let id = regex::Regex::new(&format!(
            r#"(?m)^([ \t]*)id\s*:\s*"{}"\s*,[ \t]*\n"#,
            regex::escape(&o.domain)
        ))
        .expect("a valid pattern");
        let hits: Vec<_> = id.captures_iter(&patched).collect();
        let [hit] = hits.as_slice() else {
            ok = false;
            break;
        };
        let (whole, indent) = (
            hit.get(0).map(|m| m.range()),
            hit.get(1).map(|m| m.as_str()),
        );
        let (Some(whole), Some(indent)) = (whole, indent) else {
            ok = false;
            break;
        };
        let line = format!("{indent}min_score: {:?}, {PER_DOMAIN_MARK}\n", o.min_score);
        let end = whole.end;
        patched.insert_str(end, &line);
    }
    // Keep the patch only if it reads back as exactly the intended file.
    if ok && DomainsFile::parse(&patched, origin).ok().as_ref() == Some(&file) {
        return Ok((patched, true));
    }
    Ok((file.to_ron()?, false))
}

/// Points a domains file's router at `encoder` (a model reference: a Hub id or
/// a directory). Like [`write_thresholds`], only the value changes when the
/// file has an `encoder:` or a `router: (` to put it in; otherwise it is
/// re-serialised. Returns whether the text was patched in place.
pub fn write_encoder(path: impl AsRef<Path>, encoder: &str) -> Result<bool> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| DomainError::io(path, e))?;
    let (updated, patched) = with_encoder(&text, &path.display().to_string(), encoder)?;
    std::fs::write(path, updated).map_err(|e| DomainError::io(path, e))?;
    Ok(patched)
}

/// The text of a domains file with its router's encoder set (see [`write_encoder`]).
pub fn with_encoder(text: &str, origin: &str, encoder: &str) -> Result<(String, bool)> {
    let mut file = DomainsFile::parse(text, origin)?;
    file.router.encoder = Some(encoder.to_string());
    let quoted = serde_json::to_string(encoder).unwrap_or_default();
    let existing = regex::Regex::new(r#"\bencoder\s*:\s*(Some\()?"(?:[^"\\]|\\.)*"\)?"#)
        .expect("a valid pattern");
    let router = regex::Regex::new(r"\brouter\s*:\s*\(").expect("a valid pattern");
    let candidates = [
        (existing.find_iter(text).count() == 1).then(|| {
            existing
                .replace(text, format!("encoder: {quoted}").as_str())
                .into_owned()
        }),
        (router.find_iter(text).count() == 1).then(|| {
            router
                .replace(
                    text,
                    format!("router: (\n        encoder: {quoted},").as_str(),
                )
                .into_owned()
        }),
    ];
    // Keep a patch only if it reads back as exactly the intended file.
    for patched in candidates.into_iter().flatten() {
        if DomainsFile::parse(&patched, origin).ok().as_ref() == Some(&file) {
            return Ok((patched, true));
        }
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

    /// The fit as it was: every pair of candidate thresholds evaluated in full.
    fn fit_by_every_pair(domains: &[&str], scored: &[ScoredQuery]) -> Thresholds {
        let evaluate = |t: Thresholds| {
            let pairs: Vec<_> = scored
                .iter()
                .map(|q| {
                    let predicted = t.accepts(q.score, q.confidence).then_some(q.best.as_str());
                    (q.expected.as_deref(), predicted)
                })
                .collect();
            report(domains, &pairs, &[], t)
        };
        let floor = scored.iter().map(|q| q.score).fold(0.0f32, f32::min) - 1e-3;
        let scores = candidates(scored.iter().map(|q| q.score).collect(), floor);
        let confidences = candidates(scored.iter().map(|q| q.confidence).collect(), 0.0);
        let mut best: Option<(f64, f64, f32, Vec<f32>)> = None;
        for &c in confidences.iter().filter(|&&c| c <= 1.0) {
            for &s in &scores {
                let r = evaluate(Thresholds {
                    min_score: s,
                    min_confidence: c,
                });
                match &mut best {
                    Some((f1, acc, _, _)) if (r.macro_f1, r.accuracy) < (*f1 - 1e-12, *acc) => {}
                    Some((f1, acc, bc, tied))
                        if (r.macro_f1 - *f1).abs() <= 1e-12
                            && (r.accuracy - *acc).abs() <= 1e-12 =>
                    {
                        if *bc == c {
                            tied.push(s);
                        }
                    }
                    _ => best = Some((r.macro_f1, r.accuracy, c, vec![s])),
                }
            }
        }
        let (_, _, c, tied) = best.unwrap();
        Thresholds {
            min_score: round4(tied[tied.len() / 2]),
            min_confidence: round4(c),
        }
    }

    #[test]
    fn the_sweep_chooses_what_trying_every_pair_chooses() {
        use rand::{Rng, SeedableRng};
        // Seeded: the same data on every run.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x2545_f491);
        let mut next = move || rng.random::<f32>();
        let domains = ["a", "b", "c"];
        for round in 0..12 {
            let n = 20 + round * 7;
            let scored: Vec<ScoredQuery> = (0..n)
                .map(|_| {
                    let expected = match (next() * 4.0) as usize {
                        0 => None,
                        i => Some(domains[i - 1]),
                    };
                    // In-domain queries score and agree more, as real ones do;
                    // scores are coarse so that ties occur.
                    let lift = if expected.is_some() { 0.2 } else { 0.0 };
                    let best = if next() < 0.8 {
                        expected.unwrap_or("a")
                    } else {
                        domains[(next() * 3.0) as usize % 3]
                    };
                    let score = ((next() * 0.6 + lift) * 20.0).round() / 20.0;
                    let confidence = ((next() * 0.7 + lift) * 10.0).round() / 10.0;
                    q(expected, best, score, confidence)
                })
                .collect();
            let swept = fit_scores(&domains, &scored, Thresholds::NEVER_ABSTAIN).thresholds;
            assert_eq!(swept, fit_by_every_pair(&domains, &scored), "round {round}");
        }
    }

    #[test]
    fn calibration_compares_confidence_with_accuracy_per_bin() {
        // Perfectly calibrated: 0.95 right 19 times in 20... approximately.
        let mut outcomes: Vec<(f32, bool)> = (0..20).map(|i| (0.95, i != 0)).collect();
        // Overconfident: 0.85 and right only half the time.
        outcomes.extend((0..10).map(|i| (0.85, i % 2 == 0)));
        let c = calibration(&outcomes);
        assert_eq!(c.bins.len(), 2);
        assert_eq!((c.bins[0].count, c.bins[1].count), (10, 20));
        assert!((c.bins[0].accuracy - 0.5).abs() < 1e-12);
        let expected = 10.0 / 30.0 * (0.85f64 - 0.5) + 20.0 / 30.0 * 0.0;
        assert!((c.ece - expected).abs() < 1e-6, "{}", c.ece);
        // Confidence 1 falls in the last bin.
        assert_eq!(calibration(&[(1.0, true)]).bins[0].upper, 1.0);
        assert_eq!(calibration(&[]).ece, 0.0);
    }

    #[test]
    fn many_confidence_candidates_are_thinned_to_quantiles() {
        let sorted: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let thinned = thin(sorted, 256);
        assert_eq!(thinned.len(), 256);
        assert_eq!((thinned[0], thinned[255]), (0.0, 999.0));
        assert!(thinned.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(thin(vec![0.0, 0.5], 256), [0.0, 0.5]);
    }

    #[test]
    fn a_domain_whose_scores_sit_lower_gets_its_own_threshold() {
        // b's in-domain queries score below a's out-of-domain ones: no single
        // threshold separates both.
        let scored = [
            q(Some("a"), "a", 0.70, 0.9),
            q(Some("a"), "a", 0.60, 0.9),
            q(None, "a", 0.40, 0.9),
            q(None, "a", 0.45, 0.9),
            q(Some("b"), "b", 0.35, 0.9),
            q(Some("b"), "b", 0.38, 0.9),
            q(None, "b", 0.20, 0.9),
            q(None, "b", 0.15, 0.9),
        ];
        let shared = fit_scores(&["a", "b"], &scored, Thresholds::NEVER_ABSTAIN);
        assert!(shared.accuracy < 1.0, "{shared}");
        let own = fit_per_domain(&["a", "b"], &scored, shared.clone());
        assert_eq!(own.accuracy, 1.0, "{own}");
        assert!(!own.per_domain.is_empty(), "{own}");
        let decide = |q: &ScoredQuery| {
            let mut t = own.thresholds;
            if let Some(o) = own.per_domain.iter().find(|o| o.domain == q.best) {
                t.min_score = o.min_score;
            }
            t.accepts(q.score, q.confidence)
        };
        assert!(
            scored.iter().all(|q| decide(q) == q.expected.is_some()),
            "{own}"
        );
        // Where one threshold already separates everything, none is added.
        let easy = [
            q(Some("a"), "a", 0.7, 0.9),
            q(None, "a", 0.2, 0.9),
            q(Some("b"), "b", 0.6, 0.9),
        ];
        let shared = fit_scores(&["a", "b"], &easy, Thresholds::NEVER_ABSTAIN);
        assert!(
            fit_per_domain(&["a", "b"], &easy, shared)
                .per_domain
                .is_empty()
        );
    }

    #[test]
    fn per_domain_thresholds_are_written_marked_and_replaced() {
        let text = "// keep\n(\n    domains: [\n        (\n            id: \"a\",\n            name: \"A\", // and me\n            examples: [\"x\"],\n        ),\n        (\n            id: \"b\",\n            name: \"B\",\n            examples: [\"y\"],\n        ),\n    ],\n)\n";
        let own = [DomainMinScore {
            domain: "b".into(),
            min_score: 0.275,
        }];
        let (out, patched) = with_domain_min_scores(text, "f.ron", &own).unwrap();
        assert!(patched && out.contains("// and me"), "{out}");
        let file = DomainsFile::parse(&out, "f.ron").unwrap();
        assert_eq!(
            (file.domains[0].min_score, file.domains[1].min_score),
            (None, Some(0.275))
        );
        // A new fit replaces it; a fit with none clears it.
        let own = [DomainMinScore {
            domain: "a".into(),
            min_score: 0.5,
        }];
        let (out, _) = with_domain_min_scores(&out, "f.ron", &own).unwrap();
        let file = DomainsFile::parse(&out, "f.ron").unwrap();
        assert_eq!(
            (file.domains[0].min_score, file.domains[1].min_score),
            (Some(0.5), None)
        );
        let (out, patched) = with_domain_min_scores(&out, "f.ron", &[]).unwrap();
        assert!(patched && !out.contains("min_score"), "{out}");
    }

    #[test]
    fn the_encoder_is_set_in_place_keeping_comments() {
        let with_router = "// keep\n(\n    router: (min_score: 0.3), // me\n    domains: [(id: \"a\", name: \"A\", examples: [\"x\"])],\n)\n";
        let (out, patched) = with_encoder(with_router, "f.ron", "/m/tuned").unwrap();
        assert!(patched && out.contains("// me"), "{out}");
        let file = DomainsFile::parse(&out, "f.ron").unwrap();
        assert_eq!(file.router.encoder.as_deref(), Some("/m/tuned"));
        assert_eq!(file.router.min_score, 0.3);
        // Set again: the value is replaced, not added.
        let (again, patched) = with_encoder(&out, "f.ron", "/m/other").unwrap();
        assert!(patched && !again.contains("/m/tuned"), "{again}");
        // No router section: re-serialised.
        let bare = "(domains: [(id: \"a\", name: \"A\", examples: [\"x\"])])";
        let (out, patched) = with_encoder(bare, "f.ron", "/m/tuned").unwrap();
        assert!(!patched);
        let file = DomainsFile::parse(&out, "f.ron").unwrap();
        assert_eq!(file.router.encoder.as_deref(), Some("/m/tuned"));
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
