//! x86-64 SIMD dot products on quantized blocks: AVX2 + FMA + F16C, and the
//! same code compiled again with AVX-512 VNNI (for `vpdpbusd`).
//!
//! SIMD intrinsics that touch memory take raw pointers, so this module needs
//! `unsafe`: the workspace denies `unsafe_code`, and the exception is made here
//! only. Every `unsafe` block is one unaligned load from a slice whose length is
//! checked right there (`load128`, `load256`, `load256_i8`), or the call into a
//! `#[target_feature]` entry point behind a `Token` that proves the CPU has the
//! features. Register-only intrinsics are safe to call inside
//! `#[target_feature]` functions.
//!
//! The kernels follow llama.cpp's `ggml_vec_dot_*_q8_*` for AVX2: unpack the
//! weight block to bytes, multiply with the i8 activations with
//! `_mm256_maddubs_epi16` (u8 × i8 → pairs summed to i16; the values are small
//! enough that it never saturates), widen with `_mm256_madd_epi16` (with ones or
//! with the sub-block scales), convert once per block and accumulate in f32 with
//! FMA. With VNNI, `_mm256_dpbusd_epi32` does the u8 × i8 → i32 step of the
//! 32-blocks in one instruction instead of two. Each function takes `NA`
//! activation rows at once so that prefill unpacks a weight block once for
//! several activation rows.
//!
//! A `#[target_feature]` function only inlines into callers with the same
//! features, so the whole call tree is written once as a macro and compiled per
//! feature set; the variants differ only in `udot`.
#![allow(unsafe_code)]

/// The kernels for one feature set: `$features` for `#[target_feature]`,
/// `$detect` the run-time check for them, `$udot` the u8 × i8 dot product of 32
/// bytes into 8 i32 lanes.
macro_rules! kernels {
    ($features:literal, $detect:expr, $udot:item, $dpadd:item, $offset_q8:literal) => {
        use std::arch::x86_64::*;

        use crate::quant::act::{ActBlocks, Activations, BlockQ8, BlockQ8K, Q8Rows, quantize_q8k_body};
        use crate::quant::formats::{BlockFormat, scale_min_k4};
        use crate::quant::interleave::paired;
        use crate::team::ColumnBlock;

        /// Proof that this CPU has the features this module is compiled for: the
        /// safe entry points take one, so the `#[target_feature]` code can only run
        /// after the check.
        #[derive(Debug, Clone, Copy)]
        pub(crate) struct Token(());

        impl Token {
            /// Checks the CPU at run time (std caches the result).
            pub(crate) fn detect() -> Option<Self> {
                $detect.then_some(Token(()))
            }

            /// See [`crate::quant::scalar::rows`]; same contract, same integer sums.
            pub(crate) fn rows(
                self,
                format: BlockFormat,
                w: &[u8],
                row_bytes: usize,
                acts: &Activations,
                out: &mut [f32],
            ) {
                // SAFETY: a `Token` exists only if `detect` found every feature this
                // module's `#[target_feature]` functions are compiled for.
                unsafe { rows_impl(format, w, row_bytes, acts, out) }
            }

            /// See [`crate::quant::QuantMatrix::run_groups`]: interleaved groups
            /// of 8 rows against every activation row; group `g`'s outputs for
            /// activation row `i` go to `out.row_mut(i)[8g..][..8]`.
            pub(crate) fn groups(
                self,
                format: BlockFormat,
                w: &[u8],
                group_bytes: usize,
                acts: Q8Rows<'_>,
                out: &mut ColumnBlock<'_, f32>,
            ) {
                // SAFETY: as in `rows`.
                unsafe { groups_impl(format, w, group_bytes, acts, out) }
            }

            /// Activation quantization compiled for these features (the same results
            /// as the portable one).
            pub(crate) fn quantize_q8(self, x: &[f32], out: &mut [BlockQ8]) {
                // SAFETY: as in `rows`.
                unsafe { quantize_q8_simd(x, out) }
            }

            /// See [`Token::quantize_q8`].
            pub(crate) fn quantize_q8k(self, x: &[f32], out: &mut [BlockQ8K]) {
                // SAFETY: as in `rows`.
                unsafe { quantize_q8k_simd(x, out) }
            }
        }

        /// [`quantize_q8_body`] in vector registers: the same products, the
        /// same ties-to-even rounding and clamp, so the same blocks.
        #[target_feature(enable = $features)]
        fn quantize_q8_simd(x: &[f32], out: &mut [BlockQ8]) {
            let sign = _mm256_set1_ps(-0.0);
            let (lo, hi) = (_mm256_set1_epi32(-127), _mm256_set1_epi32(127));
            // packs interleaves the 128-bit lanes; this puts the bytes back in order.
            let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            for (blk, o) in x.chunks_exact(32).zip(out.iter_mut()) {
                let v = [load_ps(&blk[..8]), load_ps(&blk[8..16]), load_ps(&blk[16..24]), load_ps(&blk[24..32])];
                let abs = v.map(|x| _mm256_andnot_ps(sign, x));
                let m = _mm256_max_ps(_mm256_max_ps(abs[0], abs[1]), _mm256_max_ps(abs[2], abs[3]));
                let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
                let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
                let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
                let (d, id) = crate::quant::act::scales(amax);
                let id = _mm256_set1_ps(id);
                let q = v.map(|x| {
                    let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, id));
                    _mm256_max_epi32(_mm256_min_epi32(_mm256_cvtps_epi32(r), hi), lo)
                });
                let total = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
                let t = _mm_add_epi32(_mm256_castsi256_si128(total), _mm256_extracti128_si256::<1>(total));
                let t = _mm_add_epi32(t, _mm_shuffle_epi32::<0b01_00_11_10>(t));
                let sum = _mm_cvtsi128_si32(_mm_add_epi32(t, _mm_shuffle_epi32::<0b10_11_00_01>(t)));
                let words = _mm256_packs_epi32(q[0], q[1]);
                let words2 = _mm256_packs_epi32(q[2], q[3]);
                let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(words, words2), order);
                store256_i8(&mut o.qs, bytes);
                o.d = d;
                o.s = d * sum as f32;
            }
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn load_ps(s: &[f32]) -> __m256 {
            let s = &s[..8];
            // SAFETY: `s` has exactly 8 readable f32s; loadu has no alignment need.
            unsafe { _mm256_loadu_ps(s.as_ptr()) }
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn store256_i8(s: &mut [i8; 32], v: __m256i) {
            // SAFETY: `s` has exactly 32 writable bytes; storeu has no alignment need.
            unsafe { _mm256_storeu_si256(s.as_mut_ptr().cast(), v) }
        }

        #[target_feature(enable = $features)]
        fn quantize_q8k_simd(x: &[f32], out: &mut [BlockQ8K]) {
            quantize_q8k_body(x, out)
        }

        // Formats of the 32-block family, as const generic parameters so that each
        // kernel is compiled separately with its branches resolved.
        const Q8_0: u8 = 0;
        const Q4_0: u8 = 1;
        const Q4_1: u8 = 2;
        const Q4_K: u8 = 3;
        const Q5_K: u8 = 4;
        const Q6_K: u8 = 5;
        const Q5_0: u8 = 6;
        const Q5_1: u8 = 7;

        #[target_feature(enable = $features)]
        fn rows_impl(format: BlockFormat, w: &[u8], row_bytes: usize, acts: &Activations, out: &mut [f32]) {
            let (n, per_row) = (acts.n, acts.per_row);
            match (format, &acts.blocks) {
                (BlockFormat::Q8_0, ActBlocks::Q8(a)) => {
                    rows_q8::<Q8_0, 34>(w, row_bytes, a, n, per_row, out)
                }
                (BlockFormat::Q4_0, ActBlocks::Q8(a)) => {
                    rows_q8::<Q4_0, 18>(w, row_bytes, a, n, per_row, out)
                }
                (BlockFormat::Q4_1, ActBlocks::Q8(a)) => {
                    rows_q8::<Q4_1, 20>(w, row_bytes, a, n, per_row, out)
                }
                (BlockFormat::Q5_0, ActBlocks::Q8(a)) => {
                    rows_q8::<Q5_0, 22>(w, row_bytes, a, n, per_row, out)
                }
                (BlockFormat::Q5_1, ActBlocks::Q8(a)) => {
                    rows_q8::<Q5_1, 24>(w, row_bytes, a, n, per_row, out)
                }
                (BlockFormat::Q4_K, ActBlocks::Q8K(a)) => {
                    rows_k::<Q4_K, 144>(w, row_bytes, a, n, per_row, out)
                }
                (BlockFormat::Q5_K, ActBlocks::Q8K(a)) => {
                    rows_k::<Q5_K, 176>(w, row_bytes, a, n, per_row, out)
                }
                (BlockFormat::Q6_K, ActBlocks::Q8K(a)) => {
                    rows_k::<Q6_K, 210>(w, row_bytes, a, n, per_row, out)
                }
                // The dispatcher always pairs a format with its activation family.
                _ => out.fill(0.0),
            }
        }

        #[target_feature(enable = $features)]
        fn groups_impl(format: BlockFormat, w: &[u8], group_bytes: usize, acts: Q8Rows<'_>, out: &mut ColumnBlock<'_, f32>) {
            let Q8Rows { blocks: a, n, per_row } = acts;
            match format {
                BlockFormat::Q8_0 => groups_q8::<Q8_0, 272>(w, group_bytes, a, n, per_row, out),
                BlockFormat::Q4_0 => groups_q8::<Q4_0, 144>(w, group_bytes, a, n, per_row, out),
                BlockFormat::Q4_1 => groups_q8::<Q4_1, 160>(w, group_bytes, a, n, per_row, out),
                // Only these formats are ever interleaved.
                _ => out.fill(0.0),
            }
        }

        /// Interleaved groups of 8 rows: activations 4 at a time (one weight
        /// unpack per 4), then the last 1 to 3 together; each result is 8
        /// rows' outputs, stored at `out.row_mut(i)[8g..]` (activation row
        /// `i`, group `g`). The groups of a pair are read one after the
        /// other, each from every other block.
        #[inline]
        #[target_feature(enable = $features)]
        fn groups_q8<const F: u8, const GB: usize>(
            w: &[u8],
            group_bytes: usize,
            a: &[BlockQ8],
            n: usize,
            per_row: usize,
            out: &mut ColumnBlock<'_, f32>,
        ) {
            if group_bytes == 0 || n == 0 || per_row == 0 {
                out.fill(0.0);
                return;
            }
            let (blocks, _) = w.as_chunks::<GB>();
            let groups = blocks.len() / per_row;
            let act = |i: usize| &a[i * per_row..(i + 1) * per_row];
            for g in 0..groups {
                // Group `g`'s blocks: every other one of its pair's, or its own.
                let (group, stride): (&[[u8; GB]], usize) = if paired(groups, g) {
                    let first = g - g % 2;
                    (&blocks[first * per_row + g % 2..(first + 2) * per_row], 2)
                } else {
                    (&blocks[g * per_row..(g + 1) * per_row], 1)
                };
                let mut i = 0;
                while i + 4 <= n {
                    let r = dot8::<F, GB, 4>(group, stride, per_row, [act(i), act(i + 1), act(i + 2), act(i + 3)]);
                    for (k, v) in r.iter().enumerate() {
                        store8(&mut out.row_mut(i + k)[8 * g..], *v);
                    }
                    i += 4;
                }
                // The last 1 to 3 rows together: one weight unpack for them
                // all, and independent sums for the out-of-order core.
                let rest: &[__m256] = match n - i {
                    3 => &dot8::<F, GB, 3>(group, stride, per_row, [act(i), act(i + 1), act(i + 2)]),
                    2 => &dot8::<F, GB, 2>(group, stride, per_row, [act(i), act(i + 1)]),
                    1 => &dot8::<F, GB, 1>(group, stride, per_row, [act(i)]),
                    _ => &[],
                };
                for (k, v) in rest.iter().enumerate() {
                    store8(&mut out.row_mut(i + k)[8 * g..], *v);
                }
            }
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn store8(o: &mut [f32], v: __m256) {
            let o = &mut o[..8];
            // SAFETY: `o` has exactly 8 writable f32s; storeu has no alignment need.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), v) }
        }

        /// Bytes `4k..4k + 4` of an activation block in every 32-bit lane.
        #[inline]
        #[target_feature(enable = $features)]
        fn bcast4(qs: &[i8; 32], k: usize) -> __m256i {
            let q = &qs[4 * k..4 * k + 4];
            _mm256_set1_epi32(i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8]))
        }

        $dpadd

        /// One interleaved group (8 rows: `nb` blocks, every `stride`-th of
        /// `group`) against `NA` activation rows: lane `r` of result `k` is
        /// ⟨row r, activation k⟩.
        #[inline]
        #[target_feature(enable = $features)]
        fn dot8<const F: u8, const GB: usize, const NA: usize>(
            group: &[[u8; GB]],
            stride: usize,
            nb: usize,
            acts: [&[BlockQ8]; NA],
        ) -> [__m256; NA] {
            let mut acts_nb: [&[BlockQ8]; NA] = [&[]; NA];
            for k in 0..NA {
                acts_nb[k] = &acts[k][..nb];
            }
            // Q8_0 as unsigned bytes (+128) where `vpdpbusd` takes them whole;
            // with `vpmaddubsw` that could saturate, so those keep the sign trick.
            let offset_q8 = F == Q8_0 && $offset_q8;
            let m4 = _mm256_set1_epi8(0x0F);
            let mut acc = [_mm256_setzero_ps(); NA];
            for (b, blk) in group.iter().step_by(stride).take(nb).enumerate() {
                let d = _mm256_cvtph_ps(load128(&blk[..16]));
                // The term that multiplies each activation block's `s` (d · Σq):
                // Q4_1's minimums, or the offset of the unsigned quants.
                let off = match F {
                    Q4_1 => _mm256_cvtph_ps(load128(&blk[16..32])),
                    Q4_0 => _mm256_mul_ps(d, _mm256_set1_ps(-8.0)),
                    _ if offset_q8 => _mm256_mul_ps(d, _mm256_set1_ps(-128.0)),
                    _ => _mm256_setzero_ps(),
                };
                let qs_at = if F == Q4_1 { 32 } else { 16 };
                let mut q = [_mm256_setzero_si256(); 8];
                if F == Q8_0 {
                    for k in 0..8 {
                        q[k] = load256(&blk[qs_at + 32 * k..]);
                        if offset_q8 {
                            q[k] = _mm256_xor_si256(q[k], _mm256_set1_epi8(-128));
                        }
                    }
                } else {
                    for j in 0..4 {
                        let v = load256(&blk[qs_at + 32 * j..]);
                        q[j] = _mm256_and_si256(v, m4);
                        q[j + 4] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
                    }
                }
                for k in 0..NA {
                    let a = &acts_nb[k][b];
                    // Two chains of integer sums, for the latency of `vpdpbusd`.
                    let (mut s0, mut s1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                    for j in (0..8).step_by(2) {
                        if F == Q8_0 && !offset_q8 {
                            s0 = _mm256_add_epi32(s0, idot32::<Q8_0>(q[j], bcast4(&a.qs, j)));
                            s1 = _mm256_add_epi32(s1, idot32::<Q8_0>(q[j + 1], bcast4(&a.qs, j + 1)));
                        } else {
                            s0 = dpadd(s0, q[j], bcast4(&a.qs, j));
                            s1 = dpadd(s1, q[j + 1], bcast4(&a.qs, j + 1));
                        }
                    }
                    let p = _mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1));
                    acc[k] = _mm256_fmadd_ps(p, _mm256_mul_ps(d, _mm256_set1_ps(a.d)), acc[k]);
                    if F != Q8_0 || offset_q8 {
                        acc[k] = _mm256_fmadd_ps(off, _mm256_set1_ps(a.s), acc[k]);
                    }
                }
            }
            acc
        }

        /// Whole rows of a 32-block format: activations in groups of 4 (one weight
        /// unpack per 4 dot products), then one at a time.
        #[inline]
        #[target_feature(enable = $features)]
        fn rows_q8<const F: u8, const BB: usize>(
            w: &[u8],
            row_bytes: usize,
            a: &[BlockQ8],
            n: usize,
            per_row: usize,
            out: &mut [f32],
        ) {
            if row_bytes == 0 || n == 0 || per_row == 0 {
                out.fill(0.0);
                return;
            }
            let (blocks, _) = w.as_chunks::<BB>();
            let act = |i: usize| &a[i * per_row..(i + 1) * per_row];
            for (row, o) in blocks.chunks_exact(per_row).zip(out.chunks_exact_mut(n)) {
                let mut i = 0;
                while i + 4 <= n {
                    let r = dot_q8::<F, BB, 4>(row, [act(i), act(i + 1), act(i + 2), act(i + 3)]);
                    o[i..i + 4].copy_from_slice(&r);
                    i += 4;
                }
                while i < n {
                    o[i] = dot_q8::<F, BB, 1>(row, [act(i)])[0];
                    i += 1;
                }
            }
        }

        /// [`rows_q8`] for the K-quants.
        #[inline]
        #[target_feature(enable = $features)]
        fn rows_k<const F: u8, const BB: usize>(
            w: &[u8],
            row_bytes: usize,
            a: &[BlockQ8K],
            n: usize,
            per_row: usize,
            out: &mut [f32],
        ) {
            if row_bytes == 0 || n == 0 || per_row == 0 {
                out.fill(0.0);
                return;
            }
            let (blocks, _) = w.as_chunks::<BB>();
            let act = |i: usize| &a[i * per_row..(i + 1) * per_row];
            for (row, o) in blocks.chunks_exact(per_row).zip(out.chunks_exact_mut(n)) {
                let mut i = 0;
                while i + 4 <= n {
                    let r = dot_k::<F, BB, 4>(row, [act(i), act(i + 1), act(i + 2), act(i + 3)]);
                    o[i..i + 4].copy_from_slice(&r);
                    i += 4;
                }
                while i < n {
                    o[i] = dot_k::<F, BB, 1>(row, [act(i)])[0];
                    i += 1;
                }
            }
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn load128(s: &[u8]) -> __m128i {
            let s = &s[..16];
            // SAFETY: `s` has exactly 16 readable bytes; loadu has no alignment need.
            unsafe { _mm_loadu_si128(s.as_ptr().cast()) }
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn load256(s: &[u8]) -> __m256i {
            let s = &s[..32];
            // SAFETY: `s` has exactly 32 readable bytes; loadu has no alignment need.
            unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn load256_i8(s: &[i8]) -> __m256i {
            let s = &s[..32];
            // SAFETY: `s` has exactly 32 readable bytes; loadu has no alignment need.
            unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
        }

        /// The two f16 values at `b[0..4]` as f32 (F16C).
        #[inline]
        #[target_feature(enable = $features)]
        fn f16x2(b: &[u8]) -> (f32, f32) {
            let bits = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits));
            (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
        }

        /// The f16 value at `b[0..2]` as f32 (F16C).
        #[inline]
        #[target_feature(enable = $features)]
        fn f16x1(b: &[u8]) -> f32 {
            let bits = u16::from_le_bytes([b[0], b[1]]) as i32;
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)))
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn hsum_ps(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
        }

        /// A 32-weight block as 32 bytes and its f16 header as f32 lanes: [d, m, ..]
        /// for Q4_1 / Q5_1, [d, d, ..] for Q4_0 / Q5_0 (the caller scales lane 1
        /// by −8 / −16 at the end), [d, ..] for Q8_0.
        #[inline]
        #[target_feature(enable = $features)]
        fn unpack32<const F: u8, const BB: usize>(blk: &[u8; BB]) -> (__m256i, __m128) {
            // One movd + vcvtph2ps converts d and m together.
            let bits = i32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]);
            let mut dm = _mm_cvtph_ps(_mm_cvtsi32_si128(bits));
            if F == Q8_0 {
                return (load256(&blk[2..]), dm);
            }
            if F == Q4_0 || F == Q5_0 {
                dm = _mm_moveldup_ps(dm);
            }
            // Where the nibbles start: after d (and m), and the Q5 formats' qh.
            let qs_at = match F {
                Q4_0 => 2,
                Q4_1 => 4,
                Q5_0 => 6,
                _ => 8,
            };
            // Low nibbles are weights 0–15, high nibbles 16–31: load the 16 bytes into
            // both 128-bit lanes, shift the upper lane right by 4, keep 4 bits.
            let q = _mm256_broadcastsi128_si256(load128(&blk[qs_at..]));
            let q = _mm256_srlv_epi32(q, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
            let q = _mm256_and_si256(q, _mm256_set1_epi8(0x0F));
            if F == Q5_0 || F == Q5_1 {
                let qh = &blk[qs_at - 4..qs_at];
                let high = bytes_from_bits(u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]));
                return (_mm256_or_si256(q, _mm256_and_si256(high, _mm256_set1_epi8(0x10))), dm);
            }
            (q, dm)
        }

        /// 32 bytes, byte i 0xFF where bit i of `bits` is set, else 0 (ggml's
        /// `bytes_from_bits_32`).
        #[inline]
        #[target_feature(enable = $features)]
        fn bytes_from_bits(bits: u32) -> __m256i {
            // Byte i takes byte i / 8 of `bits`...
            let spread = _mm256_shuffle_epi8(
                _mm256_set1_epi32(bits as i32),
                _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303),
            );
            // ...then every bit but bit i % 8 is forced on: all ones iff bit i is set.
            let forced = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
            _mm256_cmpeq_epi8(forced, _mm256_set1_epi64x(-1))
        }

        /// Σ x·y over 32 bytes as 8 i32 lanes (x signed for Q8_0, else unsigned).
        #[inline]
        #[target_feature(enable = $features)]
        fn idot32<const F: u8>(x: __m256i, y: __m256i) -> __m256i {
            if F == Q8_0 {
                // The u8 × i8 products want one unsigned operand: move x's sign onto y.
                udot(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
            } else {
                udot(x, y)
            }
        }

        $udot

        /// [d·a.d, m·a.s, ..]: the block's scale for the integer dot, and its
        /// minimum/offset term, in one multiply.
        #[inline]
        #[target_feature(enable = $features)]
        fn scales(dm: __m128, a: &BlockQ8) -> __m128 {
            // Two adjacent f32 fields (repr(C)): LLVM loads them with one movq.
            _mm_mul_ps(dm, _mm_setr_ps(a.d, a.s, 0.0, 0.0))
        }

        /// One weight row of Q8_0 / Q4_0 / Q4_1 against `NA` activation rows.
        #[inline]
        #[target_feature(enable = $features)]
        fn dot_q8<const F: u8, const BB: usize, const NA: usize>(
            row: &[[u8; BB]],
            acts: [&[BlockQ8]; NA],
        ) -> [f32; NA] {
            let nb = row.len();
            let mut acts_nb: [&[BlockQ8]; NA] = [&[]; NA];
            for k in 0..NA {
                acts_nb[k] = &acts[k][..nb];
            }
            let mut acc = [_mm256_setzero_ps(); NA];
            // Lane 1 accumulates the minimum (Q4_1) or offset (Q4_0) terms.
            let mut summ = [_mm_setzero_ps(); NA];
            // Two blocks per step so that the f32 accumulator sees one dependent add per
            // two blocks (FMA latency, not throughput, bounds a single activation row).
            let mut b = 0;
            while b + 2 <= nb {
                let (x0, dm0) = unpack32::<F, BB>(&row[b]);
                let (x1, dm1) = unpack32::<F, BB>(&row[b + 1]);
                for k in 0..NA {
                    let (a0, a1) = (&acts_nb[k][b], &acts_nb[k][b + 1]);
                    let p0 = _mm256_cvtepi32_ps(idot32::<F>(x0, load256_i8(&a0.qs)));
                    let p1 = _mm256_cvtepi32_ps(idot32::<F>(x1, load256_i8(&a1.qs)));
                    let (s0, s1) = (scales(dm0, a0), scales(dm1, a1));
                    let t = _mm256_mul_ps(_mm256_broadcastss_ps(s1), p1);
                    let t = _mm256_fmadd_ps(_mm256_broadcastss_ps(s0), p0, t);
                    acc[k] = _mm256_add_ps(acc[k], t);
                    if F != Q8_0 {
                        summ[k] = _mm_add_ps(summ[k], _mm_add_ps(s0, s1));
                    }
                }
                b += 2;
            }
            if b < nb {
                let (x0, dm0) = unpack32::<F, BB>(&row[b]);
                for k in 0..NA {
                    let a0 = &acts_nb[k][b];
                    let p0 = _mm256_cvtepi32_ps(idot32::<F>(x0, load256_i8(&a0.qs)));
                    let s0 = scales(dm0, a0);
                    acc[k] = _mm256_fmadd_ps(_mm256_broadcastss_ps(s0), p0, acc[k]);
                    if F != Q8_0 {
                        summ[k] = _mm_add_ps(summ[k], s0);
                    }
                }
            }
            let mut out = [0f32; NA];
            for k in 0..NA {
                let m = _mm_cvtss_f32(_mm_movehdup_ps(summ[k]));
                out[k] = hsum_ps(acc[k])
                    + match F {
                        Q4_0 => -8.0 * m,
                        Q5_0 => -16.0 * m,
                        Q4_1 | Q5_1 => m,
                        _ => 0.0,
                    };
            }
            out
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn dot_k<const F: u8, const BB: usize, const NA: usize>(
            row: &[[u8; BB]],
            acts: [&[BlockQ8K]; NA],
        ) -> [f32; NA] {
            let nb = row.len();
            let mut a: [&[BlockQ8K]; NA] = [&[]; NA];
            for k in 0..NA {
                a[k] = &acts[k][..nb];
            }
            let mut acc = [_mm256_setzero_ps(); NA];
            let mut summ = [0f32; NA];
            for (b, blk) in row.iter().enumerate() {
                let mut sumi = [_mm256_setzero_si256(); NA];
                let (d, dmin) = if F == Q6_K {
                    (f16x1(&blk[208..]), 0.0)
                } else {
                    f16x2(blk)
                };
                if F == Q6_K {
                    q6k_block(blk, &a, b, &mut sumi);
                } else {
                    q45k_block::<F, BB, NA>(blk, &a, b, &mut sumi);
                }
                for k in 0..NA {
                    let ak = &a[k][b];
                    let dd = d * ak.d;
                    acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
                    // Offsets from the activation's sums of 16: the sub-block minimums
                    // (Q4_K, Q5_K) or the −32 of Q6_K's unsigned 6-bit values.
                    if F == Q6_K {
                        let mut off = 0i32;
                        for (j, &s) in ak.bsums.iter().enumerate() {
                            off += blk[192 + j] as i8 as i32 * s as i32;
                        }
                        summ[k] -= dd * (32 * off) as f32;
                    } else {
                        let mut mins = 0i32;
                        for j in 0..8 {
                            let (_, m) = scale_min_k4(j, &blk[4..16]);
                            mins += m as i32 * (ak.bsums[2 * j] as i32 + ak.bsums[2 * j + 1] as i32);
                        }
                        summ[k] -= dmin * ak.d * mins as f32;
                    }
                }
            }
            let mut out = [0f32; NA];
            for k in 0..NA {
                out[k] = hsum_ps(acc[k]) + summ[k];
            }
            out
        }

        /// Σ_j scale_j · Σ q·x over a Q4_K / Q5_K super-block, as 8 i32 lanes per activation.
        #[inline]
        #[target_feature(enable = $features)]
        fn q45k_block<const F: u8, const BB: usize, const NA: usize>(
            blk: &[u8; BB],
            a: &[&[BlockQ8K]; NA],
            b: usize,
            sumi: &mut [__m256i; NA],
        ) {
            let m4 = _mm256_set1_epi8(0x0F);
            let scales = &blk[4..16];
            let qs_at = if F == Q5_K { 48 } else { 16 };
            // Q5_K: bit 2c of qh[l] is the fifth bit of value l of sub-block 2c, bit
            // 2c + 1 of sub-block 2c + 1; shift qh right by 2 per 64 values.
            let mut qh = if F == Q5_K {
                load256(&blk[16..])
            } else {
                _mm256_setzero_si256()
            };
            for c in 0..4 {
                let q = load256(&blk[qs_at + 32 * c..]);
                let mut lo = _mm256_and_si256(q, m4);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                if F == Q5_K {
                    let h_lo = _mm256_slli_epi16::<4>(_mm256_and_si256(qh, _mm256_set1_epi8(1)));
                    let h_hi = _mm256_slli_epi16::<3>(_mm256_and_si256(qh, _mm256_set1_epi8(2)));
                    lo = _mm256_or_si256(lo, h_lo);
                    hi = _mm256_or_si256(hi, h_hi);
                    qh = _mm256_srli_epi16::<2>(qh);
                }
                let (sc_lo, _) = scale_min_k4(2 * c, scales);
                let (sc_hi, _) = scale_min_k4(2 * c + 1, scales);
                let s_lo = _mm256_set1_epi16(sc_lo as i16);
                let s_hi = _mm256_set1_epi16(sc_hi as i16);
                for k in 0..NA {
                    let x = &a[k][b].qs;
                    let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load256_i8(&x[64 * c..])), s_lo);
                    let p_hi = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(hi, load256_i8(&x[64 * c + 32..])),
                        s_hi,
                    );
                    sumi[k] = _mm256_add_epi32(sumi[k], _mm256_add_epi32(p_lo, p_hi));
                }
            }
        }

        /// Σ_g scale_g · Σ q·x over a Q6_K super-block with q unsigned (0..64); the −32
        /// offset is applied by the caller.
        #[inline]
        #[target_feature(enable = $features)]
        fn q6k_block<const BB: usize, const NA: usize>(
            blk: &[u8; BB],
            a: &[&[BlockQ8K]; NA],
            b: usize,
            sumi: &mut [__m256i; NA],
        ) {
            let m4 = _mm256_set1_epi8(0x0F);
            let m2 = _mm256_set1_epi8(0x03);
            for h in 0..2 {
                let ql0 = load256(&blk[64 * h..]);
                let ql1 = load256(&blk[64 * h + 32..]);
                let qh = load256(&blk[128 + 32 * h..]);
                // Values 32t..32t + 32 of this half, t = 0..4 (see ggml's dequantize_row_q6_K).
                let q = [
                    _mm256_or_si256(
                        _mm256_and_si256(ql0, m4),
                        _mm256_slli_epi16::<4>(_mm256_and_si256(qh, m2)),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(ql1, m4),
                        _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<2>(qh), m2)),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                        _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<4>(qh), m2)),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                        _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(qh), m2)),
                    ),
                ];
                for (t, &qt) in q.iter().enumerate() {
                    // Values 0–15 of the 32 use scale 2t, 16–31 scale 2t + 1: the low and
                    // high 128-bit lanes of the maddubs result.
                    let s0 = blk[192 + 8 * h + 2 * t] as i8 as i16;
                    let s1 = blk[192 + 8 * h + 2 * t + 1] as i8 as i16;
                    let s = _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0));
                    for k in 0..NA {
                        let x = load256_i8(&a[k][b].qs[128 * h + 32 * t..]);
                        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(qt, x), s);
                        sumi[k] = _mm256_add_epi32(sumi[k], p);
                    }
                }
            }
        }
    };
}

/// AVX2 + FMA + F16C (x86-64-v3 without BMI/MOVBE): Haswell, Zen 1 and later.
pub(crate) mod avx2 {
    kernels!(
        "avx2,fma,f16c",
        (is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")),
        /// u8 × i8 → i32 with `vpmaddubsw` + `vpmaddwd`.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn udot(x: __m256i, y: __m256i) -> __m256i {
            _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
        },
        /// acc + u8 × i8 → i32 (no saturation for 4-bit x).
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn dpadd(acc: __m256i, x: __m256i, y: __m256i) -> __m256i {
            _mm256_add_epi32(acc, udot(x, y))
        },
        false
    );
}

/// The AVX2 kernels plus AVX-512 VNNI on 256-bit vectors: Ice Lake, Zen 4 and later.
pub(crate) mod vnni {
    kernels!(
        "avx2,fma,f16c,avx512vnni,avx512vl",
        (is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512vl")),
        /// u8 × i8 → i32 with one `vpdpbusd`.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
        fn udot(x: __m256i, y: __m256i) -> __m256i {
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y)
        },
        /// acc + u8 × i8 → i32 in one `vpdpbusd`.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
        fn dpadd(acc: __m256i, x: __m256i, y: __m256i) -> __m256i {
            _mm256_dpbusd_epi32(acc, x, y)
        },
        true
    );
}
