//! The built-in [`LocalBackend`]: burn models from local files or the HF cache,
//! behind the [`ModelBackend`] interface of `mdsa-engine`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use mdsa_engine::source::{DownloadProgress, ResolveOptions, ResolvedModel};
use mdsa_engine::{
    LOCAL_BACKEND, LoadPlan, LoadedEngine, LoadedModel, ModelBackend, ModelError, ModelRole,
    ModelSpec, TextGenerator, WeightFormat, device_label,
};
use mdsa_hw::{
    BudgetConfig, DeviceChoice, DevicePreference, DeviceRequest, HardwareDetector, HardwareProfile,
    HwError, MemoryBudget,
};

use crate::embedder::{BertEmbedder, EmbedderOptions};
use crate::generate::{DecoderGenerator, DecoderOptions};

/// Loads [`BertEmbedder`]s and [`DecoderGenerator`]s on the devices this build has.
///
/// Each model's device is chosen at plan time by [`mdsa_hw::choose_device`]
/// from the spec's preference (`auto`: a hardware GPU whose budget fits the
/// model's estimated bytes, else the CPU), with a reason the manager keeps.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    resolve: ResolveOptions,
    kv_sequences: usize,
    /// The machine and its budgets: given, or detected on first use.
    hardware: Arc<OnceLock<Hardware>>,
    /// The device each model's plan chose, for its load.
    placed: Arc<Mutex<HashMap<String, mdsa_hw::Device>>>,
}

/// What device choice needs to know about the machine.
#[derive(Debug)]
struct Hardware {
    profile: HardwareProfile,
    budget: MemoryBudget,
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
            hardware: Arc::new(OnceLock::new()),
            placed: Arc::default(),
        }
    }

    /// Chooses devices on this machine with these budgets (the facade passes
    /// what it detected once, with the configured fractions and byte
    /// limits); without it the machine is detected on first use with the
    /// default budgets.
    pub fn with_hardware(self, profile: HardwareProfile, budget: MemoryBudget) -> Self {
        let hardware = OnceLock::new();
        let _ = hardware.set(Hardware { profile, budget });
        Self {
            hardware: Arc::new(hardware),
            ..self
        }
    }

    fn hardware(&self) -> &Hardware {
        self.hardware.get_or_init(|| {
            let profile = HardwareDetector::detect();
            // The default fractions are valid, so this cannot fail; an unknown
            // budget (no limit) is the safe fallback anyway.
            let budget = MemoryBudget::from_profile(&profile, &BudgetConfig::default()).unwrap_or(
                MemoryBudget {
                    cpu_bytes: None,
                    gpu_bytes: Vec::new(),
                },
            );
            Hardware { profile, budget }
        })
    }

    /// The device for `spec` needing `need_bytes`, and why.
    fn choose(&self, spec: &ModelSpec, need_bytes: u64) -> Result<DeviceChoice, ModelError> {
        let preference = spec
            .device_preference()
            .map_err(|e| ModelError::Backend(e.to_string()))?;
        let hardware = self.hardware();
        let request = DeviceRequest {
            need_bytes,
            preference,
            gpu_backend: crate::backend::has_gpu_backend(),
        };
        match mdsa_hw::choose_device(&hardware.profile, &hardware.budget, request) {
            Ok(choice) => Ok(choice),
            // Room is the manager's to make (it evicts, waits, or answers
            // "no room"): place the model where it was asked to go and say it
            // does not fit.
            Err(error @ (HwError::DoesNotFit { .. } | HwError::NothingFits { .. })) => {
                Ok(DeviceChoice {
                    device: match preference {
                        DevicePreference::Gpu(index) => mdsa_hw::Device::Gpu { index },
                        DevicePreference::Auto | DevicePreference::Cpu => mdsa_hw::Device::Cpu,
                    },
                    reason: format!("{error}; the memory budget decides"),
                })
            }
            Err(error) => Err(ModelError::Backend(format!(
                "no device for model {:?}: {error}",
                spec.id
            ))),
        }
    }

    /// The device `plan` chose for `spec`, or a fresh choice for a load
    /// without a plan.
    fn device(&self, spec: &ModelSpec) -> Result<mdsa_hw::Device, ModelError> {
        let placed = self
            .placed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&spec.id)
            .copied();
        match placed {
            Some(device) => Ok(device),
            None => Ok(self.choose(spec, 0)?.device),
        }
    }

    /// Reserves KV cache for `n` concurrent sequences of a generator's full
    /// context (`max_context`, else the model's own), plus one sequence's
    /// worth for the prompt prefixes it keeps.
    pub fn with_kv_sequences(mut self, n: usize) -> Self {
        self.kv_sequences = n;
        self
    }
}

impl ModelBackend for LocalBackend {
    fn name(&self) -> &str {
        LOCAL_BACKEND
    }

    fn fetch(
        &self,
        spec: &ModelSpec,
        progress: &mut dyn FnMut(DownloadProgress<'_>),
    ) -> Result<(), ModelError> {
        let model = spec
            .model_ref()
            .map_err(|e| ModelError::Backend(e.to_string()))?;
        model.resolve_with_progress(&self.resolve, progress)?;
        Ok(())
    }

    fn plan(&self, spec: &ModelSpec) -> Result<LoadPlan, ModelError> {
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
        let estimated_bytes = (stored as f64 * factor) as u64;
        let choice = self.choose(spec, estimated_bytes)?;
        self.placed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(spec.id.clone(), choice.device);
        Ok(LoadPlan {
            device: device_label(choice.device),
            device_reason: choice.reason,
            estimated_bytes,
        })
    }

    fn load(&self, spec: &ModelSpec) -> Result<LoadedModel, ModelError> {
        let hw_device = self.device(spec)?;
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
                    prompt_name: crate::backend::LocalOptions::of(spec)?.prompt_name,
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
                    // As many sequences as KV cache is reserved for.
                    max_sequences: Some(self.kv_sequences),
                };
                let generator = DecoderGenerator::load(&model, &self.resolve, &options)?;
                // The sequences' caches, and as much again as one of them
                // for the prompt prefixes the generator keeps.
                let kv = generator.model().kv_bytes_per_token()
                    * generator.context_length()
                    * (self.kv_sequences + 1);
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
