//! Turning a growing list of token ids into text pieces that are always valid UTF-8.
//!
//! Byte-level BPE can split one character over several tokens; decoding a token
//! alone would print a replacement character. We decode a short window that
//! starts a few tokens back and emit only the new text, holding back while it
//! ends in an incomplete character.

use crate::tokenizer::TextTokenizer;
use mdsa_engine::ModelError;

/// Incremental decoder for streaming.
#[derive(Debug, Default, Clone)]
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    /// Start of the window decoded for context (its text was already emitted).
    prefix_offset: usize,
    /// End of what has been emitted.
    read_offset: usize,
}

impl IncrementalDecoder {
    /// A decoder with no tokens yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token; returns the text it completes, if any.
    pub fn push(
        &mut self,
        tokenizer: &TextTokenizer,
        id: u32,
    ) -> Result<Option<String>, ModelError> {
        self.ids.push(id);
        let prefix = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset], true)?;
        let full = tokenizer.decode(&self.ids[self.prefix_offset..], true)?;
        if full.len() > prefix.len()
            && !full.ends_with('\u{FFFD}')
            && full.is_char_boundary(prefix.len())
        {
            let piece = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }

    /// Every token pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}
