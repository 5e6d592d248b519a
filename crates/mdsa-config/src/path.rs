//! Field paths in RON text (`domains[2].generation.top_p`), in both directions:
//! which field a position lies in (for syntax errors, where ron gives only a
//! position) and where a field is written (for range errors found after parsing).
//!
//! A small scanner, not a parser: it tracks brackets, keys and list indices, and
//! skips strings and comments, which is all a path needs.

/// One key as written: its full path and 1-based (line, column).
struct KeyAt {
    path: String,
    line: usize,
    col: usize,
}

#[derive(Default)]
struct Frame {
    list: bool,
    key: Option<String>,
    index: usize,
}

fn render(frames: &[Frame], with_last_key: bool) -> String {
    let mut path = String::new();
    for (i, frame) in frames.iter().enumerate() {
        if frame.list {
            path.push_str(&format!("[{}]", frame.index));
        } else if let Some(key) = &frame.key
            && (with_last_key || i + 1 < frames.len())
        {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
        }
    }
    path
}

/// Appends `key` to `parent` (`a.b` + `c` = `a.b.c`).
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Scans `text` up to (line, col) or the end; returns every key seen and the
/// frame stack at the stopping point.
fn scan(text: &str, stop: Option<(usize, usize)>) -> (Vec<KeyAt>, Vec<Frame>) {
    let chars: Vec<char> = text.chars().collect();
    let mut keys = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let (mut line, mut col) = (1usize, 1usize);
    let mut i = 0;
    // The last identifier and where it started, while it may still become a key.
    let mut ident: Option<(String, usize, usize)> = None;
    // Past the end it stays there: text may end anywhere, for instance inside
    // a raw string's opening `r##`.
    let advance = |i: &mut usize, line: &mut usize, col: &mut usize| {
        let Some(&c) = chars.get(*i) else {
            return;
        };
        if c == '\n' {
            *line += 1;
            *col = 1;
        } else {
            *col += 1;
        }
        *i += 1;
    };
    while i < chars.len() {
        if let Some(stop) = stop
            && (line, col) >= stop
        {
            break;
        }
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '/' if next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    advance(&mut i, &mut line, &mut col);
                }
                continue;
            }
            '/' if next == Some('*') => {
                let mut depth = 0usize;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        advance(&mut i, &mut line, &mut col);
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        advance(&mut i, &mut line, &mut col);
                        if depth == 0 {
                            advance(&mut i, &mut line, &mut col);
                            break;
                        }
                    }
                    advance(&mut i, &mut line, &mut col);
                }
                continue;
            }
            '"' => {
                // A string may be a map key (`{"timeout_secs": 120}`): keep
                // it like an identifier until the next character decides.
                let (start_line, start_col) = (line, col);
                let mut word = String::new();
                advance(&mut i, &mut line, &mut col);
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        advance(&mut i, &mut line, &mut col);
                    }
                    if let Some(&c) = chars.get(i) {
                        word.push(c);
                        advance(&mut i, &mut line, &mut col);
                    }
                }
                advance(&mut i, &mut line, &mut col);
                ident = Some((word, start_line, start_col));
                continue;
            }
            'r' if matches!(next, Some('#' | '"')) => {
                ident = None;
                let mut hashes = 0;
                advance(&mut i, &mut line, &mut col);
                while i < chars.len() && chars[i] == '#' {
                    hashes += 1;
                    advance(&mut i, &mut line, &mut col);
                }
                advance(&mut i, &mut line, &mut col);
                while i < chars.len() {
                    if chars[i] == '"'
                        && chars[i + 1..].iter().take_while(|&&h| h == '#').count() >= hashes
                    {
                        for _ in 0..=hashes {
                            advance(&mut i, &mut line, &mut col);
                        }
                        break;
                    }
                    advance(&mut i, &mut line, &mut col);
                }
                continue;
            }
            c if c.is_alphabetic() || c == '_' => {
                let (start_line, start_col) = (line, col);
                let mut word = String::new();
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    word.push(chars[i]);
                    advance(&mut i, &mut line, &mut col);
                }
                ident = Some((word, start_line, start_col));
                continue;
            }
            ':' => {
                if let (Some((word, l, c)), Some(frame)) = (ident.take(), frames.last_mut())
                    && !frame.list
                {
                    frame.key = Some(word);
                    keys.push(KeyAt {
                        path: render(&frames, true),
                        line: l,
                        col: c,
                    });
                }
            }
            '(' | '{' => {
                ident = None;
                frames.push(Frame::default());
            }
            '[' => {
                ident = None;
                frames.push(Frame {
                    list: true,
                    ..Frame::default()
                });
            }
            ')' | ']' | '}' => {
                ident = None;
                frames.pop();
            }
            ',' => {
                ident = None;
                if let Some(frame) = frames.last_mut() {
                    if frame.list {
                        frame.index += 1;
                    } else {
                        frame.key = None;
                    }
                }
            }
            c if c.is_whitespace() => {}
            _ => ident = None,
        }
        advance(&mut i, &mut line, &mut col);
    }
    (keys, frames)
}

/// The field a 1-based position lies in: (the containing path, the key being
/// written there, if any).
pub(crate) fn path_at(text: &str, line: usize, col: usize) -> (String, Option<String>) {
    let (_, frames) = scan(text, Some((line, col)));
    let key = frames.last().and_then(|f| f.key.clone());
    (render(&frames, false), key)
}

/// Where `field` is written, as 1-based (line, column); a field left at its
/// default is located by its nearest written parent.
pub(crate) fn locate(text: &str, field: &str) -> Option<(usize, usize)> {
    let (keys, _) = scan(text, None);
    let mut target = field.to_string();
    loop {
        let found = keys.iter().find(|k| {
            k.path == target
                || k.path.starts_with(&format!("{target}."))
                || k.path.starts_with(&format!("{target}["))
        });
        if let Some(k) = found {
            return Some((k.line, k.col));
        }
        let cut = target.rfind(['.', '['])?;
        target.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"(
    router: (min_score: 0.3),
    // a comment with domains: [ ( ]
    domains: [
        (id: "a", name: "A, \"quoted\"", examples: ["x", "y"]),
        (
            id: "b",
            generation: (top_p: 2.0),
        ),
    ],
)"#;

    #[test]
    fn locates_string_map_keys() {
        let text = "(models: [(\n  id: \"a\",\n  options: {\n    \"timeout_secs\": 120,\n  },\n)])";
        assert_eq!(locate(text, "models[0].options.timeout_secs"), Some((4, 5)));
        assert_eq!(locate(text, "models[0].options.retries"), Some((3, 3)));
    }

    #[test]
    fn locates_fields_and_their_parents() {
        assert_eq!(locate(TEXT, "router.min_score"), Some((2, 14)));
        assert_eq!(locate(TEXT, "domains[1].generation.top_p"), Some((8, 26)));
        // Not written: the nearest written parent.
        assert_eq!(
            locate(TEXT, "domains[1].generation.max_tokens"),
            Some((8, 13))
        );
        assert_eq!(locate(TEXT, "domains[1].retry.retries"), Some((7, 13)));
        assert_eq!(locate(TEXT, "domains[0].examples[1]"), Some((5, 42)));
    }

    #[test]
    fn text_may_end_inside_a_raw_string_opener() {
        for text in ["(encoder: r##", "(a: r#", "r\"", "(a: r#\"x\"#, b: r##\"y"] {
            let end = text.chars().count() + 1;
            let _ = path_at(text, 1, end);
            let _ = locate(text, "a");
        }
        assert_eq!(locate("(a: r#\"x\"#, b: r##\"y", "b"), Some((1, 13)));
        assert_eq!(
            path_at("(a: (b: r##", 1, 12),
            ("a".into(), Some("b".into()))
        );
    }

    #[test]
    fn names_the_field_at_a_position() {
        assert_eq!(
            path_at(TEXT, 8, 33),
            ("domains[1].generation".into(), Some("top_p".into()))
        );
        assert_eq!(
            path_at(TEXT, 5, 25),
            ("domains[0]".into(), Some("name".into()))
        );
        assert_eq!(path_at(TEXT, 9, 9), ("domains[1]".into(), None));
    }
}
