//! llama.cpp's `unicode_regex_split`: the text is cut into words by a list of
//! regexes, each applied to the pieces the previous one left.
//!
//! As in llama.cpp, the regexes GPT-2, Llama 3 and Qwen2 use run as hand-written
//! splitters (ports of `unicode_regex_split_custom_*`), and any other regex runs
//! on a "collapsed" copy of the text where each non-ASCII code point stands for
//! its category (`\p{L}` becomes "the letter stand-in or A-Za-z"). llama.cpp runs
//! those with `std::regex`; mdsa runs them with Oniguruma, a backtracking engine
//! with the same leftmost-first semantics for these patterns. Working from
//! llama.cpp's category table and collapsed text — rather than a Unicode-aware
//! engine — is what makes the splits agree: for example llama.cpp's `\p{L}`
//! leaves out combining marks (Devanagari vowel signs), and on collapsed text a
//! non-ASCII letter is neither `[a-z]` nor `[A-Z]`.

use onig::Regex;

use super::unicode::{Flags, collapsed_class};

/// GPT-2's regex, which llama.cpp splits by hand.
pub(super) const GPT2: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's regex as llama.cpp writes it (contractions spelled out instead of `(?i:)`).
pub(super) const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's regex as its `tokenizer.json` writes it; llama.cpp splits both by hand.
const LLAMA3_ORIGINAL: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's regex as llama.cpp writes it: Llama 3's with single digits.
pub(super) const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// One regex of a pre-tokenizer.
#[derive(Debug)]
pub(super) enum Splitter {
    /// `unicode_regex_split_custom_gpt2`.
    Gpt2,
    /// `unicode_regex_split_custom_llama3` (`max_digits` 3) and `_qwen2` (1).
    Llama3 { max_digits: usize },
    /// Any other regex, on collapsed text (when it names a `\p{..}` class) or
    /// on the text with non-ASCII spaces turned into vertical tabs.
    Regex { regex: Regex, collapsed: bool },
}

impl Splitter {
    /// The splitter llama.cpp would use for `expr`.
    pub(super) fn new(expr: &str) -> Result<Self, String> {
        Ok(match expr {
            GPT2 => Self::Gpt2,
            LLAMA3 | LLAMA3_ORIGINAL => Self::Llama3 { max_digits: 3 },
            QWEN2 => Self::Llama3 { max_digits: 1 },
            _ => {
                let collapsed = ["\\p{N}", "\\p{L}", "\\p{P}", "\\p{M}", "\\p{S}"]
                    .iter()
                    .chain(&["\\p{Lu}", "\\p{Ll}", "\\p{Lt}", "\\p{Lm}", "\\p{Lo}"])
                    .any(|class| expr.contains(class));
                let pattern = if collapsed {
                    collapse_regex(expr)?
                } else {
                    expr.to_string()
                };
                let regex = Regex::new(&pattern)
                    .map_err(|e| format!("cannot compile the split regex {expr:?}: {e}"))?;
                Self::Regex { regex, collapsed }
            }
        })
    }

    /// Splits every piece (`lengths`, in code points, covering `text`) further.
    fn split(&self, text: &[char], lengths: &[usize]) -> Vec<usize> {
        match self {
            Self::Gpt2 => split_pieces(text, lengths, gpt2),
            Self::Llama3 { max_digits } => {
                split_pieces(text, lengths, |piece, out| llama3(piece, *max_digits, out))
            }
            Self::Regex { regex, collapsed } => split_regex(regex, *collapsed, text, lengths),
        }
    }
}

/// Cuts `text` with each splitter in turn; returns the words.
pub(super) fn split_words(text: &str, splitters: &[Splitter]) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut lengths = vec![chars.len()];
    for splitter in splitters {
        lengths = splitter.split(&chars, &lengths);
    }
    let mut start = 0;
    lengths
        .iter()
        .map(|&len| {
            let word = chars[start..start + len].iter().collect();
            start += len;
            word
        })
        .collect()
}

/// Runs a hand-written splitter on each piece; it pushes word lengths.
fn split_pieces(
    text: &[char],
    lengths: &[usize],
    splitter: impl Fn(&[char], &mut Vec<usize>),
) -> Vec<usize> {
    let mut out = Vec::with_capacity(lengths.len());
    let mut start = 0;
    for &len in lengths {
        splitter(&text[start..start + len], &mut out);
        start += len;
    }
    out
}

/// A piece of text as llama.cpp's splitters read it: out-of-range positions
/// read as no character (`OUT_OF_RANGE`) with no flags.
struct Piece<'a> {
    chars: &'a [char],
    flags: Vec<Flags>,
}

impl<'a> Piece<'a> {
    fn new(chars: &'a [char]) -> Self {
        let flags = chars.iter().map(|&c| Flags::of(c)).collect();
        Self { chars, flags }
    }

    fn len(&self) -> usize {
        self.chars.len()
    }

    fn char(&self, pos: usize) -> Option<char> {
        self.chars.get(pos).copied()
    }

    fn flags(&self, pos: usize) -> Flags {
        self.flags.get(pos).copied().unwrap_or_default()
    }
}

/// Records words as llama.cpp's `_add_token` does: the word ends at `end` and
/// starts where the previous one ended; empty words are dropped.
struct Words<'o> {
    prev_end: usize,
    out: &'o mut Vec<usize>,
}

impl Words<'_> {
    fn add(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
}

/// The alternatives both custom splitters end with, at `pos` followed by
/// `spaces` whitespace characters: `\s+(?!\S)` (all but the last space when
/// text follows), else `\s+`, else one unmatched character. Returns where
/// the word ends.
fn whitespace_or_one(p: &Piece<'_>, words: &mut Words<'_>, pos: usize, spaces: usize) -> usize {
    let end = if spaces > 1 && p.char(pos + spaces).is_some() {
        pos + spaces - 1
    } else if spaces > 0 {
        pos + spaces
    } else {
        pos + 1
    };
    words.add(end);
    end
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
/// (port of `unicode_regex_split_custom_gpt2`).
fn gpt2(chars: &[char], out: &mut Vec<usize>) {
    let p = Piece::new(chars);
    let end = p.len();
    let mut words = Words { prev_end: 0, out };
    let mut pos = 0;
    while pos < end {
        let c = p.char(pos);
        let flags = p.flags(pos);

        // 's|'t|'re|'ve|'m|'ll|'d
        if c == Some('\'') && pos + 1 < end {
            let next = p.char(pos + 1);
            if matches!(next, Some('s' | 't' | 'm' | 'd')) {
                pos += words.add(pos + 2);
                continue;
            }
            if pos + 2 < end {
                let next_next = p.char(pos + 2);
                if matches!(
                    (next, next_next),
                    (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))
                ) {
                    pos += words.add(pos + 3);
                    continue;
                }
            }
        }

        let space = usize::from(c == Some(' '));
        let mut flags2 = if space == 1 { p.flags(pos + 1) } else { flags };
        //  ?\p{L}+
        if flags2.is_letter() {
            pos += space;
            while flags2.is_letter() {
                pos += 1;
                flags2 = p.flags(pos);
            }
            words.add(pos);
            continue;
        }
        //  ?\p{N}+
        if flags2.is_number() {
            pos += space;
            while flags2.is_number() {
                pos += 1;
                flags2 = p.flags(pos);
            }
            words.add(pos);
            continue;
        }
        //  ?[^\s\p{L}\p{N}]+
        let other =
            |f: Flags| !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.is_some();
        if other(flags2) {
            pos += space;
            while other(flags2) {
                pos += 1;
                flags2 = p.flags(pos);
            }
            words.add(pos);
            continue;
        }

        let mut spaces = 0;
        while p.flags(pos + spaces).is_whitespace() {
            spaces += 1;
        }
        pos = whitespace_or_one(&p, &mut words, pos, spaces);
    }
}

/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
/// (port of `unicode_regex_split_custom_llama3`; with `max_digits` 1 it is
/// `_qwen2`, whose only difference is `\p{N}`).
fn llama3(chars: &[char], max_digits: usize, out: &mut Vec<usize>) {
    let p = Piece::new(chars);
    let end = p.len();
    let mut words = Words { prev_end: 0, out };
    let is_cr_lf = |c: Option<char>| matches!(c, Some('\r' | '\n'));
    // llama.cpp lowercases with its Unicode table; the only non-ASCII code
    // points it maps to ASCII are U+0130 (i) and U+212A (k), neither of which
    // is tested below, so ASCII lowercasing gives the same answers.
    let lower = |c: Option<char>| c.map(|c| c.to_ascii_lowercase());
    let mut pos = 0;
    while pos < end {
        let c = p.char(pos);
        let flags = p.flags(pos);

        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if c == Some('\'') && pos + 1 < end {
            let next = lower(p.char(pos + 1));
            if matches!(next, Some('s' | 't' | 'm' | 'd')) {
                pos += words.add(pos + 2);
                continue;
            }
            if pos + 2 < end {
                let next_next = lower(p.char(pos + 2));
                if matches!(
                    (next, next_next),
                    (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))
                ) {
                    pos += words.add(pos + 3);
                    continue;
                }
            }
        }

        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(is_cr_lf(c) || flags.is_number())
            && (flags.is_letter() || p.flags(pos + 1).is_letter())
        {
            pos += 1;
            while p.flags(pos).is_letter() {
                pos += 1;
            }
            words.add(pos);
            continue;
        }

        // \p{N}{1,3} (or \p{N})
        if flags.is_number() {
            let mut first = pos;
            while p.flags(pos).is_number() {
                pos += 1;
                if pos - first >= max_digits {
                    words.add(pos);
                    first = pos;
                }
            }
            words.add(pos);
            continue;
        }

        //  ?[^\s\p{L}\p{N}]+[\r\n]*
        // (llama.cpp tests the first character's own flags for "is a
        // character" here, not the one after the optional space.)
        let space = usize::from(c == Some(' '));
        let mut flags2 = if space == 1 { p.flags(pos + 1) } else { flags };
        let other = |f: Flags| !(f.is_whitespace() || f.is_letter() || f.is_number());
        if other(flags2) && flags.is_some() {
            pos += space;
            while other(flags2) && flags2.is_some() {
                pos += 1;
                flags2 = p.flags(pos);
            }
            while is_cr_lf(p.char(pos)) {
                pos += 1;
            }
            words.add(pos);
            continue;
        }

        let mut spaces = 0;
        let mut last_cr_lf_end = 0;
        while p.flags(pos + spaces).is_whitespace() {
            if is_cr_lf(p.char(pos + spaces)) {
                last_cr_lf_end = pos + spaces + 1;
            }
            spaces += 1;
        }
        // \s*[\r\n]+
        if last_cr_lf_end > 0 {
            pos = last_cr_lf_end;
            words.add(pos);
            continue;
        }
        pos = whitespace_or_one(&p, &mut words, pos, spaces);
    }
}

/// llama.cpp's rewrite of a regex for collapsed text: each `\p{X}` becomes the
/// class of X's stand-in and ASCII members (bracketed when it stood alone).
fn collapse_regex(expr: &str) -> Result<String, String> {
    if !expr.is_ascii() {
        return Err(format!(
            "split regex {expr:?} mixes Unicode classes and non-ASCII characters"
        ));
    }
    let bytes = expr.as_bytes();
    let mut out = String::with_capacity(expr.len() * 2);
    let mut inside = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escaped = i > 0 && bytes[i - 1] == b'\\';
        if b == b'[' && !escaped {
            out.push('[');
            inside = true;
            i += 1;
            continue;
        }
        if inside && b == b']' && !escaped {
            out.push(']');
            inside = false;
            i += 1;
            continue;
        }
        if b == b'\\' && i + 3 < bytes.len() && bytes[i + 1] == b'p' && bytes[i + 2] == b'{' {
            let close = expr[i + 3..].find('}').map(|p| p + i + 3);
            if let Some(close) = close.filter(|&c| c <= i + 10)
                && let Some(class) = collapsed_class(&expr[i + 3..close])
            {
                if inside {
                    out.push_str(&class);
                } else {
                    out.push('[');
                    out.push_str(&class);
                    out.push(']');
                }
                i = close + 1;
                continue;
            }
        }
        out.push(char::from(b));
        i += 1;
    }
    Ok(out)
}

/// `unicode_regex_split_stl`: in each piece, every match is a word and so is
/// every stretch between matches.
fn split_regex(regex: &Regex, collapsed: bool, text: &[char], lengths: &[usize]) -> Vec<usize> {
    // The text the regex sees, one character per code point, and where each
    // code point starts in it (to turn byte offsets back into code points).
    let mut seen = String::with_capacity(text.len());
    let mut starts = Vec::with_capacity(text.len() + 1);
    for &c in text {
        starts.push(seen.len());
        let shown = if c.is_ascii() {
            c
        } else {
            let flags = Flags::of(c);
            if collapsed {
                flags.collapsed()
            } else if flags.is_whitespace() {
                // std::wregex's \s misses non-ASCII spaces; llama.cpp maps them to \v.
                '\u{0B}'
            } else {
                c
            }
        };
        seen.push(shown);
    }
    starts.push(seen.len());
    let code_point = |byte: usize| starts.partition_point(|&s| s < byte);

    let mut out = Vec::with_capacity(lengths.len());
    let mut start = 0;
    for &len in lengths {
        let base = starts[start];
        let piece = &seen[base..starts[start + len]];
        let mut done = start;
        for (from, to) in regex.find_iter(piece) {
            let (from, to) = (code_point(base + from), code_point(base + to));
            if from > done {
                out.push(from - done);
            }
            // A regex that can match nothing (none of llama.cpp's can) makes no word.
            if to > from {
                out.push(to - from);
            }
            done = to;
        }
        if start + len > done {
            out.push(start + len - done);
        }
        start += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(expr: &str, text: &str) -> Vec<String> {
        split_words(text, &[Splitter::new(expr).unwrap()])
    }

    #[test]
    fn gpt2_splits_contractions_words_numbers_and_spaces() {
        assert_eq!(
            words(GPT2, "I'm  fine, 123 ok  \n"),
            ["I", "'m", " ", " fine", ",", " 123", " ok", "  \n"]
        );
    }

    #[test]
    fn llama3_groups_digits_by_three_and_keeps_newlines_apart() {
        assert_eq!(
            words(LLAMA3, "It'S 1234567 x\n\n  y"),
            ["It", "'S", " ", "123", "456", "7", " x", "\n\n", " ", " y"]
        );
        assert_eq!(words(QWEN2, "a 123"), ["a", " ", "1", "2", "3"]);
    }

    #[test]
    fn collapsed_regexes_see_categories_not_code_points() {
        let regex = collapse_regex(r"[^\r\n\p{L}\p{N}]?\p{L}+").unwrap();
        assert_eq!(regex, r"[^\r\n\x{D2}A-Za-z\x{D1}0-9]?[\x{D2}A-Za-z]+");
        // The Devanagari vowel sign is a mark, not a letter, to llama.cpp.
        assert_eq!(words(r"\p{L}+", "नमस्ते"), ["नमस", "्", "त", "े"]);
        assert_eq!(words(r"\p{N}", "a12"), ["a", "1", "2"]);
        assert_eq!(words("[0-9][0-9][0-9]", "12345"), ["123", "45"]);
    }
}
