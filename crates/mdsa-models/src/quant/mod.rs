//! Linear layers that compute directly on GGUF block-quantized weights.
//!
//! burn's CPU backend dequantizes to f32 before a matmul, so a 4-bit model reads
//! as many bytes per token as an f32 one. Decoding on a CPU is bound by memory
//! bandwidth, so the speed has to come from reading the quantized blocks
//! themselves: [`QuantMatrix::matmul`] quantizes the activations once per call to
//! 8-bit blocks (as llama.cpp does) and takes integer dot products block by
//! block, with AVX2 kernels chosen at run time ([`kernel_name`]) and a portable
//! scalar fallback, split over output rows by the thread team.
//!
//! - [`BlockFormat`]: Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K, with their ggml ids.
//! - [`dequantize_row`] and the reference quantizers [`quantize_row_q8_0`],
//!   [`quantize_row_q4_0`], [`quantize_row_q4_1`].
//! - [`QuantMatrix`]: `[rows, cols]` weights (out × in features) over
//!   [`QuantBytes`], which can borrow from a shared owner such as a file mmap.

mod act;
mod formats;
mod half;
mod interleave;
mod panel;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod zmm;

use std::ops::Range;
use std::sync::Arc;

use crate::team::{self, ColumnBlock};

use act::{ActBlocks, Activations, BlockQ8, BlockQ8K, Q8Rows};
pub use formats::{
    BlockFormat, QK, QK_K, dequantize_row, quantize_row_q4_0, quantize_row_q4_1, quantize_row_q8_0,
};
pub use half::{HalfKind, HalfMatrix};
pub use panel::PanelMatrix;

/// What can go wrong building or using a [`QuantMatrix`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// The GGUF tensor type is not one of the block formats computed on here.
    #[error(
        "ggml type {0} is not a supported block format (supported: Q8_0=8, Q4_0=2, Q4_1=3, Q4_K=12, Q5_K=13, Q6_K=14)"
    )]
    UnsupportedType(u32),
    /// A row does not split into whole blocks.
    #[error("{format}: {cols} columns is not a multiple of the block size {block_size}")]
    Columns {
        /// The format.
        format: BlockFormat,
        /// Columns (in features) asked for.
        cols: usize,
        /// Weights per block.
        block_size: usize,
    },
    /// The byte buffer does not hold exactly `rows × blocks per row` blocks.
    #[error(
        "{format} [{rows} × {cols}]: expected {expected} bytes ({rows} rows × {blocks_per_row} blocks × {block_bytes} bytes), got {found}"
    )]
    DataLength {
        /// The format.
        format: BlockFormat,
        /// Rows (out features).
        rows: usize,
        /// Columns (in features).
        cols: usize,
        /// Blocks per row.
        blocks_per_row: usize,
        /// Bytes per block.
        block_bytes: usize,
        /// Bytes expected.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// `rows × cols` (or the byte size) overflows `usize`.
    #[error("shape [{rows} × {cols}] is too large")]
    TooLarge {
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
    },
    /// A caller's buffer has the wrong length.
    #[error("{what}: expected {expected} values, got {found}")]
    BufferLength {
        /// Which buffer.
        what: &'static str,
        /// Length expected.
        expected: usize,
        /// Length given.
        found: usize,
    },
    /// A byte range lies outside the buffer it should borrow from.
    #[error("byte range {start}..{end} is outside a buffer of {len} bytes")]
    Range {
        /// Range start.
        start: usize,
        /// Range end.
        end: usize,
        /// Length of the owner's bytes.
        len: usize,
    },
    /// A row index past the end.
    #[error("row {row} is out of range for a matrix of {rows} rows")]
    Row {
        /// Row asked for.
        row: usize,
        /// Rows in the matrix.
        rows: usize,
    },
    /// Rows of an interleaved matrix asked for that do not fall between its
    /// pairs of groups.
    #[error(
        "rows {start}..{end} of an interleaved matrix do not fall between its pairs of 8-row groups (every 16 rows)"
    )]
    Interleaved {
        /// Range start.
        start: usize,
        /// Range end.
        end: usize,
    },
    /// [`QuantMatrix::matmul_with`] asked for a kernel this CPU cannot run.
    #[error("the {0} kernel is not available on this CPU")]
    KernelUnavailable(&'static str),
}

impl From<QuantError> for mdsa_engine::ModelError {
    fn from(error: QuantError) -> Self {
        Self::format(error)
    }
}

/// Which implementation of the dot products runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Portable Rust, any CPU; the reference for the others.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C, detected at run time.
    Avx2,
    /// [`Kernel::Avx2`] plus AVX-512 VNNI (`vpdpbusd` on 256-bit vectors) for
    /// the 32-weight formats: Ice Lake, Zen 4 and later. Interleaved matrices
    /// run on 512-bit vectors, 16 rows at a time, where the CPU also has
    /// AVX-512 F, BW and VL (every CPU with AVX-512 VNNI so far).
    Avx512Vnni,
}

impl Kernel {
    /// Every kernel, slowest first.
    pub const ALL: [Kernel; 3] = [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512Vnni];

    /// The fastest kernel this CPU supports.
    pub fn best() -> Kernel {
        Kernel::ALL
            .into_iter()
            .rev()
            .find(|k| k.is_available())
            .unwrap_or(Kernel::Scalar)
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => simd_allowed() && x86::avx2::Token::detect().is_some(),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => simd_allowed() && x86::vnni::Token::detect().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512Vnni => false,
        }
    }

    /// `"scalar"`, `"avx2"` or `"avx512vnni"`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512Vnni => "avx512vnni",
        }
    }
}

/// Name of the kernel [`QuantMatrix::matmul`] runs on this CPU: `"avx512vnni"`,
/// `"avx2"` or `"scalar"` (benchmarks print it, so that a number says which
/// path made it).
pub fn kernel_name() -> &'static str {
    Kernel::best().name()
}

pub use mdsa_engine::vector::simd_allowed;

/// Runs `f` on a rayon worker thread (directly, if already on one).
///
/// burn-flex splits its tensor ops over rayon's global pool. Called from a
/// thread outside the pool, every such split is injected into the pool and the
/// caller sleeps until it is done (10–15 µs per op on the 2-core reference
/// machine), so wrap a forward pass that runs burn's ops on the CPU (the
/// decoder families without a host path) in this. The host kernels
/// ([`QuantMatrix::matmul`], the host decoder blocks and encoder) split their
/// work over mdsa's own thread team instead, from any thread.
pub fn run_in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// Bytes of quantized weights, owned or borrowed from a shared owner (an
/// `Arc<memmap2::Mmap>` of a GGUF file, say) without a copy.
#[derive(Clone)]
pub struct QuantBytes {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    start: usize,
    len: usize,
}

impl QuantBytes {
    /// `owner.as_ref()[range]`, keeping `owner` alive as long as the bytes are
    /// used. Fails if the range is outside the owner's bytes.
    pub fn from_shared<T>(owner: Arc<T>, range: Range<usize>) -> Result<Self, QuantError>
    where
        T: AsRef<[u8]> + Send + Sync + 'static,
    {
        let len = (*owner).as_ref().len();
        if range.start > range.end || range.end > len {
            return Err(QuantError::Range {
                start: range.start,
                end: range.end,
                len,
            });
        }
        Ok(Self {
            owner,
            start: range.start,
            len: range.end - range.start,
        })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        let all = (*self.owner).as_ref();
        // The range was checked against the owner at construction, and an owner
        // behind an `Arc` (Vec, mmap) does not change length; `get` keeps even a
        // misbehaving `AsRef` impl from panicking here.
        all.get(self.start..self.start + self.len).unwrap_or(&[])
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The bytes `range` of these, sharing the owner (no copy).
    pub fn slice(&self, range: Range<usize>) -> Result<Self, QuantError> {
        if range.start > range.end || range.end > self.len {
            return Err(QuantError::Range {
                start: range.start,
                end: range.end,
                len: self.len,
            });
        }
        Ok(Self {
            owner: Arc::clone(&self.owner),
            start: self.start + range.start,
            len: range.end - range.start,
        })
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl From<Vec<u8>> for QuantBytes {
    fn from(v: Vec<u8>) -> Self {
        let len = v.len();
        Self {
            owner: Arc::new(v),
            start: 0,
            len,
        }
    }
}

impl From<&[u8]> for QuantBytes {
    fn from(v: &[u8]) -> Self {
        v.to_vec().into()
    }
}

impl std::fmt::Debug for QuantBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuantBytes")
            .field("start", &self.start)
            .field("len", &self.len)
            .finish()
    }
}

/// A weight matrix `[rows, cols]` (out features × in features, the layout of a
/// GGUF linear weight) stored as blocks of [`BlockFormat`]: one row after
/// another as GGUF stores them, or, after [`QuantMatrix::interleaved`], in
/// groups of 8 rows that the SIMD kernels multiply 8 rows at a time.
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    format: BlockFormat,
    rows: usize,
    cols: usize,
    data: QuantBytes,
    interleaved: bool,
}

thread_local! {
    /// The last matmul's Q8 activation blocks on this thread, reused by the
    /// next (a decode step quantizes its activations ~150 times).
    static Q8_BLOCKS: std::cell::Cell<Vec<BlockQ8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Below this many weights (times activation rows) a matmul stays on the
/// calling thread: waking a sleeping team worker costs a few microseconds,
/// which is what a 192 × 576 Q4_1 projection takes on one core.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// Tasks per thread a matmul is cut into. A task is handed out by one atomic
/// operation on the team's state, whose cache line then moves between the
/// cores: ~0.3 µs a task on a 2-core Xeon (Emerald Rapids), where a short
/// query's encoder ran 8 % faster with 2 tasks a thread than with 8. Two,
/// not one, so that a thread that starts late still finds work.
const TASKS_PER_THREAD: usize = 2;

/// Rows per task, at least (a multiple of 4, so that a future 4-row tile
/// never straddles tasks).
const MIN_ROWS_PER_TASK: usize = 16;

/// Activation rows per thread from which an interleaved matmul splits its
/// activation rows rather than its weight rows over the threads: each
/// thread then reads every weight, but writes its output rows in place.
const ROWS_PER_THREAD_TO_SPLIT_ROWS: usize = 64;

impl QuantMatrix {
    /// Wraps `data` as a `[rows, cols]` matrix of `format` blocks.
    ///
    /// `cols` must be a multiple of the block size and `data` exactly
    /// `rows × cols / block_size × block_bytes` bytes.
    pub fn new(
        format: BlockFormat,
        rows: usize,
        cols: usize,
        data: impl Into<QuantBytes>,
    ) -> Result<Self, QuantError> {
        let data = data.into();
        let bs = format.block_size();
        if !cols.is_multiple_of(bs) {
            return Err(QuantError::Columns {
                format,
                cols,
                block_size: bs,
            });
        }
        let blocks_per_row = cols / bs;
        let expected = rows
            .checked_mul(blocks_per_row)
            .and_then(|b| b.checked_mul(format.block_bytes()))
            .ok_or(QuantError::TooLarge { rows, cols })?;
        if data.len() != expected {
            return Err(QuantError::DataLength {
                format,
                rows,
                cols,
                blocks_per_row,
                block_bytes: format.block_bytes(),
                expected,
                found: data.len(),
            });
        }
        Ok(Self {
            format,
            rows,
            cols,
            data,
            interleaved: false,
        })
    }

    /// Rows `rows` of this matrix as a matrix of their own, sharing the bytes.
    /// An interleaved matrix splits only between its pairs of groups (every
    /// 16 rows), or at its end.
    pub fn row_range(&self, rows: Range<usize>) -> Result<Self, QuantError> {
        let row_bytes = self.row_bytes();
        let pair = 2 * interleave::GROUP;
        if self.interleaved
            && !(rows.start.is_multiple_of(pair)
                && (rows.end.is_multiple_of(pair) || rows.end == self.rows))
        {
            return Err(QuantError::Interleaved {
                start: rows.start,
                end: rows.end,
            });
        }
        let data = self
            .data
            .slice(rows.start * row_bytes..rows.end * row_bytes)?;
        Ok(Self {
            interleaved: self.interleaved,
            ..Self::new(self.format, rows.len(), self.cols, data)?
        })
    }

    /// This matrix in the interleaved layout the SIMD kernels multiply 8 rows
    /// at a time (a copy of the bytes, rearranged), where the format has one
    /// (Q8_0, Q4_0, Q4_1), the rows come in groups of 8 and this CPU has a
    /// SIMD kernel; otherwise unchanged. Results are the same either way up to
    /// the order of f32 additions.
    pub fn interleaved(self) -> Self {
        if self.interleaved
            || !interleave::supports(self.format)
            || self.rows == 0
            || !self.rows.is_multiple_of(interleave::GROUP)
            || Kernel::best() == Kernel::Scalar
        {
            return self;
        }
        self.into_interleaved()
    }

    /// [`QuantMatrix::interleaved`] on any CPU (tests run the portable kernel
    /// on it); `None` where the format or row count has no interleaved layout.
    pub fn to_interleaved(&self) -> Option<Self> {
        (interleave::supports(self.format)
            && self.rows > 0
            && self.rows.is_multiple_of(interleave::GROUP))
        .then(|| self.clone().into_interleaved())
    }

    fn into_interleaved(self) -> Self {
        if self.interleaved {
            return self;
        }
        let blocks_per_row = self.cols / self.format.block_size();
        let data = interleave::interleave(self.format, blocks_per_row, self.bytes());
        Self {
            data: data.into(),
            interleaved: true,
            ..self
        }
    }

    /// The rows of `parts`, one matrix after another, as one matrix (a copy):
    /// projections that read the same input (Q, K and V; gate and up) run
    /// as one matmul, which quantizes the input once and splits the work
    /// over the cores once. `None` unless all share format, columns and
    /// layout.
    pub fn concat_rows(parts: &[&QuantMatrix]) -> Option<Self> {
        let first = parts.first()?;
        if parts.iter().any(|m| {
            m.format != first.format || m.cols != first.cols || m.interleaved != first.interleaved
        }) {
            return None;
        }
        let rows = parts.iter().map(|m| m.rows).sum();
        let pair = 2 * interleave::GROUP;
        if first.interleaved
            && parts[..parts.len() - 1]
                .iter()
                .any(|m| !m.rows.is_multiple_of(pair))
        {
            // A part ending in a lone group would leave it unpaired in the
            // middle: interleave the rows again as one matrix.
            let blocks = first.cols / first.format.block_size();
            let plain: Vec<u8> = parts
                .iter()
                .flat_map(|m| {
                    (0..m.rows).flat_map(|r| interleave::read_row(m.format, blocks, m.bytes(), r))
                })
                .collect();
            return Self::new(first.format, rows, first.cols, plain)
                .ok()
                .map(Self::into_interleaved);
        }
        let bytes: Vec<u8> = parts
            .iter()
            .flat_map(|m| m.bytes().iter().copied())
            .collect();
        let matrix = Self::new(first.format, rows, first.cols, bytes).ok()?;
        Some(Self {
            interleaved: first.interleaved,
            ..matrix
        })
    }

    /// Whether the bytes are in the interleaved layout.
    pub fn is_interleaved(&self) -> bool {
        self.interleaved
    }

    /// [`QuantMatrix::new`] from a GGUF `ggml_type` id.
    pub fn from_ggml(
        ggml_type: u32,
        rows: usize,
        cols: usize,
        data: impl Into<QuantBytes>,
    ) -> Result<Self, QuantError> {
        let format =
            BlockFormat::from_ggml_id(ggml_type).ok_or(QuantError::UnsupportedType(ggml_type))?;
        Self::new(format, rows, cols, data)
    }

    /// Quantizes a row-major `[rows, cols]` f32 matrix to Q8_0, Q4_0 or Q4_1
    /// with ggml's reference quantizers (K-quants are read from files only).
    pub fn quantize(
        format: BlockFormat,
        rows: usize,
        cols: usize,
        values: &[f32],
    ) -> Result<Self, QuantError> {
        let count = rows
            .checked_mul(cols)
            .ok_or(QuantError::TooLarge { rows, cols })?;
        if values.len() != count {
            return Err(QuantError::BufferLength {
                what: "values to quantize",
                expected: count,
                found: values.len(),
            });
        }
        if !cols.is_multiple_of(QK) {
            return Err(QuantError::Columns {
                format,
                cols,
                block_size: QK,
            });
        }
        let bytes = match format {
            BlockFormat::Q8_0 => quantize_row_q8_0(values)?,
            BlockFormat::Q4_0 => quantize_row_q4_0(values)?,
            BlockFormat::Q4_1 => quantize_row_q4_1(values)?,
            BlockFormat::Q5_0
            | BlockFormat::Q5_1
            | BlockFormat::Q4_K
            | BlockFormat::Q5_K
            | BlockFormat::Q6_K => {
                return Err(QuantError::UnsupportedType(format.ggml_id()));
            }
        };
        Self::new(format, rows, cols, bytes)
    }

    /// The block format.
    pub fn format(&self) -> BlockFormat {
        self.format
    }

    /// Rows (out features).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (in features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The raw blocks: row after row, or in groups of 8 rows when
    /// [`QuantMatrix::is_interleaved`].
    pub fn bytes(&self) -> &[u8] {
        self.data.as_slice()
    }

    /// Bytes of weights this matrix reads per matmul (and holds, when owned).
    pub fn resident_bytes(&self) -> usize {
        self.data.len()
    }

    fn row_bytes(&self) -> usize {
        self.cols / self.format.block_size() * self.format.block_bytes()
    }

    /// All weights as f32, row-major `[rows, cols]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        if self.interleaved {
            for (row, values) in out.chunks_exact_mut(self.cols.max(1)).enumerate() {
                let _ = self.dequantize_row_into(row, values);
            }
            return out;
        }
        // Lengths were checked in `new`, so this cannot fail.
        let _ = dequantize_row(self.format, self.bytes(), &mut out);
        out
    }

    /// Row `row` as f32 into `out` (`cols` values): an embedding lookup.
    pub fn dequantize_row_into(&self, row: usize, out: &mut [f32]) -> Result<(), QuantError> {
        check_row_request(row, self.rows, self.cols, out)?;
        if self.interleaved {
            let blocks = self.cols / self.format.block_size();
            let bytes = interleave::read_row(self.format, blocks, self.bytes(), row);
            return dequantize_row(self.format, &bytes, out);
        }
        let rb = self.row_bytes();
        dequantize_row(self.format, &self.bytes()[row * rb..(row + 1) * rb], out)
    }

    /// `out[i][r] = Σ_c x[i][c] · W[r][c]` for `n` input rows: `x` is `[n, cols]`,
    /// `out` is `[n, rows]`, both row-major (x · Wᵀ, a linear layer without bias).
    ///
    /// Runs the fastest kernel for this CPU ([`kernel_name`]), split over
    /// the thread team for large matrices (a persistent team whose workers
    /// spin briefly between calls, so a split costs well under a microsecond
    /// when they are awake, called from any thread). The activations
    /// are quantized to 8 bits first, so the result differs from an f32 matmul of
    /// [`QuantMatrix::dequantize`] by at most Σ_blocks max|x_block| / 254 ·
    /// Σ|w_block| per output (plus f32 rounding); `tests/quant.rs` checks that
    /// bound.
    pub fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]) -> Result<(), QuantError> {
        self.matmul_with(Kernel::best(), x, n, out)
    }

    /// [`QuantMatrix::matmul`] with a chosen kernel (tests compare them).
    pub fn matmul_with(
        &self,
        kernel: Kernel,
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) -> Result<(), QuantError> {
        let expect = |what, expected: Option<usize>, found| match expected {
            Some(e) if e == found => Ok(()),
            Some(e) => Err(QuantError::BufferLength {
                what,
                expected: e,
                found,
            }),
            None => Err(QuantError::TooLarge {
                rows: n,
                cols: self.cols,
            }),
        };
        expect("matmul input (n × cols)", n.checked_mul(self.cols), x.len())?;
        expect(
            "matmul output (n × rows)",
            n.checked_mul(self.rows),
            out.len(),
        )?;
        if !kernel.is_available() {
            return Err(QuantError::KernelUnavailable(kernel.name()));
        }
        if n == 0 || self.rows == 0 {
            return Ok(());
        }
        if self.cols == 0 {
            // An empty sum.
            out.fill(0.0);
            return Ok(());
        }
        let acts = self.quantize_activations(kernel, x, n);
        let parallel = self.rows.saturating_mul(self.cols).saturating_mul(n) >= PARALLEL_MIN_WORK
            && team::threads() > 1
            && self.rows >= 2 * MIN_ROWS_PER_TASK;
        if self.interleaved {
            self.run_groups(kernel, &acts, out, parallel);
        } else if n == 1 {
            // [1, rows] is already the rows-major layout the kernels write.
            self.run_rows(kernel, &acts, out, parallel);
        } else {
            // The kernels write [rows, n] (rows outer, so a weight row is loaded
            // once for all n activation rows); transpose into [n, rows] after.
            let mut tmp = vec![0f32; self.rows * n];
            self.run_rows(kernel, &acts, &mut tmp, parallel);
            for (r, vals) in tmp.chunks_exact(n).enumerate() {
                for (i, &v) in vals.iter().enumerate() {
                    out[i * self.rows + r] = v;
                }
            }
        }
        if let ActBlocks::Q8(blocks) = acts.blocks {
            Q8_BLOCKS.set(blocks);
        }
        Ok(())
    }

    fn quantize_activations(&self, kernel: Kernel, x: &[f32], n: usize) -> Activations {
        let per_row = self.cols / self.format.block_size();
        let blocks = if self.format.is_k_quant() {
            let mut b = vec![BlockQ8K::ZERO; per_row * n];
            match simd(kernel) {
                #[cfg(target_arch = "x86_64")]
                Simd::Avx2(t) => t.quantize_q8k(x, &mut b),
                #[cfg(target_arch = "x86_64")]
                Simd::Vnni(t) => t.quantize_q8k(x, &mut b),
                Simd::None => act::quantize_q8k_body(x, &mut b),
            }
            ActBlocks::Q8K(b)
        } else {
            let mut b = Q8_BLOCKS.take();
            // Every block is written below: only growth needs a value.
            b.resize(per_row * n, BlockQ8::ZERO);
            match simd(kernel) {
                #[cfg(target_arch = "x86_64")]
                Simd::Avx2(t) => t.quantize_q8(x, &mut b),
                #[cfg(target_arch = "x86_64")]
                Simd::Vnni(t) => t.quantize_q8(x, &mut b),
                Simd::None => act::quantize_q8_body(x, &mut b),
            }
            ActBlocks::Q8(b)
        };
        Activations { n, per_row, blocks }
    }

    /// Fills `out` (`[rows, n]`) over whole rows, split into team tasks of
    /// contiguous rows when `parallel` (each task streams its own stretch of
    /// the weights, which keeps the hardware prefetchers on one stream per core).
    fn run_rows(&self, kernel: Kernel, acts: &Activations, out: &mut [f32], parallel: bool) {
        let rb = self.row_bytes();
        let w = self.bytes();
        let n = acts.n;
        if !parallel {
            rows_kernel(kernel, self.format, w, rb, acts, out);
            return;
        }
        let threads = team::threads();
        let per_task = self
            .rows
            .div_ceil(threads * TASKS_PER_THREAD)
            .next_multiple_of(4)
            .max(MIN_ROWS_PER_TASK);
        team::for_each_piece_mut(out, per_task * n, |k, o| {
            let wc = &w[k * per_task * rb..][..o.len() / n * rb];
            rows_kernel(kernel, self.format, wc, rb, acts, o);
        });
    }
}

impl QuantMatrix {
    /// [`QuantMatrix::run_rows`] for the interleaved layout. The kernels write
    /// each activation row's outputs in place: a task takes a run of the
    /// groups (its columns of every row of `out`) or of the activation rows.
    fn run_groups(&self, kernel: Kernel, acts: &Activations, out: &mut [f32], parallel: bool) {
        use interleave::GROUP;
        let (n, rows) = (acts.n, self.rows);
        let group_bytes = GROUP * self.row_bytes();
        let w = self.bytes();
        let rows_of = |start: usize, count: usize| acts.q8_rows(start, count);
        let Some(all) = rows_of(0, n) else {
            // Interleaved formats always take Q8 activations.
            out.fill(0.0);
            return;
        };
        let run = |w: &[u8], a: Q8Rows<'_>, o: &mut ColumnBlock<'_, f32>| {
            groups_kernel(kernel, self.format, w, group_bytes, a, o)
        };
        if !parallel {
            run(w, all, &mut ColumnBlock::whole(out, rows));
            return;
        }
        let threads = team::threads();
        if n >= ROWS_PER_THREAD_TO_SPLIT_ROWS * threads {
            // Many activation rows (a batch, a long prompt): each task takes
            // a run of them against every group (whose weights then stay in
            // its cache).
            let per_task = n.div_ceil(2 * threads);
            team::for_each_piece_mut(out, per_task * rows, |t, o| {
                if let Some(a) = rows_of(t * per_task, o.len() / rows) {
                    run(w, a, &mut ColumnBlock::whole(o, rows));
                }
            });
            return;
        }
        // Few activation rows (a decode step, a short query): each task
        // takes a run of the groups, that is, columns of every row.
        // An even number of groups per task: the 512-bit kernel takes them
        // in pairs.
        let per_task = (rows / GROUP)
            .div_ceil(threads * TASKS_PER_THREAD)
            .max(MIN_ROWS_PER_TASK / GROUP)
            .next_multiple_of(2);
        team::for_each_column_block(out, rows, per_task * GROUP, |k, mut block| {
            let weights = &w[k * per_task * group_bytes..][..block.width() / GROUP * group_bytes];
            run(weights, all, &mut block);
        });
    }
}

/// Interleaved groups `w` (of `group_bytes` each) against the activation
/// rows `acts`: group `g`'s 8 outputs for row `i` go to `out[i · stride + 8g..]`.
fn groups_kernel(
    kernel: Kernel,
    format: BlockFormat,
    w: &[u8],
    group_bytes: usize,
    acts: Q8Rows<'_>,
    out: &mut ColumnBlock<'_, f32>,
) {
    match simd(kernel) {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2(t) => t.groups(format, w, group_bytes, acts, out),
        #[cfg(target_arch = "x86_64")]
        Simd::Vnni(t) => match zmm::Token::detect() {
            // Two groups per 512-bit register where the CPU has them.
            Some(wide) => wide.groups(format, w, group_bytes, acts, out),
            None => t.groups(format, w, group_bytes, acts, out),
        },
        Simd::None => scalar_groups(format, w, group_bytes, acts, out),
    }
}

/// The portable kernel on interleaved groups: each group's rows are put back
/// in GGUF order and multiplied as such (a reference, not a fast path: CPUs
/// without SIMD kernels never interleave). Same layout as [`groups_kernel`].
fn scalar_groups(
    format: BlockFormat,
    w: &[u8],
    group_bytes: usize,
    acts: Q8Rows<'_>,
    out: &mut ColumnBlock<'_, f32>,
) {
    use interleave::GROUP;
    let n = acts.n;
    let acts = Activations {
        n,
        per_row: acts.per_row,
        blocks: ActBlocks::Q8(acts.blocks.to_vec()),
    };
    let row_bytes = group_bytes / GROUP;
    let mut rows_out = vec![0f32; GROUP * n];
    for g in 0..w.len() / group_bytes.max(1) {
        let rows: Vec<u8> = (0..GROUP)
            .flat_map(|r| interleave::read_row(format, acts.per_row, w, g * GROUP + r))
            .collect();
        scalar::rows(format, &rows, row_bytes, &acts, &mut rows_out);
        // [8, n] → row i's 8 outputs at 8g
        for (r, vals) in rows_out.chunks_exact(n).enumerate() {
            for (i, &v) in vals.iter().enumerate() {
                out.row_mut(i)[g * GROUP + r] = v;
            }
        }
    }
}

fn rows_kernel(
    kernel: Kernel,
    format: BlockFormat,
    w: &[u8],
    row_bytes: usize,
    acts: &Activations,
    out: &mut [f32],
) {
    match simd(kernel) {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2(t) => t.rows(format, w, row_bytes, acts, out),
        #[cfg(target_arch = "x86_64")]
        Simd::Vnni(t) => t.rows(format, w, row_bytes, acts, out),
        Simd::None => scalar::rows(format, w, row_bytes, acts, out),
    }
}

/// A kernel choice with its proof of CPU support.
enum Simd {
    #[cfg(target_arch = "x86_64")]
    Avx2(x86::avx2::Token),
    #[cfg(target_arch = "x86_64")]
    Vnni(x86::vnni::Token),
    None,
}

/// The SIMD token for `kernel` when the CPU has it (callers checked
/// availability; a missing feature falls back to the portable code).
fn simd(kernel: Kernel) -> Simd {
    #[cfg(target_arch = "x86_64")]
    match kernel {
        Kernel::Avx2 => {
            if let Some(t) = x86::avx2::Token::detect() {
                return Simd::Avx2(t);
            }
        }
        Kernel::Avx512Vnni => {
            if let Some(t) = x86::vnni::Token::detect() {
                return Simd::Vnni(t);
            }
        }
        Kernel::Scalar => {}
    }
    let _ = kernel;
    Simd::None
}

/// Checks a request for row `row` of a `[rows, cols]` matrix into `out`.
pub(crate) fn check_row_request(
    row: usize,
    rows: usize,
    cols: usize,
    out: &[f32],
) -> Result<(), QuantError> {
    if row >= rows {
        return Err(QuantError::Row { row, rows });
    }
    if out.len() != cols {
        return Err(QuantError::BufferLength {
            what: "row output",
            expected: cols,
            found: out.len(),
        });
    }
    Ok(())
}
