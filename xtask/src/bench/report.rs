//! `docs/benchmarks.md`: the run's context, the targets with verdicts, each
//! area's figures with the references beside them, the plots, and every
//! criterion figure.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::Results;
use super::criterion::Throughput;
use super::figures::{Figures, Stat, ms, us};
use super::plots::Plot;

/// The whole report.
pub(crate) fn render(results: &Results, f: &Figures, plots: &[Plot], out: &Path) -> String {
    let mut md = String::new();
    let c = &results.context;
    let get = |key: &str| c.get(key).map_or("?", String::as_str);
    md.push_str("# Benchmarks\n\n");
    let _ = writeln!(
        md,
        "Written by `{}` on {} (commit {}, {} in all). Regenerate with `cargo xtask bench --compare` \
         after `bash scripts/reference/install.sh`; see `cargo xtask bench --help`.\n",
        get("command"),
        get("date"),
        get("commit"),
        get("duration"),
    );
    md.push_str(
        "Every figure is the median of criterion's samples with the min–max range; each sample \
         is the mean of many iterations. References ran in the same run on the same machine, \
         and comparisons are ratios, so they hold better than absolute times on a shared machine.\n\n",
    );
    md.push_str("## Machine\n\n| | |\n|---|---|\n");
    for key in ["cpu", "cores", "simd", "memory", "os", "gpu", "load_before"] {
        if let Some(value) = c.get(key) {
            let name = if key == "load_before" {
                "load average before the run"
            } else {
                key
            };
            let _ = writeln!(md, "| {name} | {value} |");
        }
    }
    if let Some(bw) = f.bandwidth {
        let _ = writeln!(
            md,
            "| memory read bandwidth | {:.1} GB/s (`memory` bench, all cores) |",
            bw / 1e9
        );
    }
    if let Some(flops) = f.f32_flops {
        let _ = writeln!(
            md,
            "| best f32 GEMM | {:.0} GFLOP/s (`quant` bench, model shapes) |",
            flops / 1e9
        );
    }
    if let Some(kernel) = f.formats.iter().find_map(|x| x.kernel.as_deref()) {
        let _ = writeln!(md, "| quantized kernel chosen at run time | {kernel} |");
    }
    md.push('\n');

    md.push_str(
        "## Targets\n\n| target | measured | verdict | what limits it |\n|---|---|---|---|\n",
    );
    for t in f.targets() {
        let verdict = match t.met {
            Some(true) => "met".to_owned(),
            Some(false) => format!("**missed** by {}", t.shortfall()),
            None => "not measured".to_owned(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {verdict} | {} |",
            t.goal, t.measured, t.limit
        );
    }
    md.push('\n');

    routing_section(&mut md, f);
    generation_section(&mut md, f);
    server_section(&mut md, results.server.as_ref());
    references_section(&mut md, results);

    if !plots.is_empty() {
        md.push_str("## Plots\n\n");
        for plot in plots {
            let relative = plot
                .file
                .strip_prefix(out)
                .unwrap_or(&plot.file)
                .to_string_lossy()
                .replace('\\', "/");
            let _ = writeln!(md, "![{}]({relative})\n", plot.title);
        }
    }

    md.push_str("## Every criterion figure\n\n");
    md.push_str("| benchmark | median | min – max | throughput |\n|---|---:|---:|---:|\n");
    for m in results.criterion.values() {
        let rate = match m.throughput {
            Some(Throughput::Elements(n)) => format!("{:.1} /s", n as f64 / m.median()),
            Some(Throughput::Bytes(n)) => format!("{:.2} GB/s", n as f64 / m.median() / 1e9),
            None => String::new(),
        };
        let _ = writeln!(
            md,
            "| `{}` | {} | {} – {} | {rate} |",
            m.id,
            time(m.median()),
            time(m.min()),
            time(m.max())
        );
    }
    md
}

fn time(seconds: f64) -> String {
    if seconds < 1e-3 {
        us(seconds)
    } else {
        ms(seconds)
    }
}

fn range(s: Stat) -> String {
    format!("{} ({} – {})", time(s.median), time(s.min), time(s.max))
}

fn ratio(reference: Option<Stat>, ours: Option<Stat>) -> String {
    match (reference, ours) {
        (Some(r), Some(o)) => format!("{:.2}×", r.median / o.median),
        _ => "–".to_owned(),
    }
}

fn routing_section(md: &mut String, f: &Figures) {
    md.push_str("## Routing\n\n");
    let tokens = f
        .query_tokens
        .map_or_else(String::new, |t| format!(" ({t} tokens)"));
    let _ = writeln!(
        md,
        "MiniLM-L6 on one short query{tokens} and on a batch of 32, with f32 weights and with int8 \
         weights (the router's default: mdsa's Q8_0 blocks; ONNX Runtime's dynamic quantization, \
         whose embeddings reach a cosine of {} to its f32 model's). Speed-up is the reference's \
         time divided by mdsa's (above 1: mdsa is faster).\n",
        f.ort_int8_min_cosine
            .map_or_else(|| "–".to_owned(), |c| format!("{c:.4}"))
    );
    md.push_str("| workload | mdsa | ONNX Runtime | speed-up | sentence-transformers | speed-up | transformers | speed-up |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let cell = |s: Option<Stat>| s.map_or_else(|| "–".to_owned(), range);
    for (workload, ours, ort, st, tf) in [
        (
            "batch 1",
            f.encode_batch1,
            f.ort_batch1,
            f.st_batch1,
            f.tf_batch1,
        ),
        (
            "batch 32",
            f.encode_batch32,
            f.ort_batch32,
            f.st_batch32,
            f.tf_batch32,
        ),
        // The router's default weights; ONNX Runtime's column is then its
        // int8 quantization, the other references have none.
        (
            "batch 1, int8",
            f.encoder_format("int8"),
            f.ort_int8_batch1,
            f.st_batch1,
            f.tf_batch1,
        ),
        (
            "batch 32, int8",
            f.encode_int8_batch32,
            f.ort_int8_batch32,
            f.st_batch32,
            f.tf_batch32,
        ),
    ] {
        // The int8 rows only where int8 was measured.
        if workload.ends_with("int8") && ours.is_none() && ort.is_none() {
            continue;
        }
        let _ = writeln!(
            md,
            "| {workload} | {} | {} | {} | {} | {} | {} | {} |",
            cell(ours),
            cell(ort),
            ratio(ort, ours),
            cell(st),
            ratio(st, ours),
            cell(tf),
            ratio(tf, ours)
        );
    }
    if f.encoder_formats.iter().any(|(_, t, _)| t.is_some()) {
        md.push_str("\nThe short query by the encoder's weight format (`EmbedderOptions::format`; the router's default is int8, the table above f32):\n\n| format | resident | batch 1 |\n|---|---:|---:|\n");
        for (name, timing, resident) in &f.encoder_formats {
            let _ = writeln!(
                md,
                "| {name} | {} | {} |",
                resident.map_or_else(|| "–".to_owned(), |b| format!("{:.1} MiB", b / 1048576.0)),
                timing.map_or_else(|| "–".to_owned(), range),
            );
        }
    }
    if let Some(route) = f.route {
        let _ = writeln!(
            md,
            "\nA whole routing decision through the facade (`Mdsa::route`: encode and score the \
             domains): {}.",
            range(route)
        );
    }
    let engines: Vec<&str> = [&f.ort_engine, &f.encoder_engine]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if !engines.is_empty() {
        let _ = writeln!(md, "\nReferences: {}.", engines.join("; "));
    }
    md.push('\n');
}

fn generation_section(md: &mut String, f: &Figures) {
    md.push_str("## Generation\n\n");
    md.push_str(
        "SmolLM2-135M-Instruct from its Q4_1 GGUF, in each weight format mdsa offers. Decode is \
         one step at position 64 with a warm KV cache; the ceiling is the measured memory read \
         bandwidth divided by the bytes of weights a step reads (the resident weights: every \
         matrix once, the tied embedding as the output head).\n\n",
    );
    md.push_str("| engine / format | resident | decode tok/s | ceiling tok/s | of ceiling | prefill tok/s | time to first token | cold load |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let mib =
        |b: Option<f64>| b.map_or_else(|| "–".to_owned(), |b| format!("{:.0} MiB", b / 1048576.0));
    for format in &f.formats {
        if format.decode.is_none() && format.resident_bytes.is_none() {
            continue;
        }
        generation_row(
            md,
            &GenerationRow {
                name: format!("mdsa {}", format.label),
                resident: mib(format.resident_bytes),
                decode: format.decode.map(|d| d.rate(1.0)),
                ceiling: format.ceiling_tok_s(f.bandwidth),
                prefill: format.prefill.map(|(p, n)| n as f64 / p.median),
                time_to_first_token: format.time_to_first_token,
                cold_load: format.cold_load,
            },
        );
    }
    for engine in [&f.llamacpp, &f.transformers].into_iter().flatten() {
        // llama.cpp reads the Q4_1 blocks; transformers dequantizes to f32.
        let format = if engine.name.starts_with("llama.cpp") {
            "stored_q4_1"
        } else {
            "f32"
        };
        generation_row(
            md,
            &GenerationRow {
                name: engine.name.clone(),
                resident: format!("{} (RSS)", mib(engine.rss_bytes)),
                decode: engine.decode_tok_s,
                ceiling: f.format(format).and_then(|q| q.ceiling_tok_s(f.bandwidth)),
                prefill: engine.prefill_tok_s,
                time_to_first_token: engine.time_to_first_token,
                cold_load: engine.cold_load,
            },
        );
    }
    md.push('\n');
    if let Some(load) = f.manager_cold_load {
        let _ = write!(
            md,
            "Through the model manager: cold load of SmolLM2 {}",
            range(load)
        );
        if let Some(swap) = f.swap {
            let _ = write!(md, "; evict one model and load the other {}", range(swap));
        }
        md.push_str(".\n");
    }
    if let Some(overhead) = f.overhead {
        let _ = writeln!(
            md,
            "Orchestration overhead per routed query (everything but model compute, measured \
             inside real queries): {}.",
            range(overhead)
        );
    }
    md.push('\n');
}

/// One line of the generation table, for mdsa's formats and the references alike.
struct GenerationRow {
    name: String,
    resident: String,
    /// Tokens per second.
    decode: Option<Stat>,
    ceiling: Option<f64>,
    /// Prefill tokens per second.
    prefill: Option<f64>,
    time_to_first_token: Option<Stat>,
    cold_load: Option<Stat>,
}

fn generation_row(md: &mut String, row: &GenerationRow) {
    let dash = || "–".to_owned();
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        row.name,
        row.resident,
        row.decode.map_or_else(dash, |d| format!(
            "{:.1} ({:.1} – {:.1})",
            d.median, d.min, d.max
        )),
        row.ceiling.map_or_else(dash, |c| format!("{c:.0}")),
        row.decode
            .zip(row.ceiling)
            .map_or_else(dash, |(d, c)| format!("{:.0} %", 100.0 * d.median / c)),
        row.prefill.map_or_else(dash, |p| format!("{p:.0}")),
        row.time_to_first_token.map_or_else(dash, range),
        row.cold_load.map_or_else(dash, range),
    );
}

fn server_section(md: &mut String, server: Option<&Value>) {
    let Some(runs) = server.and_then(|s| s["runs"].as_array()) else {
        return;
    };
    let max_tokens = server
        .and_then(|s| s["max_tokens"].as_u64())
        .map_or_else(String::new, |n| {
            format!(", chat requests with max_tokens {n}")
        });
    let _ = write!(
        md,
        "## Server\n\n`mdsa serve` (release) on loopback under `cargo xtask loadtest`: each client sends its next request as soon as the last is answered{max_tokens}.\n\n"
    );
    md.push_str("| mode | clients | requests | req/s | p50 | p95 | p99 | errors | lost |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for run in runs {
        let l = &run["latency_ms"];
        let n = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} |",
            run["mode"].as_str().unwrap_or("?"),
            run["clients"],
            run["requests"],
            n(&run["throughput_rps"]),
            n(&l["p50"]),
            n(&l["p95"]),
            n(&l["p99"]),
            run["errors"],
            run["lost"],
        );
    }
    md.push('\n');
}

fn references_section(md: &mut String, results: &Results) {
    if results.references.is_empty() {
        md.push_str("References were not run (`--compare`).\n\n");
        return;
    }
    md.push_str("## References in this run\n\n");
    for (name, outcome) in &results.references {
        match outcome {
            Ok(value) => {
                let _ = writeln!(
                    md,
                    "- `{name}`: {} ({} threads)",
                    value["engine"].as_str().unwrap_or("?"),
                    value["threads"]
                );
            }
            Err(why) => {
                let _ = writeln!(md, "- `{name}`: not run: {why}");
            }
        }
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Measurement;

    #[test]
    fn report_names_misses_and_lists_every_figure() {
        let mut results = Results::default();
        results
            .context
            .insert("command", "cargo xtask bench".into());
        results.criterion.insert(
            "orchestrator/overhead_per_query".into(),
            Measurement {
                id: "orchestrator/overhead_per_query".into(),
                samples: vec![200e-6, 250e-6, 300e-6],
                throughput: None,
            },
        );
        results
            .references
            .insert("llamacpp".into(), Err("not installed".into()));
        results.references.insert(
            "transformers".into(),
            Ok(serde_json::json!({"engine": "transformers (f32)", "decode_tok_s": 16.0, "rss_bytes": 1048576000.0})),
        );
        results.criterion.insert(
            "decoder/smollm2/f32/decode_step_at_64".into(),
            Measurement {
                id: "decoder/smollm2/f32/decode_step_at_64".into(),
                samples: vec![0.04, 0.05, 0.08],
                throughput: None,
            },
        );
        results.criterion.insert(
            "memory/read_2_threads".into(),
            Measurement {
                id: "memory/read_2_threads".into(),
                samples: vec![0.05],
                throughput: Some(Throughput::Bytes(1_000_000_000)),
            },
        );
        results.extra.insert(
            "decoder/smollm2/f32/resident_bytes".into(),
            serde_json::json!({"value": 524288000.0}),
        );
        let f = Figures::from(&results);
        let md = render(&results, &f, &[], Path::new("docs"));
        assert!(
            md.contains(
                "| orchestration overhead < 50 µs per request | 250.0 µs | **missed** by 5.0× |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| `orchestrator/overhead_per_query` | 250.0 µs | 200.0 µs – 300.0 µs |"),
            "{md}"
        );
        assert!(md.contains("`llamacpp`: not run: not installed"), "{md}");
        assert!(
            md.contains("| batch 32 | – | – | – | – | – | – | – |"),
            "{md}"
        );
        // 20 GB/s over 500 MiB of f32 weights: a 38 tok/s ceiling for both.
        assert!(
            md.contains("| mdsa f32 | 500 MiB | 20.0 (12.5 – 25.0) | 38 | 52 % |"),
            "{md}"
        );
        assert!(
            md.contains("| transformers (f32) | 1000 MiB (RSS) | 16.0 (16.0 – 16.0) | 38 | 42 % |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| routing p50 ≤ 4 ms and ≤ 0.67× ONNX Runtime's time (short query, CPU) | not measured | not measured |"
            ),
            "{md}"
        );
    }
}
