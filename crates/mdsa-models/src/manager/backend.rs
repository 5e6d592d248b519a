//! The built-in [`LocalBackend`]: burn models from local files or the HF cache,
//! behind the [`ModelBackend`] interface of `mdsa-engine`.

use std::sync::Arc;

use mdsa_engine::source::{ResolveOptions, ResolvedModel};
use mdsa_engine::{
    LOCAL_BACKEND, LoadPlan, LoadedEngine, LoadedModel, ModelBackend, ModelError, ModelRole,
    ModelSpec, TextGenerator, WeightFormat, device_label,
};

use crate::embedder::{BertEmbedder, EmbedderOptions};
use crate::generate::{DecoderGenerator, DecoderOptions};

/// Loads [`BertEmbedder`]s and [`DecoderGenerator`]s on the devices this build has.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    resolve: ResolveOptions,
    kv_sequences: usize,
}

impl Default for LocalBackend {
    /// Resolves in the default cache, downloading what is missing unless
    /// `HF_HUB_OFFLINE` is set.
    fn default() -> Self {
        Self::new(ResolveOptions::default())
    }
}

impl LocalBackend {
    /// A backend resolving references with `resolve`, reserving KV cache for one
    /// sequence per generator.
    pub fn new(resolve: ResolveOptions) -> Self {
        Self {
            resolve,
            kv_sequences: 1,
        }
    }

    /// Reserves KV cache for `n` concurrent sequences of a generator's full
    /// context (`max_context`, else the model's own).
    pub fn with_kv_sequences(mut self, n: usize) -> Self {
        self.kv_sequences = n;
        self
    }

    fn device(spec: &ModelSpec) -> Result<mdsa_hw::Device, ModelError> {
        let preference = spec
            .device_preference()
            .map_err(|e| ModelError::Backend(e.to_string()))?;
        Ok(match preference {
            mdsa_hw::DevicePreference::Cpu => mdsa_hw::Device::Cpu,
            mdsa_hw::DevicePreference::Gpu(index) => mdsa_hw::Device::Gpu { index },
            mdsa_hw::DevicePreference::Auto if crate::backend::has_gpu_backend() => {
                mdsa_hw::Device::Gpu { index: 0 }
            }
            mdsa_hw::DevicePreference::Auto => mdsa_hw::Device::Cpu,
        })
    }
}

impl ModelBackend for LocalBackend {
    fn name(&self) -> &str {
        LOCAL_BACKEND
    }

    fn plan(&self, spec: &ModelSpec) -> Result<LoadPlan, ModelError> {
        let device = device_label(Self::device(spec)?);
        let model = spec
            .model_ref()
            .map_err(|e| ModelError::Backend(e.to_string()))?;
        let (stored, quantized) = match model.resolve(&self.resolve)? {
            ResolvedModel::Gguf { path } => (file_len(&path)?, true),
            ResolvedModel::SafetensorsDir { weights, .. } => (
                weights
                    .iter()
                    .map(|p| file_len(p))
                    .sum::<Result<u64, _>>()?,
                false,
            ),
        };
        // A rough factor from the file to memory: GGUF files are mostly ~4.5-bit
        // blocks, safetensors mostly f32. It only sizes the first load's
        // reservation; the measured size replaces it.
        let factor = match (spec.quantization, quantized) {
            (WeightFormat::Stored, _) => 1.0,
            (WeightFormat::F32, true) => 7.2,
            (WeightFormat::F16 | WeightFormat::BF16, true) => 3.6,
            (WeightFormat::Int8, true) => 1.9,
            (WeightFormat::Int4, true) => 1.0,
            (WeightFormat::F32, false) => 1.0,
            (WeightFormat::F16 | WeightFormat::BF16, false) => 0.5,
            (WeightFormat::Int8, false) => 0.27,
            (WeightFormat::Int4, false) => 0.15,
        };
        Ok(LoadPlan {
            device,
            estimated_bytes: (stored as f64 * factor) as u64,
        })
    }

    fn load(&self, spec: &ModelSpec) -> Result<LoadedModel, ModelError> {
        let hw_device = Self::device(spec)?;
        let device = crate::backend::burn_device(hw_device)?;
        let model = spec
            .model_ref()
            .map_err(|e| ModelError::Backend(e.to_string()))?;
        let label = device_label(hw_device);
        match spec.role {
            ModelRole::Encoder => {
                let options = EmbedderOptions {
                    device: Some(device),
                    format: spec.quantization,
                    ..EmbedderOptions::default()
                };
                let embedder = BertEmbedder::load(&model, &self.resolve, &options)?;
                Ok(LoadedModel {
                    weight_bytes: embedder.resident_bytes() as u64,
                    kv_bytes: 0,
                    engine: LoadedEngine::Encoder(Arc::new(embedder)),
                    device: label,
                })
            }
            ModelRole::Generator => {
                let options = DecoderOptions {
                    format: spec.quantization,
                    device: Some(device),
                    chat_template: crate::backend::LocalOptions::of(spec)?.chat_template,
                    max_context: spec.max_context,
                };
                let generator = DecoderGenerator::load(&model, &self.resolve, &options)?;
                let kv = generator.model().kv_bytes_per_token()
                    * generator.context_length()
                    * self.kv_sequences;
                Ok(LoadedModel {
                    weight_bytes: generator.model().resident_bytes() as u64,
                    kv_bytes: kv as u64,
                    engine: LoadedEngine::Generator(Arc::new(generator)),
                    device: label,
                })
            }
        }
    }
}

fn file_len(path: &std::path::Path) -> Result<u64, ModelError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| ModelError::io(path, e))
}
