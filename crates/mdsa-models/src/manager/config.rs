//! The manager's limits: models resident at once, bytes per device, eviction
//! of pinned models and waiting for releases.

use std::collections::BTreeMap;
use std::time::Duration;

/// Limits and behaviour of a [`ModelManager`].
#[derive(Debug, Clone, Default)]
pub struct ManagerConfig {
    /// Most models resident (or loading) at once; `None`: no count limit.
    pub max_models: Option<usize>,
    /// Byte budget per device label (`cpu`, `gpu:0`, ...); a device without an
    /// entry has no byte limit. [`ManagerConfig::from_budget`] fills it from
    /// mdsa-hw.
    pub budgets: BTreeMap<String, u64>,
    /// When a model does not fit because others are in use, wait this long for
    /// them to be released before failing; `None` fails at once.
    pub wait_for_release: Option<Duration>,
    /// Whether pinned models may be evicted (last) to make room.
    pub evict_pinned: bool,
    /// How often a background thread unloads models past their idle TTL;
    /// `None`: only [`ModelManager::sweep_idle`] does.
    pub sweep_interval: Option<Duration>,
}

impl ManagerConfig {
    /// Budgets from mdsa-hw's memory budget: `cpu` and `gpu:N` where known.
    pub fn from_budget(budget: &mdsa_hw::MemoryBudget) -> Self {
        let mut budgets = BTreeMap::new();
        if let Some(bytes) = budget.cpu_bytes {
            budgets.insert("cpu".to_string(), bytes);
        }
        for (index, bytes) in budget.gpu_bytes.iter().enumerate() {
            if let Some(bytes) = bytes {
                budgets.insert(format!("gpu:{index}"), *bytes);
            }
        }
        Self {
            budgets,
            sweep_interval: Some(Duration::from_secs(10)),
            ..Self::default()
        }
    }

    /// Detects this machine and derives the budgets from `config`
    /// (by default 70 % of available RAM, 90 % of each GPU's memory).
    pub fn from_hardware(config: &mdsa_hw::BudgetConfig) -> Result<Self, mdsa_hw::HwError> {
        let profile = mdsa_hw::HardwareDetector::detect();
        Ok(Self::from_budget(&mdsa_hw::MemoryBudget::from_profile(
            &profile, config,
        )?))
    }

    /// Sets one device's byte budget.
    pub fn with_budget(mut self, device: impl Into<String>, bytes: u64) -> Self {
        self.budgets.insert(device.into(), bytes);
        self
    }
}
