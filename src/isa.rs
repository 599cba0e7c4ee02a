//! The CPU instruction sets excite's SIMD kernels are compiled for, detected
//! at run time: one type for the Euler kernels, the native engine and the
//! trainer's activation kernel, so they agree on what this CPU runs.

use crate::Error;

/// An instruction-set variant of a SIMD kernel. The x86 variants carry
/// proof that this CPU runs them, which only [`Isa::available`] makes: a
/// kernel given an `Isa` may use its instructions without further checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 (F) with fused multiply-add.
    Avx512(Avx512Cpu),
    /// AVX2 with fused multiply-add (x86-64 CPUs since about 2013).
    Avx2Fma(Avx2FmaCpu),
    /// The same code compiled for the baseline target (no FMA: bit-identical
    /// to a scalar loop doing the same operations).
    Portable,
}

/// Proof that this CPU has AVX-512F, AVX2 and FMA (made only after detecting them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Avx512Cpu(());

/// Proof that this CPU has AVX2 and FMA (made only after detecting them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Avx2FmaCpu(());

impl Avx512Cpu {
    pub fn detect() -> Option<Avx512Cpu> {
        has_avx512().then_some(Avx512Cpu(()))
    }
}

impl Avx2FmaCpu {
    pub fn detect() -> Option<Avx2FmaCpu> {
        has_avx2_fma().then_some(Avx2FmaCpu(()))
    }
}

impl Isa {
    /// Every variant this CPU runs, fastest first.
    pub fn available() -> Vec<Isa> {
        let mut v = Vec::new();
        if let Some(cpu) = Avx512Cpu::detect() {
            v.push(Isa::Avx512(cpu));
        }
        if let Some(cpu) = Avx2FmaCpu::detect() {
            v.push(Isa::Avx2Fma(cpu));
        }
        v.push(Isa::Portable);
        v
    }

    /// The fastest variant this CPU runs.
    pub fn best() -> Isa {
        Isa::available()[0]
    }

    /// Whether this CPU runs `self`.
    pub fn runs_here(self) -> bool {
        Isa::available().contains(&self)
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512(_) => "avx512",
            Isa::Avx2Fma(_) => "avx2+fma",
            Isa::Portable => "portable",
        }
    }

    /// The variant called `name` (`avx2` is accepted for `avx2+fma`), if this
    /// CPU runs it; `setting` names where the name came from, for the error.
    pub fn named(name: &str, setting: &str) -> Result<Isa, Error> {
        let available = Isa::available();
        let wanted = if name == "avx2" { "avx2+fma" } else { name };
        available.iter().copied().find(|i| i.name() == wanted).ok_or_else(|| {
            let names: Vec<&str> = available.iter().map(|i| i.name()).collect();
            Error::invalid(setting, format!("`{name}` cannot run on this CPU"), format!("choose one of {} (unset, the fastest)", names.join(", ")))
        })
    }

    /// The variant named by environment variable `var`, or the fastest when it is unset or empty.
    pub fn from_env(var: &str) -> Result<Isa, Error> {
        match std::env::var(var) {
            Ok(name) if !name.is_empty() => Isa::named(&name, var),
            _ => Ok(Isa::best()),
        }
    }
}

/// Whether this CPU has AVX2 and FMA.
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU has AVX-512 (F), AVX2 and FMA.
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && has_avx2_fma()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_always_runs_and_names_round_trip() {
        let all = Isa::available();
        assert_eq!(*all.last().unwrap(), Isa::Portable);
        assert_eq!(Isa::best(), all[0]);
        for isa in all {
            assert_eq!(Isa::named(isa.name(), "test").unwrap(), isa);
        }
        let e = Isa::named("sse9", "EXCITE_NATIVE_KERNEL").unwrap_err();
        assert!(e.to_string().contains("EXCITE_NATIVE_KERNEL") && e.to_string().contains("sse9"), "{e}");
    }
}

/// This CPU's model name (`/proc/cpuinfo`), recorded with every measured figure.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
