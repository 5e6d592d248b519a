//! Fits the router's abstention thresholds on labelled data and writes them into
//! a domains file, then prints the evaluation with the new thresholds.
//!
//! `cargo run --release -p mdsa-domains --example fit [DOMAINS.ron [DATA.jsonl]]`
//! (defaults: this crate's `domains/default.ron` and `data/calibration.jsonl`).

// An example reports to its user.
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use mdsa_domains::eval::write_thresholds;
use mdsa_domains::{DomainRegistry, Router, evaluate, fit, read_jsonl};
use mdsa_engine::source::ResolveOptions;
use mdsa_models::{BertEmbedder, EmbedderOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let domains = args
        .next()
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/domains/default.ron").into());
    let data = args
        .next()
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/data/calibration.jsonl").into());

    let registry = DomainRegistry::from_file(&domains)?;
    let config = registry.router_config().clone();
    let encoder_id = config.encoder_id().to_string();
    let encoder = BertEmbedder::load(
        &encoder_id.parse()?,
        &ResolveOptions::offline(),
        &EmbedderOptions::default(),
    )?;
    let mut router = Router::new(Arc::new(encoder), &encoder_id, &registry, config)?;
    let labelled = read_jsonl(&data)?;

    let fitted = fit(&router, &labelled)?;
    println!("{fitted}");
    let patched = write_thresholds(&domains, fitted.thresholds)?;
    println!(
        "wrote {domains} ({})",
        if patched {
            "numbers patched in place"
        } else {
            "re-serialised"
        }
    );
    router.set_thresholds(fitted.thresholds);
    println!("{}", evaluate(&router, &labelled)?.render_table());
    Ok(())
}
