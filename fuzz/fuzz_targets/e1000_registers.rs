//! The e1000's whole register space under arbitrary accesses: the memory BAR (wherever the
//! guest moved it; mostly the registers that matter), the I/O BAR's IOADDR/IODATA window, the
//! PCI configuration space, guest memory for rings and buffers, and frames arriving from the
//! wire.
//!
//! Checked: nothing panics; DMA writes are reported only inside guest RAM.

#![no_main]

use janus_devices::bus::{lock, shared, Bus};
use janus_devices::e1000::regs;
use janus_devices::e1000::E1000;
use janus_devices::pci::PciBus;
use janus_devices::tap::Backend;
use janus_engine::{DmaObserver, GuestMemory, IrqLine};
use libfuzzer_sys::fuzz_target;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use vm_memory::{Bytes, GuestAddress};

const RAM: u64 = 1 << 20;
const MMIO: u64 = 0xfebc_0000;
const IO: u16 = 0xc040;
/// Registers worth hitting often: control, interrupts, rings, EEPROM and PHY.
const REGS: [u32; 20] = [
    regs::CTRL, regs::STATUS, regs::EECD, regs::EERD, regs::MDIC, regs::ICR, regs::ICS,
    regs::IMS, regs::IMC, regs::RCTL, regs::TCTL, regs::RDBAL, regs::RDLEN, regs::RDH,
    regs::RDT, regs::TDBAL, regs::TDLEN, regs::TDH, regs::TDT, regs::VET,
];

struct Bounds;

impl DmaObserver for Bounds {
    fn dma_written(&self, gpa: u64, len: u64) {
        assert!(
            gpa.checked_add(len).is_some_and(|end| end <= RAM),
            "DMA write outside RAM: {gpa:#x}+{len:#x}"
        );
    }
}

struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _high: bool) -> janus_engine::Result<()> {
        Ok(())
    }
}

/// A wire that takes every frame and never has one waiting.
struct Sink;

impl Backend for Sink {
    fn name(&self) -> &str {
        "sink"
    }
    fn read_frame(&self, _buf: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
    fn write_frame(&self, _frame: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn fd(&self) -> RawFd {
        -1
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

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn size(&mut self) -> usize {
        [1, 2, 4, 8][self.byte() as usize % 4]
    }
}

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
    let nic = E1000::new(
        mem.clone(),
        Arc::new(Bounds),
        Arc::new(NoIrq),
        Arc::new(Sink),
        [0x52, 0x54, 0, 0x12, 0x34, 0x56],
    )
    .unwrap();
    let nic = Arc::new(Mutex::new(nic));
    let mut bus = Bus::new();
    let pci = shared(PciBus::new());
    PciBus::map(&pci, &mut bus).unwrap();
    E1000::install(&nic, &mut lock(&pci));
    // Bus mastering on, as the driver leaves it.
    bus.pio_write(0xcf8, &0x8000_1804u32.to_le_bytes());
    bus.pio_write(0xcfc, &7u32.to_le_bytes());

    let mut input = Input(data);
    while !input.0.is_empty() {
        match input.byte() % 8 {
            0 => {
                let reg = REGS[input.byte() as usize % REGS.len()] as u64;
                let v = input.u32().to_le_bytes();
                bus.mmio_write(MMIO + reg, &v);
            }
            1 => {
                let reg = REGS[input.byte() as usize % REGS.len()] as u64;
                let mut d = [0u8; 4];
                bus.mmio_read(MMIO + reg, &mut d);
            }
            // Anywhere in the BAR (or past it), any size.
            2 => {
                let at = MMIO + (input.u32() as u64 % 0x2_0100);
                let size = input.size();
                let v = (input.u32() as u64 | (input.u32() as u64) << 32).to_le_bytes();
                bus.mmio_write(at, &v[..size]);
            }
            3 => {
                let at = MMIO + (input.u32() as u64 % 0x2_0100);
                let size = input.size();
                let mut d = [0u8; 8];
                bus.mmio_read(at, &mut d[..size]);
            }
            // The I/O window.
            4 => {
                let port = IO + (input.byte() % 10) as u16;
                let size = input.size().min(4);
                let v = input.u32().to_le_bytes();
                if input.byte() & 1 == 0 {
                    bus.pio_write(port, &v[..size]);
                } else {
                    let mut d = [0u8; 4];
                    bus.pio_read(port, &mut d[..size]);
                }
            }
            // A configuration write to 00:03.0.
            5 => {
                let reg = input.byte() & 0xfc;
                bus.pio_write(0xcf8, &(0x8000_1800u32 | reg as u32).to_le_bytes());
                let size = input.size().min(4);
                let v = input.u32().to_le_bytes();
                bus.pio_write(0xcfc, &v[..size]);
            }
            // Guest memory: rings and buffers, mostly near the start.
            6 => {
                let at = (input.u16() as u64) << (input.byte() % 5);
                let v = input.u32() as u64 | (input.u32() as u64) << 32;
                let _ = mem.write_obj(v, GuestAddress(at));
            }
            // A frame from the wire.
            _ => {
                let len = input.u16() as usize % 2000;
                let mut frame = vec![0xffu8; len];
                for b in frame.iter_mut().skip(6).take(8) {
                    *b = input.byte();
                }
                lock(&nic).receive_frame(&frame);
            }
        }
    }
    let _ = lock(&nic).stats();
});
