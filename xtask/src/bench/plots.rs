//! PNG plots for the report: horizontal bars with min–max whiskers and an
//! optional limit marker per bar, drawn with plotters.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::Context;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::figures::{Figures, Stat};

/// Where fonts usually are; the first TrueType sans font found is used.
const FONT_DIRS: [&str; 4] = [
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "/System/Library/Fonts",
    "C:\\Windows\\Fonts",
];
const PREFERRED_FONTS: [&str; 4] = [
    "DejaVuSans.ttf",
    "LiberationSans-Regular.ttf",
    "Arial.ttf",
    "arial.ttf",
];

const MDSA: RGBColor = RGBColor(0x2b, 0x6c, 0xb0);
const REFERENCE: RGBColor = RGBColor(0x9a, 0x9a, 0x9a);
const LIMIT: RGBColor = RGBColor(0xc0, 0x39, 0x2b);

/// One bar: a median with its range, and where its physical limit is.
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) stat: Stat,
    pub(crate) limit: Option<f64>,
    pub(crate) reference: bool,
}

/// A plot written, with the alt text the report gives it.
#[derive(Debug, Clone)]
pub(crate) struct Plot {
    pub(crate) file: PathBuf,
    pub(crate) title: String,
}

/// Draws every plot the run has figures for into `dir`.
pub(crate) fn draw(figures: &Figures, dir: &Path) -> anyhow::Result<Vec<Plot>> {
    register_font()?;
    let mut plots = Vec::new();
    let mut chart = |file: &str, title: &str, unit: &str, bars: Vec<Bar>| -> anyhow::Result<()> {
        if bars.iter().any(|b| !b.reference) {
            let path = dir.join(file);
            bar_chart(&path, title, unit, &bars)
                .with_context(|| format!("drawing {}", path.display()))?;
            plots.push(Plot {
                file: path,
                title: title.to_owned(),
            });
        }
        Ok(())
    };
    chart(
        "routing_latency.png",
        "Routing one short query (batch 1): latency, median and min-max",
        "milliseconds",
        routing_bars(figures),
    )?;
    chart(
        "decode_tokens_per_s.png",
        "SmolLM2-135M decode tokens/s (red: memory-bandwidth ceiling)",
        "tokens per second",
        decode_bars(figures),
    )?;
    chart(
        "resident_memory.png",
        "SmolLM2-135M resident weights per format (references: process RSS)",
        "MiB",
        memory_bars(figures),
    )?;
    Ok(plots)
}

fn routing_bars(f: &Figures) -> Vec<Bar> {
    let ms = |s: Stat| Stat {
        median: s.median * 1e3,
        min: s.min * 1e3,
        max: s.max * 1e3,
    };
    let by_format = |name: &str| {
        f.encoder_formats
            .iter()
            .find(|(n, _, _)| *n == name)
            .and_then(|(_, t, _)| *t)
    };
    [
        ("mdsa: encoder forward (f32)", f.encode_batch1, false),
        ("mdsa: encoder forward (f16)", by_format("f16"), false),
        ("mdsa: encoder forward (int8)", by_format("int8"), false),
        ("mdsa: route (encode + score)", f.route, false),
        ("sentence-transformers", f.st_batch1, true),
        ("transformers (no padding)", f.tf_batch1, true),
    ]
    .into_iter()
    .filter_map(|(label, stat, reference)| {
        Some(Bar {
            label: label.to_owned(),
            stat: ms(stat?),
            limit: None,
            reference,
        })
    })
    .collect()
}

fn decode_bars(f: &Figures) -> Vec<Bar> {
    let mut bars: Vec<Bar> = f
        .formats
        .iter()
        .filter_map(|format| {
            Some(Bar {
                label: format!("mdsa {}", format.label),
                stat: format.decode?.rate(1.0),
                limit: format.ceiling_tok_s(f.bandwidth),
                reference: false,
            })
        })
        .collect();
    let q4_ceiling = f
        .format("stored_q4_1")
        .and_then(|q| q.ceiling_tok_s(f.bandwidth));
    let f32_ceiling = f.format("f32").and_then(|q| q.ceiling_tok_s(f.bandwidth));
    for (engine, limit) in [(&f.llamacpp, q4_ceiling), (&f.transformers, f32_ceiling)] {
        if let Some(e) = engine
            && let Some(stat) = e.decode_tok_s
        {
            bars.push(Bar {
                label: short_engine(&e.name),
                stat,
                limit,
                reference: true,
            });
        }
    }
    bars
}

fn memory_bars(f: &Figures) -> Vec<Bar> {
    let mib = |bytes: f64| {
        let v = bytes / (1024.0 * 1024.0);
        Stat {
            median: v,
            min: v,
            max: v,
        }
    };
    let mut bars: Vec<Bar> = f
        .formats
        .iter()
        .filter_map(|format| {
            Some(Bar {
                label: format!("mdsa {}", format.label),
                stat: mib(format.resident_bytes?),
                limit: None,
                reference: false,
            })
        })
        .collect();
    for engine in [&f.llamacpp, &f.transformers].into_iter().flatten() {
        if let Some(rss) = engine.rss_bytes {
            bars.push(Bar {
                label: format!("{} (RSS)", short_engine(&engine.name)),
                stat: mib(rss),
                limit: None,
                reference: true,
            });
        }
    }
    bars
}

/// "llama.cpp (llama-cpp-python 0.3.36)" → "llama.cpp".
fn short_engine(name: &str) -> String {
    name.split(" (").next().unwrap_or(name).to_owned()
}

fn bar_chart(path: &Path, title: &str, unit: &str, bars: &[Bar]) -> anyhow::Result<()> {
    let rows = bars.len() as i32;
    let height = 120 + 46 * bars.len() as u32;
    let root = BitMapBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = bars
        .iter()
        .map(|b| b.stat.max.max(b.limit.unwrap_or(0.0)))
        .fold(0.0, f64::max)
        * 1.18;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(270)
        .build_cartesian_2d(0.0..x_max.max(1e-9), (0..rows).into_segmented())?;
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(unit)
        .y_labels(bars.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .label_style(("sans-serif", 15))
        .draw()?;
    for (i, bar) in bars.iter().enumerate() {
        let i = i as i32;
        let color = if bar.reference { REFERENCE } else { MDSA };
        let mut rect = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (bar.stat.median, SegmentValue::Exact(i + 1)),
            ],
            color.filled(),
        );
        rect.set_margin(8, 8, 0, 0);
        chart.draw_series(std::iter::once(rect))?;
        // The min–max range as a whisker through the bar's middle.
        chart.draw_series(std::iter::once(PathElement::new(
            vec![
                (bar.stat.min, SegmentValue::CenterOf(i)),
                (bar.stat.max, SegmentValue::CenterOf(i)),
            ],
            BLACK.stroke_width(2),
        )))?;
        if let Some(limit) = bar.limit {
            let mut mark = Rectangle::new(
                [
                    (limit, SegmentValue::Exact(i)),
                    (limit, SegmentValue::Exact(i + 1)),
                ],
                LIMIT.stroke_width(3),
            );
            mark.set_margin(3, 3, 0, 0);
            chart.draw_series(std::iter::once(mark))?;
        }
        chart.draw_series(std::iter::once(Text::new(
            format_value(bar.stat.median),
            (
                bar.stat.max.max(bar.stat.median) + x_max * 0.01,
                SegmentValue::CenterOf(i),
            ),
            ("sans-serif", 15).into_font().color(&BLACK),
        )))?;
    }
    root.present()?;
    Ok(())
}

fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// plotters draws text with a font it is given: the first sans TrueType font
/// on the system (or `MDSA_BENCH_FONT`), registered once.
fn register_font() -> anyhow::Result<()> {
    static ONCE: Once = Once::new();
    let mut outcome = Ok(());
    ONCE.call_once(|| {
        outcome = find_font().and_then(|path| {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading font {}", path.display()))?;
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| anyhow::anyhow!("{} is not a usable TrueType font", path.display()))
        });
    });
    outcome
}

fn find_font() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MDSA_BENCH_FONT") {
        return Ok(PathBuf::from(path));
    }
    let mut found: Vec<PathBuf> = Vec::new();
    let mut pending: Vec<PathBuf> = FONT_DIRS.iter().map(PathBuf::from).collect();
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("ttf"))
            {
                found.push(path);
            }
        }
    }
    PREFERRED_FONTS
        .iter()
        .find_map(|name| found.iter().find(|p| p.ends_with(name)).cloned())
        .or_else(|| found.into_iter().next())
        .context(
            "no TrueType font for the plots: install one (Debian: fonts-dejavu-core) or set MDSA_BENCH_FONT to a .ttf file",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_with_bars_limits_and_labels() -> anyhow::Result<()> {
        if let Err(error) = find_font() {
            // Plots need a system font; the report logic is tested without one.
            eprintln!("skipped: {error:#}");
            return Ok(());
        }
        register_font()?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bars.png");
        let stat = |m: f64| Stat {
            median: m,
            min: m * 0.9,
            max: m * 1.2,
        };
        let bars = vec![
            Bar {
                label: "mdsa".into(),
                stat: stat(80.0),
                limit: Some(200.0),
                reference: false,
            },
            Bar {
                label: "llama.cpp".into(),
                stat: stat(100.0),
                limit: None,
                reference: true,
            },
        ];
        bar_chart(&path, "title", "tokens/s", &bars)?;
        let bytes = std::fs::read(&path)?;
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 2_000, "{} bytes", bytes.len());
        Ok(())
    }
}
