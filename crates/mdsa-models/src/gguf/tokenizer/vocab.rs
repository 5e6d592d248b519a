//! [`GgufTokenizer`]: a GGUF file's vocabulary, encoding and decoding the way
//! llama.cpp's `llama_vocab` does (`tokenize` and `detokenize`), for
//! SentencePiece (`"llama"`) and byte-level BPE (`"gpt2"`) vocabularies.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::bpe::Bpe;
use super::special::{self, Fragment, attr};
use super::spm;

/// Token texts, attributes and scores, with the text-to-id map.
#[derive(Debug)]
pub(super) struct Vocab {
    pub(super) tokens: Vec<String>,
    pub(super) attrs: Vec<u16>,
    pub(super) scores: Vec<f32>,
    pub(super) ids: HashMap<String, u32>,
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
pub(super) enum Model {
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
/// Built by [`GgufFile::gguf_tokenizer`](crate::gguf::GgufFile::gguf_tokenizer);
/// see the [module docs](super) for what is supported and how it follows
/// llama.cpp.
pub struct GgufTokenizer {
    pub(super) path: PathBuf,
    pub(super) vocab: Vocab,
    pub(super) model: Model,
    /// Tokens matched whole in text, in matching order.
    pub(super) special: Vec<u32>,
    /// What each token decodes to with special tokens shown
    /// (`cache_token_to_piece`).
    pub(super) pieces: Vec<Vec<u8>>,
    pub(super) bos: Option<u32>,
    pub(super) eos: Option<u32>,
    pub(super) add_bos: bool,
    pub(super) add_eos: bool,
    pub(super) add_space_prefix: bool,
    pub(super) clean_spaces: bool,
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
