//! Building a VM: guest memory, the engine's VM and vCPU, the guest image, and the devices.

use crate::config::{KernelSource, Mode, VmConfig};
use crate::engine::{self, Selection};
use crate::policy::ModePolicy;
use crate::{memory, Result, VmmError};
use janus_abi::{hypercall, pc};
use janus_devices::acpi_pm::{self, AcpiPm};
use janus_devices::bus::shared;
use janus_devices::cmos_rtc::{self, CmosRtc};
use janus_devices::disk::DiskImage;
use janus_devices::hypercall::Doorbell;
use janus_devices::i8042::{self, I8042};
use janus_devices::pit8254::{self, Pit8254};
use janus_devices::post::PostCode;
use janus_devices::pvclock::PvClock;
use janus_devices::uart16550::{ConsoleOut, Uart16550};
use janus_devices::{Bus, VmControl};
use janus_engine::{GuestMemory, Vcpu, Vm};
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A VM ready to run.
pub struct Machine {
    pub selection: Selection,
    pub mode: Mode,
    /// Things the user should know about this VM (printed by the CLI).
    pub notes: Vec<String>,
    pub(crate) vcpu: Box<dyn Vcpu>,
    pub(crate) bus: Bus,
    pub(crate) control: Arc<VmControl>,
    pub(crate) doorbell: Option<Arc<Mutex<Doorbell>>>,
    uart: Arc<Mutex<Uart16550>>,
    // Kept alive for the vCPU and devices.
    _vm: Box<dyn Vm>,
    _memory: GuestMemory,
}

fn read_kernel(source: &KernelSource) -> Result<Cow<'static, [u8]>> {
    match source {
        KernelSource::EmbeddedDemo => Ok(Cow::Borrowed(janus_guests::DEMO_ELF)),
        KernelSource::File(path) => {
            let image = std::fs::read(path).map_err(|source| VmmError::KernelRead {
                path: path.clone(),
                source,
            })?;
            if image.get(0x202..0x206) == Some(b"HdrS") {
                return Err(VmmError::Config(format!(
                    "kernel {}: a Linux bzImage, which needs the Linux boot protocol; Janus boots only x86-64 ELF guests so far",
                    path.display()
                )));
            }
            Ok(Cow::Owned(image))
        }
    }
}

impl Machine {
    /// Builds the VM `config` describes, with console output going to `console`.
    pub fn build(config: &VmConfig, console: ConsoleOut) -> Result<Machine> {
        config.validate()?;
        if config.initramfs.is_some() {
            return Err(VmmError::Config(
                "--initramfs: loading an initramfs needs the Linux boot protocol, which Janus does not have yet".into(),
            ));
        }
        let image = read_kernel(&config.kernel)?;
        let disk = match &config.disk {
            Some(path) => Some(Arc::new(DiskImage::open(path)?)),
            None => None,
        };
        let selection = engine::select(config.engine)?;
        let mem = memory::create(config.memory_bytes)?;
        let entry = janus_boot::load_elf_guest(&mem, &image, &config.cmdline)?;

        let mut vm = engine::create_vm(selection.kind, &mem)?;
        let policy = ModePolicy::new(config.mode);
        let cpuid = policy.cpuid(vm.kind(), &vm.supported_cpuid()?, 0);
        let vcpu = vm.create_vcpu(0, &cpuid, &entry)?;
        let start = Instant::now();

        let control = Arc::new(VmControl::new());
        let mut bus = Bus::new();
        let mut notes = Vec::new();
        let uart = Arc::new(Mutex::new(Uart16550::new(
            Some(vm.irq_line(pc::COM1_IRQ)?),
            console.clone(),
        )));
        bus.insert_pio(pc::COM1, 8, "uart16550", uart.clone())?;
        let kbd = shared(I8042::new(control.clone()));
        bus.insert_pio_at(pc::I8042_DATA, 1, 0, "i8042", kbd.clone())?;
        bus.insert_pio_at(pc::I8042_COMMAND, 1, i8042::COMMAND_OFFSET, "i8042", kbd)?;
        let (below_4g, above_4g) = split_ram(config.memory_bytes);
        let rtc = CmosRtc::new(cmos_rtc::host_wall_clock(), below_4g, above_4g);
        bus.insert_pio(pc::CMOS_INDEX, 2, "cmos_rtc", shared(rtc))?;
        let pm = AcpiPm::new(control.clone(), pit8254::host_mono_clock(start));
        bus.insert_pio(pc::PM1A_EVT_BLK, acpi_pm::LEN, "acpi_pm", shared(pm))?;
        bus.insert_pio(pc::POST_CODE, 1, "post", shared(PostCode::new()))?;
        if !vm.in_kernel_devices().pit {
            let pit = shared(Pit8254::new(pit8254::host_mono_clock(start)));
            bus.insert_pio(pc::PIT_BASE, pit8254::LEN, "pit8254", pit.clone())?;
            bus.insert_pio_at(
                pc::SYSTEM_CONTROL_B,
                1,
                pit8254::PORT61_OFFSET,
                "pit8254",
                pit,
            )?;
        }

        let doorbell = if policy.para_devices().doorbell {
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
            if let Some(d) = &disk {
                notes.push(format!(
                    "disk {} is not attached: full mode has no disk controller yet (the emulated IDE disk comes later)",
                    d.name()
                ));
            }
            None
        };
        Ok(Machine {
            selection,
            mode: config.mode,
            notes,
            vcpu,
            bus,
            control,
            doorbell,
            uart,
            _vm: vm,
            _memory: mem,
        })
    }

    /// The UART, for feeding it host input.
    pub fn uart(&self) -> Arc<Mutex<Uart16550>> {
        self.uart.clone()
    }

    /// Where stop requests go (devices, the console escape).
    pub fn control(&self) -> Arc<VmControl> {
        self.control.clone()
    }

    /// Doorbell counters (para mode only).
    pub fn hypercall_stats(&self) -> Option<janus_devices::hypercall::HypercallStats> {
        self.doorbell
            .as_ref()
            .map(|d| d.lock().unwrap_or_else(|p| p.into_inner()).stats())
    }
}

fn split_ram(size: u64) -> (u64, u64) {
    let regions = memory::ram_regions(size);
    let below = regions.first().map_or(0, |r| r.1);
    (below, size - below)
}
