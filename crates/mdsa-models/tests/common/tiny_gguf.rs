//! Tiny real llama decoders in GGUF (one block, random weights, a byte-level
//! tokenizer), written with `GgufWriter`: whole, or with one flaw.

use std::path::Path;

use mdsa_models::gguf::{GgmlType, GgufArray, GgufWriter};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub(crate) const HIDDEN: usize = 32;
pub(crate) const FFN: usize = 64;
pub(crate) const KV_DIM: usize = 16;
pub(crate) const CONTEXT: u32 = 64;

/// GPT-2's printable stand-ins for the 256 bytes, in byte order.
pub(crate) fn byte_tokens() -> Vec<String> {
    let printable = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let mut shifted = 0;
    (0..256u32)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                shifted += 1;
                255 + shifted
            };
            char::from_u32(c).unwrap().to_string()
        })
        .collect()
}

/// Writes a one-block llama decoder with random weights (seeded) and a
/// byte-level tokenizer whose last token `<|end|>` is EOS.
pub(crate) fn write_tiny_decoder(path: &Path, seed: u64) {
    tiny_decoder(seed, Flaw::None).write(path).unwrap();
}

/// What a broken tiny decoder gets wrong.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Flaw {
    /// Nothing: a working model.
    None,
    /// `general.architecture` names this one.
    Architecture(&'static str),
    /// `blk.0.attn_q.weight` has one row too few.
    ShortTensor,
    /// `blk.0.ffn_down.weight` is missing.
    MissingTensor,
    /// No `tokenizer.ggml.tokens`.
    NoTokenizer,
    /// `blk.0.ffn_gate.weight` is stored as IQ4_NL, a type without kernels.
    UnsupportedType,
    /// `llama.rope.scaling.type` names a scaling mdsa does not know.
    RopeScaling(&'static str),
}

/// A tiny decoder's file contents, with `flaw`.
pub(crate) fn tiny_decoder(seed: u64, flaw: Flaw) -> GgufWriter {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tokens = byte_tokens();
    tokens.push("<|end|>".into());
    let vocab = tokens.len();
    let mut types = vec![1i32; vocab];
    types[vocab - 1] = 3;
    let mut writer = GgufWriter::new();
    writer
        .add(
            "general.architecture",
            match flaw {
                Flaw::Architecture(name) => name,
                _ => "llama",
            },
        )
        .add("llama.embedding_length", HIDDEN as u32)
        .add("llama.feed_forward_length", FFN as u32)
        .add("llama.block_count", 1u32)
        .add("llama.attention.head_count", 2u32)
        .add("llama.attention.head_count_kv", 1u32)
        .add("llama.context_length", CONTEXT)
        .add("tokenizer.ggml.model", "gpt2")
        .add("tokenizer.ggml.pre", "gpt2")
        .add("tokenizer.ggml.token_type", GgufArray::I32(types))
        .add("tokenizer.ggml.merges", GgufArray::String(Vec::new()))
        .add("tokenizer.ggml.eos_token_id", (vocab - 1) as u32);
    if let Flaw::RopeScaling(kind) = flaw {
        writer.add("llama.rope.scaling.type", kind);
    }
    if flaw != Flaw::NoTokenizer {
        writer.add("tokenizer.ggml.tokens", GgufArray::String(tokens));
    }
    let mut random =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-0.5..0.5)).collect() };
    let ones = vec![1.0f32; HIDDEN];
    // GGUF dims are fastest-varying first: [cols, rows].
    let matrices: [(&str, usize, usize); 7] = [
        ("blk.0.attn_q.weight", HIDDEN, HIDDEN),
        ("blk.0.attn_k.weight", HIDDEN, KV_DIM),
        ("blk.0.attn_v.weight", HIDDEN, KV_DIM),
        ("blk.0.attn_output.weight", HIDDEN, HIDDEN),
        ("blk.0.ffn_gate.weight", HIDDEN, FFN),
        ("blk.0.ffn_up.weight", HIDDEN, FFN),
        ("blk.0.ffn_down.weight", FFN, HIDDEN),
    ];
    writer.add_f32(
        "token_embd.weight",
        &[HIDDEN as u64, vocab as u64],
        &random(HIDDEN * vocab),
    );
    for (name, cols, mut rows) in matrices {
        if flaw == Flaw::MissingTensor && name == "blk.0.ffn_down.weight" {
            continue;
        }
        if flaw == Flaw::ShortTensor && name == "blk.0.attn_q.weight" {
            rows -= 1;
        }
        if flaw == Flaw::UnsupportedType && name == "blk.0.ffn_gate.weight" {
            // IQ4_NL blocks: 32 weights in 18 bytes.
            let bytes = vec![0u8; cols * rows / 32 * 18];
            writer.add_tensor(name, &[cols as u64, rows as u64], GgmlType::IQ4_NL, bytes);
            continue;
        }
        writer.add_f32(name, &[cols as u64, rows as u64], &random(cols * rows));
    }
    for name in [
        "blk.0.attn_norm.weight",
        "blk.0.ffn_norm.weight",
        "output_norm.weight",
    ] {
        writer.add_f32(name, &[HIDDEN as u64], &ones);
    }
    writer
}
