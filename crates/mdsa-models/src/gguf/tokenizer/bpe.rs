//! Byte-level BPE as llama.cpp runs it (`llm_tokenizer_bpe_session`): split
//! into words by the pre-tokenizer's regexes, map bytes to GPT-2's printable
//! alphabet, merge the lowest-ranked adjacent pair first.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{PoisonError, RwLock};

use rustc_hash::FxHashMap;

use super::split::{GPT2, LLAMA3, QWEN2, Splitter, split_words};
use super::symbols::{Symbol, characters, merge};
use super::vocab::Vocab;

/// Phi-4-mini's regex ("gpt-4o") as llama.cpp writes it: each `\p{Lu}…`
/// class spelled as "a letter that is not a-z", which on collapsed text treats
/// every non-ASCII letter as both cases.
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.ggml.pre` values mdsa builds, as one line for error messages.
pub const SUPPORTED_PRE_TOKENIZERS: &str = "\"default\" (or absent), \"gpt-2\", \"gpt2\", \"phi-2\", \
     \"smollm\", \"qwen2\", \"llama-bpe\", \"llama3\", \"llama-v3\", \"gpt-4o\"";

/// A `tokenizer.ggml.pre` llama.cpp names and mdsa builds, with the settings
/// `llama_vocab::impl::load` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PreTokenizer {
    /// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_DEFAULT` ("default" or no key).
    Default,
    /// GPT-2's regex ("gpt-2", "phi-2"; mdsa also reads "gpt2", which older
    /// mdsa fixtures used and llama.cpp would refuse).
    Gpt2,
    /// Every digit alone, then GPT-2 ("smollm").
    Smollm,
    /// Qwen2's regex ("qwen2").
    Qwen2,
    /// Llama 3's regex, whole words looked up before merging ("llama-bpe").
    Llama3,
    /// Phi-4-mini's ("gpt-4o").
    Gpt4o,
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp picks for `tokenizer.ggml.pre`.
    pub(super) fn from_pre(pre: Option<&str>) -> Option<Self> {
        Some(match pre {
            None | Some("default") => Self::Default,
            Some("gpt-2" | "gpt2" | "phi-2") => Self::Gpt2,
            Some("smollm") => Self::Smollm,
            Some("qwen2") => Self::Qwen2,
            Some("llama3" | "llama-v3" | "llama-bpe") => Self::Llama3,
            Some("gpt-4o") => Self::Gpt4o,
            Some(_) => return None,
        })
    }

    /// `llm_tokenizer_bpe`'s regex list for this pre-tokenizer.
    pub(super) fn regexes(self) -> &'static [&'static str] {
        match self {
            Self::Default => &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
            Self::Gpt2 => &[GPT2],
            Self::Smollm => &[r"\p{N}", GPT2],
            Self::Qwen2 => &[QWEN2],
            Self::Llama3 => &[LLAMA3],
            Self::Gpt4o => &[GPT4O],
        }
    }

    /// Whether a word that is already a token skips merging (llama.cpp's `ignore_merges`).
    pub(super) fn ignore_merges(self) -> bool {
        self == Self::Llama3
    }

    /// Whether BOS is added when the file does not say (`add_bos`'s default).
    pub(super) fn adds_bos(self) -> bool {
        self == Self::Llama3
    }

    /// Whether decoding tidies spaces before punctuation (`clean_spaces`).
    pub(super) fn cleans_spaces(self) -> bool {
        matches!(self, Self::Default | Self::Gpt2 | Self::Llama3)
    }
}

/// GPT-2's byte-to-character map: printable bytes stand for themselves, the
/// others for U+0100 onwards in byte order.
pub(super) fn byte_to_char() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut next = 256u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
        map[usize::from(byte)] = if printable {
            char::from(byte)
        } else {
            next += 1;
            char::from_u32(next - 1).expect("below U+0200")
        };
    }
    map
}

/// The BPE side of a vocabulary: split regexes and merge ranks.
#[derive(Debug)]
pub(super) struct Bpe {
    pub(super) pre: PreTokenizer,
    splitters: Vec<Splitter>,
    /// `left -> right -> rank`; two levels so lookups borrow instead of allocating.
    ranks: FxHashMap<String, FxHashMap<String, u32>>,
    byte_to_char: [char; 256],
    /// Words already tokenized (as their byte-mapped text), as Hugging Face
    /// tokenizers' BPE keeps them: a chat prompt repeats its system prompt's
    /// words request after request, and merging a word costs a few µs of
    /// lookups in rank tables that a generation has pushed out of the
    /// caches. Filled up to [`WORD_CACHE_WORDS`], then only read.
    words: RwLock<FxHashMap<Box<str>, Box<[u32]>>>,
}

/// How many words [`Bpe`] remembers (a few MB at most).
const WORD_CACHE_WORDS: usize = 16_384;

/// The longest word (in bytes) [`Bpe`] remembers: longer ones are rare and
/// would make the cache's size depend on its inputs.
const WORD_CACHE_BYTES: usize = 64;

impl Bpe {
    /// Builds the splitters and ranks. Merges are `"left right"`, split at the
    /// first space after the first character as llama.cpp does (its byte-wise
    /// `find(' ', 1)` cannot land inside a character); a merge without one
    /// becomes the pair ("", ""), which never matches.
    pub(super) fn new(pre: PreTokenizer, merges: &[String]) -> Result<Self, String> {
        let splitters = pre
            .regexes()
            .iter()
            .map(|r| Splitter::new(r))
            .collect::<Result<_, _>>()?;
        let mut ranks: FxHashMap<String, FxHashMap<String, u32>> = FxHashMap::default();
        for (rank, merge) in merges.iter().enumerate() {
            let (left, right) = match merge.char_indices().skip(1).find(|&(_, c)| c == ' ') {
                Some((p, _)) => (&merge[..p], &merge[p + 1..]),
                None => ("", ""),
            };
            let rank = u32::try_from(rank).map_err(|_| "more than 2^32 merges".to_string())?;
            // emplace: the first occurrence of a pair keeps its rank.
            ranks
                .entry(left.to_string())
                .or_default()
                .entry(right.to_string())
                .or_insert(rank);
        }
        Ok(Self {
            pre,
            splitters,
            ranks,
            byte_to_char: byte_to_char(),
            words: RwLock::default(),
        })
    }

    fn rank(&self, left: &str, right: &str) -> Option<u32> {
        self.ranks.get(left)?.get(right).copied()
    }

    /// Appends the ids of one stretch of text between special tokens.
    pub(super) fn tokenize(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        for word in split_words(text, &self.splitters) {
            let word: String = word
                .bytes()
                .map(|b| self.byte_to_char[usize::from(b)])
                .collect();
            let words = self.words.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(ids) = words.get(word.as_str()) {
                out.extend_from_slice(ids);
                continue;
            }
            let full = words.len() >= WORD_CACHE_WORDS;
            drop(words);
            let start = out.len();
            self.tokenize_word(vocab, &word, out);
            if !full && word.len() <= WORD_CACHE_BYTES {
                self.words
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(word.into_boxed_str(), out[start..].into());
            }
        }
    }

    fn tokenize_word(&self, vocab: &Vocab, word: &str, out: &mut Vec<u32>) {
        if self.pre.ignore_merges()
            && let Some(id) = vocab.text_to_token(word)
        {
            out.push(id);
            return;
        }
        // Symbols are byte ranges of `word`, linked as in llama.cpp; a merged-away
        // symbol has length 0.
        let mut symbols = characters(word);
        let count = symbols.len();
        let text = |s: &Symbol| &word[s.start..s.start + s.len];
        let mut queue = BinaryHeap::new();
        let push = |queue: &mut BinaryHeap<Bigram>,
                    symbols: &[Symbol],
                    left: Option<usize>,
                    right: Option<usize>| {
            let (Some(left), Some(right)) = (left, right) else {
                return;
            };
            let (l, r) = (text(&symbols[left]), text(&symbols[right]));
            if let Some(rank) = self.rank(l, r) {
                queue.push(Bigram {
                    rank,
                    left,
                    right,
                    len: l.len() + r.len(),
                });
            }
        };
        for i in 1..count {
            push(&mut queue, &symbols, Some(i - 1), Some(i));
        }
        while let Some(bigram) = queue.pop() {
            let (left, right) = (symbols[bigram.left], symbols[bigram.right]);
            // Outdated: either side changed since the pair was queued (llama.cpp
            // compares the texts; adjacent symbols are contiguous, so comparing
            // where the pair would end is the same test).
            if left.len == 0
                || right.len == 0
                || left.next != Some(bigram.right)
                || left.len + right.len != bigram.len
            {
                continue;
            }
            let merged = merge(&mut symbols, bigram.left, bigram.right);
            push(&mut queue, &symbols, merged.prev, Some(bigram.left));
            push(&mut queue, &symbols, Some(bigram.left), merged.next);
        }
        for symbol in symbols.iter().filter(|s| s.len > 0) {
            let piece = text(symbol);
            match vocab.text_to_token(piece) {
                Some(id) => out.push(id),
                // Not a token: llama.cpp tries each byte of the piece as a
                // one-byte token and drops the bytes that are not.
                None => {
                    out.extend(piece.bytes().filter(u8::is_ascii).filter_map(|b| {
                        vocab.text_to_token(char::from(b).encode_utf8(&mut [0; 4]))
                    }))
                }
            }
        }
    }
}

/// A mergeable pair; the heap pops the lowest rank, then the leftmost.
#[derive(Debug, PartialEq, Eq)]
struct Bigram {
    rank: u32,
    left: usize,
    right: usize,
    len: usize,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
