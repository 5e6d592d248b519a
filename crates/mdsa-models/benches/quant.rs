//! Quantized matmul against an f32 matmul of the same (dequantized) weights, on
//! SmolLM2-135M shapes, for decode (n = 1) and prefill (n = 64).
//!
//! Also the f32 products of the router's encoder (MiniLM-L6 shapes, a 14-token
//! query and a batch of 32 such): [`PanelMatrix`]'s load-time packing against
//! the `gemm` crate, which packs the weights on every call.
//!
//! Run: `cargo bench -p mdsa-models --bench quant`
//!
//! Decoding streams every weight from DRAM once per token (the model is larger
//! than the L3 cache), so each case cycles through enough copies of its matrix
//! (≥ 96 MB) that the weights come from memory, not cache, as they would in a
//! model. After criterion's own report the bench prints a summary: weight GB/s,
//! GFLOP/s, the ratio to f32, the share of the machine's ~21.6 GB/s read
//! bandwidth, and the matmul-only token rate of the whole SmolLM2 layer stack.
// The summary is this bench's output.
#![allow(clippy::print_stdout)]
// `gemm::gemm` (the f32 baseline, the GEMM burn-flex uses) is an unsafe fn
// taking raw pointers; the one call below passes slices of the right sizes.
#![allow(unsafe_code)]

use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use mdsa_models::quant::{BlockFormat, PanelMatrix, QuantMatrix, kernel_name, run_in_pool};

/// Weights each case cycles through, so that they do not fit in the 32 MB L3.
const COLD_BYTES: usize = 96 << 20;
/// Read bandwidth of this machine with 2 threads (shared/stack-notes.md).
const MACHINE_GBS: f64 = 21.6;

/// (name, rows = out features, cols = in features): SmolLM2-135M's four, and
/// Qwen2.5-0.5B's ffn_down, whose 4864 inputs split into K-quant super-blocks
/// (SmolLM2's 576 do not: its GGUF has no K-quants).
const SHAPES: [(&str, usize, usize); 5] = [
    ("576->576", 576, 576),
    ("576->1536", 1536, 576),
    ("1536->576", 576, 1536),
    ("576->49152 head", 49152, 576),
    ("4864->896", 896, 4864),
];
/// Each shape runs the formats whose block size divides its columns.
const FORMATS: [BlockFormat; 4] = [
    BlockFormat::Q4_1,
    BlockFormat::Q8_0,
    BlockFormat::Q4_K,
    BlockFormat::Q6_K,
];
const NS: [usize; 3] = [1, 8, 64];

/// Seeded, reproducible random numbers.
struct Rng(ChaCha8Rng);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.random()
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        self.0.random_range(-1.0f32..1.0)
    }
}

/// A realistic-looking matrix: quantized from random floats, or (K-quants, for
/// which there is no quantizer here) random bytes with small f16 scales.
fn template(format: BlockFormat, rows: usize, cols: usize, rng: &mut Rng) -> QuantMatrix {
    if format.block_size() == 32 {
        let v: Vec<f32> = (0..rows * cols).map(|_| rng.unit() * 0.05).collect();
        return QuantMatrix::quantize(format, rows, cols, &v).expect("quantize");
    }
    let bb = format.block_bytes();
    let mut bytes: Vec<u8> = (0..rows * cols / format.block_size() * bb)
        .map(|_| rng.next() as u8)
        .collect();
    let at: &[usize] = if format == BlockFormat::Q6_K {
        &[208]
    } else {
        &[0, 2]
    };
    for blk in bytes.chunks_exact_mut(bb) {
        for &a in at {
            blk[a..a + 2].copy_from_slice(
                &half::f16::from_f32(rng.unit() * 0.001)
                    .to_bits()
                    .to_le_bytes(),
            );
        }
    }
    QuantMatrix::new(format, rows, cols, bytes).expect("valid")
}

/// Distinct copies of `m` adding up to at least [`COLD_BYTES`].
fn cold_copies(m: &QuantMatrix) -> Vec<QuantMatrix> {
    let copies = COLD_BYTES.div_ceil(m.resident_bytes()).max(1);
    (0..copies)
        .map(|_| {
            QuantMatrix::new(m.format(), m.rows(), m.cols(), m.bytes().to_vec())
                .expect("same shape")
        })
        .collect()
}

/// out = x · Wᵀ in f32 with the `gemm` crate (what burn-flex runs).
fn f32_matmul(w: &[f32], rows: usize, cols: usize, x: &[f32], n: usize, out: &mut [f32]) {
    assert!(w.len() == rows * cols && x.len() == n * cols && out.len() == n * rows);
    // SAFETY: the three buffers have the sizes asserted above and the strides
    // describe them: out [n, rows] and x [n, cols] row-major, Wᵀ read from W
    // [rows, cols] row-major (row stride 1, column stride cols).
    unsafe {
        gemm::gemm(
            n,
            rows,
            cols,
            out.as_mut_ptr(),
            1,
            rows as isize,
            false,
            x.as_ptr(),
            1,
            cols as isize,
            w.as_ptr(),
            cols as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(rayon::current_num_threads()),
        )
    }
}

/// Seconds per call: the median of 5 batches, each run for ≥ 60 ms.
fn seconds_per_call(mut f: impl FnMut() + Send) -> f64 {
    f();
    let mut batches = Vec::new();
    for _ in 0..5 {
        let (start, mut iters) = (Instant::now(), 0u32);
        while iters < 3 || start.elapsed() < Duration::from_millis(60) {
            f();
            iters += 1;
        }
        batches.push(start.elapsed().as_secs_f64() / iters as f64);
    }
    batches.sort_by(f64::total_cmp);
    batches[2]
}

/// `iters` calls of `f`, timed on a rayon worker: the model calls matmuls from
/// inside the pool (see `run_in_pool`), and one hand-off per batch costs nothing.
fn timed_in_pool(iters: u64, f: &mut (impl FnMut() + Send)) -> Duration {
    run_in_pool(|| {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        start.elapsed()
    })
}

/// Everything one (shape, n) case needs: cold copies per format and in f32.
struct Case {
    rows: usize,
    cols: usize,
    quant: Vec<(BlockFormat, Vec<QuantMatrix>)>,
    f32: Vec<Vec<f32>>,
}

fn build_case(rows: usize, cols: usize, rng: &mut Rng) -> Case {
    let quant: Vec<_> = FORMATS
        .iter()
        .filter(|f| cols.is_multiple_of(f.block_size()))
        .map(|&f| (f, cold_copies(&template(f, rows, cols, rng))))
        .collect();
    let w = quant[0].1[0].dequantize();
    let copies = COLD_BYTES.div_ceil(w.len() * 4).max(1);
    Case {
        rows,
        cols,
        quant,
        f32: vec![w; copies],
    }
}

fn bench_kernels(c: &mut Criterion, summary: &mut Vec<String>) {
    let mut rng = Rng::new(1);
    for (name, rows, cols) in SHAPES {
        let case = build_case(rows, cols, &mut rng);
        for n in NS {
            let x: Vec<f32> = (0..n * cols).map(|_| rng.unit()).collect();
            let mut out = vec![0f32; n * rows];
            let flops = 2.0 * (rows * cols * n) as f64;
            let mut group = c.benchmark_group(format!("quant {name} n={n}"));
            let mut times = Vec::new();
            for (format, mats) in &case.quant {
                let bytes = mats[0].resident_bytes();
                group.throughput(Throughput::BytesDecimal(bytes as u64));
                let mut i = 0;
                let mut run = || {
                    mats[i % mats.len()]
                        .matmul(&x, n, &mut out)
                        .expect("shapes match");
                    i += 1;
                    black_box(&out);
                };
                group.bench_function(format.name(), |b| {
                    b.iter_custom(|iters| timed_in_pool(iters, &mut run))
                });
                times.push((format.name(), bytes, run_in_pool(|| seconds_per_call(run))));
            }
            let bytes = case.rows * case.cols * 4;
            group.throughput(Throughput::BytesDecimal(bytes as u64));
            let mut i = 0;
            let mut run = || {
                f32_matmul(
                    &case.f32[i % case.f32.len()],
                    case.rows,
                    case.cols,
                    &x,
                    n,
                    &mut out,
                );
                i += 1;
                black_box(&out);
            };
            group.bench_function("f32 (gemm)", |b| {
                b.iter_custom(|iters| timed_in_pool(iters, &mut run))
            });
            let t32 = run_in_pool(|| seconds_per_call(run));
            group.finish();
            times.push(("f32", bytes, t32));
            for (fmt, bytes, t) in times {
                summary.push(format!(
                    "{name:<16} n={n:<3} {fmt:<5} {:>9.1} µs {:>7.2} GB/s {:>7.1} GFLOP/s  {:>5.2}x f32  {:>5.1}% of {MACHINE_GBS} GB/s",
                    t * 1e6,
                    bytes as f64 / t / 1e9,
                    flops / t / 1e9,
                    t32 / t,
                    bytes as f64 / t / 1e9 / MACHINE_GBS * 100.0,
                ));
            }
        }
    }
}

/// MiniLM-L6's products (fused q/k/v, attention output, feed-forward up and
/// down): (name, out features, in features).
const ENCODER_SHAPES: [(&str, usize, usize); 4] = [
    ("384->1152 qkv", 1152, 384),
    ("384->384", 384, 384),
    ("384->1536", 1536, 384),
    ("1536->384", 384, 1536),
];

/// f32 weights packed once ([`PanelMatrix`]) against the `gemm` crate, on
/// warm weights (the encoder's 90 MB are read per query either way).
fn bench_encoder_f32(c: &mut Criterion, summary: &mut Vec<String>) {
    let mut rng = Rng::new(2);
    for (name, rows, cols) in ENCODER_SHAPES {
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.unit()).collect();
        let panels = PanelMatrix::from_rows(rows, cols, &w).expect("shape");
        for n in [14, 448] {
            let x: Vec<f32> = (0..n * cols).map(|_| rng.unit()).collect();
            let mut out = vec![0f32; n * rows];
            let mut group = c.benchmark_group(format!("encoder f32 {name} n={n}"));
            let mut run_panels = || {
                panels.matmul(&x, n, &mut out).expect("shapes match");
                black_box(&out);
            };
            group.bench_function("panels", |b| {
                b.iter_custom(|iters| timed_in_pool(iters, &mut run_panels))
            });
            let tp = run_in_pool(|| seconds_per_call(&mut run_panels));
            let mut out = vec![0f32; n * rows];
            let mut run_gemm = || {
                f32_matmul(&w, rows, cols, &x, n, &mut out);
                black_box(&out);
            };
            group.bench_function("gemm", |b| {
                b.iter_custom(|iters| timed_in_pool(iters, &mut run_gemm))
            });
            let tg = run_in_pool(|| seconds_per_call(&mut run_gemm));
            group.finish();
            let flops = 2.0 * (rows * cols * n) as f64;
            summary.push(format!(
                "encoder {name:<14} n={n:<3} panels {:>8.1} µs {:>6.1} GFLOP/s, gemm {:>8.1} µs {:>6.1} GFLOP/s: panels {:.2}x",
                tp * 1e6,
                flops / tp / 1e9,
                tg * 1e6,
                flops / tg / 1e9,
                tg / tp
            ));
        }
    }
}

/// All matmuls of one SmolLM2-135M forward pass: 30 blocks of q, k, v, o (576 →
/// 576/192/192/576), gate, up (576 → 1536), down (1536 → 576) in Q4_1, and the
/// tied Q8_0 output head (576 → 49152): 97 MB, as in the GGUF file, and
/// interleaved as the decoder loads them.
fn smollm2_stack(summary: &mut Vec<String>, caller: &str) {
    let mut rng = Rng::new(2);
    let shapes = [
        (576, 576),
        (192, 576),
        (192, 576),
        (576, 576),
        (1536, 576),
        (1536, 576),
        (576, 1536),
    ];
    let templates: Vec<_> = shapes
        .iter()
        .map(|&(r, c)| template(BlockFormat::Q4_1, r, c, &mut rng))
        .collect();
    let layers: Vec<Vec<QuantMatrix>> = (0..30)
        .map(|_| templates.iter().flat_map(cold_copies_one).collect())
        .collect();
    let head = template(BlockFormat::Q8_0, 49152, 576, &mut rng).interleaved();
    let total: usize = layers
        .iter()
        .flatten()
        .map(QuantMatrix::resident_bytes)
        .sum::<usize>()
        + head.resident_bytes();
    for n in NS {
        let x576: Vec<f32> = (0..n * 576).map(|_| rng.unit()).collect();
        let x1536: Vec<f32> = (0..n * 1536).map(|_| rng.unit()).collect();
        let mut out = vec![0f32; n * 49152];
        let t = seconds_per_call(|| {
            for layer in &layers {
                for m in layer {
                    let x = if m.cols() == 576 { &x576 } else { &x1536 };
                    m.matmul(x, n, &mut out[..n * m.rows()])
                        .expect("shapes match");
                }
            }
            head.matmul(&x576, n, &mut out).expect("shapes match");
            black_box(&out);
        });
        summary.push(format!(
            "SmolLM2-135M matmuls ({caller}), n={n:<3} {:>8.2} ms/pass  {:>7.1} tokens/s  {:>6.2} GB/s ({:.0} MB of weights, {:.0}% of {MACHINE_GBS} GB/s)",
            t * 1e3,
            n as f64 / t,
            total as f64 / t / 1e9,
            total as f64 / 1e6,
            total as f64 / t / 1e9 / MACHINE_GBS * 100.0,
        ));
    }
}

/// One fresh copy (a layer's own weights, like the file has).
fn cold_copies_one(m: &QuantMatrix) -> Option<QuantMatrix> {
    QuantMatrix::new(m.format(), m.rows(), m.cols(), m.bytes().to_vec())
        .ok()
        .map(QuantMatrix::interleaved)
}

fn main() {
    let threads = rayon::current_num_threads();
    println!("quant kernel: {} ({threads} rayon threads)", kernel_name());
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800))
        .sample_size(10)
        .configure_from_args();
    let mut summary = Vec::new();
    bench_kernels(&mut c, &mut summary);
    bench_encoder_f32(&mut c, &mut summary);
    run_in_pool(|| smollm2_stack(&mut summary, "caller in the pool"));
    // And from a plain thread, for the cost of the hand-off per call.
    smollm2_stack(&mut summary, "caller outside the pool");
    c.final_summary();
    println!(
        "\nsummary (kernel {}, {threads} threads, weights cycled through ≥ 96 MB):",
        kernel_name()
    );
    for line in summary {
        println!("{line}");
    }
}
