//! mdsa's errors as the Python exceptions of `mdsa.errors`, with the same
//! messages the command line prints.

use mdsa::MdsaError;
use mdsa::domains::DomainError;
use mdsa::local::ManagerError;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// The module that defines the exception classes (pure Python, so that they
/// can inherit from both `MdsaError` and a builtin such as `ValueError`).
const ERRORS_MODULE: &str = "mdsa.errors";

/// Converts an error of the facade into the matching Python exception.
pub(crate) fn to_py(error: MdsaError) -> PyErr {
    let class = class_of(&error);
    raise(class, format!("{:#}", anyhow::Error::from(error)))
}

/// A Python exception of `mdsa.errors` by class name.
pub(crate) fn raise(class: &str, message: String) -> PyErr {
    Python::attach(|py| {
        let class = py
            .import(ERRORS_MODULE)
            .and_then(|module| module.getattr(class))
            .and_then(|class| class.cast_into::<PyType>().map_err(PyErr::from));
        match class {
            Ok(class) => PyErr::from_type(class, message),
            // Only when the package's Python half is missing or broken.
            Err(_) => PyRuntimeError::new_err(message),
        }
    })
}

/// A request the caller got wrong (an argument's type or value).
pub(crate) fn request_error(message: impl Into<String>) -> PyErr {
    raise("RequestError", message.into())
}

/// Which exception class an error becomes.
fn class_of(error: &MdsaError) -> &'static str {
    match error {
        MdsaError::Config(_) | MdsaError::Io { .. } => "ConfigError",
        MdsaError::Domain(error) => match error {
            DomainError::Config(_)
            | DomainError::NoDomains
            | DomainError::Io { .. }
            | DomainError::Data { .. } => "ConfigError",
            DomainError::UnknownDomain { .. } | DomainError::Encoder { .. } => "RoutingError",
            DomainError::Model(_) | DomainError::Timeout { .. } => "ModelError",
        },
        MdsaError::Manager(ManagerError::Registry(_)) => "ConfigError",
        MdsaError::Manager(_) | MdsaError::WrongRole { .. } => "ModelError",
        MdsaError::InvalidRequest(_) => "RequestError",
        MdsaError::Log(_) => "LogError",
        _ => "MdsaError",
    }
}
