//! The PC platform every VM gets, under arbitrary port and MMIO accesses: the 8259 PICs, the
//! I/O APIC and local APIC (with their interrupt lines really wired, so a device raising one
//! drives the chips), the 8254 PIT and port 0x61, the CMOS RTC, the 16550A UART, the i8042,
//! the ACPI PM block, the POST port, the reset ports, and the PCI configuration mechanism.
//! Between accesses the input may also take an interrupt (INTA), tick the timers, or move the
//! clock forward.
//!
//! Checked: nothing panics or hangs, whatever the guest writes.

#![no_main]

use janus_abi::pc;
use janus_devices::acpi_pm::{self, AcpiPm};
use janus_devices::bus::{shared, Bus};
use janus_devices::cmos_rtc::{self, CmosRtc};
use janus_devices::control::VmControl;
use janus_devices::i8042::{self, I8042};
use janus_devices::irqchip::PcIrqChip;
use janus_devices::legacy::{ResetControl, SystemControlA};
use janus_devices::pci::PciBus;
use janus_devices::pit8254::{self, Pit8254};
use janus_devices::post::PostCode;
use janus_devices::timer::Wakeup;
use janus_devices::uart16550::{ConsoleOut, Uart16550};
use janus_engine::{InterruptController, IrqLine, IrqRouter};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Ports worth aiming at (an arbitrary port is also possible).
const PORTS: [u16; 24] = [
    0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x70, 0x71, 0x3f8,
    0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x60, 0x64, 0x600, 0xcf8, 0xcfc,
];
/// The I/O APIC and local APIC pages.
const MMIO: [u64; 2] = [0xfec0_0000, 0xfee0_0000];

/// An interrupt line wired to the chip, as the soft engine wires devices.
struct Line {
    chip: Arc<PcIrqChip>,
    gsi: u32,
}

impl IrqLine for Line {
    fn set_level(&self, high: bool) -> janus_engine::Result<()> {
        self.chip.set_level(self.gsi, high);
        Ok(())
    }
}

/// Reads input bytes, giving zeros once they run out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
}

/// The platform, as `Machine::build` puts it together for the soft engine.
fn platform(now: &Arc<AtomicU64>) -> (Bus, Arc<PcIrqChip>) {
    let clock = |now: &Arc<AtomicU64>| {
        let now = now.clone();
        Box::new(move || now.load(Ordering::Relaxed)) as pit8254::MonoClock
    };
    let chip = PcIrqChip::new(clock(now));
    let line = |gsi| -> Arc<dyn IrqLine> {
        Arc::new(Line {
            chip: chip.clone(),
            gsi,
        })
    };
    let mut bus = Bus::new();
    chip.map(&mut bus).unwrap();
    let control = Arc::new(VmControl::new());
    let wakeup = Arc::new(Wakeup::new());
    let uart = Uart16550::new(Some(line(pc::COM1_IRQ)), ConsoleOut::new(Box::new(std::io::sink())));
    bus.insert_pio(pc::COM1, 8, "uart16550", Arc::new(Mutex::new(uart)))
        .unwrap();
    let kbd = shared(I8042::new(control.clone(), Some(line(pc::I8042_KBD_IRQ))));
    bus.insert_pio_at(pc::I8042_DATA, 1, 0, "i8042", kbd.clone()).unwrap();
    bus.insert_pio_at(pc::I8042_COMMAND, 1, i8042::COMMAND_OFFSET, "i8042", kbd)
        .unwrap();
    let mut rtc = CmosRtc::new(cmos_rtc::host_wall_clock(), 512 << 20, 0);
    rtc.connect(line(8), wakeup.clone(), clock(now));
    bus.insert_pio(pc::CMOS_INDEX, 2, "cmos_rtc", shared(rtc)).unwrap();
    let pm = AcpiPm::new(control.clone(), clock(now));
    bus.insert_pio(pc::PM1A_EVT_BLK, acpi_pm::LEN, "acpi_pm", shared(pm))
        .unwrap();
    bus.insert_pio(pc::POST_CODE, 1, "post", shared(PostCode::new()))
        .unwrap();
    let mut pit = Pit8254::new(clock(now));
    pit.connect(line(pc::PIT_IRQ), wakeup);
    let pit = shared(pit);
    bus.insert_pio(pc::PIT_BASE, pit8254::LEN, "pit8254", pit.clone())
        .unwrap();
    bus.insert_pio_at(pc::SYSTEM_CONTROL_B, 1, pit8254::PORT61_OFFSET, "pit8254", pit)
        .unwrap();
    let pci = shared(PciBus::new());
    PciBus::map(&pci, &mut bus).unwrap();
    bus.insert_pio(0xcf9, 1, "reset_control", shared(ResetControl::new(control.clone())))
        .unwrap();
    bus.insert_pio(0x92, 1, "system_control_a", shared(SystemControlA::new(control)))
        .unwrap();
    (bus, chip)
}

fuzz_target!(|data: &[u8]| {
    let now = Arc::new(AtomicU64::new(0));
    let (bus, chip) = platform(&now);
    let mut input = Input(data);
    while !input.0.is_empty() {
        let op = input.byte();
        let size = [1usize, 2, 4, 4][(op >> 4) as usize & 3];
        let target = input.byte();
        let port = if target < 0xe0 {
            PORTS[target as usize % PORTS.len()]
        } else {
            input.u32() as u16
        };
        let mut buf = [0u8; 4];
        match op & 0x0f {
            0..=3 => {
                let _ = bus.pio_read(port, &mut buf[..size]);
            }
            4..=7 => {
                buf = input.u32().to_le_bytes();
                let _ = bus.pio_write(port, &buf[..size]);
            }
            8 => {
                let addr = MMIO[target as usize & 1] + (input.byte() as u64 & 0xff) * 4;
                let _ = bus.mmio_read(addr, &mut buf[..4]);
            }
            9 => {
                let addr = MMIO[target as usize & 1] + (input.byte() as u64 & 0xff) * 4;
                buf = input.u32().to_le_bytes();
                let _ = bus.mmio_write(addr, &buf[..4]);
            }
            10 => {
                // The CPU takes an interrupt, as the soft engine does at an instruction boundary.
                if chip.has_interrupt() {
                    let _ = chip.acknowledge();
                }
            }
            11 => chip.set_level(input.byte() as u32 % 24, input.byte() & 1 != 0),
            12 => {
                now.fetch_add((input.u32() as u64) << 8, Ordering::Relaxed);
                chip.tick();
            }
            _ => {}
        }
    }
});
