//! What the user asked for, parsed from Cloud Hypervisor-style option strings
//! (`size=512M`, `boot=1`, `path=FILE`).

use crate::{Result, VmmError};
use std::path::PathBuf;

/// Which CPU engine runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    /// kvm where the host has hardware assist, otherwise soft.
    Auto,
    Kvm,
    Soft,
}

/// What the guest is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Full virtualization: an unmodified, unaware guest on a plain PC.
    Full,
    /// Para-virtualization: a hypervisor-aware guest using hypercalls and the PV clock.
    Para,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Para => "para",
        }
    }
}

/// The guest image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelSource {
    /// The demo guest built into Janus.
    EmbeddedDemo,
    /// A file given with `--kernel`.
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    pub engine: EngineChoice,
    pub mode: Mode,
    pub kernel: KernelSource,
    pub initramfs: Option<PathBuf>,
    pub cmdline: String,
    pub memory_bytes: u64,
    pub vcpus: u32,
    pub disk: Option<PathBuf>,
}

/// Default guest RAM.
pub const DEFAULT_MEMORY: u64 = 512 << 20;
/// vCPUs Janus can run so far.
pub const MAX_VCPUS: u32 = 1;

impl Default for VmConfig {
    fn default() -> VmConfig {
        VmConfig {
            engine: EngineChoice::Auto,
            mode: Mode::Full,
            kernel: KernelSource::EmbeddedDemo,
            initramfs: None,
            cmdline: String::new(),
            memory_bytes: DEFAULT_MEMORY,
            vcpus: 1,
            disk: None,
        }
    }
}

/// Splits `key=value,key=value`; a bare value is taken as `default_key=value`.
fn options<'a>(
    option: &str,
    spec: &'a str,
    default_key: &'a str,
    allowed: &[&str],
) -> Result<Vec<(&'a str, &'a str)>> {
    spec.split(',')
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((default_key, part));
            if !allowed.contains(&k) {
                return Err(VmmError::Config(format!(
                    "{option}: unknown key '{k}' (expected {})",
                    allowed.join(", ")
                )));
            }
            Ok((k, v))
        })
        .collect()
}

/// Parses a size like `512M`, `2G`, `65536K` or a byte count.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, shift) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 10),
        (i, 'M' | 'm') => (&s[..i], 20),
        (i, 'G' | 'g') => (&s[..i], 30),
        _ => (s, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// `--memory size=512M`
pub fn parse_memory(spec: &str) -> Result<u64> {
    let mut size = DEFAULT_MEMORY;
    for (_, v) in options("--memory", spec, "size", &["size"])? {
        size = parse_size(v).ok_or_else(|| {
            VmmError::Config(format!("--memory: '{v}' is not a size (like 512M or 2G)"))
        })?;
    }
    Ok(size)
}

/// `--cpus boot=1`
pub fn parse_cpus(spec: &str) -> Result<u32> {
    let mut boot = 1;
    for (_, v) in options("--cpus", spec, "boot", &["boot"])? {
        boot = v
            .parse::<u32>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| VmmError::Config(format!("--cpus: '{v}' is not a vCPU count")))?;
    }
    if boot > MAX_VCPUS {
        return Err(VmmError::Config(format!(
            "--cpus boot={boot}: Janus runs {MAX_VCPUS} vCPU so far"
        )));
    }
    Ok(boot)
}

/// `--disk path=FILE`
pub fn parse_disk(spec: &str) -> Result<PathBuf> {
    let mut path = None;
    for (_, v) in options("--disk", spec, "path", &["path"])? {
        path = Some(PathBuf::from(v));
    }
    path.filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| VmmError::Config("--disk: no path given (use --disk path=FILE)".into()))
}

impl VmConfig {
    /// Checks what can be checked before building anything.
    pub fn validate(&self) -> Result<()> {
        if self.memory_bytes < janus_boot::layout::MIN_MEMORY {
            return Err(VmmError::Config(format!(
                "--memory: {} bytes is too small; at least {} MiB",
                self.memory_bytes,
                janus_boot::layout::MIN_MEMORY >> 20
            )));
        }
        if self.memory_bytes > crate::memory::MAX_MEMORY {
            return Err(VmmError::Config(format!(
                "--memory: {} GiB is more than the {} GiB Janus supports",
                self.memory_bytes >> 30,
                crate::memory::MAX_MEMORY >> 30
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
    }

    #[test]
    fn memory_option() {
        assert_eq!(parse_memory("size=1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("256M").unwrap(), 256 << 20);
        assert!(parse_memory("size=lots").is_err());
        let e = parse_memory("hugepages=on").unwrap_err().to_string();
        assert!(e.contains("unknown key 'hugepages'"), "{e}");
    }

    #[test]
    fn cpus_option() {
        assert_eq!(parse_cpus("boot=1").unwrap(), 1);
        assert!(parse_cpus("boot=0").is_err());
        let e = parse_cpus("boot=4").unwrap_err().to_string();
        assert!(e.contains("1 vCPU"), "{e}");
    }

    #[test]
    fn disk_option() {
        assert_eq!(
            parse_disk("path=/tmp/x.img").unwrap(),
            PathBuf::from("/tmp/x.img")
        );
        assert_eq!(parse_disk("/tmp/y").unwrap(), PathBuf::from("/tmp/y"));
        assert!(parse_disk("path=").is_err());
        assert!(parse_disk("readonly=on").is_err());
    }

    #[test]
    fn memory_limits() {
        let mut c = VmConfig {
            memory_bytes: 1 << 20,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        c.memory_bytes = 512 << 20;
        assert!(c.validate().is_ok());
    }
}
