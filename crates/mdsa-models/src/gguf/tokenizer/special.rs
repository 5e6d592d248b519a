//! Token attributes and the special-token partition, as llama.cpp's
//! `llama_vocab::impl::load` and `tokenizer_st_partition` have them.
//!
//! GGUF stores one `token_type` per token; llama.cpp turns it into attribute
//! bits and then corrects them by token text (end-of-generation tokens become
//! control tokens even when a converter typed them normal, Phi-3's special
//! tokens eat the whitespace after them, ...). Which tokens are matched whole
//! in text, and how they decode, follows from these bits.

use std::collections::HashMap;

/// llama.cpp's `llama_token_attr` bits.
pub(super) mod attr {
    pub(crate) const UNDEFINED: u16 = 0;
    pub(crate) const UNKNOWN: u16 = 1 << 0;
    pub(crate) const UNUSED: u16 = 1 << 1;
    pub(crate) const NORMAL: u16 = 1 << 2;
    pub(crate) const CONTROL: u16 = 1 << 3;
    pub(crate) const USER_DEFINED: u16 = 1 << 4;
    pub(crate) const BYTE: u16 = 1 << 5;
    pub(crate) const LSTRIP: u16 = 1 << 7;
    pub(crate) const RSTRIP: u16 = 1 << 8;
}

/// The attribute a `tokenizer.ggml.token_type` value maps to.
pub(super) fn from_token_type(token_type: i32) -> u16 {
    match token_type {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => attr::UNDEFINED,
    }
}

/// Texts llama.cpp takes for end-of-generation tokens; each becomes a control
/// token whatever its type (`special_eog_ids` in `llama_vocab::impl::load`).
const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle token texts by the key that, when present, names the
/// token instead; when absent, llama.cpp finds the token by text and makes it
/// a control token. (llama.cpp takes the first match in hash order; a
/// vocabulary holds at most one of each kind, so every match is marked here.)
const FILL_IN_THE_MIDDLE: &[(&[&str], &[&str])] = &[
    (
        &[
            "tokenizer.ggml.fim_pre_token_id",
            "tokenizer.ggml.prefix_token_id",
        ],
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
    ),
    (
        &[
            "tokenizer.ggml.fim_suf_token_id",
            "tokenizer.ggml.suffix_token_id",
        ],
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
    ),
    (
        &[
            "tokenizer.ggml.fim_mid_token_id",
            "tokenizer.ggml.middle_token_id",
        ],
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
    ),
    (
        &["tokenizer.ggml.fim_pad_token_id"],
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    ),
    (
        &["tokenizer.ggml.fim_rep_token_id"],
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
    ),
    (&["tokenizer.ggml.fim_sep_token_id"], &["<|file_sep|>"]),
];

/// What the attribute corrections need to know about the file.
pub(super) struct Context<'a> {
    /// Text to id, last occurrence winning.
    pub ids: &'a HashMap<String, u32>,
    /// Whether a metadata key is present.
    pub has_key: &'a dyn Fn(&str) -> bool,
    /// `general.name`, if any.
    pub model_name: Option<&'a str>,
    /// The resolved EOS id.
    pub eos: Option<u32>,
}

/// Applies llama.cpp's by-text corrections to `attrs`.
pub(super) fn correct_attributes(attrs: &mut [u16], tokens: &[String], cx: &Context<'_>) {
    let id = |text: &str| cx.ids.get(text).map(|&id| id as usize);
    for (keys, texts) in FILL_IN_THE_MIDDLE {
        if keys.iter().any(|k| (cx.has_key)(k)) {
            continue;
        }
        for i in texts.iter().filter_map(|t| id(t)) {
            attrs[i] |= attr::CONTROL;
        }
    }
    for i in END_OF_GENERATION.iter().filter_map(|t| id(t)) {
        attrs[i] |= attr::CONTROL;
    }
    // gpt-oss: these structure tokens always render.
    for text in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
        if let Some(i) = id(text) {
            attrs[i] = attr::USER_DEFINED;
        }
    }
    // o200k_harmony / solar-open: with <|return|>/<|call|> (or <|calls|>/<|flush|>),
    // <|end|> is an ordinary user-defined token.
    let has = |text: &str| id(text).is_some();
    let has_call = has("<|call|>") || has("<|calls|>");
    if let Some(end) = id("<|end|>")
        && has_call
        && (has("<|return|>") || has("<|flush|>"))
    {
        attrs[end] = attr::USER_DEFINED;
    }
    // Gemma 4 and PLaMo 2 use </s> as normal text.
    let eos_text = cx.eos.map(|e| tokens[e as usize].as_str());
    if (has("<|tool_response>") || eos_text == Some("<|plamo:eos|>"))
        && let Some(s) = id("</s>")
    {
        attrs[s] = attr::NORMAL;
    }
}

/// The tokens matched whole in text, longest first (`cache_special_tokens`;
/// llama.cpp's sort is not stable, ties here go by id).
pub(super) fn special_tokens(attrs: &[u16], tokens: &[String]) -> Vec<u32> {
    let mut special: Vec<u32> = (0..attrs.len())
        .filter(|&i| attrs[i] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
        .map(|i| i as u32)
        .collect();
    special.sort_by_key(|&i| std::cmp::Reverse(tokens[i as usize].len()));
    special
}

/// Phi-3's special tokens swallow the whitespace after them, picked by model
/// name as llama.cpp does (the per-token flags are not in GGUF).
pub(super) fn strip_attributes(attrs: &mut [u16], special: &[u32], cx: &Context<'_>) {
    let name = cx.model_name.unwrap_or_default().to_ascii_lowercase();
    if !(name.contains("phi-3") || name.contains("phi3")) {
        return;
    }
    for &i in special {
        attrs[i as usize] |= attr::RSTRIP;
    }
    let mut set = |text: &str, on: bool| {
        if let Some(&i) = cx.ids.get(text) {
            if on {
                attrs[i as usize] |= attr::RSTRIP;
            } else {
                attrs[i as usize] &= !attr::RSTRIP;
            }
        }
    };
    set("</s>", true);
    for text in ["<unk>", "<s>", "<|endoftext|>"] {
        set(text, false);
    }
}

/// A stretch of the input: raw text (a byte range) or a special token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Fragment {
    Text(std::ops::Range<usize>),
    Token(u32),
}

/// C's `isspace` in the "C" locale, which llama.cpp strips with.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// `tokenizer_st_partition`: for each special token in turn, longest first,
/// every raw-text fragment is cut at its occurrences. Without `parse_special`,
/// control and unknown tokens stay text; user-defined ones are still cut out.
pub(super) fn partition(
    text: &str,
    special: &[u32],
    tokens: &[String],
    attrs: &[u16],
    parse_special: bool,
) -> Vec<Fragment> {
    let bytes = text.as_bytes();
    let mut fragments = if text.is_empty() {
        Vec::new()
    } else {
        vec![Fragment::Text(0..text.len())]
    };
    for &id in special {
        let attr = attrs[id as usize];
        if !parse_special && attr & (attr::CONTROL | attr::UNKNOWN) != 0 {
            continue;
        }
        let needle = tokens[id as usize].as_str();
        let mut next = Vec::with_capacity(fragments.len());
        for fragment in fragments {
            let Fragment::Text(mut range) = fragment else {
                next.push(fragment);
                continue;
            };
            while let Some(found) = text[range.clone()].find(needle) {
                let at = range.start + found;
                let mut left = range.start..at;
                if attr & attr::LSTRIP != 0 {
                    while left.end > left.start && is_c_space(bytes[left.end - 1]) {
                        left.end -= 1;
                    }
                }
                if !left.is_empty() {
                    next.push(Fragment::Text(left));
                }
                next.push(Fragment::Token(id));
                range.start = at + needle.len();
                if attr & attr::RSTRIP != 0 {
                    while range.start < range.end && is_c_space(bytes[range.start]) {
                        range.start += 1;
                    }
                }
            }
            if !range.is_empty() {
                next.push(Fragment::Text(range));
            }
        }
        fragments = next;
    }
    fragments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_cuts_longest_first_and_strips_where_asked() {
        let tokens: Vec<String> = ["<s>", "<|im_start|>", "<tool>"].map(String::from).to_vec();
        let mut attrs = vec![attr::CONTROL, attr::CONTROL, attr::USER_DEFINED];
        let special = special_tokens(&attrs, &tokens);
        assert_eq!(special, [1, 2, 0]);
        let text = "a<|im_start|> b<s><tool>";
        assert_eq!(
            partition(text, &special, &tokens, &attrs, true),
            [
                Fragment::Text(0..1),
                Fragment::Token(1),
                Fragment::Text(13..15),
                Fragment::Token(0),
                Fragment::Token(2),
            ]
        );
        // Without special parsing only the user-defined token is cut out.
        assert_eq!(
            partition(text, &special, &tokens, &attrs, false),
            [Fragment::Text(0..18), Fragment::Token(2)]
        );
        attrs[1] |= attr::RSTRIP;
        assert_eq!(
            partition(text, &special, &tokens, &attrs, true)[2],
            Fragment::Text(14..15)
        );
        assert!(partition("", &special, &tokens, &attrs, true).is_empty());
    }
}
