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

/// `--device`: an extra device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceConfig {
    /// QEMU's isa-debug-exit at `iobase`, `iosize` bytes wide.
    DebugExit { iobase: u16, iosize: u8 },
}

/// `--device debug-exit[,iobase=0x501][,iosize=1]`
pub fn parse_device(spec: &str) -> Result<DeviceConfig> {
    let parts = options("--device", spec, "type", &["type", "iobase", "iosize"])?;
    let kind = parts.iter().find(|(k, _)| *k == "type").map(|(_, v)| *v);
    if kind != Some("debug-exit") {
        return Err(VmmError::Config(format!(
            "--device: unknown device '{}' (Janus has: debug-exit)",
            kind.unwrap_or("")
        )));
    }
    let number = |key: &str, v: &str| {
        let n = match v.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        };
        n.ok_or_else(|| VmmError::Config(format!("--device: {key}='{v}' is not a number")))
    };
    let mut iobase = janus_devices::debug_exit::DEFAULT_IOBASE;
    let mut iosize = janus_devices::debug_exit::DEFAULT_IOSIZE;
    for (k, v) in parts {
        match k {
            "iobase" => {
                iobase = u16::try_from(number(k, v)?).map_err(|_| {
                    VmmError::Config(format!("--device: iobase='{v}' is not a port"))
                })?
            }
            "iosize" => {
                iosize = match number(k, v)? {
                    n @ (1 | 2 | 4) => n as u8,
                    _ => {
                        return Err(VmmError::Config(format!(
                            "--device: iosize='{v}' is not 1, 2 or 4"
                        )))
                    }
                }
            }
            _ => {}
        }
    }
    Ok(DeviceConfig::DebugExit { iobase, iosize })
}

/// `--cpu`: the CPU model the guest sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuModel {
    /// `host`, the default: on kvm what KVM supports; on the soft engine the highest
    /// x86-64 level it implements that the host CPU runs.
    #[default]
    Host,
    /// x86-64-v1: the baseline (soft engine only).
    V1,
    /// x86-64-v2: adds SSE3, SSSE3, SSE4.1, SSE4.2 (soft engine only).
    V2,
    /// x86-64-v3: adds AVX, AVX2, BMI1, BMI2, FMA, F16C, LZCNT, MOVBE, XSAVE (soft engine
    /// only).
    V3,
}

impl CpuModel {
    pub fn name(self) -> &'static str {
        match self {
            CpuModel::Host => "host",
            CpuModel::V1 => "v1",
            CpuModel::V2 => "v2",
            CpuModel::V3 => "v3",
        }
    }
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
    /// No kernel: this firmware image (`--firmware`, SeaBIOS by default) starts from the
    /// reset vector and boots what it finds.
    Firmware(PathBuf),
}

/// Where Debian's `seabios` package puts the 256 KiB SeaBIOS image QEMU's PC uses.
pub const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";

/// `--firmware`: `seabios` (the image above), `none` (Janus loads the kernel itself), or an
/// image's path. Returns the image to boot, if any.
pub fn parse_firmware(spec: &str) -> Result<Option<PathBuf>> {
    match spec {
        "" => Err(VmmError::Config(
            "--firmware: expected seabios, none or a path".into(),
        )),
        "none" => Ok(None),
        "seabios" => Ok(Some(PathBuf::from(SEABIOS))),
        path => Ok(Some(PathBuf::from(path))),
    }
}

/// `--disk`: a raw image file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    pub path: PathBuf,
    /// The guest may not write it.
    pub read_only: bool,
    /// Lock the image (shared when read-only), as QEMU does; `locking=off` skips it.
    pub locking: bool,
}

/// `--net`: a host TAP interface and the guest's MAC address on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    pub tap: String,
    pub mac: [u8; 6],
}

/// The guest's MAC address when `--net` names none (QEMU's default, locally administered).
pub const DEFAULT_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    pub engine: EngineChoice,
    pub mode: Mode,
    pub kernel: KernelSource,
    pub initramfs: Option<PathBuf>,
    pub cmdline: String,
    pub memory_bytes: u64,
    pub vcpus: u32,
    pub cpu: CpuModel,
    /// `--device` options.
    pub devices: Vec<DeviceConfig>,
    /// Unmapped port and MMIO accesses stop the VM (instead of open-bus behaviour).
    pub strict_io: bool,
    pub disk: Option<DiskConfig>,
    /// `--cdrom`: an ISO image in a CD-ROM drive (always read-only).
    pub cdrom: Option<DiskConfig>,
    /// `--boot`: the devices firmware tries, in order (empty: its own order).
    pub boot: Vec<BootDevice>,
    pub net: Option<NetConfig>,
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
            cpu: CpuModel::Host,
            devices: Vec::new(),
            strict_io: false,
            disk: None,
            cdrom: None,
            boot: Vec::new(),
            net: None,
        }
    }
}

/// A device `--boot` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootDevice {
    /// The IDE disk (`--disk`).
    Disk,
    /// The CD-ROM drive (`--cdrom`).
    Cdrom,
}

impl BootDevice {
    /// The device's path as SeaBIOS matches it in fw_cfg's `bootorder` (OpenFirmware style:
    /// the PIIX3 IDE function at 00:01.1, then channel and position).
    pub fn firmware_path(self) -> &'static str {
        match self {
            BootDevice::Disk => "/pci@i0cf8/*@1,1/drive@0/disk@0",
            BootDevice::Cdrom => "/pci@i0cf8/*@1,1/drive@1/disk@0",
        }
    }
}

/// Parses `--boot cdrom,disk` (QEMU's letters `c` and `d` also work).
pub fn parse_boot(spec: &str) -> Result<Vec<BootDevice>> {
    let mut order = Vec::new();
    for part in spec.split(',') {
        let d = match part {
            "disk" | "c" => BootDevice::Disk,
            "cdrom" | "d" => BootDevice::Cdrom,
            other => {
                return Err(VmmError::Config(format!(
                    "--boot: unknown device '{other}' (expected disk or cdrom, comma-separated)"
                )))
            }
        };
        if order.contains(&d) {
            return Err(VmmError::Config(format!("--boot: '{part}' is named twice")));
        }
        order.push(d);
    }
    Ok(order)
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

/// An on/off option value.
fn switch(option: &str, key: &str, v: &str) -> Result<bool> {
    match v {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(VmmError::Config(format!(
            "{option}: {key}='{v}' is not on or off"
        ))),
    }
}

/// `--disk path=FILE[,readonly=on]`
pub fn parse_disk(spec: &str) -> Result<DiskConfig> {
    let mut path = None;
    let mut read_only = false;
    let mut locking = true;
    for (k, v) in options("--disk", spec, "path", &["path", "readonly", "locking"])? {
        match k {
            "readonly" => read_only = switch("--disk", k, v)?,
            "locking" => locking = switch("--disk", k, v)?,
            _ => path = Some(PathBuf::from(v)),
        }
    }
    let path = path
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| VmmError::Config("--disk: no path given (use --disk path=FILE)".into()))?;
    Ok(DiskConfig {
        path,
        read_only,
        locking,
    })
}

/// Parses `--cdrom path=FILE[,locking=off]`: the image is read-only (and locked shared).
pub fn parse_cdrom(spec: &str) -> Result<DiskConfig> {
    let mut path = None;
    let mut locking = true;
    for (k, v) in options("--cdrom", spec, "path", &["path", "locking"])? {
        match k {
            "locking" => locking = switch("--cdrom", k, v)?,
            _ => path = Some(PathBuf::from(v)),
        }
    }
    let path = path
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| VmmError::Config("--cdrom: no path given (use --cdrom path=FILE)".into()))?;
    Ok(DiskConfig {
        path,
        read_only: true,
        locking,
    })
}

/// Parses a MAC address like `52:54:00:12:34:56`; it must be a unicast address.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(&parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    (mac[0] & 1 == 0).then_some(mac)
}

/// `--net tap=NAME[,mac=52:54:00:12:34:56]`
pub fn parse_net(spec: &str) -> Result<NetConfig> {
    let mut tap = None;
    let mut mac = DEFAULT_MAC;
    for (k, v) in options("--net", spec, "tap", &["tap", "mac"])? {
        match k {
            "mac" => {
                mac = parse_mac(v).ok_or_else(|| {
                    VmmError::Config(format!(
                        "--net: mac='{v}' is not a unicast MAC address like 52:54:00:12:34:56"
                    ))
                })?
            }
            _ => tap = Some(v.to_string()),
        }
    }
    let tap = tap.filter(|t| !t.is_empty()).ok_or_else(|| {
        VmmError::Config("--net: no TAP interface given (use --net tap=NAME)".into())
    })?;
    if !janus_devices::tap::valid_name(&tap) {
        return Err(VmmError::Config(format!(
            "--net: tap='{tap}' is not an interface name (1 to 15 letters, digits, '-', '_' or '.')"
        )));
    }
    Ok(NetConfig { tap, mac })
}

impl VmConfig {
    /// Checks what can be checked before building anything.
    pub fn validate(&self) -> Result<()> {
        if !self.boot.is_empty() && !matches!(self.kernel, KernelSource::Firmware(_)) {
            return Err(VmmError::Config(
                "--boot: the boot order is the firmware's; it does not apply to a kernel Janus loads itself".into(),
            ));
        }
        for d in &self.boot {
            let (given, name) = match d {
                BootDevice::Disk => (self.disk.is_some(), "disk"),
                BootDevice::Cdrom => (self.cdrom.is_some(), "cdrom"),
            };
            if !given {
                return Err(VmmError::Config(format!(
                    "--boot: {name} is in the boot order but there is no --{name}"
                )));
            }
        }
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
    fn boot_orders() {
        assert_eq!(
            parse_boot("cdrom,disk").unwrap(),
            vec![BootDevice::Cdrom, BootDevice::Disk]
        );
        assert_eq!(parse_boot("c").unwrap(), vec![BootDevice::Disk]);
        assert!(parse_boot("disk,disk").is_err());
        assert!(parse_boot("net").is_err());
        assert!(parse_boot("").is_err());
        assert_eq!(
            BootDevice::Cdrom.firmware_path(),
            "/pci@i0cf8/*@1,1/drive@1/disk@0"
        );
    }

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
        assert_eq!(
            parse_device("debug-exit,iobase=0xf4,iosize=4").unwrap(),
            DeviceConfig::DebugExit {
                iobase: 0xf4,
                iosize: 4
            }
        );
        assert_eq!(
            parse_device("debug-exit").unwrap(),
            DeviceConfig::DebugExit {
                iobase: 0x501,
                iosize: 1
            }
        );
        assert!(parse_device("debug-exit,iosize=3").is_err());
        assert!(parse_device("sound-card").is_err());
        let e = parse_cpus("boot=4").unwrap_err().to_string();
        assert!(e.contains("1 vCPU"), "{e}");
    }

    #[test]
    fn disk_option() {
        let d = parse_disk("path=/tmp/x.img").unwrap();
        assert_eq!(d.path, PathBuf::from("/tmp/x.img"));
        assert!(!d.read_only);
        assert_eq!(parse_disk("/tmp/y").unwrap().path, PathBuf::from("/tmp/y"));
        assert!(parse_disk("path=/tmp/x,readonly=on").unwrap().read_only);
        assert!(!parse_disk("/tmp/x,readonly=off").unwrap().read_only);
        assert!(parse_disk("path=").is_err());
        assert!(parse_disk("readonly=on").is_err());
        let e = parse_disk("/x,readonly=maybe").unwrap_err().to_string();
        assert!(e.contains("not on or off"), "{e}");
    }

    #[test]
    fn net_option() {
        let n = parse_net("tap=tap0").unwrap();
        assert_eq!((n.tap.as_str(), n.mac), ("tap0", DEFAULT_MAC));
        let n = parse_net("tap1,mac=02:00:00:aa:bb:cc").unwrap();
        assert_eq!(n.mac, [2, 0, 0, 0xaa, 0xbb, 0xcc]);
        for bad in [
            "",
            "mac=02:00:00:00:00:01",
            "tap=a/b",
            "tap=t,mac=01:00:00:00:00:00",
            "tap=t,mac=02:00:00:00:00",
            "tap=t,mac=zz:00:00:00:00:00",
            "tap=t,mtu=9000",
        ] {
            assert!(parse_net(bad).is_err(), "{bad}");
        }
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
