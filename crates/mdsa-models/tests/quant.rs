//! Quantized blocks and the quantized matmul: decoding against ggml's reference
//! (the `gguf` Python package, fixtures from `scripts/reference/quant_blocks.py`),
//! real SmolLM2 weights, every kernel against the others and against an f32
//! matmul, and every malformed input as an error.
//!
//! Tolerances:
//! - dequantization and the Q8_0/Q4_0/Q4_1 quantizers: bit-exact.
//! - SIMD vs scalar kernel: the integer block sums are identical, only the f32
//!   accumulation order differs, so |simd − scalar| ≤ 1e-5 · Σ|w·x| (+1e-6).
//! - kernel vs f32 matmul of the dequantized weights: the activations are
//!   rounded to 8 bits per block (32 values, or 256 for K-quants) with
//!   d = max|x_block| / 127, an error of at most d/2 per value, so
//!   |kernel − f32| ≤ Σ_blocks (max|x_block| / 254) · Σ_block |w| (×1.001) plus
//!   1e-5 · Σ|w·x| for f32 rounding. The bound is computed per output.

use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::sync::Arc;

use mdsa_models::quant::{
    BlockFormat, Kernel, QuantBytes, QuantError, QuantMatrix, dequantize_row, kernel_name,
    quantize_row_q4_0, quantize_row_q4_1, quantize_row_q8_0,
};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture present");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn format_named(name: &str) -> BlockFormat {
    BlockFormat::ALL
        .into_iter()
        .find(|f| f.name() == name)
        .expect("known format")
}

/// Seeded, reproducible random numbers (ChaCha8, as the sampler uses).
struct Rng(ChaCha8Rng);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        self.0.random_range(-1.0f32..1.0)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.0.random::<u8>()).collect()
    }
}

/// Random but valid weights for `format`: quantized from random floats for the
/// 32-block formats, random bytes with finite f16 scales for the K-quants.
fn random_matrix(format: BlockFormat, rows: usize, cols: usize, rng: &mut Rng) -> QuantMatrix {
    match format {
        BlockFormat::Q8_0 | BlockFormat::Q4_0 | BlockFormat::Q4_1 => {
            let values: Vec<f32> = (0..rows * cols).map(|_| rng.unit() * 0.1).collect();
            QuantMatrix::quantize(format, rows, cols, &values).expect("quantize")
        }
        // Random bits with small scales: every weight pattern the layout allows.
        BlockFormat::Q5_0
        | BlockFormat::Q5_1
        | BlockFormat::Q4_K
        | BlockFormat::Q5_K
        | BlockFormat::Q6_K => {
            let bb = format.block_bytes();
            let mut bytes = rng.bytes(rows * cols / format.block_size() * bb);
            let scale_at: &[usize] = match format {
                BlockFormat::Q6_K => &[208],
                BlockFormat::Q5_0 => &[0],
                _ => &[0, 2],
            };
            for blk in bytes.chunks_exact_mut(bb) {
                for &at in scale_at {
                    let v = half::f16::from_f32(rng.unit() * 0.002);
                    blk[at..at + 2].copy_from_slice(&v.to_bits().to_le_bytes());
                }
            }
            QuantMatrix::new(format, rows, cols, bytes).expect("valid length")
        }
    }
}

/// f64 reference: out[i][r] = Σ_c x[i][c] · w[r][c], with the error bound of
/// the 8-bit activations (see the module docs) per output.
fn reference(
    w: &[f32],
    rows: usize,
    cols: usize,
    x: &[f32],
    n: usize,
    act_block: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut out = vec![0f32; n * rows];
    let mut bound = vec![0f32; n * rows];
    for i in 0..n {
        let xi = &x[i * cols..(i + 1) * cols];
        for r in 0..rows {
            let wr = &w[r * cols..(r + 1) * cols];
            let (mut s, mut mag, mut quant) = (0f64, 0f64, 0f64);
            for (xb, wb) in xi.chunks(act_block).zip(wr.chunks(act_block)) {
                let amax = xb.iter().fold(0f64, |a, &v| a.max(v.abs() as f64));
                let wsum: f64 = wb.iter().map(|&v| v.abs() as f64).sum();
                quant += amax / 254.0 * wsum;
                for (&a, &b) in xb.iter().zip(wb) {
                    s += a as f64 * b as f64;
                    mag += (a as f64 * b as f64).abs();
                }
            }
            out[i * rows + r] = s as f32;
            bound[i * rows + r] = (quant * 1.001 + 1e-5 * mag + 1e-6) as f32;
        }
    }
    (out, bound)
}

/// Σ|w·x| per output, the scale for comparing two kernels.
fn magnitudes(w: &[f32], rows: usize, cols: usize, x: &[f32], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * rows];
    for i in 0..n {
        for r in 0..rows {
            out[i * rows + r] = (0..cols)
                .map(|c| (x[i * cols + c] as f64 * w[r * cols + c] as f64).abs())
                .sum::<f64>() as f32;
        }
    }
    out
}

#[test]
fn dequantize_matches_gguf_python_bit_for_bit() {
    let fx = read_json("quant_blocks.json");
    let formats = fx["formats"].as_object().expect("formats");
    assert_eq!(formats.len(), 6, "every format has reference blocks");
    for (name, case) in formats {
        let format = format_named(name);
        assert_eq!(
            case["ggml_type"].as_u64(),
            Some(format.ggml_id() as u64),
            "{name} id"
        );
        assert_eq!(
            case["block_bytes"].as_u64(),
            Some(format.block_bytes() as u64),
            "{name} size"
        );
        let bytes = unhex(case["bytes_hex"].as_str().expect("hex"));
        let expected = floats(&case["dequantized"]);
        let mut got = vec![0f32; expected.len()];
        dequantize_row(format, &bytes, &mut got).expect("whole blocks");
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g.to_bits(), e.to_bits(), "{name} value {i}: {g} vs {e}");
        }
        // The same through a one-row matrix.
        let m = QuantMatrix::new(format, 1, expected.len(), bytes).expect("valid");
        assert_eq!(m.dequantize(), got);
    }
}

#[test]
fn quantizers_match_ggml_bit_for_bit() {
    let fx = read_json("quant_blocks.json");
    let x = floats(&fx["quantize_input"]);
    type Quantizer = fn(&[f32]) -> Result<Vec<u8>, QuantError>;
    let cases: [(&str, Quantizer); 3] = [
        ("Q8_0", quantize_row_q8_0),
        ("Q4_0", quantize_row_q4_0),
        ("Q4_1", quantize_row_q4_1),
    ];
    for (name, quantize) in cases {
        let expected = unhex(fx["quantize"][name].as_str().expect("hex"));
        assert_eq!(quantize(&x).expect("multiple of 32"), expected, "{name}");
    }
}

#[test]
fn real_smollm2_weights_decode_and_multiply() {
    let meta = read_json("quant_smollm2.json");
    let tensors = meta["tensors"].as_array().expect("tensors");
    assert!(!tensors.is_empty());
    let mut rng = Rng::new(7);
    for t in tensors {
        let name = t["name"].as_str().expect("name");
        let (rows, cols) = (
            t["rows"].as_u64().unwrap() as usize,
            t["cols"].as_u64().unwrap() as usize,
        );
        let bytes =
            std::fs::read(fixture(t["bytes_file"].as_str().unwrap())).expect("bytes fixture");
        let raw = std::fs::read(fixture(t["f32_file"].as_str().unwrap())).expect("f32 fixture");
        let expected: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let ggml_type = t["ggml_type"].as_u64().unwrap() as u32;
        let m = QuantMatrix::from_ggml(ggml_type, rows, cols, bytes).expect(name);
        let got = m.dequantize();
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g.to_bits(), e.to_bits(), "{name} value {i}: {g} vs {e}");
        }
        // Embedding-style row lookup equals the row of the full decode.
        let mut row = vec![0f32; cols];
        m.dequantize_row_into(rows - 1, &mut row).unwrap();
        assert_eq!(row, expected[(rows - 1) * cols..]);

        // Activations shaped like hidden states (a few large outliers).
        for n in [1, 5] {
            let mut x: Vec<f32> = (0..n * cols).map(|_| rng.unit()).collect();
            x[3] = 12.0;
            let (want, bound) = reference(&expected, rows, cols, &x, n, m.format().block_size());
            let mut out = vec![0f32; n * rows];
            m.matmul(&x, n, &mut out).unwrap();
            for (j, ((o, w), b)) in out.iter().zip(&want).zip(&bound).enumerate() {
                assert!(
                    (o - w).abs() <= *b,
                    "{name} n={n} output {j}: {o} vs {w} (bound {b})"
                );
            }
        }
    }
}

/// The SmolLM2 GGUF in the Hugging Face cache, when `cargo xtask fetch-models`
/// (or a download) put it there.
fn smollm2_gguf() -> Option<PathBuf> {
    let hub = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
        })?;
    let snapshots = hub.join("models--QuantFactory--SmolLM2-135M-Instruct-GGUF/snapshots");
    std::fs::read_dir(snapshots)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("SmolLM2-135M-Instruct.Q4_1.gguf"))
        .find(|p| p.is_file())
}

/// The GGUF file as a byte owner for [`QuantBytes::from_shared`] (the mmap is
/// borrowed, not copied).
struct FileBytes(mdsa_models::gguf::GgufFile);

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes()
    }
}

#[test]
fn whole_smollm2_tensors_from_the_gguf_file_when_present() {
    let Some(path) = smollm2_gguf() else {
        return; // Not fetched: the committed fixtures above still cover real weights.
    };
    let file = Arc::new(FileBytes(
        mdsa_models::gguf::GgufFile::open(&path).expect("valid GGUF"),
    ));
    let meta = read_json("quant_smollm2.json");
    let mut rng = Rng::new(11);
    for t in meta["tensors"].as_array().expect("tensors") {
        let name = t["name"].as_str().unwrap();
        let info = file.0.tensor(name).expect("tensor in file").clone();
        let shape = info.shape_row_major();
        let (rows, cols) = (shape[0], shape[1]);
        let m = QuantMatrix::from_ggml(
            info.ggml_type().id(),
            rows,
            cols,
            QuantBytes::from_shared(Arc::clone(&file), info.data_range()).unwrap(),
        )
        .expect(name);
        assert_eq!(
            m.bytes().as_ptr(),
            file.0.bytes()[info.data_range()].as_ptr(),
            "{name} is not copied"
        );
        // The fixture's rows are this file's first rows.
        let raw = std::fs::read(fixture(t["f32_file"].as_str().unwrap())).unwrap();
        let fixture_rows = t["rows"].as_u64().unwrap() as usize;
        let mut row = vec![0f32; cols];
        for r in 0..fixture_rows {
            m.dequantize_row_into(r, &mut row).unwrap();
            for (c, v) in row.iter().enumerate() {
                let at = (r * cols + c) * 4;
                let want = f32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
                assert_eq!(v.to_bits(), want.to_bits(), "{name} [{r}, {c}]");
            }
        }
        // The whole tensor through every kernel (the 49152-row head only
        // through the fast ones: the scalar path is slow in a debug build).
        if rows > 4096 {
            let x: Vec<f32> = (0..cols).map(|_| rng.unit()).collect();
            let mut a = vec![0f32; rows];
            let mut b = vec![0f32; rows];
            m.matmul(&x, 1, &mut a).unwrap();
            m.matmul_with(Kernel::best(), &x, 1, &mut b).unwrap();
            assert_eq!(a, b);
            continue;
        }
        let w = m.dequantize();
        let n = 3;
        let x: Vec<f32> = (0..n * cols).map(|_| rng.unit()).collect();
        let (want, bound) = reference(&w, rows, cols, &x, n, m.format().block_size());
        for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
            let mut out = vec![0f32; n * rows];
            m.matmul_with(kernel, &x, n, &mut out).unwrap();
            for (j, ((o, w), b)) in out.iter().zip(&want).zip(&bound).enumerate() {
                assert!(
                    (o - w).abs() <= *b,
                    "{name} {} output {j}: {o} vs {w} (bound {b})",
                    kernel.name()
                );
            }
        }
    }
}

#[test]
fn every_kernel_agrees_with_scalar_and_f32_on_every_format() {
    let mut rng = Rng::new(42);
    let kernels: Vec<Kernel> = Kernel::ALL
        .into_iter()
        .filter(|k| k.is_available())
        .collect();
    for format in BlockFormat::ALL {
        let bs = format.block_size();
        // Columns from one block to several (256·k for the K-quants); rows odd and
        // large enough for the parallel split, whose chunks then do not divide rows.
        let shapes: &[(usize, usize)] = if bs == 256 {
            &[(5, 256), (37, 512), (261, 768)]
        } else {
            &[(3, 32), (37, 96), (301, 576), (45, 1536)]
        };
        for &(rows, cols) in shapes {
            let m = random_matrix(format, rows, cols, &mut rng);
            let w = m.dequantize();
            for n in [1, 3, 17] {
                let x: Vec<f32> = (0..n * cols).map(|_| rng.unit()).collect();
                let mut slow = vec![f32::NAN; n * rows];
                m.matmul_with(Kernel::Scalar, &x, n, &mut slow).unwrap();
                let (want, bound) = reference(&w, rows, cols, &x, n, bs);
                let mag = magnitudes(&w, rows, cols, &x, n);
                for j in 0..n * rows {
                    assert!(
                        (slow[j] - want[j]).abs() <= bound[j],
                        "{format} [{rows}×{cols}] n={n} output {j}: scalar {} vs f32 {} (bound {})",
                        slow[j],
                        want[j],
                        bound[j]
                    );
                }
                for &kernel in &kernels {
                    let mut fast = vec![f32::NAN; n * rows];
                    m.matmul_with(kernel, &x, n, &mut fast).unwrap();
                    for j in 0..n * rows {
                        let ctx = format!(
                            "{format} [{rows}×{cols}] n={n} output {j} ({} kernel)",
                            kernel.name()
                        );
                        assert!(
                            (fast[j] - slow[j]).abs() <= 1e-5 * mag[j] + 1e-6,
                            "{ctx}: {} vs scalar {}",
                            fast[j],
                            slow[j]
                        );
                        assert!(
                            (fast[j] - want[j]).abs() <= bound[j],
                            "{ctx}: {} vs f32 {} (bound {})",
                            fast[j],
                            want[j],
                            bound[j]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn kernel_choice_is_reported_and_checked() {
    assert!(["avx512vnni", "avx2", "scalar"].contains(&kernel_name()));
    assert!(Kernel::Scalar.is_available());
    assert_eq!(Kernel::best().name(), kernel_name());
    assert!(Kernel::best().is_available());
    let m = QuantMatrix::quantize(BlockFormat::Q8_0, 1, 32, &[0.5; 32]).unwrap();
    for kernel in Kernel::ALL {
        let mut out = [0f32; 1];
        match m.matmul_with(kernel, &[1.0; 32], 1, &mut out) {
            Ok(()) => assert!(kernel.is_available()),
            Err(e) => {
                assert!(!kernel.is_available());
                assert_eq!(e, QuantError::KernelUnavailable(kernel.name()));
            }
        }
    }
}

#[test]
fn shared_bytes_are_borrowed_not_copied() {
    let mut rng = Rng::new(3);
    let m = random_matrix(BlockFormat::Q4_1, 4, 64, &mut rng);
    // A buffer holding the tensor at an offset, as a GGUF mmap would.
    let mut file = vec![0xAAu8; 100];
    file.extend_from_slice(m.bytes());
    file.extend_from_slice(&[0xBB; 7]);
    let file = Arc::new(file);
    let bytes = QuantBytes::from_shared(Arc::clone(&file), 100..100 + m.bytes().len()).unwrap();
    let shared = QuantMatrix::new(BlockFormat::Q4_1, 4, 64, bytes).unwrap();
    assert_eq!(shared.bytes().as_ptr(), file[100..].as_ptr());
    assert_eq!(shared.resident_bytes(), 4 * 2 * 20);
    assert_eq!(shared.dequantize(), m.dequantize());
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    use BlockFormat::*;
    // Byte length must be rows × blocks per row × block bytes.
    for f in BlockFormat::ALL {
        let (rows, cols) = (3, f.block_size() * 2);
        let good = rows * 2 * f.block_bytes();
        for len in [0, good - 1, good + 1, good * 2] {
            let err = QuantMatrix::new(f, rows, cols, vec![0u8; len]).unwrap_err();
            assert!(
                matches!(err, QuantError::DataLength { expected, found, .. } if expected == good && found == len)
            );
        }
        assert!(QuantMatrix::new(f, rows, cols, vec![0u8; good]).is_ok());
        // Columns that do not fill whole blocks.
        let err =
            QuantMatrix::new(f, 1, f.block_size() + 1, vec![0u8; f.block_bytes()]).unwrap_err();
        assert!(matches!(err, QuantError::Columns { .. }), "{err}");
    }
    // Shapes whose byte size overflows.
    assert!(matches!(
        QuantMatrix::new(Q8_0, usize::MAX, 64, Vec::new()),
        Err(QuantError::TooLarge { .. })
    ));
    // Unknown ggml types (F32, F16, Q8_1, IQ4_NL, garbage).
    for id in [0, 1, 9, 20, 99, u32::MAX] {
        assert_eq!(
            QuantMatrix::from_ggml(id, 1, 32, vec![0u8; 34]).unwrap_err(),
            QuantError::UnsupportedType(id)
        );
    }
    // Matmul buffers.
    let m = QuantMatrix::quantize(Q4_0, 2, 64, &[0.25; 128]).unwrap();
    let mut out = [0f32; 4];
    assert!(matches!(
        m.matmul(&[1.0; 127], 2, &mut out),
        Err(QuantError::BufferLength { .. })
    ));
    assert!(matches!(
        m.matmul(&[1.0; 128], 2, &mut out[..3]),
        Err(QuantError::BufferLength { .. })
    ));
    assert!(matches!(
        m.matmul(&[1.0; 64], usize::MAX, &mut out),
        Err(QuantError::TooLarge { .. })
    ));
    m.matmul(&[1.0; 128], 2, &mut out).unwrap();
    m.matmul(&[], 0, &mut []).unwrap();
    // Row lookups.
    let mut row = [0f32; 64];
    assert_eq!(
        m.dequantize_row_into(2, &mut row),
        Err(QuantError::Row { row: 2, rows: 2 })
    );
    assert!(m.dequantize_row_into(0, &mut row[..63]).is_err());
    // Borrowed ranges outside the owner.
    let owner = Arc::new(vec![0u8; 10]);
    assert!(matches!(
        QuantBytes::from_shared(Arc::clone(&owner), 5..11),
        Err(QuantError::Range { .. })
    ));
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 6..5;
    assert!(matches!(
        QuantBytes::from_shared(owner, backwards),
        Err(QuantError::Range { .. })
    ));
    // Free functions.
    let mut vals = [0f32; 32];
    assert!(dequantize_row(Q4_1, &[0; 21], &mut vals).is_err());
    assert!(quantize_row_q4_1(&[0.0; 31]).is_err());
    // K-quants are decoded from files, not produced here.
    assert!(QuantMatrix::quantize(Q4_K, 1, 256, &[0.0; 256]).is_err());
    // Garbage bytes (NaN / inf scales) compute without panicking.
    let junk = QuantMatrix::new(Q6_K, 2, 256, vec![0xFFu8; 2 * 210]).unwrap();
    let mut o = [0f32; 2];
    junk.matmul(&[f32::NAN; 256], 1, &mut o).unwrap();
}

#[test]
fn zero_sized_shapes_work() {
    let empty_rows = QuantMatrix::new(BlockFormat::Q8_0, 0, 64, Vec::new()).unwrap();
    empty_rows.matmul(&[1.0; 128], 2, &mut []).unwrap();
    assert!(empty_rows.dequantize().is_empty());
    let empty_cols = QuantMatrix::new(BlockFormat::Q4_K, 3, 0, Vec::new()).unwrap();
    let mut out = [f32::NAN; 6];
    empty_cols.matmul(&[], 2, &mut out).unwrap();
    assert_eq!(out, [0.0; 6]);
}

#[test]
fn interleaved_layout_gives_the_same_products_rows_and_errors() {
    let mut rng = Rng::new(8);
    let kernels: Vec<Kernel> = Kernel::ALL
        .into_iter()
        .filter(|k| k.is_available())
        .collect();
    for format in [BlockFormat::Q8_0, BlockFormat::Q4_0, BlockFormat::Q4_1] {
        // Rows in groups of 8: one group, a pair and a lone group, several,
        // and enough for the parallel split; columns of one and several blocks.
        for &(rows, cols) in &[(8, 32), (24, 96), (40, 64), (576, 576), (64, 1536)] {
            let m = random_matrix(format, rows, cols, &mut rng);
            let inter = m.to_interleaved().expect("rows in groups of 8");
            assert!(inter.is_interleaved() && !m.is_interleaved());
            assert_eq!(inter.resident_bytes(), m.resident_bytes(), "{format}");
            assert_ne!(inter.bytes(), m.bytes(), "{format}: rearranged");
            assert_eq!(inter.dequantize(), m.dequantize(), "{format} values");
            let mut row = vec![0f32; cols];
            inter.dequantize_row_into(rows - 3, &mut row).unwrap();
            assert_eq!(row, m.dequantize()[(rows - 3) * cols..(rows - 2) * cols]);
            let w = m.dequantize();
            // 1 (decode), 4 and 8 (whole tiles of activations), 2, 3, 6, 7
            // and 9 (tails of 1 to 3 rows), and enough rows that the threads
            // split the activation rows instead of the weight rows (unevenly).
            let many = 64 * rayon::current_num_threads().max(2) + 5;
            for n in [1, 2, 3, 4, 6, 7, 8, 9, many] {
                let x: Vec<f32> = (0..n * cols).map(|_| rng.unit() * 3.0).collect();
                let mag = magnitudes(&w, rows, cols, &x, n);
                let mut want = vec![f32::NAN; n * rows];
                m.matmul_with(Kernel::Scalar, &x, n, &mut want).unwrap();
                for &kernel in &kernels {
                    let mut got = vec![f32::NAN; n * rows];
                    inter.matmul_with(kernel, &x, n, &mut got).unwrap();
                    for j in 0..n * rows {
                        assert!(
                            (got[j] - want[j]).abs() <= 1e-5 * mag[j] + 1e-6,
                            "{format} [{rows}×{cols}] n={n} output {j} ({} kernel, interleaved): {} vs {}",
                            kernel.name(),
                            got[j],
                            want[j]
                        );
                    }
                }
            }
            // Splits fall between pairs of groups (16 rows), or at the end.
            if rows >= 32 {
                let part = inter.row_range(16..32).unwrap();
                assert_eq!(part.dequantize(), w[16 * cols..32 * cols]);
            }
            if rows > 16 {
                let tail = inter.row_range(16..rows).unwrap();
                assert_eq!(tail.dequantize(), w[16 * cols..]);
                assert_eq!(
                    inter.row_range(8..16).unwrap_err(),
                    QuantError::Interleaved { start: 8, end: 16 }
                );
            }
            assert_eq!(
                inter.row_range(4..12).unwrap_err(),
                QuantError::Interleaved { start: 4, end: 12 }
            );
        }
        // Parts whose groups do not pair up (3 groups, then 2) still fuse
        // into one interleaved matrix with the same products.
        let (a, b) = (
            random_matrix(format, 24, 64, &mut rng),
            random_matrix(format, 16, 64, &mut rng),
        );
        let plain = QuantMatrix::concat_rows(&[&a, &b]).unwrap();
        let parts = [a.to_interleaved().unwrap(), b.to_interleaved().unwrap()];
        let fused = QuantMatrix::concat_rows(&[&parts[0], &parts[1]]).unwrap();
        assert!(fused.is_interleaved());
        assert_eq!(fused.dequantize(), plain.dequantize(), "{format} fused");
        let x: Vec<f32> = (0..5 * 64).map(|_| rng.unit()).collect();
        let (mut want, mut got) = (vec![0f32; 5 * 40], vec![0f32; 5 * 40]);
        plain.matmul_with(Kernel::Scalar, &x, 5, &mut want).unwrap();
        fused.matmul(&x, 5, &mut got).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{format} fused: {g} vs {w}"
            );
        }
    }
    // Formats and shapes without the layout stay as they are.
    let k = random_matrix(BlockFormat::Q4_K, 8, 256, &mut rng);
    assert!(k.to_interleaved().is_none());
    assert!(!k.clone().interleaved().is_interleaved());
    let odd = random_matrix(BlockFormat::Q4_1, 12, 64, &mut rng);
    assert!(odd.to_interleaved().is_none());
    assert!(!odd.interleaved().is_interleaved());
}
