//! Building a VM: guest memory, the engine's VM and vCPU, the guest image, and the devices.

use crate::config::{KernelSource, Mode, VmConfig};
use crate::engine::{self, Selection};
use crate::policy::{DiskAttachment, ModePolicy, NetAttachment};
use crate::stdin::ConsoleInput;
use crate::timers::{TimedDevice, Timers};
use crate::virtio::{Backends, VirtioDevices};
use crate::{firmware, memory, Result, VmmError};
use janus_abi::{hypercall, pc};
use janus_devices::acpi_pm::{self, AcpiPm};
use janus_devices::bus::{lock, shared};
use janus_devices::cmos_rtc::{self, CmosRtc};
use janus_devices::disk::DiskImage;
use janus_devices::e1000::{self, E1000Stats, E1000};
use janus_devices::fw_cfg::{self, FwCfg};
use janus_devices::hypercall::Doorbell;
use janus_devices::i8042::{self, I8042};
use janus_devices::ide::{piix, IdeStats, PiixIde};
use janus_devices::irqchip::PcIrqChip;
use janus_devices::kvmclock::{KvmClock, KvmClockStats};
use janus_devices::legacy::{Absent, ResetControl, SystemControlA};
use janus_devices::pci::{self, PciBus};
use janus_devices::pit8254::{self, Pit8254};
use janus_devices::post::PostCode;
use janus_devices::pvclock::PvClock;
use janus_devices::pvpanic::{self, PvPanic};
use janus_devices::tap::RxThread;
use janus_devices::tap::Tap;
use janus_devices::timer::Wakeup;
use janus_devices::uart16550::{ConsoleOut, Uart16550};
use janus_devices::{Bus, VmControl};
use janus_engine::{EngineKind, GuestMemory, Vcpu, Vm};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RTC_IRQ: u32 = 8;
const RESET_CONTROL: u16 = 0xcf9;
const SYSTEM_CONTROL_A: u16 = 0x92;

/// A VM ready to run.
pub struct Machine {
    pub selection: Selection,
    pub mode: Mode,
    /// The CPU model the guest sees, in words (`x86-64-v2`).
    pub cpu_model: String,
    /// Things the user should know about this VM (printed by the CLI).
    pub notes: Vec<String>,
    pub(crate) vcpu: Box<dyn Vcpu>,
    pub(crate) bus: Bus,
    pub(crate) control: Arc<VmControl>,
    pub(crate) doorbell: Option<Arc<Mutex<Doorbell>>>,
    uart: Arc<Mutex<Uart16550>>,
    ide: Arc<Mutex<PiixIde>>,
    /// The network card of full mode (`--net`), and its receive thread.
    nic: Option<(Arc<Mutex<E1000>>, RxThread)>,
    /// Janus's kvmclock (para mode on the soft engine).
    kvmclock: Option<Arc<KvmClock>>,
    /// The soft engine's interrupt controllers.
    chip: Option<Arc<PcIrqChip>>,
    /// The para-virtual devices (para mode).
    virtio: Option<VirtioDevices>,
    /// The `--disk` image, flushed when the VM stops.
    disk: Option<Arc<DiskImage>>,
    /// Host input goes to the virtio console (the guest's console is hvc0).
    stdin_to_virtio: bool,
    /// Unmapped accesses stop the VM instead of reading all ones (`--strict-io`).
    pub(crate) strict_io: bool,
    // Kept alive for the vCPU and devices; the timer threads stop when dropped.
    _timers: Timers,
    _apic_timer: Option<ApicTimer>,
    _vm: Box<dyn Vm>,
    _memory: GuestMemory,
}

/// Runs the local APIC timer of the software interrupt controllers while the guest is busy
/// (when it halts, the vCPU's wait serves it).
struct ApicTimer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApicTimer {
    fn spawn(chip: Arc<PcIrqChip>) -> std::io::Result<ApicTimer> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("apic-timer".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    chip.run_timer(Duration::from_millis(100));
                }
            })?;
        Ok(ApicTimer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ApicTimer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Legacy ports a PC operating system probes where this platform has no device (they read as
/// an empty ISA bus), named in the report. Anything else unmapped is open bus too, counted as
/// such, or stops the VM with `--strict-io`.
const ABSENT: &[(u16, u16, &str)] = &[
    (0x2f8, 8, "com2 (absent)"),
    (0x3e8, 8, "com3 (absent)"),
    (0x2e8, 8, "com4 (absent)"),
    (0x378, 3, "lpt1 (absent)"),
    (0x278, 3, "lpt2 (absent)"),
    (0x3f0, 6, "floppy (absent)"),
    (0x3f7, 1, "floppy (absent)"),
    (0x3b0, 0x10, "mda and lpt3 (absent)"),
    (0x3c0, 0x20, "vga (absent)"),
    (0x2e, 2, "super i/o config (absent)"),
    (0x4e, 2, "super i/o config (absent)"),
    (0x00, 0x10, "dma1 (absent)"),
    (0x81, 0x0f, "dma page registers (absent)"),
    (0xc0, 0x20, "dma2 (absent)"),
];

/// How a guest image is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BootKind {
    /// Linux: a bzImage through the boot protocol, or a vmlinux through its PVH note, with
    /// ACPI tables and an e820 map.
    Linux,
    /// Janus's direct 64-bit ELF entry (the embedded demo guest and other plain ELFs).
    Elf,
    /// A Multiboot v1 kernel (an ELF or a.out-kludge image with a Multiboot header), with the
    /// initramfs as its module.
    Multiboot,
    /// A firmware image (SeaBIOS): mapped below 4 GiB, run from the reset vector.
    Firmware,
}

/// Reads a file the guest is loaded from, checking first that it is a regular file no larger
/// than the guest's RAM (`limit`): a device, a FIFO or a huge sparse file is refused before
/// anything is read, and a file that grows meanwhile is not read past the limit.
fn read_bounded(path: &std::path::Path, what: &str, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let io = |e: std::io::Error| format!("cannot read {what} {}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| VmmError::Config(io(e)))?;
    if !meta.is_file() {
        return Err(VmmError::Config(format!(
            "{what} {} is not a regular file",
            path.display()
        )));
    }
    if meta.len() > limit {
        return Err(VmmError::Config(format!(
            "{what} {} is {} bytes, more than the guest's {} bytes of RAM",
            path.display(),
            meta.len(),
            limit
        )));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut data))
        .map_err(|e| VmmError::Config(io(e)))?;
    if data.len() as u64 > limit {
        return Err(VmmError::Config(format!(
            "{what} {} grew past the guest's {limit} bytes of RAM while it was read",
            path.display()
        )));
    }
    Ok(data)
}

fn read_kernel(source: &KernelSource, limit: u64) -> Result<(Cow<'static, [u8]>, BootKind)> {
    match source {
        KernelSource::EmbeddedDemo => Ok((Cow::Borrowed(janus_guests::DEMO_ELF), BootKind::Elf)),
        KernelSource::Firmware(path) => {
            if path.as_os_str() == crate::config::SEABIOS && !path.exists() {
                return Err(VmmError::Config(format!(
                    "SeaBIOS is not installed ({}, Debian package seabios); a disk or CD without --kernel boots through it (--firmware none runs the demo guest)",
                    crate::config::SEABIOS
                )));
            }
            let image = read_bounded(path, "firmware", firmware::MAX_SIZE)?;
            firmware::check(&image, path)?;
            Ok((Cow::Owned(image), BootKind::Firmware))
        }
        KernelSource::File(path) => {
            let image = read_bounded(path, "kernel", limit)?;
            let linux =
                image.get(0x202..0x206) == Some(b"HdrS") || janus_boot::elf::has_pvh_note(&image);
            let kind = if linux {
                BootKind::Linux
            } else if janus_boot::multiboot::find_header(&image).is_some() {
                BootKind::Multiboot
            } else {
                BootKind::Elf
            };
            Ok((Cow::Owned(image), kind))
        }
    }
}

fn read_initramfs(path: &std::path::Path, limit: u64) -> Result<Vec<u8>> {
    read_bounded(path, "initramfs", limit)
}

impl Machine {
    /// Builds the VM `config` describes, with console output going to `console`.
    pub fn build(config: &VmConfig, console: ConsoleOut) -> Result<Machine> {
        config.validate()?;
        // The disk first: its errors are the user's whatever boots from it.
        let disk = match &config.disk {
            Some(d) => Some(Arc::new(DiskImage::open_with(
                &d.path,
                d.read_only,
                d.locking,
            )?)),
            None => None,
        };
        let cdrom = match &config.cdrom {
            Some(d) => Some(Arc::new(DiskImage::open_with(&d.path, true, d.locking)?)),
            None => None,
        };
        let (image, boot) = read_kernel(&config.kernel, config.memory_bytes)?;
        let initramfs = match &config.initramfs {
            Some(_) if boot == BootKind::Firmware => {
                return Err(VmmError::Config(
                    "--initramfs: firmware boots what it finds on the disks; an initramfs needs --kernel".into(),
                ))
            }
            Some(_) if boot == BootKind::Elf => {
                return Err(VmmError::Config(
                    "--initramfs: the kernel is neither Linux (no bzImage header or PVH note) nor Multiboot, so it cannot take an initramfs".into(),
                ))
            }
            Some(p) => Some(read_initramfs(p, config.memory_bytes)?),
            None => None,
        };
        // The same TAP interface in both modes, so a bad --net fails alike in both.
        let tap = match &config.net {
            Some(n) => Some((Arc::new(Tap::open(&n.tap)?), n.mac)),
            None => None,
        };
        let selection = engine::select(config.engine)?;
        let cpu_model = engine::cpu_model(selection.kind, config.cpu)?;
        let policy = ModePolicy::new(config.mode);
        let para = policy.para_devices(selection.kind);
        let mut notes = Vec::new();
        let (virtio_tap, nic_tap) = match policy.net_attachment() {
            NetAttachment::VirtioNet => (tap, None),
            NetAttachment::E1000 => (None, tap),
        };
        let virtio = para.virtio.then(|| Backends {
            disk: disk.clone(),
            net: virtio_tap,
        });
        let rom_len = (boot == BootKind::Firmware).then_some(image.len() as u64);
        let mem = memory::create(config.memory_bytes, rom_len)?;
        // The ACPI tables: written to memory for a kernel Janus loads, handed to the
        // firmware through fw_cfg otherwise.
        let mut acpi = janus_boot::acpi::AcpiConfig::new(config.vcpus);
        acpi.ioapic_id = pc::IOAPIC_ID;
        acpi.dsdt_aml = janus_boot::acpi::pci_host_bridge_aml(&pci_routes());
        if let Some(v) = &virtio {
            let devices = janus_boot::acpi::virtio_mmio_aml(&v.acpi());
            acpi.dsdt_aml.extend_from_slice(&devices);
        }
        if para.pvpanic {
            let pvpanic = janus_boot::acpi::pvpanic_aml(pvpanic::PORT);
            acpi.dsdt_aml.extend_from_slice(&pvpanic);
        }
        let entry = match boot {
            BootKind::Firmware => firmware::load(&mem, &image)?,
            BootKind::Elf => janus_boot::load_elf_guest(&mem, &image, &config.cmdline)?,
            BootKind::Linux | BootKind::Multiboot => {
                if boot == BootKind::Multiboot {
                    let mb = janus_boot::multiboot::MultibootBoot {
                        kernel: &image,
                        cmdline: &config.cmdline,
                        module: initramfs.as_deref(),
                        acpi: &acpi,
                    };
                    janus_boot::multiboot::load_multiboot(&mem, &mb)?
                } else {
                    let linux = janus_boot::linux::LinuxBoot {
                        kernel: &image,
                        initramfs: initramfs.as_deref(),
                        cmdline: &config.cmdline,
                        acpi: &acpi,
                    };
                    janus_boot::linux::load_linux(&mem, &linux)?
                }
            }
        };

        let start = Instant::now();
        let mono = move || pit8254::host_mono_clock(start);
        // On the soft engine Janus emulates the interrupt controllers itself.
        let chip = (selection.kind == EngineKind::Soft).then(|| PcIrqChip::new(mono()));
        let mut vm = engine::create_vm(selection.kind, config.cpu, &mem, chip.clone())?;
        let cpuid = policy.cpuid(vm.kind(), &vm.supported_cpuid()?, 0);
        let mut vcpu = vm.create_vcpu(0, &cpuid, &entry)?;
        let kvmclock = if para.kvm_msrs {
            // What KVM does in the kernel on the kvm engine: kvmclock and PV EOI.
            let pvclock = PvClock::new(vcpu.clock(), start);
            let clock = Arc::new(KvmClock::new(mem.clone(), pvclock, vm.dma_observer()));
            vcpu.set_msr_handler(clock.clone())?;
            if let Some(chip) = &chip {
                chip.enable_pv_eoi(mem.clone(), vm.dma_observer());
            }
            Some(clock)
        } else {
            None
        };

        let control = Arc::new(VmControl::new());
        if let Some(kick) = vcpu.kick_flag() {
            control.set_kick(kick);
        }
        let mut bus = Bus::new();
        let wakeup = Arc::new(Wakeup::new());
        let mut timed: Vec<TimedDevice> = Vec::new();
        if let Some(chip) = &chip {
            chip.map(&mut bus)?;
        }
        let uart = Arc::new(Mutex::new(Uart16550::new(
            Some(vm.irq_line(pc::COM1_IRQ)?),
            console.clone(),
        )));
        bus.insert_pio(pc::COM1, 8, "uart16550", uart.clone())?;
        let kbd = shared(I8042::new(
            control.clone(),
            Some(vm.irq_line(pc::I8042_KBD_IRQ)?),
        ));
        bus.insert_pio_at(pc::I8042_DATA, 1, 0, "i8042", kbd.clone())?;
        bus.insert_pio_at(pc::I8042_COMMAND, 1, i8042::COMMAND_OFFSET, "i8042", kbd)?;
        let (below_4g, above_4g) = split_ram(config.memory_bytes);
        let mut rtc = CmosRtc::new(cmos_rtc::host_wall_clock(), below_4g, above_4g);
        rtc.connect(vm.irq_line(RTC_IRQ)?, wakeup.clone(), mono());
        let rtc = shared(rtc);
        timed.push(rtc.clone());
        bus.insert_pio(pc::CMOS_INDEX, 2, "cmos_rtc", rtc)?;
        let pm = AcpiPm::new(control.clone(), mono());
        bus.insert_pio(pc::PM1A_EVT_BLK, acpi_pm::LEN, "acpi_pm", shared(pm))?;
        bus.insert_pio(pc::POST_CODE, 1, "post", shared(PostCode::new()))?;
        let fw_cfg = FwCfg::new(
            &firmware::fw_cfg_items(config, &memory::ram_regions(config.memory_bytes), &acpi)?,
            Some(fw_cfg::Dma {
                mem: mem.clone(),
                observer: vm.dma_observer(),
            }),
        );
        bus.insert_pio(fw_cfg::PORT, fw_cfg::LEN, "fw_cfg", shared(fw_cfg))?;
        for d in &config.devices {
            match *d {
                crate::config::DeviceConfig::DebugExit { iobase, iosize } => {
                    let dev = shared(janus_devices::debug_exit::DebugExit::new(control.clone()));
                    bus.insert_pio(iobase, iosize as u16, "debug-exit", dev)?;
                }
            }
        }
        if para.pvpanic {
            let d = shared(PvPanic::new(control.clone()));
            bus.insert_pio(pvpanic::PORT, 1, "pvpanic", d)?;
        }
        if !vm.in_kernel_devices().pit {
            let mut pit = Pit8254::new(mono());
            pit.connect(vm.irq_line(pc::PIT_IRQ)?, wakeup.clone());
            let pit = shared(pit);
            timed.push(pit.clone());
            bus.insert_pio(pc::PIT_BASE, pit8254::LEN, "pit8254", pit.clone())?;
            let port61 = pit8254::PORT61_OFFSET;
            bus.insert_pio_at(pc::SYSTEM_CONTROL_B, 1, port61, "pit8254", pit)?;
        }
        let pci = shared(PciBus::new());
        PciBus::map(&pci, &mut bus)?;
        // The PIIX3 at 00:01: the ISA bridge, and the IDE controller every PC has, with the
        // disk on it where the mode policy says so.
        // The demo guest reads its block part from the disk in both modes: without --disk it
        // gets the built-in test image there too (Linux guests get no disk they were not given).
        let ide_disk = disk
            .clone()
            .or_else(|| {
                (config.kernel == KernelSource::EmbeddedDemo)
                    .then(|| Arc::new(DiskImage::test_image()))
            })
            .filter(|_| policy.disk_attachment() == DiskAttachment::Ide);
        // Only a disk the user gave: the built-in test image is read-only by design.
        if let Some(d) = disk
            .as_ref()
            .filter(|d| d.read_only() && ide_disk.is_some())
        {
            notes.push(format!(
                "disk {} is read-only here: the guest's writes to it will fail",
                d.name()
            ));
        }
        let ide = shared(PiixIde::new(
            mem.clone(),
            vm.dma_observer(),
            [
                Some(vm.irq_line(piix::PRIMARY.irq)?),
                Some(vm.irq_line(piix::SECONDARY.irq)?),
            ],
            [[ide_disk, None], [None, None]],
        ));
        if let Some(iso) = cdrom {
            // The secondary channel's master, where QEMU's PC puts its CD-ROM drive.
            lock(&ide).attach_cdrom(1, 0, janus_devices::ide::atapi::Cdrom::new(iso));
        }
        PiixIde::install(&ide, &mut bus, &mut lock(&pci))?;
        let nic = nic_tap
            .map(|(tap, mac)| attach_e1000(tap, mac, &*vm, &mem, &mut lock(&pci)))
            .transpose()?;
        let reset = shared(ResetControl::new(control.clone()));
        bus.insert_pio(RESET_CONTROL, 1, "reset_control", reset)?;
        let port92 = shared(SystemControlA::new(control.clone()));
        bus.insert_pio(SYSTEM_CONTROL_A, 1, "system_control_a", port92)?;
        for &(base, len, name) in ABSENT {
            bus.insert_pio(base, len, name, shared(Absent))?;
        }

        let virtio = virtio
            .map(|b| VirtioDevices::build(b, console.clone(), &*vm, &mem, &mut bus))
            .transpose()?;
        let doorbell = if para.doorbell {
            let disk = disk
                .clone()
                .filter(|_| policy.disk_attachment() == DiskAttachment::Paravirtual);
            let disk = Some(disk.unwrap_or_else(|| Arc::new(DiskImage::test_image())));
            let pvclock = PvClock::new(vcpu.clock(), start);
            let d = Arc::new(Mutex::new(Doorbell::new(
                mem.clone(),
                console,
                disk,
                pvclock,
                control.clone(),
            )));
            bus.insert_pio(
                hypercall::DOORBELL_BASE,
                hypercall::CALL_COUNT,
                "hypercall",
                d.clone(),
            )?;
            Some(d)
        } else {
            None
        };
        let host_err = |e| VmmError::Config(format!("cannot start a timer thread: {e}"));
        let timers = Timers::spawn(timed, Box::new(mono()), wakeup).map_err(host_err)?;
        let apic_timer = chip
            .clone()
            .map(ApicTimer::spawn)
            .transpose()
            .map_err(host_err)?;
        Ok(Machine {
            selection,
            mode: config.mode,
            cpu_model,
            notes,
            vcpu,
            bus,
            control,
            doorbell,
            uart,
            ide,
            nic,
            kvmclock,
            chip,
            virtio,
            disk: disk.clone(),
            stdin_to_virtio: console_is_hvc(&config.cmdline),
            strict_io: config.strict_io,
            _timers: timers,
            _apic_timer: apic_timer,
            _vm: vm,
            _memory: mem,
        })
    }

    /// The UART, for feeding it host input.
    pub fn uart(&self) -> Arc<Mutex<Uart16550>> {
        self.uart.clone()
    }

    /// Where host input goes: the device behind the guest's /dev/console, as its kernel
    /// command line names it last (`console=hvc0` is the virtio console; otherwise the UART).
    pub fn console_input(&self) -> ConsoleInput {
        match &self.virtio {
            Some(v) if self.stdin_to_virtio => ConsoleInput::Virtio(v.console()),
            _ => ConsoleInput::Uart(self.uart.clone()),
        }
    }

    /// What the para-virtual devices did, one line each (para mode).
    pub fn para_report(&self) -> Vec<String> {
        let mut lines = self.virtio.as_ref().map_or_else(Vec::new, |v| v.report());
        if let Some((clock, pv_eois)) = self.kvm_pv_stats() {
            lines.push(format!(
                "kvmclock: {} clock page writes, {} wall clock reads, {} bad addresses; PV EOI: {pv_eois} EOIs without a trap",
                clock.page_writes, clock.wall_clock_writes, clock.bad_addresses
            ));
        }
        lines
    }

    /// Where stop requests go (devices, the console escape).
    /// After a guest panic with `--on-panic pause`: the VM stays stopped until the user asks
    /// (Ctrl-A x or a signal); returns that request.
    pub fn wait_while_paused(&self) -> janus_devices::control::StopRequest {
        self.control.clear();
        loop {
            if let Some(r) = self.control.take() {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Puts what the guest wrote to its disk on stable storage (however the VM stopped).
    pub fn flush_disks(&self) -> std::io::Result<()> {
        match &self.disk {
            Some(d) => d.flush(),
            None => Ok(()),
        }
    }

    pub fn control(&self) -> Arc<VmControl> {
        self.control.clone()
    }

    /// What the IDE controller did.
    pub fn ide_stats(&self) -> IdeStats {
        lock(&self.ide).stats()
    }

    /// What the e1000 did (full mode with `--net`).
    pub fn e1000_stats(&self) -> Option<E1000Stats> {
        self.nic.as_ref().map(|(n, _)| lock(n).stats())
    }

    /// What the guest did with the para-virtual interfaces Janus implements itself (para mode
    /// on the soft engine): kvmclock, and the EOIs done through PV EOI.
    pub fn kvm_pv_stats(&self) -> Option<(KvmClockStats, u64)> {
        let clock = self.kvmclock.as_ref()?.stats();
        Some((clock, self.chip.as_ref().map_or(0, |c| c.pv_eois())))
    }

    /// Doorbell counters (para mode only).
    pub fn hypercall_stats(&self) -> Option<janus_devices::hypercall::HypercallStats> {
        self.doorbell
            .as_ref()
            .map(|d| d.lock().unwrap_or_else(|p| p.into_inner()).stats())
    }
}

/// The ACPI `_PRT`: every slot's INTx pins, as the PCI bus wires them.
fn pci_routes() -> Vec<janus_boot::acpi::PciRoute> {
    pci::intx_routes()
        .into_iter()
        .map(|(slot, pin, gsi)| janus_boot::acpi::PciRoute { slot, pin, gsi })
        .collect()
}

/// Puts the e1000 on `tap` at 00:03.0, interrupting on its INTA# line, and starts its receive
/// thread.
fn attach_e1000(
    tap: Arc<Tap>,
    mac: [u8; 6],
    vm: &dyn Vm,
    mem: &GuestMemory,
    pci: &mut PciBus,
) -> Result<(Arc<Mutex<E1000>>, RxThread)> {
    let irq = vm.irq_line(pci::intx_gsi(e1000::SLOT, 0))?;
    let nic = E1000::new(mem.clone(), vm.dma_observer(), irq, tap, mac)
        .map_err(|e| VmmError::Config(format!("--net: cannot create an event file: {e}")))?;
    let nic = Arc::new(Mutex::new(nic));
    E1000::install(&nic, pci);
    let rx = e1000::receive_thread(nic.clone())
        .map_err(|e| VmmError::Config(format!("--net: cannot start the receive thread: {e}")))?;
    Ok((nic, rx))
}

/// The guest's last `console=` names the virtio console (hvc0), as Linux picks /dev/console.
fn console_is_hvc(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix("console="))
        .is_some_and(|c| c.starts_with("hvc"))
}

fn split_ram(size: u64) -> (u64, u64) {
    let regions = memory::ram_regions(size);
    let below = regions.first().map_or(0, |r| r.1);
    (below, size - below)
}
