//! The byte-level BPE vocabulary of a GGUF file as a `tokenizers::Tokenizer`
//! ([`GgufFile::tokenizer`]), for writing it out as a `tokenizer.json`:
//!
//! - vocabulary from `tokenizer.ggml.tokens` (id = position), merges from
//!   `tokenizer.ggml.merges` (`"left right"`, each checked: the `tokenizers`
//!   builder panics on a merge whose result is not a token), no normalizer,
//!   byte-level decoder;
//! - the pre-tokenizer from `tokenizer.ggml.pre`: `"gpt2"`/`"gpt-2"`/`"default"`
//!   (or absent) split with the GPT-2 regex (llama.cpp's `"default"` adds
//!   punctuation and digit splits; [`GgufTokenizer`](super::GgufTokenizer)
//!   has them); `"smollm"` splits every digit, then GPT-2; `"qwen2"` uses
//!   Qwen2's regex;
//! - control tokens become special added tokens, user-defined ones
//!   non-special added tokens;
//! - `add_bos_token`/`add_eos_token` become a template post-processor.

use std::collections::HashMap;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::{Template, TemplateProcessing};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::{GgufTokenizerInfo, TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED};
use crate::gguf::{GgufError, GgufFile};

/// GPT-2's split (`tokenizers`' `ByteLevel` applies it with `use_regex`).
pub const GPT2_REGEX: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// The `tokenizer.ggml.pre` values [`GgufFile::tokenizer`] builds.
pub const HF_PRE_TOKENIZERS: &str = "\"gpt2\", \"gpt-2\", \"default\", \"smollm\", \"qwen2\"";
/// Qwen2's split, as in its `tokenizer.json`.
pub const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How text is split before BPE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PreTokenizerKind {
    Gpt2,
    DigitsThenGpt2,
    Qwen2,
}

impl PreTokenizerKind {
    fn from_pre(pre: Option<&str>) -> Option<Self> {
        match pre {
            None | Some("default" | "gpt2" | "gpt-2") => Some(Self::Gpt2),
            Some("smollm") => Some(Self::DigitsThenGpt2),
            Some("qwen2") => Some(Self::Qwen2),
            Some(_) => None,
        }
    }

    fn build(self) -> tokenizers::Result<PreTokenizerWrapper> {
        // add_prefix_space false: GGUF BPE vocabularies never prepend a space.
        let gpt2 = ByteLevel::new(false, true, true);
        Ok(match self {
            Self::Gpt2 => gpt2.into(),
            Self::DigitsThenGpt2 => {
                Sequence::new(vec![Digits::new(true).into(), gpt2.into()]).into()
            }
            Self::Qwen2 => Sequence::new(vec![
                Split::new(
                    SplitPattern::Regex(QWEN2_REGEX.to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )?
                .into(),
                // The split is done; ByteLevel only maps bytes to its alphabet.
                ByteLevel::new(false, false, false).into(),
            ])
            .into(),
        })
    }
}

impl GgufFile {
    /// The embedded byte-level BPE vocabulary as a `tokenizers::Tokenizer`, the
    /// type `tokenizer.json` files load into (to export it as one).
    ///
    /// mdsa itself encodes with [`gguf_tokenizer`](Self::gguf_tokenizer), which
    /// follows llama.cpp exactly; this builds on the `tokenizers` crate's regex
    /// engine and Unicode tables, and supports `"gpt2"` vocabularies with the
    /// pre-tokenizers listed in [`HF_PRE_TOKENIZERS`] only.
    pub fn tokenizer(&self) -> Result<(Tokenizer, GgufTokenizerInfo), GgufError> {
        let info = self.tokenizer_info()?;
        if info.model != "gpt2" {
            return Err(GgufError::UnsupportedTokenizer {
                path: self.path().to_path_buf(),
                model: info.model,
                supported: "\"gpt2\" (byte-level BPE; SentencePiece vocabularies have no \
                            tokenizers::Tokenizer form here)",
            });
        }
        let pre = PreTokenizerKind::from_pre(info.pre.as_deref()).ok_or_else(|| {
            GgufError::UnsupportedPreTokenizer {
                path: self.path().to_path_buf(),
                pre: info.pre.clone().unwrap_or_default(),
                supported: HF_PRE_TOKENIZERS,
            }
        })?;
        let tokens = self.get_str_array("tokenizer.ggml.tokens")?;
        let token_types = match self.get("tokenizer.ggml.token_type") {
            None => None,
            Some(_) => {
                let types = self.get_i32_array("tokenizer.ggml.token_type")?;
                if types.len() != tokens.len() {
                    return Err(self.tokenizer_error(format!(
                        "tokenizer.ggml.token_type has {} entries for {} tokens",
                        types.len(),
                        tokens.len()
                    )));
                }
                Some(types)
            }
        };
        // Ids are u32 in the tokenizer; a vocabulary that large cannot be real.
        if u32::try_from(tokens.len()).is_err() {
            return Err(self.tokenizer_error(format!("{} tokens do not fit u32 ids", tokens.len())));
        }
        let vocab: HashMap<&str, u32> = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.as_str(), id as u32))
            .collect();
        let merges = match self.get("tokenizer.ggml.merges") {
            None => Vec::new(),
            Some(_) => self.checked_merges(self.get_str_array("tokenizer.ggml.merges")?, &vocab)?,
        };
        let bpe_vocab: Vocab = vocab.iter().map(|(&t, &id)| (t.to_string(), id)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(bpe_vocab, merges)
            .build()
            .map_err(|e| self.tokenizer_error(format!("cannot build the BPE model: {e}")))?;

        let mut tokenizer = Tokenizer::new(bpe);
        let pre_tokenizer = pre
            .build()
            .map_err(|e| self.tokenizer_error(format!("cannot build the pre-tokenizer: {e}")))?;
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

        if let Some(types) = token_types {
            // Empty strings would match everywhere; no real vocabulary has them.
            let added = |kind: i32| {
                tokens
                    .iter()
                    .zip(types)
                    .filter(move |(t, ty)| **ty == kind && !t.is_empty())
                    .map(|(t, _)| t.as_str())
            };
            let control: Vec<AddedToken> = added(TOKEN_TYPE_CONTROL)
                .map(|t| AddedToken::from(t, true).normalized(false))
                .collect();
            let user: Vec<AddedToken> = added(TOKEN_TYPE_USER_DEFINED)
                .map(|t| AddedToken::from(t, false).normalized(false))
                .collect();
            tokenizer
                .add_special_tokens(control)
                .and_then(|_| tokenizer.add_tokens(user))
                .map_err(|e| self.tokenizer_error(format!("cannot add special tokens: {e}")))?;
        }

        if info.add_bos_token || info.add_eos_token {
            let processor = self.template(&info, tokens)?;
            tokenizer.with_post_processor(Some(processor));
        }
        Ok((tokenizer, info))
    }

    /// Splits `"left right"` merges and checks that both parts and their
    /// concatenation are tokens: `tokenizers`' BPE builder assumes the latter
    /// and would panic on a merge longer than every token.
    fn checked_merges(
        &self,
        merges: &[String],
        vocab: &HashMap<&str, u32>,
    ) -> Result<Vec<(String, String)>, GgufError> {
        let mut out = Vec::with_capacity(merges.len());
        let mut joined = String::new();
        for (i, merge) in merges.iter().enumerate() {
            // Like llama.cpp, look for the separator after the first character, so
            // a left part that is itself a space still splits.
            let first = merge.chars().next().map_or(0, char::len_utf8);
            let split = merge[first..].find(' ').map(|p| p + first);
            let Some((left, right)) = split.map(|p| (&merge[..p], &merge[p + 1..])) else {
                return Err(self.tokenizer_error(format!(
                    "merge #{i} {merge:?} is not two tokens separated by a space"
                )));
            };
            joined.clear();
            joined.push_str(left);
            joined.push_str(right);
            for part in [left, right, joined.as_str()] {
                if !vocab.contains_key(part) {
                    return Err(self.tokenizer_error(format!(
                        "merge #{i} {merge:?}: {part:?} is not in the vocabulary"
                    )));
                }
            }
            out.push((left.to_string(), right.to_string()));
        }
        Ok(out)
    }

    fn template(
        &self,
        info: &GgufTokenizerInfo,
        tokens: &[String],
    ) -> Result<TemplateProcessing, GgufError> {
        let special =
            |flag: bool, id: Option<u32>, name: &str| -> Result<Option<(String, u32)>, GgufError> {
                if !flag {
                    return Ok(None);
                }
                let id = id.ok_or_else(|| {
                    self.tokenizer_error(format!(
                        "add_{name}_token is set but {name}_token_id is missing"
                    ))
                })?;
                Ok(Some((tokens[id as usize].clone(), id)))
            };
        let bos = special(info.add_bos_token, info.bos_token_id, "bos")?;
        let eos = special(info.add_eos_token, info.eos_token_id, "eos")?;
        // Pieces are passed one by one: token text may contain spaces.
        let sequence = |seq: &str| {
            let mut pieces = Vec::new();
            pieces.extend(bos.iter().map(|(t, _)| t.clone()));
            pieces.push(seq.to_string());
            pieces.extend(eos.iter().map(|(t, _)| t.clone()));
            pieces
        };
        let error =
            |e: String| self.tokenizer_error(format!("cannot build the BOS/EOS template: {e}"));
        let single = Template::try_from(sequence("$A")).map_err(error)?;
        let mut pair = sequence("$A");
        pair.extend(sequence("$B:1"));
        let pair = Template::try_from(pair).map_err(error)?;
        let specials: Vec<(String, u32)> = bos.iter().chain(eos.iter()).cloned().collect();
        TemplateProcessing::builder()
            .single(single)
            .pair(pair)
            .special_tokens(specials)
            .build()
            .map_err(|e| error(e.to_string()))
    }
}
