//! Arbitrary bytes into the GGUF reader and, when they parse, into everything
//! that reads a parsed file: tensor data, F32/F16/BF16 conversion, typed
//! getters and the embedded tokenizer. Any panic, overflow or out-of-memory
//! abort is a bug: malformed input must come back as an error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mdsa_models::gguf::{GgufFile, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(content) = parse(data) else {
        return;
    };
    for info in content.tensors() {
        // The parser promises every range lies inside the input.
        assert_eq!(data[info.data_range()].len(), info.n_bytes());
    }
    let Ok(file) = GgufFile::from_bytes(data.to_vec(), "fuzz.gguf") else {
        unreachable!("the same bytes parsed a moment ago");
    };
    for info in file.tensors() {
        let _ = file.read_f32(info.name());
    }
    for key in file.metadata().keys() {
        let _ = file.get_u32(key);
        let _ = file.get_str(key);
        let _ = file.get_str_array(key);
    }
    let _ = file.architecture();
    let _ = file.tokenizer();
    if let Ok((tokenizer, _)) = file.gguf_tokenizer() {
        let ids = tokenizer.encode("Hello <s>wörld 🎉 12345\n\t", true, true);
        let _ = tokenizer.decode(&ids, true, false);
        let _ = tokenizer.decode(&ids, false, true);
    }
});
