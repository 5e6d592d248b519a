//! How a model's weights are held in memory.

/// How weights are held in memory. In configuration files it is written in
/// lower case: `"stored"`, `"f32"`, `"f16"`, `"bf16"`, `"int8"`, `"int4"`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    /// Every weight dequantized to f32 tensors (any device; the reference path).
    F32,
    /// GGUF blocks as stored, multiplied by the quantized CPU kernels.
    #[default]
    Stored,
    /// f16 (2 bytes per weight), widened to f32 as it is multiplied.
    F16,
    /// bf16 (2 bytes per weight), widened to f32 as it is multiplied.
    BF16,
    /// Re-quantized to Q8_0 blocks (8.5 bits per weight).
    Int8,
    /// Re-quantized to Q4_0 blocks (4.5 bits per weight).
    Int4,
}

impl std::str::FromStr for WeightFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Self::F32),
            "stored" => Ok(Self::Stored),
            "f16" => Ok(Self::F16),
            "bf16" => Ok(Self::BF16),
            "int8" => Ok(Self::Int8),
            "int4" => Ok(Self::Int4),
            other => Err(format!(
                "unknown dtype {other:?}: expected f32, f16, bf16, stored, int8 or int4"
            )),
        }
    }
}

impl WeightFormat {
    /// Every format, in the order reports list them.
    pub const ALL: [WeightFormat; 6] = [
        Self::Stored,
        Self::F32,
        Self::F16,
        Self::BF16,
        Self::Int8,
        Self::Int4,
    ];

    /// The lower-case name used in configuration files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Stored => "stored",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::Int8 => "int8",
            Self::Int4 => "int4",
        }
    }
}

impl std::fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
