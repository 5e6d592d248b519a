//! The whole `mdsa` command line with the command backend added: every
//! subcommand (`query`, `chat`, `route`, `serve`, ...) as in `mdsa`, and specs
//! may say `backend: "command"`. This file is all a backend crate needs to
//! ship its own `mdsa`.
//!
//! ```sh
//! cargo run -p mdsa-backend-command --example mdsa_with_command -- --version
//! cargo run -p mdsa-backend-command --example mdsa_with_command -- \
//!     --config with-command.ron query "Why does my C program segfault?"
//! ```
//!
//! where `with-command.ron` registers a command model, for instance:
//!
//! ```ron
//! (
//!     models: [
//!         (id: "minilm", source: "sentence-transformers/all-MiniLM-L6-v2", role: encoder, pinned: true),
//!         (
//!             id: "smollm2-cli",
//!             source: "target/debug/mdsa",
//!             role: generator,
//!             backend: "command",
//!             max_context: Some(2048),
//!             options: {"args": "generate --chat --system={system} --max-tokens {max_tokens} -- {user}"},
//!         ),
//!     ],
//!     default_generator: "smollm2-cli",
//! )
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use mdsa_backend_command::CommandBackend;

fn main() -> ExitCode {
    // The backends the `mdsa` binary has (local, and `openai` with the
    // `remote` feature of mdsa-cli), plus this crate's.
    let mut backends = mdsa_cli::default_backends();
    backends.insert(Arc::new(CommandBackend));
    mdsa_cli::run_with(backends)
}
