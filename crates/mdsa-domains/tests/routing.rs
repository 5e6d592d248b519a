//! The router with the real all-MiniLM-L6-v2 encoder on the builtin domains.
//! Skipped (with a message) when the encoder is not in the Hugging Face cache
//! (`cargo xtask fetch-models` puts it there).

// Tests report the figures they measure.
#![allow(clippy::print_stderr)]

use std::sync::{Arc, OnceLock};

use mdsa_domains::{DomainConfig, DomainRegistry, EmbeddingCache, Router, evaluate, read_jsonl};
use mdsa_engine::{DEFAULT_ENCODER, Embedder, source::ModelRef, source::ResolveOptions};
use mdsa_models::{BertEmbedder, EmbedderOptions};

fn encoder() -> Option<Arc<dyn Embedder>> {
    static ENCODER: OnceLock<Option<Arc<BertEmbedder>>> = OnceLock::new();
    let encoder = ENCODER.get_or_init(|| {
        let model: ModelRef = DEFAULT_ENCODER.parse().ok()?;
        match BertEmbedder::load(
            &model,
            &ResolveOptions::offline(),
            &EmbedderOptions::default(),
        ) {
            Ok(e) => Some(Arc::new(e)),
            Err(e) => {
                eprintln!("skipped: {e} (run `cargo xtask fetch-models`)");
                None
            }
        }
    });
    encoder.clone().map(|e| e as Arc<dyn Embedder>)
}

fn router(registry: &DomainRegistry) -> Option<Router> {
    let encoder = encoder()?;
    Some(
        Router::new(
            encoder,
            DEFAULT_ENCODER,
            registry,
            registry.router_config().clone(),
        )
        .unwrap(),
    )
}

#[test]
fn clear_queries_route_to_their_domains_and_explain_why() {
    let Some(router) = router(&DomainRegistry::builtin()) else {
        return;
    };
    for (query, expected) in [
        (
            "Should I put my bonus into an index fund or pay off my mortgage?",
            "finance",
        ),
        (
            "I have had a sore throat and a fever for three days",
            "medical",
        ),
        ("My parcel never arrived and I want a refund", "support"),
        ("How do I fix a merge conflict in git?", "technical"),
    ] {
        let d = router.route(query).unwrap();
        eprintln!("{query}: {}", d.explanation.reason);
        assert_eq!(d.domain.as_deref(), Some(expected), "{d:#?}");
        assert!(!d.abstained && !d.fallback);
        assert_eq!(d.scores.len(), 4);
        assert_eq!(d.scores[0].domain, expected);
        assert!(d.confidence > 0.5, "{d:#?}");
        assert!(!d.explanation.nearest.is_empty());
        assert_eq!(d.explanation.nearest[0].domain, expected, "{d:#?}");
        assert!(d.explanation.reason.starts_with(expected));
    }
    let d = router
        .route("Can I take ibuprofen for a headache?")
        .unwrap();
    assert!(
        d.explanation.keywords.contains(&"ibuprofen".to_string()),
        "{d:#?}"
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["domain"], "medical");
}

#[test]
fn an_out_of_domain_query_abstains() {
    let mut registry = DomainRegistry::builtin();
    let Some(router) = router(&registry) else {
        return;
    };
    let query = "What's a good recipe for banana bread?";
    let d = router.route(query).unwrap();
    eprintln!("{query}: {}", d.explanation.reason);
    assert_eq!(d.domain, None, "{d:#?}");
    assert!(d.abstained && !d.fallback);
    assert!(d.explanation.reason.starts_with("abstained"));

    // With a fallback domain the query goes there, marked as such.
    registry.set_fallback_domain(Some("support")).unwrap();
    let router = router
        .rebuild(&registry, registry.router_config().clone())
        .unwrap();
    let d = router.route(query).unwrap();
    assert_eq!(d.domain.as_deref(), Some("support"));
    assert!(d.abstained && d.fallback);
}

#[test]
fn a_config_change_embeds_only_new_texts() {
    let Some(encoder) = encoder() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("embeddings.json");
    let mut registry = DomainRegistry::builtin();
    let texts: usize = registry.iter().map(|d| d.examples.len() + 1).sum();
    let cache = Arc::new(EmbeddingCache::persistent(&path).unwrap());
    let config = registry.router_config().clone();
    let router = Router::with_cache(
        Arc::clone(&encoder),
        DEFAULT_ENCODER,
        &registry,
        config.clone(),
        cache,
    )
    .unwrap();
    assert_eq!(router.cache().stats().misses as usize, texts);

    registry
        .insert(
            DomainConfig::new("legal", "Contracts, tenancy, employment law and disputes")
                .keywords(["contract", "lawyer", "tenant"])
                .examples([
                    "Can my landlord keep my deposit?",
                    "Is a verbal contract binding?",
                ]),
        )
        .unwrap();
    let router = router.rebuild(&registry, config.clone()).unwrap();
    let stats = router.cache().stats();
    assert_eq!(stats.misses as usize, texts + 3, "{stats:?}");
    assert_eq!(stats.hits as usize, texts, "{stats:?}");
    let d = router
        .route("My employer hasn't paid me, can I sue?")
        .unwrap();
    assert_eq!(d.scores.len(), 5);

    // A new process reads the embeddings from disk.
    let cache = Arc::new(EmbeddingCache::persistent(&path).unwrap());
    let router = Router::with_cache(encoder, DEFAULT_ENCODER, &registry, config, cache).unwrap();
    assert_eq!(router.cache().stats().misses, 0);
}

#[test]
fn the_calibration_set_routes_well() {
    let Some(router) = router(&DomainRegistry::builtin()) else {
        return;
    };
    let data = read_jsonl(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/calibration.jsonl"
    ))
    .unwrap();
    let report = evaluate(&router, &data).unwrap();
    eprintln!("{}", report.render_table());
    let batch: Vec<&str> = data.iter().map(|q| q.text.as_str()).collect();
    let decisions = router.route_batch(&batch).unwrap();
    assert_eq!(decisions.len(), data.len());
    assert!(report.accuracy >= 0.9, "accuracy {}", report.accuracy);
    assert!(report.abstention.recall >= 0.8, "{:?}", report.abstention);
}

#[test]
fn everyday_wording_routes_to_its_domain() {
    let Some(router) = router(&DomainRegistry::builtin()) else {
        return;
    };
    // The wordings issue 21 found misrouted (balance went to medical).
    for (query, expected) in [
        ("What's my balance?", "finance"),
        ("Check balance", "finance"),
        ("I want to transfer money to my friend", "finance"),
        ("refund", "support"),
        ("reset password", "support"),
        ("install failed", "technical"),
        ("app crashes", "technical"),
    ] {
        let d = router.route(query).unwrap();
        assert_eq!(
            d.domain.as_deref(),
            Some(expected),
            "{query}: {}",
            d.explanation.reason
        );
        assert!(!d.abstained, "{query}");
    }
}

#[test]
fn a_domains_own_min_score_replaces_the_routers() {
    let mut registry = DomainRegistry::builtin();
    let Some(router) = router(&registry) else {
        return;
    };
    let query = "What's my balance?";
    let routed = router.route(query).unwrap();
    assert_eq!(routed.domain.as_deref(), Some("finance"));
    let score = routed.best().unwrap().score;
    // Finance alone asks for more than this query scores: it abstains, while
    // the router's own threshold is unchanged for the other domains.
    let mut finance = registry.require("finance").unwrap().clone();
    finance.min_score = Some(score + 0.01);
    registry.insert(finance).unwrap();
    let router = router
        .rebuild(&registry, registry.router_config().clone())
        .unwrap();
    assert!(router.thresholds_for(Some("finance")).min_score > score);
    assert_eq!(router.thresholds_for(Some("medical")), router.thresholds());
    let d = router.route(query).unwrap();
    assert!(d.abstained && d.domain.is_none(), "{d:#?}");
    let other = router.route("I have a fever and a headache").unwrap();
    assert_eq!(other.domain.as_deref(), Some("medical"));
}
