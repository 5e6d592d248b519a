use serde::{Deserialize, Serialize};

use crate::device::Device;
use crate::error::HwError;
use crate::profile::HardwareProfile;

/// How much memory the model manager may use, as configured.
///
/// The default takes a fraction of the memory that is *available* when mdsa
/// starts (not the total): other programs on a laptop keep theirs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Fraction of available RAM for CPU-resident models, in (0, 1].
    pub ram_fraction: f64,
    /// Fraction of each GPU's memory for GPU-resident models, in (0, 1].
    pub vram_fraction: f64,
    /// Exact RAM budget in bytes; overrides `ram_fraction`.
    pub ram_bytes: Option<u64>,
    /// Exact budget in bytes for every GPU; overrides `vram_fraction`.
    pub vram_bytes: Option<u64>,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ram_fraction: 0.7,
            vram_fraction: 0.9,
            ram_bytes: None,
            vram_bytes: None,
        }
    }
}

/// Bytes available to models on each device. `None` means the platform did not
/// say how much memory the device has, so no limit is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryBudget {
    /// Budget for CPU-resident models.
    pub cpu_bytes: Option<u64>,
    /// Budget per GPU, by index.
    pub gpu_bytes: Vec<Option<u64>>,
}

impl MemoryBudget {
    /// Derives the budget from a detected profile and the configuration.
    pub fn from_profile(profile: &HardwareProfile, config: &BudgetConfig) -> Result<Self, HwError> {
        check_fraction("ram_fraction", config.ram_fraction)?;
        check_fraction("vram_fraction", config.vram_fraction)?;
        let cpu_bytes = config.ram_bytes.or_else(|| {
            profile
                .memory
                .available_bytes
                .map(|bytes| scale(bytes, config.ram_fraction))
        });
        let gpu_bytes = profile
            .gpus
            .iter()
            .map(|gpu| {
                config
                    .vram_bytes
                    .or_else(|| gpu.memory_bytes.map(|b| scale(b, config.vram_fraction)))
            })
            .collect();
        Ok(Self {
            cpu_bytes,
            gpu_bytes,
        })
    }

    /// The budget of one device; `None` when unknown or the device does not exist.
    pub fn for_device(&self, device: Device) -> Option<u64> {
        match device {
            Device::Cpu => self.cpu_bytes,
            Device::Gpu { index } => self.gpu_bytes.get(index).copied().flatten(),
        }
    }
}

fn check_fraction(field: &'static str, value: f64) -> Result<(), HwError> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(HwError::InvalidFraction {
            field,
            found: value,
        })
    }
}

fn scale(bytes: u64, fraction: f64) -> u64 {
    (bytes as f64 * fraction) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{GIB, profile_with};

    #[test]
    fn default_budget_is_a_fraction_of_available_ram_and_vram() {
        let profile = profile_with(Some(20 * GIB), &[Some(10 * GIB), None]);
        let budget = MemoryBudget::from_profile(&profile, &BudgetConfig::default()).unwrap();
        assert_eq!(budget.cpu_bytes, Some(14 * GIB));
        assert_eq!(budget.gpu_bytes, vec![Some(9 * GIB), None]);
        assert_eq!(budget.for_device(Device::Gpu { index: 0 }), Some(9 * GIB));
        assert_eq!(budget.for_device(Device::Gpu { index: 1 }), None);
        assert_eq!(budget.for_device(Device::Gpu { index: 7 }), None);
    }

    #[test]
    fn explicit_bytes_override_fractions() {
        let profile = profile_with(Some(20 * GIB), &[Some(10 * GIB)]);
        let config = BudgetConfig {
            ram_bytes: Some(GIB),
            vram_bytes: Some(2 * GIB),
            ..BudgetConfig::default()
        };
        let budget = MemoryBudget::from_profile(&profile, &config).unwrap();
        assert_eq!(budget.cpu_bytes, Some(GIB));
        assert_eq!(budget.gpu_bytes, vec![Some(2 * GIB)]);
    }

    #[test]
    fn unknown_memory_stays_unknown() {
        let profile = profile_with(None, &[]);
        let budget = MemoryBudget::from_profile(&profile, &BudgetConfig::default()).unwrap();
        assert_eq!(budget.cpu_bytes, None);
    }

    #[test]
    fn fractions_outside_the_unit_interval_are_rejected() {
        let profile = profile_with(Some(GIB), &[]);
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            let config = BudgetConfig {
                ram_fraction: bad,
                ..BudgetConfig::default()
            };
            let err = MemoryBudget::from_profile(&profile, &config).unwrap_err();
            assert!(err.to_string().contains("ram_fraction"), "{err}");
        }
    }

    #[test]
    fn config_parses_from_json_with_defaults_and_rejects_unknown_fields() {
        let config: BudgetConfig = serde_json::from_str(r#"{"ram_fraction": 0.5}"#).unwrap();
        assert_eq!(config.ram_fraction, 0.5);
        assert_eq!(config.vram_fraction, 0.9);
        let err = serde_json::from_str::<BudgetConfig>(r#"{"ram_fractoin": 0.5}"#).unwrap_err();
        assert!(err.to_string().contains("ram_fractoin"));
    }
}
