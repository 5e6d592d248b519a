//! Text tokenizers: `tokenizer.json` files through the `tokenizers` crate, and
//! GGUF files' embedded vocabularies through [`GgufTokenizer`] (which encodes
//! and decodes as llama.cpp). Truncation is set by the caller and padding done
//! per batch (to the longest input), never the file's fixed padding.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use mdsa_engine::ModelError;

use crate::gguf::GgufTokenizer;

/// A tokenizer loaded from `tokenizer.json` or embedded in a GGUF file.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Inner,
    path: PathBuf,
    pad_id: u32,
}

/// The implementation behind a [`TextTokenizer`].
#[derive(Debug, Clone)]
enum Inner {
    /// `tokenizers`' tokenizer (`tokenizer.json`, or one built in code).
    Hf(Box<Tokenizer>),
    /// A GGUF vocabulary, encoded as llama.cpp does; shared, it is large.
    Gguf(Arc<GgufTokenizer>),
}

/// Token ids of a batch, padded to its longest member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    /// `batch * seq` ids, row-major.
    pub ids: Vec<u32>,
    /// `batch * seq` flags: 1 for a real token, 0 for padding.
    pub mask: Vec<u8>,
    /// Number of inputs.
    pub batch: usize,
    /// Padded length.
    pub seq: usize,
    /// Real (unpadded) length of each input.
    pub lengths: Vec<usize>,
}

impl EncodedBatch {
    /// Whether any input was padded.
    pub fn is_padded(&self) -> bool {
        self.lengths.iter().any(|&len| len != self.seq)
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json`; inputs longer than `max_length` tokens are truncated
    /// (special tokens included), `None` keeps them whole.
    pub fn from_file(path: &Path, max_length: Option<usize>) -> Result<Self, ModelError> {
        let error = |reason: String| ModelError::Tokenizer {
            path: path.to_path_buf(),
            reason,
        };
        let mut inner = Tokenizer::from_file(path).map_err(|e| error(e.to_string()))?;
        // The file may carry fixed padding (MiniLM pads every input to 128); we pad
        // per batch instead, so a short query costs a short forward pass.
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| inner.token_to_id("[PAD]"))
            .or_else(|| inner.token_to_id("<pad>"))
            .unwrap_or(0);
        inner.with_padding(None);
        let truncation = max_length.map(|max_length| TruncationParams {
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        });
        inner
            .with_truncation(truncation)
            .map_err(|e| error(format!("invalid truncation: {e}")))?;
        Ok(Self {
            inner: Inner::Hf(Box::new(inner)),
            path: path.to_path_buf(),
            pad_id,
        })
    }

    /// Wraps a tokenizer built in code (such as a GGUF file's embedded one):
    /// no truncation, batches padded with `pad_id`; `path` names its source file.
    pub fn from_tokenizer(mut inner: Tokenizer, path: PathBuf, pad_id: u32) -> Self {
        inner.with_padding(None);
        Self {
            inner: Inner::Hf(Box::new(inner)),
            path,
            pad_id,
        }
    }

    /// Wraps a GGUF file's tokenizer: no truncation, batches padded with `pad_id`.
    /// Encoding adds BOS/EOS as the file asks and matches special tokens in the
    /// text; decoding is llama.cpp's `llama_detokenize`.
    pub fn from_gguf(inner: Arc<GgufTokenizer>, pad_id: u32) -> Self {
        Self {
            path: inner.path().to_path_buf(),
            inner: Inner::Gguf(inner),
            pad_id,
        }
    }

    /// The GGUF tokenizer behind this one, if it came from a GGUF file.
    pub fn gguf(&self) -> Option<&GgufTokenizer> {
        match &self.inner {
            Inner::Gguf(t) => Some(t),
            Inner::Hf(_) => None,
        }
    }

    /// Ids of one text, with special tokens added when `add_special`.
    fn encode_one(&self, text: &str, add_special: bool) -> Result<Vec<u32>, String> {
        match &self.inner {
            Inner::Hf(t) => {
                let encoding = if add_special {
                    t.encode(text, true)
                } else {
                    t.encode_fast(text, false)
                };
                encoding
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| e.to_string())
            }
            // Special tokens written in the text are always matched, as in a
            // rendered chat prompt.
            Inner::Gguf(t) => Ok(t.encode(text, add_special, true)),
        }
    }

    /// The file this tokenizer came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Encodes texts with special tokens, padded to the longest.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<EncodedBatch, ModelError> {
        let encodings = texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                self.encode_one(text, true)
                    .map_err(|reason| ModelError::Encode { index, reason })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let lengths: Vec<usize> = encodings.iter().map(Vec::len).collect();
        let seq = lengths.iter().copied().max().unwrap_or(0);
        let mut ids = Vec::with_capacity(texts.len() * seq);
        let mut mask = Vec::with_capacity(texts.len() * seq);
        for real in &encodings {
            ids.extend_from_slice(real);
            ids.extend(std::iter::repeat_n(self.pad_id, seq - real.len()));
            mask.extend(std::iter::repeat_n(1u8, real.len()));
            mask.extend(std::iter::repeat_n(0u8, seq - real.len()));
        }
        Ok(EncodedBatch {
            ids,
            mask,
            batch: texts.len(),
            seq,
            lengths,
        })
    }

    /// Decodes ids back into text; special tokens are dropped when `skip_special`.
    ///
    /// A GGUF tokenizer decodes as llama.cpp's `llama_detokenize(ids,
    /// remove_special = skip_special, unparse_special = !skip_special)` but
    /// never tidies spaces before punctuation (see
    /// [`GgufTokenizer::detokenize_untidied`]: generated text keeps what the
    /// model wrote, and streamed pieces add up to it); text that ends inside a
    /// character ends with U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, ModelError> {
        let decoded = match &self.inner {
            Inner::Hf(t) => t.decode(ids, skip_special).map_err(|e| e.to_string()),
            Inner::Gguf(t) => t
                .decode_untidied(ids, skip_special, !skip_special)
                .map_err(|e| e.to_string()),
        };
        decoded.map_err(|e| ModelError::Tokenizer {
            path: self.path.clone(),
            reason: format!("decoding {} ids: {e}", ids.len()),
        })
    }

    /// Encodes text without adding special tokens (a rendered chat prompt already
    /// has them) and without truncation.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.encode_one(text, false)
            .map_err(|reason| ModelError::Encode { index: 0, reason })
    }

    /// The token string of an id, if it is in the vocabulary.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        match &self.inner {
            Inner::Hf(t) => t.id_to_token(id),
            Inner::Gguf(t) => t.id_to_token(id).map(str::to_string),
        }
    }

    /// The id of a token string such as `<|im_end|>`, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match &self.inner {
            Inner::Hf(t) => t.token_to_id(token),
            Inner::Gguf(t) => t.token_to_id(token),
        }
    }

    /// Number of tokens in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        match &self.inner {
            Inner::Hf(t) => t.get_vocab_size(true),
            Inner::Gguf(t) => t.vocab_size(),
        }
    }

    /// Encodes one text into ids (with special tokens, truncated as configured).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        Ok(self.encode_batch(&[text])?.ids)
    }
}
