//! [`GgufTokenizer`]: a GGUF file's vocabulary, encoding and decoding the way
//! llama.cpp's `llama_vocab` does (`tokenize` and `detokenize`), for
//! SentencePiece (`"llama"`) and byte-level BPE (`"gpt2"`) vocabularies.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::bpe::{Bpe, PreTokenizer, byte_to_char};
use super::special::{self, Context, Fragment, attr};
use super::spm;
use crate::gguf::{GgufArray, GgufError, GgufFile};

/// Token texts, attributes and scores, with the text-to-id map.
#[derive(Debug)]
pub(super) struct Vocab {
    tokens: Vec<String>,
    attrs: Vec<u16>,
    scores: Vec<f32>,
    ids: HashMap<String, u32>,
}

impl Vocab {
    /// The id of a token text (the last one, when a text is listed twice).
    pub(super) fn text_to_token(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// A token's score (0 in vocabularies without scores).
    pub(super) fn score(&self, id: u32) -> f32 {
        self.scores[id as usize]
    }
}

/// Which algorithm turns text between special tokens into ids.
#[derive(Debug)]
enum Model {
    /// SentencePiece, with the id of each byte's `<0xNN>` token.
    Spm { byte_ids: Box<[u32; 256]> },
    /// Byte-level BPE (boxed: its rank table makes it the large variant).
    Bpe(Box<Bpe>),
}

/// An id that is not in the vocabulary, met while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("token id {id} is outside the vocabulary of {vocab_size} tokens")]
pub struct TokenIdError {
    /// The id.
    pub id: u32,
    /// Number of tokens in the vocabulary.
    pub vocab_size: usize,
}

/// A GGUF file's embedded tokenizer, producing the ids llama.cpp produces.
///
/// Built by [`GgufFile::gguf_tokenizer`]; see the [module docs](super) for
/// what is supported and how it follows llama.cpp.
pub struct GgufTokenizer {
    path: PathBuf,
    vocab: Vocab,
    model: Model,
    /// Tokens matched whole in text, in matching order.
    special: Vec<u32>,
    /// What each token decodes to with special tokens shown
    /// (`cache_token_to_piece`).
    pieces: Vec<Vec<u8>>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
}

impl fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("path", &self.path)
            .field("model", &self.model_name())
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish_non_exhaustive()
    }
}

impl GgufTokenizer {
    /// Encodes `text` as llama.cpp's `llama_tokenize(text, add_special,
    /// parse_special)`: with `add_special`, BOS/EOS as the file asks; with
    /// `parse_special`, control tokens in the text (`<|im_start|>`, `<s>`) are
    /// matched whole (user-defined tokens always are).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let fragments = special::partition(
            text,
            &self.special,
            &self.vocab.tokens,
            &self.vocab.attrs,
            parse_special,
        );
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        match &self.model {
            Model::Spm { byte_ids } => {
                // A text fragment at the start or after a special token gets
                // the space prefix, as llama.cpp does (not only the first one).
                let mut after_special = true;
                for fragment in &fragments {
                    match fragment {
                        Fragment::Text(range) => {
                            let mut piece = String::with_capacity(range.len() + 3);
                            if self.add_space_prefix && after_special {
                                piece.push(' ');
                            }
                            piece.push_str(&text[range.clone()]);
                            let escaped = piece.replace(' ', "\u{2581}");
                            spm::tokenize(&self.vocab, byte_ids, &escaped, &mut out);
                            after_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(*id);
                            after_special = true;
                        }
                    }
                }
            }
            Model::Bpe(bpe) => {
                for fragment in &fragments {
                    match fragment {
                        Fragment::Text(range) => {
                            bpe.tokenize(&self.vocab, &text[range.clone()], &mut out);
                        }
                        Fragment::Token(id) => out.push(*id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// Decodes ids to bytes as llama.cpp's `llama_detokenize(ids,
    /// remove_special, unparse_special)`: with `remove_special`, a leading BOS
    /// and trailing EOS the file adds are dropped; control tokens show only
    /// with `unparse_special`; the first token loses one leading space when
    /// the vocabulary adds a space prefix (unless a dropped BOS came first);
    /// BPE vocabularies that ask for it tidy spaces before punctuation.
    ///
    /// The bytes may end inside a character (byte tokens spell characters
    /// piecewise).
    pub fn detokenize(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<Vec<u8>, TokenIdError> {
        let mut text = self.detokenize_untidied(ids, remove_special, unparse_special)?;
        if self.clean_spaces {
            clean_spaces(&mut text);
        }
        Ok(text)
    }

    /// [`detokenize`](Self::detokenize) without the space tidying some BPE
    /// vocabularies ask for (`" ."` → `"."`, `" 's"` → `"'s"`): generated text
    /// is the tokens' pieces as llama.cpp's server streams them. Tidying would
    /// rewrite code (`y != 2` → `y!= 2`) and could take back text a streaming
    /// decoder has already emitted.
    pub fn detokenize_untidied(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<Vec<u8>, TokenIdError> {
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if remove_special && self.add_bos && ids.first().is_some_and(|&id| Some(id) == self.bos) {
            remove_space = false;
            ids = &ids[1..];
        }
        if remove_special && self.add_eos && ids.last().is_some_and(|&id| Some(id) == self.eos) {
            ids = &ids[..ids.len() - 1];
        }
        let mut text = Vec::new();
        for &id in ids {
            let mut piece = self.token_to_piece(id, unparse_special)?;
            if remove_space {
                piece = piece.strip_prefix(b" ").unwrap_or(piece);
            }
            remove_space = false;
            text.extend_from_slice(piece);
        }
        Ok(text)
    }

    /// [`detokenize`](Self::detokenize) as a string; bytes that are not valid
    /// UTF-8 (a character cut short) become U+FFFD.
    pub fn decode(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<String, TokenIdError> {
        Ok(lossy(self.detokenize(
            ids,
            remove_special,
            unparse_special,
        )?))
    }

    /// [`detokenize_untidied`](Self::detokenize_untidied) as a string, as
    /// [`decode`](Self::decode).
    pub fn decode_untidied(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<String, TokenIdError> {
        Ok(lossy(self.detokenize_untidied(
            ids,
            remove_special,
            unparse_special,
        )?))
    }

    /// Whether [`detokenize`](Self::detokenize) tidies spaces (llama.cpp's
    /// `clean_spaces`: the "default", "gpt-2" and "llama-bpe" pre-tokenizers).
    pub fn cleans_spaces(&self) -> bool {
        self.clean_spaces
    }

    /// What one token decodes to (`llama_token_to_piece`); control and unknown
    /// tokens decode to nothing unless `special`.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Result<&[u8], TokenIdError> {
        let piece = self.pieces.get(id as usize).ok_or(TokenIdError {
            id,
            vocab_size: self.vocab_size(),
        })?;
        let hidden = self.vocab.attrs[id as usize] & (attr::UNKNOWN | attr::CONTROL) != 0;
        Ok(if hidden && !special { &[] } else { piece })
    }

    /// The id of a token text such as `<|im_end|>`.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.vocab.text_to_token(token)
    }

    /// The text of a token as the vocabulary stores it (`▁` for spaces in
    /// SentencePiece, GPT-2's byte alphabet in BPE).
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.vocab.tokens.get(id as usize).map(String::as_str)
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.vocab.tokens.len()
    }

    /// Whether `id` is a control token (decoded to nothing when special tokens are skipped).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab
            .attrs
            .get(id as usize)
            .is_some_and(|a| a & attr::CONTROL != 0)
    }

    /// The BOS id llama.cpp uses (the file's, else its default for the model).
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// The EOS id llama.cpp uses.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Whether encoding with `add_special` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether encoding with `add_special` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// `"llama"` (SentencePiece) or `"gpt2"` (byte-level BPE).
    pub fn model_name(&self) -> &'static str {
        match self.model {
            Model::Spm { .. } => "llama",
            Model::Bpe(_) => "gpt2",
        }
    }

    /// The file the tokenizer came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// UTF-8 text, with U+FFFD for invalid bytes.
fn lossy(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// llama.cpp's `clean_spaces` passes over decoded text: drop the space before
/// `?!.,`, around a lone apostrophe, and before `'s`, `'m`, `'re`, `'ve`.
fn clean_spaces(text: &mut Vec<u8>) {
    // " ?", " !", " .", " ,"
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    for (i, &x) in text.iter().enumerate() {
        if i > 0 && text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }
    // " ' " -> "'"; llama.cpp overwrites the dropped space with NUL, so the
    // character after it never counts as following a space.
    let text1 = std::mem::take(&mut out);
    let mut nul = None;
    let mut i = 0;
    while i < text1.len() {
        let x = text1[i];
        let after_space = i > 0 && nul != Some(i - 1) && text1[i - 1] == b' ';
        if x == b'\'' && after_space && text1.get(i + 1) == Some(&b' ') {
            out.pop();
            out.push(x);
            nul = Some(i + 1);
            i += 2;
            continue;
        }
        out.push(x);
        i += 1;
    }
    // " 's", " 'm", " 're", " 've"
    let text2 = std::mem::take(&mut out);
    for (i, &x) in text2.iter().enumerate() {
        if i > 0 && text2[i - 1] == b' ' && x == b'\'' && i + 1 < text2.len() {
            let x1 = text2[i + 1];
            let x2 = text2.get(i + 2).copied();
            let drop = matches!(x1, b's' | b'm')
                || (!matches!(x1, b't' | b'd') && matches!((x1, x2), (b'r' | b'v', Some(b'e'))));
            if drop {
                out.pop();
            }
        }
        out.push(x);
    }
    *text = out;
}

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
        // when they fall inside the vocabulary.
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

        let byte_encoded = pre.is_some();
        let pieces = tokens
            .iter()
            .zip(&attrs)
            .enumerate()
            .map(|(i, (text, &a))| {
                piece(text, a, byte_encoded).map_err(|e| error(format!("token {i} {text:?}: {e}")))
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
/// `special = true`).
fn piece(text: &str, attr: u16, byte_encoded: bool) -> Result<Vec<u8>, String> {
    if attr & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
        return Ok(text.as_bytes().to_vec());
    }
    if attr & attr::NORMAL != 0 {
        return Ok(if byte_encoded {
            decode_byte_level(text)
        } else {
            text.replace('\u{2581}', " ").into_bytes()
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
fn decode_byte_level(text: &str) -> Vec<u8> {
    let mut to_byte = HashMap::with_capacity(256);
    for (byte, c) in byte_to_char().into_iter().enumerate() {
        to_byte.insert(c, byte as u8);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_spaces_follows_llama_cpp() {
        let clean = |s: &str| {
            let mut v = s.as_bytes().to_vec();
            clean_spaces(&mut v);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(clean("Hello , world ! ok ."), "Hello, world! ok.");
        assert_eq!(clean("a ' b"), "a'b");
        assert_eq!(clean("a ' ' b"), "a'' b");
        assert_eq!(
            clean("it 's I 'm we 're they 've don 't I 'd we 'll"),
            "it's I'm we're they've don 't I 'd we 'll"
        );
        assert_eq!(clean(" ."), ".");
    }
}
