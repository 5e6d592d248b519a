//! Tuning the real all-MiniLM-L6-v2 (from the Hugging Face cache that
//! `cargo xtask fetch-models` fills) on labels that cut across topics: the
//! held-out accuracy rises, the written model loads in mdsa's encoder and
//! separates the labels better than the base, and the same seed writes the
//! same bytes.

// Tests report the figures they measure.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

use mdsa_engine::Embedder;
use mdsa_engine::source::{ModelRef, ResolveOptions, ResolvedModel};
use mdsa_models::{BertEmbedder, EmbedderOptions};
use mdsa_tune::{LabelledText, TuneError, TuneEvent, TuneOptions, tune};

const THANKS: [&str; 12] = [
    "Thank you so much for sorting out my bank transfer",
    "Thanks, the doctor's advice about my fever really helped",
    "Many thanks for fixing the login problem so quickly",
    "I really appreciate the refund arriving this fast",
    "Thanks a lot, the new printer driver works perfectly",
    "Grateful for your help with my mortgage application",
    "Thank you, my headache is gone after the tablets",
    "Cheers for resolving the git merge conflict with me",
    "Thanks for replacing the broken headphones",
    "Much appreciated, the savings account is open now",
    "Thank you for explaining my prescription so clearly",
    "Thanks, the server is back online and fast again",
];
const COMPLAINTS: [&str; 12] = [
    "My bank transfer has been stuck for a week and nobody answers",
    "The doctor never called back about my fever results",
    "Your login page keeps rejecting my correct password",
    "The refund still has not arrived and I am furious",
    "The new printer driver crashes every time I print",
    "Your mortgage team lost my documents twice",
    "These tablets gave me an awful stomach ache",
    "The git server deleted my branch without warning",
    "The headphones you sent are broken and scratched",
    "My savings account was charged a fee nobody mentioned",
    "The pharmacy gave me the wrong prescription again",
    "The server has been down all morning and I lost work",
];
const REQUESTS: [&str; 12] = [
    "Please send fifty euros from my bank account to my brother",
    "Could you book me a doctor's appointment for my fever",
    "Please reset my login so I can get back in",
    "I would like a refund for the order I returned",
    "Can you install the printer driver on my laptop",
    "Please start a mortgage application for me",
    "Could you tell me how many tablets I should take",
    "Please create a new git branch for the release",
    "I want to order replacement headphones",
    "Open a savings account for my daughter please",
    "Please renew my prescription for next month",
    "Could you restart the server tonight",
];

/// all-MiniLM-L6-v2's directory in the Hugging Face cache.
fn minilm() -> PathBuf {
    let model: ModelRef = "sentence-transformers/all-MiniLM-L6-v2".parse().unwrap();
    match model
        .resolve(&ResolveOptions::offline())
        .unwrap_or_else(|e| panic!("{e}\n(run `cargo xtask fetch-models` first)"))
    {
        ResolvedModel::SafetensorsDir { dir, .. } => dir,
        other => panic!("MiniLM is a safetensors model, found {other:?}"),
    }
}

/// What a query wants (a thank-you, a complaint, a request), whatever it is about.
fn intents() -> Vec<LabelledText> {
    [THANKS, COMPLAINTS, REQUESTS]
        .iter()
        .enumerate()
        .flat_map(|(label, texts)| {
            texts.iter().map(move |t| LabelledText {
                text: t.to_string(),
                label,
            })
        })
        .collect()
}

fn options() -> TuneOptions {
    TuneOptions {
        epochs: 4,
        batch_size: 16,
        heldout_share: 0.25,
        seed: 1,
        ..TuneOptions::default()
    }
}

/// Mean cosine between texts of the same label minus between different labels.
fn separation(embedder: &BertEmbedder, data: &[LabelledText]) -> f32 {
    let texts: Vec<&str> = data.iter().map(|t| t.text.as_str()).collect();
    let vectors = embedder.embed(&texts).unwrap();
    let (mut same, mut other) = ((0.0, 0), (0.0, 0));
    for i in 0..data.len() {
        for j in i + 1..data.len() {
            let s = mdsa_engine::dot(&vectors[i], &vectors[j]);
            let bucket = if data[i].label == data[j].label {
                &mut same
            } else {
                &mut other
            };
            bucket.0 += s;
            bucket.1 += 1;
        }
    }
    same.0 / same.1 as f32 - other.0 / other.1 as f32
}

#[test]
fn tuning_minilm_on_intents_that_cut_across_topics_raises_held_out_accuracy() {
    let data = intents();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tuned");
    let mut events = Vec::new();
    let report = tune(&minilm(), &data, 3, &options(), &out, &mut |e| {
        events.push(e)
    })
    .unwrap();
    eprintln!("{report:?}");
    assert!(
        matches!(
            events[0],
            TuneEvent::Started {
                train: 27,
                heldout: 9,
                steps_per_epoch: 2,
                ..
            }
        ),
        "{:?}",
        events[0]
    );
    assert!(events.iter().any(|e| matches!(
        e,
        TuneEvent::Step {
            epoch: 1,
            step: 1,
            ..
        }
    )));
    // The frozen encoder groups by topic; tuned, it groups by intent.
    assert!(report.before < 0.5 && report.after >= 0.8, "{report:?}");
    let first = report.epochs.first().unwrap().loss;
    let last = report.epochs.last().unwrap().loss;
    assert!(last < first, "loss {first} -> {last}");
    assert_eq!(report.out.as_deref(), Some(out.as_path()));

    // The written directory is a model mdsa loads, and it separates the intents.
    for file in [
        "model.safetensors",
        "tokenizer.json",
        "modules.json",
        "1_Pooling/config.json",
        "mdsa_tune.json",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let options = EmbedderOptions::default();
    let base = BertEmbedder::from_dir(&minilm(), &options).unwrap();
    let tuned = BertEmbedder::from_dir(&out, &options).unwrap();
    let (before, after) = (separation(&base, &data), separation(&tuned, &data));
    assert!(after > before + 0.1, "separation {before} -> {after}");

    // The same seed, the same model.
    let again = dir.path().join("again");
    tune(&minilm(), &data, 3, &self::options(), &again, &mut |_| {}).unwrap();
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        std::fs::read(again.join("model.safetensors")).unwrap()
    );
}

#[test]
fn bad_settings_and_untunable_models_are_named() {
    let data = intents();
    let out = tempfile::tempdir().unwrap();
    let bad = TuneOptions {
        epochs: 0,
        ..options()
    };
    let error = tune(&minilm(), &data, 3, &bad, out.path(), &mut |_| {}).unwrap_err();
    assert!(
        matches!(
            error,
            TuneError::Option {
                option: "epochs",
                ..
            }
        ),
        "{error}"
    );
    // Max pooling (a tiny fixture model of mdsa-models) is not tunable.
    let max_pooling = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../mdsa-models/tests/fixtures/encoders/xlm-roberta-max");
    let error = tune(&max_pooling, &data, 3, &options(), out.path(), &mut |_| {}).unwrap_err();
    assert!(error.to_string().contains("Max"), "{error}");
    // Tuning into the directory of the model being tuned is refused, however named.
    let copy = out.path().join("base");
    std::fs::create_dir_all(&copy).unwrap();
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "modules.json",
    ] {
        std::fs::copy(minilm().join(file), copy.join(file)).unwrap();
    }
    std::fs::create_dir_all(copy.join("1_Pooling")).unwrap();
    std::fs::copy(
        minilm().join("1_Pooling/config.json"),
        copy.join("1_Pooling/config.json"),
    )
    .unwrap();
    let same = out.path().join("base/../base");
    let tiny = TuneOptions {
        epochs: 1,
        ..options()
    };
    let error = tune(&copy, &data, 3, &tiny, &same, &mut |_| {}).unwrap_err();
    assert!(error.to_string().contains("must not overwrite"), "{error}");
    assert!(
        std::fs::metadata(copy.join("model.safetensors"))
            .unwrap()
            .len()
            > 1_000_000
    );
    let one_label: Vec<LabelledText> = data.iter().filter(|t| t.label == 0).cloned().collect();
    let error = tune(
        &minilm(),
        &one_label,
        3,
        &options(),
        out.path(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(error.to_string().contains("two labels"), "{error}");
}
