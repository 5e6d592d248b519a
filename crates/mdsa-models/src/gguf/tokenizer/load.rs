//! Building a [`GgufTokenizer`] from a file's metadata, as llama.cpp's
//! `llama_vocab::impl::load` does: model and pre-tokenizer, tokens, scores and
//! types, special ids with llama.cpp's defaults, flags, attribute corrections,
//! the special-token list and each token's decoded piece. Every inconsistency
//! is a [`GgufError`] naming the file.

use std::collections::HashMap;

use super::bpe::{Bpe, PreTokenizer, byte_to_char};
use super::special::{self, Context, attr};
use super::vocab::{GgufTokenizer, Model, Vocab};
use crate::gguf::{GgufArray, GgufError, GgufFile};

impl GgufFile {
    /// Builds the embedded tokenizer the way llama.cpp loads it (see the
    /// [module docs](super)).
    pub fn gguf_tokenizer(&self) -> Result<(GgufTokenizer, super::GgufTokenizerInfo), GgufError> {
        let info = self.tokenizer_info()?;
        let error = |reason: String| GgufError::Tokenizer {
            path: self.path().to_path_buf(),
            reason,
        };
        let pre = match info.model.as_str() {
            "llama" => None,
            "gpt2" => Some(PreTokenizer::from_pre(info.pre.as_deref()).ok_or_else(|| {
                GgufError::UnsupportedPreTokenizer {
                    path: self.path().to_path_buf(),
                    pre: info.pre.clone().unwrap_or_default(),
                    supported: super::SUPPORTED_PRE_TOKENIZERS,
                }
            })?),
            _ => {
                return Err(GgufError::UnsupportedTokenizer {
                    path: self.path().to_path_buf(),
                    model: info.model.clone(),
                    supported: super::SUPPORTED_TOKENIZER_MODELS,
                });
            }
        };
        let raw = self.get_str_array("tokenizer.ggml.tokens")?;
        let n = raw.len();
        if u32::try_from(n).is_err() {
            return Err(error(format!("{n} tokens do not fit u32 ids")));
        }
        // llama.cpp renames empty tokens so that they cannot match anywhere.
        let tokens: Vec<String> = raw
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]")
                } else {
                    t.clone()
                }
            })
            .collect();
        let ids: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();

        let scores = match self.get("tokenizer.ggml.scores") {
            None if pre.is_none() => {
                return Err(error(
                    "tokenizer.ggml.scores is missing; SentencePiece merges by score".into(),
                ));
            }
            None => vec![0.0; n],
            Some(_) => {
                let scores: Vec<f32> = match self.get_array("tokenizer.ggml.scores")? {
                    GgufArray::F32(v) => v.clone(),
                    GgufArray::I32(v) => v.iter().map(|&s| s as f32).collect(),
                    other => {
                        return Err(error(format!(
                            "tokenizer.ggml.scores is an {}, not f32 or i32",
                            other.type_name()
                        )));
                    }
                };
                if scores.len() < n {
                    return Err(error(format!(
                        "tokenizer.ggml.scores has {} entries for {n} tokens",
                        scores.len()
                    )));
                }
                if let Some(i) = scores.iter().position(|s| s.is_nan()) {
                    return Err(error(format!("tokenizer.ggml.scores[{i}] is NaN")));
                }
                scores[..n].to_vec()
            }
        };

        let mut attrs = match self.get("tokenizer.ggml.token_type") {
            None => vec![attr::NORMAL; n],
            Some(_) => {
                let types = self.get_i32_array("tokenizer.ggml.token_type")?;
                if types.len() < n {
                    return Err(error(format!(
                        "tokenizer.ggml.token_type has {} entries for {n} tokens",
                        types.len()
                    )));
                }
                types[..n]
                    .iter()
                    .map(|&t| special::from_token_type(t))
                    .collect()
            }
        };

        // Special ids: the file's, else llama.cpp's defaults for the model
        // (SentencePiece 1 and 2; BPE 11 for both, Falcon's) when they fall
        // inside the vocabulary.
        let default = |id: u32| (id < n as u32).then_some(id);
        let (bos, eos) = match pre {
            None => (
                info.bos_token_id.or(default(1)),
                info.eos_token_id.or(default(2)),
            ),
            Some(_) => (
                info.bos_token_id.or(default(11)),
                info.eos_token_id.or(default(11)),
            ),
        };
        if info.add_bos_token && bos.is_none() {
            return Err(error(
                "add_bos_token is set but there is no BOS token".into(),
            ));
        }
        if info.add_eos_token && eos.is_none() {
            return Err(error(
                "add_eos_token is set but there is no EOS token".into(),
            ));
        }

        let model_name = self.get_str_opt("general.name")?;
        let has_key = |key: &str| self.get(key).is_some();
        let cx = Context {
            ids: &ids,
            has_key: &has_key,
            model_name,
            eos,
        };
        special::correct_attributes(&mut attrs, &tokens, &cx);
        let special_ids = special::special_tokens(&attrs, &tokens);
        special::strip_attributes(&mut attrs, &special_ids, &cx);

        // GPT-2's byte alphabet back to bytes, for BPE vocabularies.
        let to_byte: Option<HashMap<char, u8>> = pre.map(|_| {
            (0..=255u8)
                .zip(byte_to_char())
                .map(|(byte, c)| (c, byte))
                .collect()
        });
        let pieces = tokens
            .iter()
            .zip(&attrs)
            .enumerate()
            .map(|(i, (text, &a))| {
                piece(text, a, to_byte.as_ref())
                    .map_err(|e| error(format!("token {i} {text:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let model = match pre {
            None => {
                let mut byte_ids = Box::new([0u32; 256]);
                for byte in 0..=255u8 {
                    let hex = format!("<0x{byte:02X}>");
                    // llama.cpp falls back to the byte itself as a token.
                    let id = ids.get(&hex).or_else(|| {
                        byte.is_ascii()
                            .then(|| ids.get(char::from(byte).encode_utf8(&mut [0; 4]) as &str))
                            .flatten()
                    });
                    byte_ids[usize::from(byte)] = *id.ok_or_else(|| {
                        error(format!(
                            "no byte token {hex}: SentencePiece spells characters outside the \
                             vocabulary in bytes, so all 256 are needed"
                        ))
                    })?;
                }
                Model::Spm { byte_ids }
            }
            Some(pre) => {
                let merges = match self.get("tokenizer.ggml.merges") {
                    None => {
                        return Err(error("tokenizer.ggml.merges is missing".into()));
                    }
                    Some(_) => self.get_str_array("tokenizer.ggml.merges")?,
                };
                Model::Bpe(Box::new(Bpe::new(pre, merges).map_err(error)?))
            }
        };
        let (add_space_prefix_default, clean_spaces) = match &model {
            Model::Spm { .. } => (true, false),
            Model::Bpe(bpe) => (false, bpe.pre.cleans_spaces()),
        };
        let add_space_prefix =
            self.get_bool_or("tokenizer.ggml.add_space_prefix", add_space_prefix_default)?;
        let tokenizer = GgufTokenizer {
            path: self.path().to_path_buf(),
            vocab: Vocab {
                tokens,
                attrs,
                scores,
                ids,
            },
            model,
            special: special_ids,
            pieces,
            bos,
            eos,
            add_bos: info.add_bos_token,
            add_eos: info.add_eos_token,
            add_space_prefix,
            clean_spaces,
        };
        Ok((tokenizer, info))
    }
}

/// What a token decodes to with special tokens shown (`token_to_piece` with
/// `special = true`); `to_byte` is GPT-2's alphabet for byte-level BPE.
fn piece(text: &str, attr: u16, to_byte: Option<&HashMap<char, u8>>) -> Result<Vec<u8>, String> {
    if attr & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
        return Ok(text.as_bytes().to_vec());
    }
    if attr & attr::NORMAL != 0 {
        return Ok(match to_byte {
            Some(to_byte) => decode_byte_level(text, to_byte),
            None => text.replace('\u{2581}', " ").into_bytes(),
        });
    }
    if attr & attr::BYTE != 0 {
        // llama.cpp reads the two hex digits of "<0xNN>".
        let hex = text
            .strip_prefix("<0x")
            .and_then(|h| h.strip_suffix('>'))
            .filter(|h| h.len() == 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or("a byte token's text must be <0xNN>")?;
        return Ok(vec![hex]);
    }
    // Unused and undefined tokens decode to nothing.
    Ok(Vec::new())
}

/// GPT-2's byte alphabet back to bytes; a character outside it is written
/// out as llama.cpp does (`[UNK_BYTE_0x..<token>]`).
fn decode_byte_level(text: &str, to_byte: &HashMap<char, u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match to_byte.get(&c) {
            Some(&b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                for b in c.encode_utf8(&mut [0; 4]).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}
