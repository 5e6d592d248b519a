//! The figures the report is about, derived from one run's raw results: what
//! each bench id means, the physical limits, and the targets.

use serde_json::Value;

use super::Results;
use super::criterion::{Measurement, Throughput};

/// The router's encoder (MiniLM-L6): layers, hidden size, feed-forward size.
/// Its FLOPs per token bound routing latency from below.
const MINILM: (f64, f64, f64) = (6.0, 384.0, 1536.0);

/// The decoder formats the decoder bench runs: (bench name, label).
pub(crate) const FORMATS: [(&str, &str); 4] = [
    ("stored_q4_1", "Q4_1 (GGUF as stored)"),
    ("int8", "int8 (Q8_0)"),
    ("f16", "f16"),
    ("f32", "f32"),
];

/// Median, min and max of one measurement, in seconds (or per-unit seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stat {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Stat {
    fn of(m: &Measurement) -> Self {
        Stat {
            median: m.median(),
            min: m.min(),
            max: m.max(),
        }
    }
    /// A reference's `{"median", "min", "max"}` in milliseconds.
    fn from_ms(value: &Value) -> Option<Self> {
        Some(Stat {
            median: value["median"].as_f64()? / 1e3,
            min: value["min"].as_f64()? / 1e3,
            max: value["max"].as_f64()? / 1e3,
        })
    }
    /// Per-second rate (e.g. tokens/s from seconds per token): median, and the
    /// range reversed (the slowest sample is the lowest rate).
    pub(crate) fn rate(&self, per: f64) -> Stat {
        Stat {
            median: per / self.median,
            min: per / self.max,
            max: per / self.min,
        }
    }
}

/// One decoder weight format.
#[derive(Debug, Clone)]
pub(crate) struct Format {
    pub(crate) name: &'static str,
    pub(crate) label: &'static str,
    pub(crate) resident_bytes: Option<f64>,
    pub(crate) kernel: Option<String>,
    /// Seconds per decode step (one token, warm cache, position 64).
    pub(crate) decode: Option<Stat>,
    /// Seconds per prefill of the chat prompt, and its token count.
    pub(crate) prefill: Option<(Stat, u64)>,
    pub(crate) time_to_first_token: Option<Stat>,
    pub(crate) cold_load: Option<Stat>,
}

impl Format {
    /// Bandwidth / weight bytes: the decode rate if every step only streamed
    /// the weights once from memory at the measured read bandwidth.
    pub(crate) fn ceiling_tok_s(&self, bandwidth: Option<f64>) -> Option<f64> {
        Some(bandwidth? / self.resident_bytes?)
    }
}

/// A reference engine's generation figures.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    pub(crate) name: String,
    pub(crate) decode_tok_s: Option<Stat>,
    pub(crate) prefill_tok_s: Option<f64>,
    pub(crate) time_to_first_token: Option<Stat>,
    pub(crate) cold_load: Option<Stat>,
    pub(crate) rss_bytes: Option<f64>,
}

impl Engine {
    fn from(value: &Value) -> Self {
        let decode = value["decode_tok_s"].as_f64().map(|median| Stat {
            median,
            min: value["decode_tok_s_min"].as_f64().unwrap_or(median),
            max: value["decode_tok_s_max"].as_f64().unwrap_or(median),
        });
        Engine {
            name: value["engine"].as_str().unwrap_or("?").to_owned(),
            decode_tok_s: decode,
            prefill_tok_s: value["prefill_tok_s"].as_f64(),
            time_to_first_token: Stat::from_ms(&value["time_to_first_token_ms"]),
            cold_load: Stat::from_ms(&value["cold_load_ms"]),
            rss_bytes: value["rss_bytes"].as_f64(),
        }
    }
}

impl Target {
    /// How much it misses by: a percentage when close, else a factor.
    pub(crate) fn shortfall(&self) -> String {
        match self.factor {
            Some(f) if f < 1.5 => format!("{:.0} %", (f - 1.0) * 100.0),
            Some(f) => format!("{f:.1}×"),
            None => "?".to_owned(),
        }
    }
}

/// One of the performance targets.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) goal: &'static str,
    pub(crate) measured: String,
    /// `None` when a figure it needs was not measured in this run.
    pub(crate) met: Option<bool>,
    /// How far the measurement is from the goal, as a factor ≥ 1 (measured ÷
    /// goal for an upper bound, goal ÷ measured for a lower one).
    pub(crate) factor: Option<f64>,
    pub(crate) limit: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Figures {
    /// Memory read bandwidth, bytes/s.
    pub(crate) bandwidth: Option<f64>,
    /// The best f32 GEMM rate the quant bench measured, FLOP/s.
    pub(crate) f32_flops: Option<f64>,
    /// Tokens in the routing query, and its seconds per batch-1 encode.
    pub(crate) query_tokens: Option<u64>,
    pub(crate) encode_batch1: Option<Stat>,
    /// Seconds per batch of 32 texts.
    pub(crate) encode_batch32: Option<Stat>,
    /// The short query with f32 (default), f16 and int8 weights: (format,
    /// seconds per query, resident bytes).
    pub(crate) encoder_formats: Vec<(&'static str, Option<Stat>, Option<f64>)>,
    /// A whole routing decision through the facade (encode + scoring).
    pub(crate) route: Option<Stat>,
    pub(crate) overhead: Option<Stat>,
    /// The overhead split: routing, executing, the rest of the request.
    pub(crate) overhead_parts: [Option<Stat>; 3],
    pub(crate) manager_cold_load: Option<Stat>,
    pub(crate) swap: Option<Stat>,
    pub(crate) formats: Vec<Format>,
    /// sentence-transformers and plain transformers, batch 1 and 32 (seconds).
    pub(crate) st_batch1: Option<Stat>,
    pub(crate) st_batch32: Option<Stat>,
    pub(crate) tf_batch1: Option<Stat>,
    pub(crate) tf_batch32: Option<Stat>,
    pub(crate) encoder_engine: Option<String>,
    pub(crate) llamacpp: Option<Engine>,
    pub(crate) transformers: Option<Engine>,
}

impl Figures {
    pub(crate) fn from(results: &Results) -> Self {
        let get = |id: &str| results.criterion.get(id);
        let stat = |id: &str| get(id).map(Stat::of);
        let bandwidth = results
            .criterion
            .values()
            .find(|m| m.id.starts_with("memory/read_"))
            .and_then(|m| match m.throughput {
                Some(Throughput::Bytes(bytes)) => Some(bytes as f64 / m.median()),
                _ => None,
            });
        let batch1 = results
            .criterion
            .values()
            .find(|m| m.id.starts_with("encoder/minilm/query_batch1_"));
        let query_tokens =
            batch1.and_then(|m| m.id.rsplit('_').next()?.strip_suffix("tok")?.parse().ok());
        let formats = FORMATS
            .iter()
            .map(|&(name, label)| {
                let id = |part: &str| format!("decoder/smollm2/{name}/{part}");
                let extra = results.extra.get(&id("resident_bytes"));
                let prefill = results
                    .criterion
                    .values()
                    .find(|m| m.id.starts_with(&id("prefill_")))
                    .and_then(|m| match m.throughput {
                        Some(Throughput::Elements(n)) => Some((Stat::of(m), n)),
                        _ => None,
                    });
                Format {
                    name,
                    label,
                    resident_bytes: extra.and_then(|e| e["value"].as_f64()),
                    kernel: extra.and_then(|e| e["kernel"].as_str().map(str::to_owned)),
                    decode: stat(&id("decode_step_at_64")),
                    prefill,
                    time_to_first_token: stat(&id("time_to_first_token")),
                    cold_load: stat(&id("cold_load")),
                }
            })
            .collect();
        let encoder = results
            .references
            .get("encoder")
            .and_then(|r| r.as_ref().ok());
        let engine = |name: &str| {
            results
                .references
                .get(name)
                .and_then(|r| r.as_ref().ok())
                .map(Engine::from)
        };
        let encoder_formats = ["f32", "f16", "int8"]
            .into_iter()
            .map(|name| {
                let timing = if name == "f32" {
                    batch1.map(Stat::of)
                } else {
                    stat(&format!("encoder/minilm/{name}/query_batch1"))
                };
                let resident = results
                    .extra
                    .get(&format!("encoder/minilm/{name}/resident_bytes"))
                    .and_then(|e| e["value"].as_f64());
                (name, timing, resident)
            })
            .collect();
        Figures {
            bandwidth,
            encoder_formats,
            f32_flops: best_f32_flops(results),
            query_tokens,
            encode_batch1: batch1.map(Stat::of),
            encode_batch32: stat("encoder/minilm/batch32"),
            route: stat("orchestrator/route"),
            overhead: stat("orchestrator/overhead_per_query"),
            overhead_parts: [
                stat("orchestrator/overhead/route"),
                stat("orchestrator/overhead/execute"),
                stat("orchestrator/overhead/rest"),
            ],
            manager_cold_load: stat("manager/cold_load_smollm2"),
            swap: stat("manager/swap_evict_and_load"),
            formats,
            st_batch1: encoder.and_then(|e| Stat::from_ms(&e["st_batch1_ms"])),
            st_batch32: encoder.and_then(|e| Stat::from_ms(&e["st_batch32_ms"])),
            tf_batch1: encoder.and_then(|e| Stat::from_ms(&e["transformers_batch1_ms"])),
            tf_batch32: encoder.and_then(|e| Stat::from_ms(&e["transformers_batch32_ms"])),
            encoder_engine: encoder.and_then(|e| e["engine"].as_str().map(str::to_owned)),
            llamacpp: engine("llamacpp"),
            transformers: engine("transformers"),
        }
    }

    pub(crate) fn format(&self, name: &str) -> Option<&Format> {
        self.formats.iter().find(|f| f.name == name)
    }

    /// FLOPs of one MiniLM forward pass over the routing query.
    pub(crate) fn encoder_flops(&self) -> Option<f64> {
        let tokens = self.query_tokens? as f64;
        let (layers, h, ffn) = MINILM;
        // Four h×h projections and two h×ffn matmuls per token and layer,
        // plus attention scores and their weighted sum (2·tokens² · h).
        let per_layer = 2.0 * tokens * (4.0 * h * h + 2.0 * h * ffn) + 4.0 * tokens * tokens * h;
        Some(layers * per_layer)
    }

    pub(crate) fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        let compute_floor = self
            .encoder_flops()
            .zip(self.f32_flops)
            .map(|(flops, rate)| flops / rate);
        let routing_limit = match compute_floor {
            Some(floor) => format!(
                "the query's {:.0} MFLOP at the best f32 GEMM rate measured here ({:.0} GFLOP/s) take {} on their own; the rest is per-op overhead in burn-flex (allocations, small matmuls, layer norms)",
                self.encoder_flops().unwrap_or(0.0) / 1e6,
                self.f32_flops.unwrap_or(0.0) / 1e9,
                ms(floor)
            ),
            None => "compute floor not measured (run the quant bench)".to_owned(),
        };
        let route = self.route.or(self.encode_batch1);
        targets.push(Target {
            goal: "routing p50 ≤ 3 ms (short query, CPU)",
            measured: route.map_or_else(|| "not measured".to_owned(), |r| ms(r.median)),
            met: route.map(|r| r.median <= 3e-3),
            factor: route.map(|r| r.median / 3e-3),
            limit: routing_limit,
        });
        let st_ratio = self
            .st_batch1
            .zip(self.encode_batch1)
            .map(|(st, ours)| st.median / ours.median);
        targets.push(Target {
            goal: "routing ≥ 3× faster than sentence-transformers",
            measured: st_ratio.map_or_else(
                || "not compared (run with --compare)".to_owned(),
                |r| format!("{r:.2}×"),
            ),
            met: st_ratio.map(|r| r >= 3.0),
            factor: st_ratio.map(|r| 3.0 / r),
            limit: "same model, query and cores; the encoder's time is mostly f32 matmuls on 14-row inputs, where burn-flex runs the smaller ones on one thread".to_owned(),
        });
        let q4 = self.format("stored_q4_1");
        let ours = q4.and_then(|f| f.decode).map(|d| d.rate(1.0));
        let llama = self.llamacpp.as_ref().and_then(|e| e.decode_tok_s);
        let parity = ours.zip(llama).map(|(o, l)| o.median / l.median);
        let ceiling = q4.and_then(|f| f.ceiling_tok_s(self.bandwidth));
        targets.push(Target {
            goal: "SmolLM2 Q4_1 decode at parity with llama.cpp",
            measured: match (ours, parity) {
                (Some(o), Some(p)) => format!(
                    "{:.1} tok/s, {p:.2}× llama.cpp ({:.1} tok/s)",
                    o.median,
                    llama.map_or(0.0, |l| l.median)
                ),
                (Some(o), None) => format!("{:.1} tok/s (llama.cpp not compared)", o.median),
                _ => "not measured".to_owned(),
            },
            met: parity.map(|p| p >= 0.95),
            factor: parity.map(|p| 1.0 / p),
            limit: match (ceiling, ours) {
                (Some(c), Some(o)) => format!(
                    "memory bandwidth caps this format at {c:.0} tok/s; mdsa reaches {:.0} %{}. A step of a 135M model is short: the fixed per-op costs around the matmuls (norms, RoPE, attention, thread hand-offs, tensor conversions) weigh as much as streaming the weights",
                    100.0 * o.median / c,
                    llama.map_or_else(String::new, |l| format!(", llama.cpp {:.0} % on the same file", 100.0 * l.median / c))
                ),
                _ => "bandwidth ceiling not measured".to_owned(),
            },
        });
        let load = self.manager_cold_load.or(q4.and_then(|f| f.cold_load));
        targets.push(Target {
            goal: "SmolLM2 cold load < 0.3 s",
            measured: load.map_or_else(|| "not measured".to_owned(), |l| ms(l.median)),
            met: load.map(|l| l.median < 0.3),
            factor: load.map(|l| l.median / 0.3),
            limit: "reading the GGUF (memory-mapped, blocks kept as stored) and building the tokenizer from its metadata"
                .to_owned(),
        });
        targets.push(Target {
            goal: "orchestration overhead < 50 µs per request",
            measured: self
                .overhead
                .map_or_else(|| "not measured".to_owned(), |o| us(o.median)),
            met: self.overhead.map(|o| o.median < 50e-6),
            factor: self.overhead.map(|o| o.median / 50e-6),
            limit: {
                let mut limit = "everything but model compute: scoring the domains, rendering the prompt (minijinja), validating the answer, the workflow's bus events, logging and metrics".to_owned();
                if let [Some(route), Some(execute), Some(rest)] = self.overhead_parts {
                    limit.push_str(&format!(
                        "; measured split: routing beyond the encoder {}, executing beyond the generator {}, the rest {}",
                        us(route.median),
                        us(execute.median),
                        us(rest.median)
                    ));
                }
                limit
            },
        });
        targets
    }

    /// One line per target, for the terminal.
    pub(crate) fn target_lines(&self) -> Vec<String> {
        self.targets()
            .iter()
            .map(|t| {
                let verdict = match t.met {
                    Some(true) => "met".to_owned(),
                    Some(false) => format!("MISSED by {}", t.shortfall()),
                    None => "not measured".to_owned(),
                };
                format!("{}: {} ({verdict})", t.goal, t.measured)
            })
            .collect()
    }
}

/// The best f32 GEMM rate among the quant bench's `f32 (gemm)` cases, from
/// their shapes (`quant IN->OUT n=N/f32 (gemm)`).
fn best_f32_flops(results: &Results) -> Option<f64> {
    results
        .criterion
        .values()
        .filter_map(|m| {
            let rest = m.id.strip_prefix("quant ")?;
            let (case, kernel) = rest.split_once('/')?;
            if !kernel.starts_with("f32") {
                return None;
            }
            let (shape, n) = case.split_once(" n=")?;
            let (d_in, d_out) = shape.split_once("->")?;
            let d_out = d_out.split_whitespace().next()?;
            let flops = 2.0
                * d_in.parse::<f64>().ok()?
                * d_out.parse::<f64>().ok()?
                * n.parse::<f64>().ok()?;
            Some(flops / m.median())
        })
        .max_by(f64::total_cmp)
}

pub(crate) fn ms(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else if seconds >= 0.01 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{:.2} ms", seconds * 1e3)
    }
}

pub(crate) fn us(seconds: f64) -> String {
    format!("{:.1} µs", seconds * 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn measurement(id: &str, samples: &[f64], throughput: Option<Throughput>) -> Measurement {
        Measurement {
            id: id.to_owned(),
            samples: samples.to_vec(),
            throughput,
        }
    }

    #[test]
    fn derives_limits_and_verdicts_from_raw_results() {
        let mut results = Results::default();
        let mut add = |m: Measurement| {
            results.criterion.insert(m.id.clone(), m);
        };
        add(measurement(
            "memory/read_2_threads",
            &[0.04, 0.05, 0.06],
            Some(Throughput::Bytes(1_000_000_000)),
        ));
        add(measurement(
            "decoder/smollm2/stored_q4_1/decode_step_at_64",
            &[0.010, 0.0125, 0.02],
            None,
        ));
        add(measurement(
            "quant 576->1536 n=64/f32 (gemm)",
            &[0.001],
            None,
        ));
        add(measurement(
            "encoder/minilm/query_batch1_14tok",
            &[0.004],
            None,
        ));
        add(measurement(
            "orchestrator/overhead_per_query",
            &[40e-6],
            None,
        ));
        results.extra.insert(
            "decoder/smollm2/stored_q4_1/resident_bytes".into(),
            serde_json::json!({"value": 100_000_000.0, "kernel": "avx"}),
        );
        results.references = BTreeMap::from([
            (
                "llamacpp".to_owned(),
                Ok(serde_json::json!({"engine": "llama.cpp", "decode_tok_s": 100.0})),
            ),
            ("encoder".to_owned(), Err("not installed".to_owned())),
        ]);
        let f = Figures::from(&results);
        // 1 GB in 50 ms.
        assert_eq!(f.bandwidth, Some(20e9));
        let q4 = f.format("stored_q4_1").expect("format");
        assert_eq!(q4.ceiling_tok_s(f.bandwidth), Some(200.0));
        assert_eq!(q4.kernel.as_deref(), Some("avx"));
        assert_eq!(f.query_tokens, Some(14));
        // 2 · 576 · 1536 · 64 FLOP in 1 ms.
        assert_eq!(f.f32_flops, Some(2.0 * 576.0 * 1536.0 * 64.0 / 0.001));

        let targets = f.targets();
        assert_eq!(targets[0].met, Some(false), "4 ms routing misses 3 ms");
        assert_eq!(targets[1].met, None, "sentence-transformers was not run");
        assert_eq!(targets[2].met, Some(false), "80 tok/s is 0.8× llama.cpp");
        assert!(
            targets[2].measured.contains("0.80×"),
            "{}",
            targets[2].measured
        );
        assert!(
            targets[2].limit.contains("200 tok/s"),
            "{}",
            targets[2].limit
        );
        assert_eq!(targets[2].shortfall(), "25 %");
        assert_eq!(targets[0].shortfall(), "33 %");
        assert_eq!(targets[3].met, None);
        assert_eq!(targets[3].shortfall(), "?");
        assert_eq!(targets[4].met, Some(true));
    }

    #[test]
    fn rates_reverse_the_range() {
        let s = Stat {
            median: 0.01,
            min: 0.005,
            max: 0.02,
        };
        let r = s.rate(1.0);
        assert_eq!((r.median, r.min, r.max), (100.0, 50.0, 200.0));
    }
}
