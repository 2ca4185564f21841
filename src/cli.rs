//! Command-line syntax (Cloud Hypervisor's where it applies).

use clap::{Parser, Subcommand, ValueEnum};
use janus_vmm::{CpuModel, EngineChoice, Mode};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "janus",
    version,
    about = "Run guests fully virtualized or para-virtualized, on hardware assist or in software, and measure the difference"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Boot a guest (the embedded demo guest unless --kernel is given).
    Run(RunArgs),
    /// Run the embedded guest fully virtualized and para-virtualized and compare them.
    Demo(DemoArgs),
    /// Time the embedded guest on Janus's engines and on QEMU (TCG) in the same run.
    Bench(BenchArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum EngineArg {
    /// kvm where the host has hardware assist (kvm_intel/kvm_amd), otherwise soft.
    Auto,
    /// Hardware-assisted virtualization through /dev/kvm.
    Kvm,
    /// Janus's own x86-64 CPU in software.
    Soft,
}

impl From<EngineArg> for EngineChoice {
    fn from(e: EngineArg) -> EngineChoice {
        match e {
            EngineArg::Auto => EngineChoice::Auto,
            EngineArg::Kvm => EngineChoice::Kvm,
            EngineArg::Soft => EngineChoice::Soft,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ModeArg {
    /// Full virtualization: the guest is unmodified and sees a plain PC.
    Full,
    /// Para-virtualization: the guest sees Janus and uses hypercalls and the PV clock.
    Para,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Full => Mode::Full,
            ModeArg::Para => Mode::Para,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum CpuArg {
    Host,
    V1,
    V2,
    V3,
}

impl From<CpuArg> for CpuModel {
    fn from(c: CpuArg) -> CpuModel {
        match c {
            CpuArg::Host => CpuModel::Host,
            CpuArg::V1 => CpuModel::V1,
            CpuArg::V2 => CpuModel::V2,
            CpuArg::V3 => CpuModel::V3,
        }
    }
}

/// What `janus run` does when the guest panics (pvpanic, para mode).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnPanic {
    /// Report it and exit (status 4).
    Exit,
    /// Report it and keep the VM stopped until Ctrl-A x or a signal (then status 4).
    Pause,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// CPU engine.
    #[arg(long, value_enum, default_value = "auto")]
    pub engine: EngineArg,
    /// What the guest is shown.
    #[arg(long, value_enum, default_value = "full")]
    pub mode: ModeArg,
    /// Guest kernel: a Linux bzImage, or an x86-64 ELF (a vmlinux with a PVH note, or a 64-bit
    /// entry point). Default: the embedded demo guest.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk (needs the Linux boot protocol).
    #[arg(long)]
    pub initramfs: Option<PathBuf>,
    /// Firmware: seabios (Debian's SeaBIOS image, started from the reset vector; it boots
    /// from the disk), a BIOS image's path, or none (Janus loads --kernel, or the demo guest,
    /// itself). Default: seabios with a --disk and no --kernel, else none.
    #[arg(long)]
    pub firmware: Option<String>,
    /// Kernel command line.
    #[arg(long, default_value = "")]
    pub cmdline: String,
    /// Guest RAM, as size=512M.
    #[arg(long, default_value = "size=512M")]
    pub memory: String,
    /// vCPUs, as boot=1.
    #[arg(long, default_value = "boot=1")]
    pub cpus: String,
    /// CPU model the guest sees: an x86-64 level (v1: SSE2 baseline; v2: adds SSE3, SSSE3,
    /// SSE4.1, SSE4.2; v3: adds AVX, AVX2, BMI1, BMI2, FMA, F16C, LZCNT, MOVBE, XSAVE; soft
    /// engine), or host (soft: the highest level the host runs; kvm: what KVM supports).
    #[arg(long, value_enum, default_value = "host")]
    pub cpu: CpuArg,
    /// Disk image, as path=FILE[,readonly=on] (virtio-blk in para mode).
    #[arg(long)]
    pub disk: Option<String>,
    /// CD-ROM image (ISO 9660), as path=FILE[,locking=off]: an ATAPI drive on the secondary
    /// IDE channel, read-only.
    #[arg(long)]
    pub cdrom: Option<String>,
    /// Boot order for the firmware, as cdrom,disk (default: the firmware's own).
    #[arg(long)]
    pub boot: Option<String>,
    /// Host TAP interface, as tap=NAME[,mac=52:54:00:12:34:56] (virtio-net in para mode).
    #[arg(long)]
    pub net: Option<String>,
    /// Extra devices: debug-exit[,iobase=0x501][,iosize=1] (QEMU's isa-debug-exit: a write of
    /// V ends the run with status (V << 1) | 1). Repeatable.
    #[arg(long = "device")]
    pub devices: Vec<String>,
    /// Stop the VM with a report when the guest touches a port or MMIO address where no device
    /// is mapped (by default such reads return all ones and writes are dropped, as on a PC).
    #[arg(long)]
    pub strict_io: bool,
    /// When the guest reports a panic (pvpanic, para mode): exit, or pause until Ctrl-A x or
    /// a signal.
    #[arg(long, value_enum, default_value = "exit")]
    pub on_panic: OnPanic,
}

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// CPU engine.
    #[arg(long, value_enum, default_value = "auto")]
    pub engine: EngineArg,
    /// Print the results as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Iterations of the compute loop.
    #[arg(long, default_value_t = janus_abi_default_compute())]
    pub compute: u64,
    /// Iterations of the two-instruction loop (guest MIPS).
    #[arg(long = "loop", default_value_t = janus_vmm::demo::DemoOptions::default().loop_iters)]
    pub loop_iters: u64,
    /// Disk image the block part reads, as path=FILE (default: a built-in test image).
    #[arg(long)]
    pub disk: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Janus engines to time (repeat for several).
    #[arg(long = "engine", value_enum, default_values_t = [EngineArg::Soft])]
    pub engines: Vec<EngineArg>,
    /// Iterations of the compute loop.
    #[arg(long, default_value_t = 2_000_000)]
    pub compute: u64,
    /// Iterations of the two-instruction loop.
    #[arg(long = "loop", default_value_t = 20_000_000)]
    pub loop_iters: u64,
    /// QEMU binary to compare with.
    #[arg(long, default_value = "qemu-system-x86_64")]
    pub qemu: std::path::PathBuf,
    /// Benchmark a Linux guest instead of the demo guest: boot to init and
    /// `dd if=/dev/zero bs=1M count=64 | sha256sum`, on the soft engine and on QEMU.
    #[arg(long, requires = "initramfs")]
    pub kernel: Option<std::path::PathBuf>,
    /// The initramfs for --kernel (scripts/guest-assets.sh builds one whose /init runs the
    /// workload).
    #[arg(long, requires = "kernel")]
    pub initramfs: Option<std::path::PathBuf>,
    /// With --kernel: time I/O instead, by each technique (IDE PIO, IDE DMA and e1000 in full
    /// mode; virtio-blk and virtio-net in para mode; the same on QEMU): the guest reads
    /// its whole disk and pings the host over a TAP interface (the network part needs root).
    #[arg(long, requires = "kernel")]
    pub io: bool,
    /// With --kernel: run the benchmark suite instead (scripts/guest-assets.sh builds its
    /// programs): one boot per machine runs every workload, on Janus's soft engine, on QEMU TCG,
    /// and natively on the host; checksums must agree.
    #[arg(long, requires = "kernel", conflicts_with = "io")]
    pub suite: bool,
    /// With --suite: the workload sizes (quick: small, for tests; full: issue 10's sizes).
    #[arg(long, value_enum, default_value = "full", requires = "suite")]
    pub scale: ScaleArg,
    /// With --suite: the CPU model Janus's soft engine presents (as `janus run --cpu`; QEMU
    /// keeps its default CPU).
    #[arg(long, value_enum, default_value = "host", requires = "suite")]
    pub cpu: CpuArg,
    /// With --suite: rounds of Janus, QEMU and native runs one after the other; each figure is
    /// the median over the rounds, and each round's geometric mean is reported.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50), requires = "suite")]
    pub rounds: u32,
    /// With --suite: run only these workloads (comma-separated; the boot is always timed).
    #[arg(long, value_delimiter = ',', requires = "suite")]
    pub only: Vec<String>,
    /// With --suite: also write a bar chart of the ratios as SVG to this file.
    #[arg(long, requires = "suite")]
    pub svg: Option<std::path::PathBuf>,
    /// With --suite: the host's copies of the guest's bench programs (jb, jb32, busybox).
    /// Default: bench/ beside the initramfs.
    #[arg(long, requires = "suite")]
    pub bench_dir: Option<std::path::PathBuf>,
    /// Size of the disk image --io reads, in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub disk_mib: u64,
    /// Guest memory for --kernel, as for `janus run` (size=512M).
    #[arg(long, default_value = "size=512M")]
    pub memory: String,
    /// Print the results as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ScaleArg {
    /// Small sizes: seconds on an emulator.
    Quick,
    /// The sizes issue 10 names.
    Full,
}

impl From<ScaleArg> for janus_vmm::bench_suite::Scale {
    fn from(s: ScaleArg) -> Self {
        match s {
            ScaleArg::Quick => Self::Quick,
            ScaleArg::Full => Self::Full,
        }
    }
}

fn janus_abi_default_compute() -> u64 {
    janus_vmm::demo::DemoOptions::default().compute_iters
}

/// Turns a clap error into one line (usage and tips dropped).
pub fn one_line(err: &clap::Error) -> String {
    let text = err.render().to_string();
    text.lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(" ")
}
