//! Reading RON configuration files with errors a person can act on: the file,
//! the line and column, and the field path (`domains[2].generation.top_p`).
//!
//! Used for domains files here and by the `mdsa` facade for the system
//! configuration, so every configuration file reports mistakes the same way.

use serde::de::DeserializeOwned;

use crate::error::DomainError;
use crate::ronpath;

/// RON options shared by every mdsa configuration file: optional values may be
/// written bare (`"x"`) or as `Some("x")`.
pub fn options() -> ron::Options {
    ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
}

/// Parses `text` (named `origin` in errors) into `T`; a syntax or type error
/// names the line, column and field it happened in.
pub fn parse<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, DomainError> {
    options()
        .from_str(text)
        .map_err(|e| syntax_error(text, origin, &e))
}

/// Serialises `value` to pretty RON that [`parse`] reads back.
pub fn to_pretty<T: serde::Serialize>(value: &T) -> Result<String, DomainError> {
    let pretty = ron::ser::PrettyConfig::default()
        .struct_names(false)
        .separate_tuple_members(true);
    options()
        .to_string_pretty(value, pretty)
        .map_err(|e| DomainError::Config {
            origin: "<serialising>".into(),
            line: None,
            column: None,
            field: "(file)".into(),
            message: e.to_string(),
        })
}

/// An error about `field` (a path such as `models[1].device`), found after
/// parsing; the line and column are where that field is written in `text`.
pub fn field_error(text: &str, origin: &str, field: &str, message: String) -> DomainError {
    let position = ronpath::locate(text, field);
    DomainError::Config {
        origin: origin.to_string(),
        line: position.map(|p| p.0),
        column: position.map(|p| p.1),
        field: field.to_string(),
        message,
    }
}

fn syntax_error(text: &str, origin: &str, error: &ron::error::SpannedError) -> DomainError {
    use ron::error::Error as E;
    let start = error.span.start;
    let (container, key) = ronpath::path_at(text, start.line, start.col);
    // For a wrong, missing or repeated key, name that key inside its container.
    let field = match &error.code {
        E::NoSuchStructField { found, .. } => ronpath::join(&container, found),
        E::MissingStructField { field, .. } | E::DuplicateStructField { field, .. } => {
            ronpath::join(&container, field)
        }
        _ => match key {
            Some(key) => ronpath::join(&container, &key),
            None => container,
        },
    };
    DomainError::Config {
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
