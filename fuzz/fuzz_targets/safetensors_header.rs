//! Arbitrary bytes as a safetensors file: the header checks mdsa relies on
//! before it slices tensor data out of a mapped file, then every tensor read
//! as f32. Malformed input must come back as an error that names the file,
//! never a panic or an out-of-range slice.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mdsa_models::weights::SafetensorsWeights;

const ORIGIN: &str = "fuzz.safetensors";

fuzz_target!(|data: &[u8]| {
    let weights = match SafetensorsWeights::from_bytes(data.to_vec(), ORIGIN) {
        Ok(weights) => weights,
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains(ORIGIN), "error without origin: {message}");
            return;
        }
    };
    assert!(weights.stored_bytes() <= data.len() as u64);
    let names: Vec<String> = weights.names().map(str::to_owned).collect();
    for name in &names {
        let shape = weights.shape(name).expect("a listed tensor has a shape");
        match weights.read_f32(name, &shape) {
            Ok(values) => assert_eq!(values.len(), shape.iter().product::<usize>()),
            Err(error) => {
                let message = error.to_string();
                assert!(message.contains(ORIGIN), "error without origin: {message}");
            }
        }
    }
});
