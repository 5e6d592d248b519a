//! Python bindings of mdsa: the extension module `mdsa._native`.
//!
//! This layer is deliberately thin. It owns an [`mdsa::Mdsa`] per Python
//! `MDSA` object, releases the GIL around everything that routes, loads or
//! generates, and hands results back as JSON text, which the pure-Python
//! package (`python/mdsa/`) turns into typed objects. Keeping the Pythonic
//! surface in Python keeps it documented where Python users read, and keeps
//! this crate free of per-field conversion code that would drift from the
//! Rust types' `serde` form, which the server's JSON already uses.

mod engine;
mod errors;
mod stream;

use pyo3::prelude::*;

/// The extension module; `import mdsa` loads it as `mdsa._native`.
#[pymodule]
#[pyo3(name = "_native")]
fn native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<engine::Engine>()?;
    module.add_class::<stream::Stream>()?;
    module.add_function(wrap_pyfunction!(engine::builtin_domains, module)?)?;
    module.add("__version__", mdsa::VERSION)?;
    Ok(())
}
