//! The PIIX IDE controller's whole register space under arbitrary accesses: the legacy task
//! file and control ports of both channels, the bus-master BAR (wherever the guest moved it),
//! the PCI configuration space, and guest memory for PRD tables and buffers.
//!
//! Checked: nothing panics; DMA writes are reported only inside guest RAM; the disk image
//! never grows.

#![no_main]

use janus_devices::bus::{lock, shared, Bus};
use janus_devices::disk::DiskImage;
use janus_devices::ide::PiixIde;
use janus_devices::pci::PciBus;
use janus_engine::{DmaObserver, GuestMemory, IrqLine};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress};

const RAM: u64 = 1 << 20;
const DISK_BYTES: usize = 64 * 512;
/// Every legacy port of both channels, and the PCI configuration ports.
const PORTS: [u16; 20] = [
    0x1f0, 0x1f1, 0x1f2, 0x1f3, 0x1f4, 0x1f5, 0x1f6, 0x1f7, 0x3f6, 0x170, 0x171, 0x172, 0x173,
    0x174, 0x175, 0x176, 0x177, 0x376, 0xcf8, 0xcfc,
];

struct Bounds;

impl DmaObserver for Bounds {
    fn dma_written(&self, gpa: u64, len: u64) {
        assert!(gpa.checked_add(len).is_some_and(|end| end <= RAM), "DMA write outside RAM: {gpa:#x}+{len:#x}");
    }
}

struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _high: bool) -> janus_engine::Result<()> {
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

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn size(&mut self) -> usize {
        [1, 2, 4][self.byte() as usize % 3]
    }
}

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
    let disk = Arc::new(DiskImage::from_bytes(vec![0x5a; DISK_BYTES], "fuzz"));
    let irq: Arc<dyn IrqLine> = Arc::new(NoIrq);
    let ide = shared(PiixIde::new(
        mem.clone(),
        Arc::new(Bounds),
        [Some(irq.clone()), Some(irq)],
        [[Some(disk.clone()), None], [None, Some(disk.clone())]],
    ));
    let mut bus = Bus::new();
    let pci = shared(PciBus::new());
    PciBus::map(&pci, &mut bus).unwrap();
    PiixIde::install(&ide, &mut bus, &mut lock(&pci)).unwrap();

    let mut input = Input(data);
    while !input.0.is_empty() {
        match input.byte() % 7 {
            0 => {
                let port = PORTS[input.byte() as usize % PORTS.len()];
                let size = input.size();
                let v = input.u32().to_le_bytes();
                bus.pio_write(port, &v[..size]);
            }
            1 => {
                let port = PORTS[input.byte() as usize % PORTS.len()];
                let mut d = [0u8; 4];
                let size = input.size();
                bus.pio_read(port, &mut d[..size]);
            }
            // Any port: the bus-master BAR wherever it is now, or nothing.
            2 => {
                let port = input.u16();
                let size = input.size();
                let v = input.u32().to_le_bytes();
                bus.pio_write(port, &v[..size]);
            }
            3 => {
                let port = input.u16();
                let mut d = [0u8; 4];
                let size = input.size();
                bus.pio_read(port, &mut d[..size]);
            }
            // A configuration write to 00:01.1.
            4 => {
                let reg = input.byte() & 0xfc;
                bus.pio_write(0xcf8, &(0x8000_0900u32 | reg as u32).to_le_bytes());
                let size = input.size();
                let v = input.u32().to_le_bytes();
                bus.pio_write(0xcfc, &v[..size]);
            }
            // Guest memory: PRD tables and buffers, mostly near the start.
            5 => {
                let at = (input.u16() as u64) << (input.byte() % 5);
                let v = input.u32();
                let _ = mem.write_obj(v, GuestAddress(at));
            }
            // A burst on a data port, to get through transfers.
            _ => {
                let port = if input.byte() & 1 == 0 { 0x1f0 } else { 0x170 };
                let words = input.byte() as usize * 4;
                let write = input.byte() & 1 == 1;
                let mut d = [0u8; 2];
                for _ in 0..words {
                    if write {
                        bus.pio_write(port, &d);
                    } else {
                        bus.pio_read(port, &mut d);
                    }
                }
            }
        }
    }
    assert_eq!(disk.size(), DISK_BYTES as u64);
    let _ = lock(&ide).stats();
});
