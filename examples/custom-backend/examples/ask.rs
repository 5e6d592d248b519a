//! The command backend next to the built-in one: MiniLM (local backend)
//! routes the query, and the answer comes from a `backend: "command"` model
//! whose program is the `mdsa` CLI itself, generating with the local SmolLM2
//! (`mdsa generate --chat ...`), one process per answer.
//!
//! ```sh
//! cargo build -p mdsa-cli                                        # the program it runs
//! cargo run -p mdsa-backend-command --example ask
//! cargo run -p mdsa-backend-command --example ask -- --mdsa target/debug/mdsa \
//!     --max-tokens 32 "My C program crashes with a segmentation fault, why?"
//! ```
//!
//! The `mdsa` binary is `--mdsa PATH`, else `$MDSA_BIN`, else the one beside
//! this example's own build (`target/debug/mdsa`). The models are the ones
//! `cargo xtask fetch-models` puts in the Hugging Face cache.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use mdsa::engine::{ModelRole, ModelSpec};
use mdsa::{Mdsa, Outcome, QueryEvent, QueryOptions, SystemConfig};
use mdsa_backend_command::{BACKEND_NAME, CommandBackend};

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;

    // A generator answered by a program: `source` is the program, `args` its
    // arguments with placeholders. The same spec in RON is in the crate docs.
    let mut spec = ModelSpec::new(
        "smollm2-cli",
        args.mdsa.display().to_string(),
        ModelRole::Generator,
    );
    spec.backend = BACKEND_NAME.into();
    spec.options.insert(
        "args",
        "generate --chat --system={system} --max-tokens {max_tokens} -- {user}",
    );
    spec.max_context = Some(2048);

    // The default configuration (MiniLM routes on the local backend), with
    // the command model answering every domain.
    let mut config = SystemConfig {
        default_generator: spec.id.clone(),
        ..SystemConfig::default()
    };
    config.models.push(spec);

    let mdsa = Mdsa::builder()
        .config(config)
        .backend(Arc::new(CommandBackend))
        .build()
        .context("starting mdsa (run `cargo xtask fetch-models` first)")?;

    let options = QueryOptions {
        max_tokens: Some(args.max_tokens),
        ..QueryOptions::default()
    };
    println!("> {}", args.query);
    let response = mdsa.query_with(&args.query, &options, &mut |event| {
        match event {
            QueryEvent::Routed(decision) => println!(
                "[routed to {} ({:.2})]",
                decision.domain.as_deref().unwrap_or("none"),
                decision.confidence
            ),
            QueryEvent::Text(piece) => print!("{piece}"),
            _ => {}
        }
        ControlFlow::Continue(())
    })?;
    println!(
        "\n[domain {}, model {} via backend {BACKEND_NAME}, {:?}, {:.1} s]",
        response.domain.as_deref().unwrap_or("none"),
        response.model.as_deref().unwrap_or("-"),
        response.outcome,
        response.timings.total.as_secs_f64()
    );
    if response.outcome != Outcome::Answered {
        bail!(
            "the query ended as {:?}: {:?}",
            response.outcome,
            response.verdict
        );
    }
    Ok(())
}

/// Command-line arguments.
struct Args {
    mdsa: PathBuf,
    max_tokens: usize,
    query: String,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut mdsa = std::env::var_os("MDSA_BIN").map(PathBuf::from);
        let mut max_tokens = 48;
        let mut words = Vec::new();
        let mut argv = std::env::args().skip(1);
        while let Some(arg) = argv.next() {
            match arg.as_str() {
                "--mdsa" => mdsa = Some(argv.next().context("--mdsa needs a path")?.into()),
                "--max-tokens" => {
                    let value = argv.next().context("--max-tokens needs a number")?;
                    max_tokens = value.parse().ok().filter(|&n| n > 0).with_context(|| {
                        format!("--max-tokens: expected a positive number, found {value:?}")
                    })?;
                }
                flag if flag.starts_with("--") => {
                    bail!(
                        "unknown option {flag:?}; usage: ask [--mdsa PATH] [--max-tokens N] [QUERY]"
                    )
                }
                word => words.push(word.to_string()),
            }
        }
        // Beside this example's build: target/debug/examples/ask -> target/debug/mdsa.
        let mdsa = match mdsa {
            Some(path) => path,
            None => std::env::current_exe()?
                .parent()
                .and_then(|examples| examples.parent())
                .map(|dir| dir.join(format!("mdsa{}", std::env::consts::EXE_SUFFIX)))
                .context("cannot tell where this example was built; pass --mdsa PATH")?,
        };
        if !mdsa.is_file() {
            bail!(
                "no mdsa binary at {}: build it with `cargo build -p mdsa-cli`, or pass --mdsa PATH",
                mdsa.display()
            );
        }
        let query = if words.is_empty() {
            "My C program crashes with a segmentation fault, why?".to_string()
        } else {
            words.join(" ")
        };
        Ok(Self {
            mdsa,
            max_tokens,
            query,
        })
    }
}
