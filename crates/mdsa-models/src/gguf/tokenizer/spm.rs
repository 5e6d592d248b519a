//! SentencePiece as llama.cpp runs it (`llm_tokenizer_spm_session`): start
//! from single characters, repeatedly merge the adjacent pair whose
//! concatenation is the highest-scoring token, and spell whatever is left that
//! is not a token with byte tokens `<0xNN>`.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::symbols::{Symbol, characters, merge};
use super::vocab::Vocab;

/// Appends the ids of `text` (spaces already turned into `▁`).
pub(super) fn tokenize(vocab: &Vocab, byte_ids: &[u32; 256], text: &str, out: &mut Vec<u32>) {
    let mut symbols = characters(text);
    let count = symbols.len();
    let piece = |s: &Symbol| &text[s.start..s.start + s.len];
    let mut queue = BinaryHeap::new();
    let push = |queue: &mut BinaryHeap<Bigram>,
                symbols: &[Symbol],
                left: Option<usize>,
                right: Option<usize>| {
        let (Some(left), Some(right)) = (left, right) else {
            return;
        };
        let (l, r) = (&symbols[left], &symbols[right]);
        // Adjacent symbols are contiguous in `text`.
        let joined = &text[l.start..r.start + r.len];
        if let Some(id) = vocab.text_to_token(joined) {
            queue.push(Bigram {
                score: vocab.score(id),
                left,
                right,
                len: joined.len(),
            });
        }
    };
    for i in 1..count {
        push(&mut queue, &symbols, Some(i - 1), Some(i));
    }
    while let Some(bigram) = queue.pop() {
        let (left, right) = (symbols[bigram.left], symbols[bigram.right]);
        // Either side merged since the pair was queued.
        if left.len == 0 || right.len == 0 || left.len + right.len != bigram.len {
            continue;
        }
        let merged = merge(&mut symbols, bigram.left, bigram.right);
        push(&mut queue, &symbols, merged.prev, Some(bigram.left));
        push(&mut queue, &symbols, Some(bigram.left), merged.next);
    }
    // Walk the chain from the first symbol. Every merge made a token, so a
    // symbol that is not one is a single character: spell it in bytes.
    // (llama.cpp's `resegment` also keeps a map to undo merges, which only a
    // merge that is not a token could need.)
    let mut at = (count > 0).then_some(0);
    while let Some(i) = at {
        let symbol = &symbols[i];
        let text = piece(symbol);
        match vocab.text_to_token(text) {
            Some(id) => out.push(id),
            None => out.extend(text.bytes().map(|b| byte_ids[usize::from(b)])),
        }
        at = symbol.next;
    }
}

/// A mergeable pair; the heap pops the highest score, then the leftmost.
#[derive(Debug)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        // As C++'s `<` on floats: -0.0 and 0.0 tie. NaN scores are refused
        // when the vocabulary is built.
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}
