//! The doubly linked list of symbols both merge algorithms (SentencePiece's
//! and BPE's, as llama.cpp runs them) start from: one symbol per character,
//! merged pairwise until no pair is a token.

/// A byte range of the text being merged, linked to its neighbours; a
/// merged-away symbol has length 0.
#[derive(Clone, Copy, Debug)]
pub(super) struct Symbol {
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) prev: Option<usize>,
    pub(super) next: Option<usize>,
}

/// One symbol per character of `text`, each linked to its neighbours.
pub(super) fn characters(text: &str) -> Vec<Symbol> {
    let mut symbols: Vec<Symbol> = text
        .char_indices()
        .map(|(start, c)| Symbol {
            start,
            len: c.len_utf8(),
            prev: None,
            next: None,
        })
        .collect();
    let count = symbols.len();
    for (i, symbol) in symbols.iter_mut().enumerate() {
        symbol.prev = i.checked_sub(1);
        symbol.next = (i + 1 < count).then_some(i + 1);
    }
    symbols
}

/// Joins symbol `right` into its left neighbour `left` and returns the
/// merged symbol; `right` is left empty and unlinked.
pub(super) fn merge(symbols: &mut [Symbol], left: usize, right: usize) -> Symbol {
    let gone = symbols[right];
    symbols[left].len += gone.len;
    symbols[right].len = 0;
    symbols[left].next = gone.next;
    if let Some(next) = gone.next {
        symbols[next].prev = Some(left);
    }
    symbols[left]
}
