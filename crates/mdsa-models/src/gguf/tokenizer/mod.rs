//! The tokenizer a GGUF file embeds.
//!
//! [`GgufFile::gguf_tokenizer`] builds a [`GgufTokenizer`] that encodes and
//! decodes as llama.cpp's `llama_vocab` does — same ids, same text — and
//! [`GgufFile::text_tokenizer`] wraps it as the [`TextTokenizer`] the rest of
//! mdsa uses. It is a port of llama.cpp's `src/llama-vocab.cpp` and
//! `src/unicode.cpp` (as vendored in llama-cpp-python 0.3.36), checked
//! against llama.cpp on a corpus by `tests/tokenizer_parity.rs`:
//!
//! - `tokenizer.ggml.model = "llama"`: SentencePiece (Llama 2, Mistral,
//!   TinyLlama, Gemma 1–3, Phi-3). Spaces become `▁`; a space is prepended to
//!   the text and after every special token (`tokenizer.ggml.add_space_prefix`,
//!   default true; Gemma's files set it false); adjacent pieces merge
//!   highest `tokenizer.ggml.scores` first; characters outside the vocabulary
//!   are spelled with byte tokens `<0xNN>` (all 256 must exist). BOS is added
//!   unless `tokenizer.ggml.add_bos_token` is false.
//! - `tokenizer.ggml.model = "gpt2"`: byte-level BPE, words split by the
//!   regexes llama.cpp gives `tokenizer.ggml.pre` (see
//!   [`SUPPORTED_PRE_TOKENIZERS`]; `"default"`/absent is llama.cpp's default
//!   list, not plain GPT-2), merged by `tokenizer.ggml.merges` rank. Splitting
//!   uses llama.cpp's own code point table (generated into `unicode_data.rs`) and hand-written
//!   splitters, so it agrees with llama.cpp where a Unicode-aware regex engine
//!   would not. Gemma 4's BPE (`tokenizer.ggml.model = "gemma4"`) is not built.
//! - Control, user-defined and unknown tokens are matched whole in the text,
//!   longest first; control and unknown ones only when special tokens are
//!   parsed. Tokens whose text marks them as end-of-generation (`<|im_end|>`,
//!   `<end_of_turn>`, `</s>`, ...) count as control tokens even when typed
//!   normal, and models named Phi-3 strip whitespace after special tokens —
//!   both as llama.cpp decides.
//! - Decoding maps `▁` back to spaces, assembles byte tokens into UTF-8, drops
//!   one leading space when the vocabulary adds a space prefix, hides control
//!   tokens unless asked, and (for some BPE pre-tokenizers) tidies spaces
//!   before punctuation, all as `llama_detokenize`.
//!
//! Other tokenizer models (`"bert"`, `"t5"`, ...) are an
//! [`GgufError::UnsupportedTokenizer`] naming the model; unknown
//! pre-tokenizers an [`GgufError::UnsupportedPreTokenizer`]. Inconsistent
//! data (missing scores or byte tokens, short arrays, NaN scores) is a
//! [`GgufError::Tokenizer`] naming the file and the problem.
//!
//! [`GgufFile::tokenizer`] still builds the BPE vocabulary as a
//! `tokenizers::Tokenizer` (module [`hf`]), for exporting it as `tokenizer.json`.

mod bpe;
pub mod hf;
mod load;
mod special;
mod split;
mod spm;
mod symbols;
mod unicode;
mod unicode_data;
mod vocab;

use std::sync::Arc;

pub use bpe::SUPPORTED_PRE_TOKENIZERS;
pub use hf::{GPT2_REGEX, HF_PRE_TOKENIZERS, QWEN2_REGEX};
pub use vocab::{GgufTokenizer, TokenIdError};

use super::{GgufError, GgufFile};
use crate::tokenizer::TextTokenizer;

/// The `tokenizer.ggml.model` values [`GgufFile::gguf_tokenizer`] builds.
pub const SUPPORTED_TOKENIZER_MODELS: &str = "\"llama\" (SentencePiece), \"gpt2\" (byte-level BPE)";

/// `tokenizer.ggml.token_type` of a normal token.
pub const TOKEN_TYPE_NORMAL: i32 = 1;
/// `tokenizer.ggml.token_type` of an unknown-token placeholder.
pub const TOKEN_TYPE_UNKNOWN: i32 = 2;
/// `tokenizer.ggml.token_type` of a control (special) token such as `<|im_end|>`.
pub const TOKEN_TYPE_CONTROL: i32 = 3;
/// `tokenizer.ggml.token_type` of a user-defined token, matched whole in text.
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;
/// `tokenizer.ggml.token_type` of an unused slot.
pub const TOKEN_TYPE_UNUSED: i32 = 5;
/// `tokenizer.ggml.token_type` of a byte token (`<0x0A>`, SentencePiece).
pub const TOKEN_TYPE_BYTE: i32 = 6;

/// What a GGUF says about its tokenizer besides the vocabulary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufTokenizerInfo {
    /// `tokenizer.ggml.model` (`"gpt2"`, `"llama"`, ...).
    pub model: String,
    /// `tokenizer.ggml.pre`, if present.
    pub pre: Option<String>,
    /// Number of tokens in `tokenizer.ggml.tokens`.
    pub vocab_size: usize,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_token_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub padding_token_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unknown_token_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`; when absent, llama.cpp's default: true
    /// for SentencePiece (`"llama"`) and Llama 3's BPE (`"llama-bpe"`), else false.
    pub add_bos_token: bool,
    /// `tokenizer.ggml.add_eos_token` (false when absent).
    pub add_eos_token: bool,
    /// `tokenizer.chat_template` (a Jinja template), if present.
    pub chat_template: Option<String>,
}

impl GgufFile {
    /// The tokenizer facts (special ids, flags, chat template), with every id
    /// checked against the vocabulary size.
    pub fn tokenizer_info(&self) -> Result<GgufTokenizerInfo, GgufError> {
        let vocab_size = self.get_str_array("tokenizer.ggml.tokens")?.len();
        let id = |key: &str| -> Result<Option<u32>, GgufError> {
            let id = self.get_u32_opt(key)?;
            match id {
                Some(id) if id as usize >= vocab_size => Err(self.tokenizer_error(format!(
                    "{key} is {id}, outside the vocabulary of {vocab_size} tokens"
                ))),
                id => Ok(id),
            }
        };
        let model = self.get_str("tokenizer.ggml.model")?.to_string();
        let pre = self.get_str_opt("tokenizer.ggml.pre")?.map(str::to_string);
        let adds_bos = match model.as_str() {
            "llama" => true,
            "gpt2" => bpe::PreTokenizer::from_pre(pre.as_deref()).is_some_and(|p| p.adds_bos()),
            _ => false,
        };
        Ok(GgufTokenizerInfo {
            vocab_size,
            bos_token_id: id("tokenizer.ggml.bos_token_id")?,
            eos_token_id: id("tokenizer.ggml.eos_token_id")?,
            padding_token_id: id("tokenizer.ggml.padding_token_id")?,
            unknown_token_id: id("tokenizer.ggml.unknown_token_id")?,
            add_bos_token: self.get_bool_or("tokenizer.ggml.add_bos_token", adds_bos)?,
            add_eos_token: self.get_bool_or("tokenizer.ggml.add_eos_token", false)?,
            chat_template: self
                .get_str_opt("tokenizer.chat_template")?
                .map(str::to_string),
            model,
            pre,
        })
    }

    /// The embedded tokenizer as a [`TextTokenizer`] (encoding and decoding as
    /// llama.cpp): no truncation, batches padded with `padding_token_id`
    /// (else `eos_token_id`, else 0).
    pub fn text_tokenizer(&self) -> Result<(TextTokenizer, GgufTokenizerInfo), GgufError> {
        let (tokenizer, info) = self.gguf_tokenizer()?;
        let pad_id = info.padding_token_id.or(info.eos_token_id).unwrap_or(0);
        Ok((TextTokenizer::from_gguf(Arc::new(tokenizer), pad_id), info))
    }

    fn tokenizer_error(&self, reason: String) -> GgufError {
        GgufError::Tokenizer {
            path: self.path().to_path_buf(),
            reason,
        }
    }
}
