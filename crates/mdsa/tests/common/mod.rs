//! What the facade's test binaries share.

#![allow(dead_code, unreachable_pub, clippy::print_stderr)]

use std::sync::OnceLock;

use mdsa::Mdsa;

/// One system per test binary: the encoder and SmolLM2 load once. `None`
/// (with a message on stderr) when `cargo xtask fetch-models` has not put
/// the models in the local cache; the tests then skip.
pub fn system() -> Option<&'static Mdsa> {
    static SYSTEM: OnceLock<Option<Mdsa>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| match Mdsa::builder().build() {
            Ok(mdsa) => Some(mdsa),
            Err(error) => {
                eprintln!(
                    "skipping: models not available ({error}); run `cargo xtask fetch-models`"
                );
                None
            }
        })
        .as_ref()
}
