//! RON configuration files for mdsa, with errors a person can act on.
//!
//! Every configuration file of mdsa (the system configuration, domains files,
//! model registries) is read through [`parse`], so every one reports mistakes
//! the same way: the file, the 1-based line and column, and the field path such
//! as `domains[2].generation.top_p`, then what was expected and what was found.
//!
//! - Syntax and type errors come from ron with a position only; [`parse`] adds
//!   the field path by scanning the text up to that position.
//! - Range errors are found after parsing, by field path; [`field_error`] adds
//!   the line and column where that field is written.
//!
//! Optional values may be written bare (`"x"`) or as `Some("x")` in every file.
//!
//! ```
//! #[derive(Debug, serde::Deserialize)]
//! struct Budget { ram_fraction: f64 }
//!
//! let err = mdsa_config::parse::<Budget>("(ram_fraction: \"half\")", "sys.ron").unwrap_err();
//! assert_eq!(err.line, Some(1));
//! assert_eq!(err.field, "ram_fraction");
//! assert!(err.to_string().starts_with("sys.ron:1:"));
//! ```

mod path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A configuration file that is malformed or has a value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}: {field}: {message}", location(.line, .column))]
pub struct ConfigError {
    /// The file (or another name for where the text came from, like `<builtin>`).
    pub origin: String,
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// 1-based column, where known.
    pub column: Option<usize>,
    /// Field path, e.g. `domains[2].generation.top_p`; `(file)` for errors
    /// outside any field.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

fn location(line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// The RON options of every mdsa configuration file.
pub fn options() -> ron::Options {
    ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
}

/// Parses `text` (named `origin` in errors) into `T`; a syntax or type error
/// names the line, column and field it happened in.
pub fn parse<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    options()
        .from_str(text)
        .map_err(|e| syntax_error(text, origin, &e))
}

/// An error about `field` (a path such as `models[1].device`) found after
/// parsing; its line and column are where that field is written in `text`.
pub fn field_error(text: &str, origin: &str, field: &str, message: String) -> ConfigError {
    let position = locate(text, field);
    ConfigError {
        origin: origin.to_string(),
        line: position.map(|p| p.0),
        column: position.map(|p| p.1),
        field: field.to_string(),
        message,
    }
}

/// Where `field` (a path such as `domains[2].generation.top_p`) is written in
/// `text`, as 1-based (line, column); `None` if it is not written there.
pub fn locate(text: &str, field: &str) -> Option<(usize, usize)> {
    path::locate(text, field)
}

/// Serialises `value` to pretty RON that [`parse`] reads back.
pub fn to_pretty<T: Serialize>(value: &T) -> Result<String, ConfigError> {
    let pretty = ron::ser::PrettyConfig::default()
        .struct_names(false)
        .separate_tuple_members(true);
    options()
        .to_string_pretty(value, pretty)
        .map_err(|e| ConfigError {
            origin: "<serialising>".into(),
            line: None,
            column: None,
            field: "(file)".into(),
            message: e.to_string(),
        })
}

fn syntax_error(text: &str, origin: &str, error: &ron::error::SpannedError) -> ConfigError {
    use ron::error::Error as E;
    let start = error.span.start;
    let (container, key) = path::path_at(text, start.line, start.col);
    // For a wrong, missing or repeated key, name that key inside its container.
    let field = match &error.code {
        E::NoSuchStructField { found, .. } => path::join(&container, found),
        E::MissingStructField { field, .. } | E::DuplicateStructField { field, .. } => {
            path::join(&container, field)
        }
        _ => match key {
            Some(key) => path::join(&container, &key),
            None => container,
        },
    };
    ConfigError {
        origin: origin.to_string(),
        line: Some(start.line),
        column: Some(start.col),
        field: if field.is_empty() {
            "(file)".into()
        } else {
            field
        },
        message: error.code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct System {
        encoder: String,
    }

    #[test]
    fn text_ending_in_a_raw_string_opener_is_a_syntax_error() {
        // The field scanner read past the end of the text here and panicked
        // (found with the inputs of fuzz/fuzz_targets/ron_config.rs).
        let err = parse::<System>("(encoder: r##", "sys.ron").unwrap_err();
        assert_eq!(err.origin, "sys.ron");
        assert_eq!(err.line, Some(1));
        assert_eq!(err.field, "encoder");
        assert!(err.to_string().starts_with("sys.ron:1:"), "{err}");
    }
}

// The README's snippets are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
