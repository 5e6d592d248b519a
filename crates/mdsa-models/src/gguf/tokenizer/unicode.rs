//! Code point classes the way llama.cpp's `unicode.cpp` sees them: its own
//! category table ([`unicode_data`](super::unicode_data)) and whitespace set,
//! so splitting agrees with llama.cpp whatever Unicode version Rust or
//! Oniguruma ship.

use super::unicode_data::{RANGES, WHITESPACE};

/// llama.cpp's `unicode_cpt_flags` for one code point (categories in the low
/// byte, whitespace above). Positions outside the text have no flags at all,
/// which llama.cpp's splitters test for (`as_uint() == 0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Flags(u16);

impl Flags {
    const UNDEFINED: u16 = 0x01;
    const NUMBER: u16 = 0x02;
    const LETTER: u16 = 0x04;
    const MARK: u16 = 0x10;
    const PUNCTUATION: u16 = 0x20;
    const SYMBOL: u16 = 0x40;
    const CATEGORIES: u16 = 0xFF;
    const WHITESPACE: u16 = 0x100;

    /// The flags of `c`; code points past the table are undefined, as in llama.cpp.
    pub(super) fn of(c: char) -> Self {
        let cp = u32::from(c);
        // RANGES starts at 0, so the range holding `cp` is the last start <= cp.
        let index = RANGES.partition_point(|&(start, _)| start <= cp);
        let category = match index.checked_sub(1) {
            Some(i) => u16::from(RANGES[i].1),
            None => Self::UNDEFINED,
        };
        let space = if WHITESPACE.binary_search(&cp).is_ok() {
            Self::WHITESPACE
        } else {
            0
        };
        Self(category | space)
    }

    pub(super) fn is_number(self) -> bool {
        self.0 & Self::NUMBER != 0
    }

    pub(super) fn is_letter(self) -> bool {
        self.0 & Self::LETTER != 0
    }

    pub(super) fn is_whitespace(self) -> bool {
        self.0 & Self::WHITESPACE != 0
    }

    /// Whether this is a real code point (llama.cpp's `as_uint() != 0`).
    pub(super) fn is_some(self) -> bool {
        self.0 != 0
    }

    /// The one-character stand-in llama.cpp's `unicode_regex_split` gives a
    /// non-ASCII code point before running a general regex on "collapsed" text.
    pub(super) fn collapsed(self) -> char {
        if self.is_whitespace() {
            // llama.cpp: std::regex's \s misses U+0085, so every non-ASCII space
            // becomes a vertical tab.
            return '\u{0B}';
        }
        match self.0 & Self::CATEGORIES {
            Self::NUMBER => COLLAPSED_NUMBER,
            Self::LETTER => COLLAPSED_LETTER,
            Self::PUNCTUATION => COLLAPSED_PUNCTUATION,
            Self::MARK => COLLAPSED_MARK,
            Self::SYMBOL => COLLAPSED_SYMBOL,
            _ => COLLAPSED_OTHER,
        }
    }
}

// llama.cpp collapses to the bytes 0xD0..=0xD5 of a narrow string; here they
// are the code points U+00D0..=U+00D5 of a Rust string. In the collapsed text
// no other non-ASCII character occurs, so no class can confuse them.
const COLLAPSED_OTHER: char = '\u{D0}';
const COLLAPSED_NUMBER: char = '\u{D1}';
const COLLAPSED_LETTER: char = '\u{D2}';
const COLLAPSED_PUNCTUATION: char = '\u{D3}';
const COLLAPSED_MARK: char = '\u{D4}';
const COLLAPSED_SYMBOL: char = '\u{D5}';

/// How llama.cpp rewrites `\p{..}` in a regex run on collapsed text: the
/// stand-in character plus the ASCII members of the category.
pub(super) fn collapsed_class(property: &str) -> Option<String> {
    let (stand_in, ascii) = match property {
        "N" => (COLLAPSED_NUMBER, "0-9"),
        "L" | "Lu" | "Ll" | "Lt" | "Lm" | "Lo" => (COLLAPSED_LETTER, "A-Za-z"),
        "P" => (COLLAPSED_PUNCTUATION, r"!-#%-*,-/:-;?-@\[-\]_\{\}"),
        "M" => (COLLAPSED_MARK, ""),
        "S" => (COLLAPSED_SYMBOL, r"\$\+<->\^`\|~"),
        _ => return None,
    };
    Some(format!("\\x{{{:X}}}{ascii}", u32::from(stand_in)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_follow_llama_cpp_tables() {
        assert!(Flags::of('a').is_letter());
        assert!(Flags::of('Ж').is_letter());
        assert!(Flags::of('中').is_letter());
        assert!(Flags::of('7').is_number());
        assert!(Flags::of('٣').is_number());
        assert!(Flags::of(' ').is_whitespace());
        assert!(Flags::of('\u{3000}').is_whitespace());
        assert!(!Flags::of('\u{200B}').is_whitespace());
        assert!(Flags::of('\u{10FFFF}').is_some());
        assert_eq!(Flags::of('\u{301}').collapsed(), COLLAPSED_MARK);
        assert_eq!(Flags::of('🎉').collapsed(), COLLAPSED_SYMBOL);
        assert_eq!(Flags::of('\u{A0}').collapsed(), '\u{0B}');
        assert!(!Flags::default().is_some());
    }
}
