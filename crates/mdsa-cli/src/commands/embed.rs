//! `mdsa embed`: sentence embeddings from any BERT-family encoder.

use anyhow::Context;
use mdsa::engine::{DEFAULT_ENCODER, Embedder, ModelRef};
use mdsa::local::{BertEmbedder, EmbedderOptions};

use super::fetch;
use super::system::SystemArgs;

/// Arguments of `mdsa embed`.
#[derive(Debug, clap::Args)]
pub(crate) struct EmbedArgs {
    /// Encoder: a local directory, or a Hub id such as `org/name` or `org/name@rev`.
    #[arg(long, default_value = DEFAULT_ENCODER)]
    model: String,
    /// Print one JSON object `{"model": ..., "embeddings": [[...], ...]}`.
    #[arg(long)]
    json: bool,
    /// The texts to embed.
    #[arg(required = true)]
    texts: Vec<String>,
}

pub(crate) fn run(args: &EmbedArgs, system: &SystemArgs) -> anyhow::Result<()> {
    let model: ModelRef = args.model.parse()?;
    let resolve = system.resolve_options()?;
    // Downloads first, with progress, so that loading finds the files cached.
    fetch::fetch(&model, &resolve).with_context(|| format!("getting encoder {model}"))?;
    let embedder = BertEmbedder::load(&model, &resolve, &EmbedderOptions::default())
        .with_context(|| format!("loading encoder {model}"))?;
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let embeddings = embedder.embed(&texts)?;
    if args.json {
        let value = serde_json::json!({ "model": model.to_string(), "embeddings": embeddings });
        outln!("{value}");
    } else {
        // One line per text: the text, a tab, then the values (easy to cut or paste).
        for (text, embedding) in texts.iter().zip(&embeddings) {
            let values: Vec<String> = embedding.iter().map(|v| format!("{v:.6}")).collect();
            outln!("{}\t{}", text.replace(['\t', '\n'], " "), values.join(" "));
        }
    }
    Ok(())
}
