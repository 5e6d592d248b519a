//! Arbitrary text into mdsa's three RON loaders: the system configuration, a
//! domains file and a model registry. None may panic; an error must name where
//! the text came from; what one accepts must serialise and read back the same.

#![no_main]

use std::fmt::{Debug, Display};

use libfuzzer_sys::fuzz_target;
use mdsa::SystemConfig;
use mdsa::domains::DomainRegistry;
use mdsa::engine::{ModelRegistry, ModelSpec};

const ORIGIN: &str = "fuzz.ron";

/// A registry file's shape, for writing one back.
#[derive(serde::Serialize)]
struct RegistryFile<'a> {
    models: Vec<&'a ModelSpec>,
}

/// Reads `text` with `read`: a refusal must name the origin; what is accepted
/// must `write` back to text that reads back to the same `value`.
fn check<T, E: Display, V: PartialEq + Debug>(
    text: &str,
    read: impl Fn(&str) -> Result<T, E>,
    write: impl Fn(&T) -> String,
    value: impl Fn(&T) -> V,
) {
    match read(text) {
        Ok(parsed) => {
            let again = write(&parsed);
            let reread = read(&again)
                .unwrap_or_else(|e| panic!("written back, not read back: {e}\n{again}"));
            assert_eq!(
                value(&reread),
                value(&parsed),
                "changed by a round trip:\n{again}"
            );
        }
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains(ORIGIN), "error without origin: {message}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(
        text,
        |text| SystemConfig::parse(text, ORIGIN),
        |config| mdsa_config::to_pretty(config).expect("serialises"),
        SystemConfig::clone,
    );
    check(
        text,
        |text| DomainRegistry::from_str(text, ORIGIN),
        |registry| registry.to_ron().expect("serialises"),
        DomainRegistry::clone,
    );
    check(
        text,
        |text| ModelRegistry::from_ron_str(text, ORIGIN),
        |registry| {
            let file = RegistryFile {
                models: registry.iter().collect(),
            };
            mdsa_config::to_pretty(&file).expect("serialises")
        },
        |registry| registry.iter().cloned().collect::<Vec<_>>(),
    );
});
