//! Loading safetensors weights into the BERT encoder: the happy path in every
//! stored dtype, and every way a file can be wrong, each with a clear error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use mdsa_engine::ModelError;
use mdsa_models::arch::bert::{Bert, BertConfig};
use mdsa_models::weights::SafetensorsWeights;
use safetensors::Dtype;

mod common;
use common::{Raw, encode, write_safetensors};

const HIDDEN: usize = 8;
const INTER: usize = 16;
const VOCAB: usize = 12;
const POSITIONS: usize = 16;

/// A tensor to write: name, shape, f32 values.
struct Spec {
    name: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// Every tensor of a 1-layer BERT with tiny sizes, deterministic pseudo-random values.
fn tiny_bert() -> Vec<Spec> {
    let mut seed = 1u32;
    let mut spec = |name: &str, shape: &[usize]| {
        let len = shape.iter().product();
        let values = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        Spec {
            name: name.into(),
            shape: shape.to_vec(),
            values,
        }
    };
    let mut specs = vec![
        spec("embeddings.word_embeddings.weight", &[VOCAB, HIDDEN]),
        spec(
            "embeddings.position_embeddings.weight",
            &[POSITIONS, HIDDEN],
        ),
        spec("embeddings.token_type_embeddings.weight", &[2, HIDDEN]),
        spec("embeddings.LayerNorm.weight", &[HIDDEN]),
        spec("embeddings.LayerNorm.bias", &[HIDDEN]),
    ];
    let l = "encoder.layer.0";
    for (name, out, inp) in [
        ("attention.self.query", HIDDEN, HIDDEN),
        ("attention.self.key", HIDDEN, HIDDEN),
        ("attention.self.value", HIDDEN, HIDDEN),
        ("attention.output.dense", HIDDEN, HIDDEN),
        ("intermediate.dense", INTER, HIDDEN),
        ("output.dense", HIDDEN, INTER),
    ] {
        specs.push(spec(&format!("{l}.{name}.weight"), &[out, inp]));
        specs.push(spec(&format!("{l}.{name}.bias"), &[out]));
    }
    for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
        specs.push(spec(&format!("{l}.{norm}.weight"), &[HIDDEN]));
        specs.push(spec(&format!("{l}.{norm}.bias"), &[HIDDEN]));
    }
    specs
}

fn write_model(dir: &Path, specs: &[Spec], dtype_of: impl Fn(&str) -> Dtype) -> PathBuf {
    let raws: BTreeMap<String, Raw> = specs
        .iter()
        .map(|s| {
            let dtype = dtype_of(&s.name);
            (
                s.name.clone(),
                Raw {
                    dtype,
                    shape: s.shape.clone(),
                    bytes: encode(&s.values, dtype),
                },
            )
        })
        .collect();
    let path = dir.join("model.safetensors");
    write_safetensors(&path, &raws);
    path
}

fn write_config(dir: &Path, model_type: &str) -> PathBuf {
    let path = dir.join("config.json");
    let config = serde_json::json!({
        "model_type": model_type, "vocab_size": VOCAB, "hidden_size": HIDDEN,
        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": INTER,
        "max_position_embeddings": POSITIONS, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
        "hidden_act": "gelu"
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

fn load(dir: &Path) -> Result<Bert, ModelError> {
    let config = BertConfig::from_file(&dir.join("config.json"))?;
    let weights = SafetensorsWeights::open(&[dir.join("model.safetensors")])?;
    Bert::load(&config, &weights, &Device::default())
}

fn run(model: &Bert) -> Vec<f32> {
    let device = Device::default();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 5, 7, 2], [1, 4]), &device);
    let out = model.forward(ids, None).unwrap();
    assert_eq!(out.dims(), [1, 4, HIDDEN]);
    out.into_data().try_into_vec::<f32>().unwrap()
}

#[test]
fn f32_f16_and_bf16_weights_load_and_agree() {
    let specs = tiny_bert();
    let mut outputs = Vec::new();
    for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), "bert");
        write_model(dir.path(), &specs, |_| dtype);
        let model = load(dir.path()).unwrap_or_else(|e| panic!("{dtype:?}: {e}"));
        outputs.push(run(&model));
    }
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    };
    assert!(outputs[0].iter().all(|v| v.is_finite()));
    assert!(
        diff(&outputs[0], &outputs[1]) < 0.02,
        "f16 {}",
        diff(&outputs[0], &outputs[1])
    );
    assert!(
        diff(&outputs[0], &outputs[2]) < 0.1,
        "bf16 {}",
        diff(&outputs[0], &outputs[2])
    );
    assert!(
        diff(&outputs[0], &outputs[1]) > 0.0,
        "f16 rounding should be visible"
    );
}

#[test]
fn a_wrong_shape_names_the_tensor_and_both_shapes() {
    let mut specs = tiny_bert();
    let query = specs
        .iter_mut()
        .find(|s| s.name.ends_with("query.weight"))
        .unwrap();
    query.shape = vec![HIDDEN, HIDDEN / 2];
    query.values.truncate(HIDDEN * HIDDEN / 2);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "bert");
    write_model(dir.path(), &specs, |_| Dtype::F32);
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("encoder.layer.0.attention.self.query.weight"),
        "{err}"
    );
    assert!(err.contains("[8, 4]") && err.contains("[8, 8]"), "{err}");
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn a_missing_tensor_is_named() {
    let specs: Vec<Spec> = tiny_bert()
        .into_iter()
        .filter(|s| !s.name.ends_with("output.LayerNorm.bias"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "bert");
    write_model(dir.path(), &specs, |_| Dtype::F32);
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, ModelError::MissingTensor { .. }), "{err}");
    assert!(err.to_string().contains("LayerNorm.bias"), "{err}");
}

#[test]
fn an_unsupported_dtype_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "bert");
    write_model(dir.path(), &tiny_bert(), |name| {
        if name.ends_with("key.bias") {
            Dtype::I64
        } else {
            Dtype::F32
        }
    });
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("key.bias") && err.contains("I64"), "{err}");
}

#[test]
fn truncated_and_lying_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "bert");
    let path = write_model(dir.path(), &tiny_bert(), |_| Dtype::F32);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, ModelError::Safetensors { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    // A header that claims to be 1 TB long must not allocate it.
    let mut lying = (1u64 << 40).to_le_bytes().to_vec();
    lying.extend_from_slice(b"{}");
    std::fs::write(&path, &lying).unwrap();
    assert!(matches!(
        load(dir.path()).unwrap_err(),
        ModelError::Safetensors { .. }
    ));
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        load(dir.path()).unwrap_err(),
        ModelError::Safetensors { .. }
    ));
}

#[test]
fn bytes_in_memory_read_like_the_mapped_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_model(dir.path(), &tiny_bert(), |_| Dtype::BF16);
    let bytes = std::fs::read(&path).unwrap();
    let mapped = SafetensorsWeights::open(std::slice::from_ref(&path)).unwrap();
    let owned = SafetensorsWeights::from_bytes(bytes.clone(), "memory.safetensors").unwrap();
    assert_eq!(owned.path(), Path::new("memory.safetensors"));
    assert_eq!(owned.stored_bytes(), mapped.stored_bytes());
    let name = "embeddings.word_embeddings.weight";
    assert_eq!(
        owned.read_f32(name, &[VOCAB, HIDDEN]).unwrap(),
        mapped.read_f32(name, &[VOCAB, HIDDEN]).unwrap()
    );
    // The same checks, and errors named after what the caller called the bytes.
    let err =
        SafetensorsWeights::from_bytes(bytes[..bytes.len() - 1].to_vec(), "memory.safetensors")
            .unwrap_err();
    assert!(matches!(err, ModelError::Safetensors { .. }), "{err}");
    assert!(err.to_string().starts_with("memory.safetensors: "), "{err}");
}

#[test]
fn data_offsets_near_the_top_of_usize_are_an_error_not_an_overflow() {
    // Eight contiguous tensors of 2^61 - 1 bytes: every size checks out, but
    // together they end 8 bytes short of 2^64, so adding the header's length
    // overflowed inside safetensors (a panic in debug builds).
    let size = (1u64 << 61) - 1;
    let header: serde_json::Map<String, serde_json::Value> = (0..8u64)
        .map(|i| {
            let info = serde_json::json!({
                "dtype": "U8", "shape": [size], "data_offsets": [i * size, (i + 1) * size],
            });
            (format!("t{i}"), info)
        })
        .collect();
    let header = serde_json::to_vec(&header).unwrap();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&[0; 16]);

    let err = SafetensorsWeights::from_bytes(bytes.clone(), "huge.safetensors").unwrap_err();
    assert!(matches!(err, ModelError::Safetensors { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with("huge.safetensors: not a valid safetensors file: tensor \"t"),
        "{message}"
    );
    assert!(
        message.contains("the file holds 16 bytes of data"),
        "{message}"
    );
    // The same from a file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    let err = SafetensorsWeights::open(&[path]).unwrap_err();
    assert!(err.to_string().contains("bytes of data"), "{err}");
}

#[test]
fn config_errors_name_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "gpt2");
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("unsupported architecture \"gpt2\"") && err.contains("config.json"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"model_type": "bert", "hidden_size": 8}"#,
    )
    .unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("vocab_size"), "{err}");
    let bad_heads = serde_json::json!({
        "model_type": "bert", "vocab_size": 4, "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 3, "intermediate_size": 4, "max_position_embeddings": 4
    });
    std::fs::write(dir.path().join("config.json"), bad_heads.to_string()).unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("num_attention_heads") && err.contains("not divisible"),
        "{err}"
    );
}
