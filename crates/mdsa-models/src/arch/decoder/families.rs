//! The one table from an architecture name (GGUF `general.architecture`, Hugging
//! Face `model_type`) to the family that builds it.
//!
//! A new family adds its [`Family`] constant to [`FAMILIES`] and its name to
//! [`SUPPORTED_ARCHITECTURES`] (a test keeps the two in step).

use std::fmt;
use std::path::Path;

use mdsa_engine::ModelError;

use super::Decoder;
use super::config::DecoderConfig;
use super::loader::Loader;
use super::{gemma, llama};

/// The architectures, as `general.architecture` names them.
pub const SUPPORTED_ARCHITECTURES: &str = "llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3";

/// Every family, by name.
const FAMILIES: &[Family] = &[
    llama::LLAMA,
    llama::MISTRAL,
    llama::QWEN2,
    llama::QWEN3,
    llama::PHI3,
    gemma::GEMMA2,
    gemma::GEMMA3,
];

/// How one architecture is built.
pub(crate) struct Family {
    /// The name files give it.
    pub(crate) name: &'static str,
    /// Other names for it (a Hugging Face `model_type` that differs).
    pub(crate) aliases: &'static [&'static str],
    /// Loads the model `config` describes.
    pub(crate) build: Build,
    /// RMSNorm epsilon when `config.json` omits it.
    pub(crate) default_rms_eps: f32,
    /// Whether attention and final logits may be soft-capped (Gemma 2).
    pub(crate) uses_softcap: bool,
    /// Whether `query_pre_attn_scalar` sets the attention scale (Gemma).
    pub(crate) uses_query_pre_attn_scalar: bool,
}

impl Family {
    /// A family with llama's defaults for everything but its name and constructor.
    pub(crate) const fn plain(name: &'static str, build: Build) -> Self {
        Self {
            name,
            aliases: &[],
            build,
            default_rms_eps: 1e-6,
            uses_softcap: false,
            uses_query_pre_attn_scalar: false,
        }
    }
}

/// A family's constructor: the model a configuration describes, from a loader.
pub(crate) type Build = fn(DecoderConfig, &Loader<'_>) -> Result<Box<dyn Decoder>, ModelError>;

/// A decoder architecture this crate runs, as a file names it (see
/// [`SUPPORTED_ARCHITECTURES`]).
#[derive(Clone, Copy)]
pub struct Architecture {
    family: &'static Family,
}

impl Architecture {
    /// The architecture of that name, if it is supported.
    pub fn named(name: &str) -> Option<Self> {
        FAMILIES
            .iter()
            .find(|family| family.name == name || family.aliases.contains(&name))
            .map(|family| Self { family })
    }

    /// The architecture `path` names, or an error naming the file.
    pub(crate) fn parse(name: &str, path: &Path) -> Result<Self, ModelError> {
        Self::named(name).ok_or_else(|| ModelError::UnsupportedArchitecture {
            path: path.to_path_buf(),
            found: name.to_string(),
            supported: SUPPORTED_ARCHITECTURES,
        })
    }

    /// Its name, as files write it.
    pub fn name(self) -> &'static str {
        self.family.name
    }

    /// The family that builds it.
    pub(crate) fn family(self) -> &'static Family {
        self.family
    }
}

impl PartialEq for Architecture {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Architecture {}

impl fmt::Debug for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Architecture").field(&self.name()).finish()
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::{Architecture, FAMILIES, SUPPORTED_ARCHITECTURES};

    #[test]
    fn the_supported_list_names_every_family() {
        let names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        assert_eq!(SUPPORTED_ARCHITECTURES, names.join(", "));
    }

    #[test]
    fn architectures_are_found_by_name() {
        let qwen2 = Architecture::named("qwen2").expect("supported");
        assert_eq!(qwen2.name(), "qwen2");
        assert_ne!(Architecture::named("llama"), Some(qwen2));
        assert_eq!(Architecture::named("gptneox"), None);
    }
}
