use serde::{Deserialize, Serialize};

/// SIMD instruction sets that matter for inference kernels, detected at run time.
///
/// Detection is at run time (not `cfg(target_feature)`) because a default build
/// targets baseline x86-64; what the compiler was told says nothing about the CPU
/// the binary lands on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimdFeatures {
    /// x86 SSE4.2.
    pub sse4_2: bool,
    /// x86 AVX.
    pub avx: bool,
    /// x86 AVX2 (256-bit integer ops: the quantized dot products).
    pub avx2: bool,
    /// x86 fused multiply-add.
    pub fma: bool,
    /// x86 AVX-512 Foundation.
    pub avx512f: bool,
    /// x86 half-precision conversion.
    pub f16c: bool,
    /// Arm NEON (Advanced SIMD).
    pub neon: bool,
    /// Arm dot-product extension (int8 dot products).
    pub dotprod: bool,
}

impl SimdFeatures {
    /// Detects the features of the CPU this process runs on.
    pub fn detect() -> Self {
        #[allow(unused_mut)]
        let mut features = Self::default();
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            features.sse4_2 = std::arch::is_x86_feature_detected!("sse4.2");
            features.avx = std::arch::is_x86_feature_detected!("avx");
            features.avx2 = std::arch::is_x86_feature_detected!("avx2");
            features.fma = std::arch::is_x86_feature_detected!("fma");
            features.avx512f = std::arch::is_x86_feature_detected!("avx512f");
            features.f16c = std::arch::is_x86_feature_detected!("f16c");
        }
        #[cfg(target_arch = "aarch64")]
        {
            features.neon = std::arch::is_aarch64_feature_detected!("neon");
            features.dotprod = std::arch::is_aarch64_feature_detected!("dotprod");
        }
        features
    }

    /// Names of the detected features, in a fixed order.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.sse4_2, "sse4.2"),
            (self.avx, "avx"),
            (self.avx2, "avx2"),
            (self.fma, "fma"),
            (self.avx512f, "avx512f"),
            (self.f16c, "f16c"),
            (self.neon, "neon"),
            (self.dotprod, "dotprod"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_flags() {
        let features = SimdFeatures {
            avx2: true,
            fma: true,
            ..SimdFeatures::default()
        };
        assert_eq!(features.names(), vec!["avx2", "fma"]);
        assert!(SimdFeatures::default().names().is_empty());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_always_has_its_baseline_and_detection_is_consistent() {
        let features = SimdFeatures::detect();
        // Every x86-64 CPU that has AVX2 also has AVX: a cheap sanity check that the
        // flags come from the CPU and are not all defaulted.
        if features.avx2 {
            assert!(features.avx);
        }
        assert!(!features.neon && !features.dotprod);
    }
}
