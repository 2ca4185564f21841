//! The controller driven through its ports as a guest drives it: legacy ports on the device
//! bus, the bus-master BAR through the PCI bus, guest memory for the PRD tables.

use super::ata::{error, op, status};
use super::bmdma::{CMD_START, CMD_TO_MEMORY, ST_ACTIVE, ST_ERROR, ST_INTERRUPT};
use super::piix::{Drives, BMDMA_DEFAULT_BASE as BM};
use super::*;
use crate::bus::{lock, shared};
use crate::disk::DiskImage;
use crate::pci::{PciBus, COMMAND_BUS_MASTER, COMMAND_IO};
use crate::test_support::{Line, Written};
use crate::Bus;
use janus_engine::GuestMemory;
use std::sync::{Arc, Mutex};
use vm_memory::{Bytes, GuestAddress};

const CMD: u16 = 0x1f0;
const CTL: u16 = 0x3f6;
const PRD: u64 = 0x1000;
const BUF: u64 = 0x10000;

/// The pattern the test images hold: every byte depends on its position.
fn pattern(at: usize) -> u8 {
    (at as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8
}

struct Rig {
    bus: Bus,
    ide: Arc<Mutex<PiixIde>>,
    disk: Arc<DiskImage>,
    mem: GuestMemory,
    irq: Arc<Line>,
    dma: Arc<Written>,
}

fn rig_with(disk: Arc<DiskImage>) -> Rig {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
    let irq = Arc::new(Line::default());
    let dma = Arc::new(Written::default());
    let drives: Drives = [[Some(disk.clone()), None], [None, None]];
    let ide = shared(PiixIde::new(
        mem.clone(),
        dma.clone(),
        [Some(irq.clone()), None],
        drives,
    ));
    let mut bus = Bus::new();
    let pci = shared(PciBus::new());
    PciBus::map(&pci, &mut bus).unwrap();
    PiixIde::install(&ide, &mut bus, &mut lock(&pci)).unwrap();
    Rig {
        bus,
        ide,
        disk,
        mem,
        irq,
        dma,
    }
}

fn rig(sectors: usize) -> Rig {
    let data: Vec<u8> = (0..sectors * 512).map(pattern).collect();
    rig_with(Arc::new(DiskImage::from_bytes(data, "test")))
}

impl Rig {
    fn outb(&self, port: u16, v: u8) {
        assert_ne!(self.bus.pio_write(port, &[v]), crate::bus::Access::Unmapped);
    }

    fn inb(&self, port: u16) -> u8 {
        let mut d = [0u8];
        assert_ne!(
            self.bus.pio_read(port, &mut d),
            crate::bus::Access::Unmapped
        );
        d[0]
    }

    fn inw(&self, port: u16) -> u16 {
        let mut d = [0u8; 2];
        self.bus.pio_read(port, &mut d);
        u16::from_le_bytes(d)
    }

    fn outl(&self, port: u16, v: u32) {
        self.bus.pio_write(port, &v.to_le_bytes());
    }

    fn config_write(&self, offset: u8, v: u32) {
        self.outl(0xcf8, 0x8000_0900 | offset as u32);
        self.outl(0xcfc, v);
    }

    fn config_read(&self, offset: u8) -> u32 {
        self.outl(0xcf8, 0x8000_0900 | offset as u32);
        let mut d = [0u8; 4];
        self.bus.pio_read(0xcfc, &mut d);
        u32::from_le_bytes(d)
    }

    /// Loads the task file for an LBA28 command on device 0.
    fn lba28(&self, lba: u32, count: u8) {
        self.outb(CMD + 2, count);
        self.outb(CMD + 3, lba as u8);
        self.outb(CMD + 4, (lba >> 8) as u8);
        self.outb(CMD + 5, (lba >> 16) as u8);
        self.outb(CMD + 6, 0xe0 | ((lba >> 24) as u8 & 0xf));
    }

    /// Loads the task file for an LBA48 command on device 0: high order bytes first.
    fn lba48(&self, lba: u64, count: u16) {
        self.outb(CMD + 2, (count >> 8) as u8);
        self.outb(CMD + 3, (lba >> 24) as u8);
        self.outb(CMD + 4, (lba >> 32) as u8);
        self.outb(CMD + 5, (lba >> 40) as u8);
        self.outb(CMD + 2, count as u8);
        self.outb(CMD + 3, lba as u8);
        self.outb(CMD + 4, (lba >> 8) as u8);
        self.outb(CMD + 5, (lba >> 16) as u8);
        self.outb(CMD + 6, 0x40);
    }

    /// Reads a PIO data-in block of `words` words.
    fn read_block(&self, words: usize) -> Vec<u8> {
        (0..words)
            .flat_map(|_| self.inw(CMD).to_le_bytes())
            .collect()
    }

    fn write_block(&self, data: &[u8]) {
        for w in data.chunks(2) {
            self.bus.pio_write(CMD, w);
        }
    }

    /// Rising edges on the interrupt line so far.
    fn interrupts(&self) -> usize {
        let levels = self.irq.0.lock().unwrap();
        levels.iter().filter(|&&l| l).count()
    }

    fn status(&self) -> u8 {
        self.inb(CMD + 7)
    }

    fn image(&self, at: usize, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.disk.read_at(at as u64, &mut v).unwrap();
        v
    }

    fn stats(&self) -> IdeStats {
        lock(&self.ide).stats()
    }

    /// Writes a PRD table of (address, bytes, last) entries at [`PRD`] and points the primary
    /// bus master at it.
    fn prd(&self, entries: &[(u32, u32, bool)]) {
        for (i, &(addr, len, last)) in entries.iter().enumerate() {
            let at = GuestAddress(PRD + 8 * i as u64);
            self.mem.write_obj(addr, at).unwrap();
            let count = (len & 0xffff) | if last { 1 << 31 } else { 0 };
            self.mem.write_obj(count, GuestAddress(at.0 + 4)).unwrap();
        }
        self.outl(BM + 4, PRD as u32);
    }

    fn enable_bus_master(&self) {
        self.config_write(4, (COMMAND_IO | COMMAND_BUS_MASTER) as u32);
    }
}

#[test]
fn identify_over_pio() {
    let r = rig(1000);
    assert_eq!(r.status(), status::READY);
    r.outb(CMD + 6, 0xa0);
    r.outb(CMD + 7, op::IDENTIFY_DEVICE);
    assert_eq!(r.interrupts(), 1);
    assert_eq!(r.inb(CTL), status::READY | status::DRQ, "alternate status");
    assert_eq!(r.status(), status::READY | status::DRQ);
    assert_eq!(
        *r.irq.0.lock().unwrap(),
        vec![true, false],
        "status read acks"
    );
    let id = r.read_block(256);
    assert_eq!(&id[54..68], b"AJUN SAHDRIDKS");
    assert_eq!(u16::from_le_bytes([id[120], id[121]]), 1000, "sectors");
    assert_eq!(r.status(), status::READY, "no DRQ after the block");
    assert_eq!(r.inw(CMD), 0xffff, "nothing more to read");
    let s = r.stats();
    assert_eq!((s.commands, s.pio_bytes, s.data_exits), (1, 512, 257));
}

#[test]
fn absent_devices_read_zero_and_take_no_commands() {
    let r = rig(100);
    r.outb(CMD + 6, 0xb0); // device 1
    r.outb(CMD + 2, 0x55);
    assert_eq!(r.inb(CMD + 2), 0, "no device 1 to answer");
    assert_eq!(r.status(), 0);
    r.outb(CMD + 7, op::IDENTIFY_DEVICE);
    assert_eq!(r.interrupts(), 0);
    r.outb(CMD + 6, 0xa0);
    assert_eq!(r.inb(CMD + 2), 0x55, "device 0 has the value written");
    // The secondary channel is empty.
    r.outb(0x176, 0xa0);
    r.outb(0x172, 0xaa);
    assert_eq!(r.inb(0x172), 0);
    assert_eq!(r.inb(0x177), 0);
    assert_eq!(r.stats().commands, 0);
}

#[test]
fn read_sectors_interrupts_per_sector() {
    let r = rig(100);
    r.lba28(10, 3);
    r.outb(CMD + 7, op::READ_SECTORS);
    let mut got = Vec::new();
    for n in 1..=3 {
        assert_eq!(r.interrupts(), n);
        assert_eq!(r.status(), status::READY | status::DRQ);
        got.extend(r.read_block(256));
    }
    assert_eq!(r.status(), status::READY);
    assert_eq!(r.interrupts(), 3);
    assert_eq!(got, r.image(10 * 512, 3 * 512));
    assert_eq!(r.inb(CMD + 3), 12, "LBA of the last sector");
}

#[test]
fn read_multiple_ext_moves_blocks_of_sixteen() {
    let r = rig(100);
    r.lba48(50, 20);
    r.outb(CMD + 7, op::READ_MULTIPLE_EXT);
    assert_eq!(r.status(), status::READY | status::DRQ);
    let mut got = r.read_block(16 * 256);
    assert_eq!(r.interrupts(), 2, "the second block is offered");
    assert_eq!(r.status(), status::READY | status::DRQ);
    got.extend(r.read_block(4 * 256));
    assert_eq!(r.status(), status::READY);
    assert_eq!(got, r.image(50 * 512, 20 * 512));
}

#[test]
fn write_sectors_ext_and_write_multiple() {
    let r = rig(100);
    let data: Vec<u8> = (0..3 * 512).map(|i| (i % 251) as u8).collect();
    r.lba48(7, 3);
    r.outb(CMD + 7, op::WRITE_SECTORS_EXT);
    assert_eq!(
        r.inb(CTL),
        status::READY | status::DRQ,
        "first block asked for"
    );
    assert_eq!(r.interrupts(), 0, "without an interrupt");
    for (n, sector) in data.chunks(512).enumerate() {
        r.write_block(sector);
        assert_eq!(r.interrupts(), n + 1);
        // The driver acknowledges each interrupt by reading the status.
        let want = if n < 2 {
            status::READY | status::DRQ
        } else {
            status::READY
        };
        assert_eq!(r.status(), want);
    }
    assert_eq!(r.image(7 * 512, 3 * 512), data);
    assert_eq!(
        r.image(6 * 512, 512),
        (3072..3584).map(pattern).collect::<Vec<_>>()
    );

    r.lba28(40, 17);
    r.outb(CMD + 7, op::WRITE_MULTIPLE);
    let block: Vec<u8> = vec![0x5a; 17 * 512];
    r.write_block(&block[..16 * 512]);
    assert_eq!(r.status(), status::READY | status::DRQ, "one more block");
    r.write_block(&block[16 * 512..]);
    assert_eq!(r.status(), status::READY);
    assert_eq!(r.image(40 * 512, 17 * 512), block);
    assert_eq!(r.stats().pio_bytes, 20 * 512);
}

#[test]
fn addresses_beyond_the_disk_end_with_idnf() {
    let r = rig(100);
    r.lba28(99, 2);
    r.outb(CMD + 7, op::READ_SECTORS);
    assert_eq!(r.status(), status::READY | status::ERR);
    assert_eq!(r.inb(CMD + 1), error::IDNF);
    assert_eq!(r.interrupts(), 1);
    r.lba48(1 << 40, 1);
    r.outb(CMD + 7, op::WRITE_DMA_EXT);
    assert_eq!(r.inb(CMD + 1), error::IDNF);
    // CHS sector 0 does not exist.
    r.outb(CMD + 3, 0);
    r.outb(CMD + 6, 0xa0);
    r.outb(CMD + 7, op::READ_VERIFY);
    assert_eq!(r.inb(CMD + 1), error::IDNF);
    assert_eq!(r.stats().errors, 3);
}

#[test]
fn unsupported_commands_and_parameters_abort() {
    let r = rig(100);
    for opcode in [op::NOP, op::IDENTIFY_PACKET_DEVICE, 0xb0, 0xff] {
        r.outb(CMD + 7, opcode);
        assert_eq!(r.status(), status::READY | status::ERR, "{opcode:#x}");
        assert_eq!(r.inb(CMD + 1), error::ABRT);
    }
    r.outb(CMD + 1, 0x03);
    r.outb(CMD + 2, 0x47); // UDMA 7
    r.outb(CMD + 7, op::SET_FEATURES);
    assert_eq!(r.inb(CMD + 1), error::ABRT);
    r.outb(CMD + 2, 0x22); // MWDMA 2
    r.outb(CMD + 7, op::SET_FEATURES);
    assert_eq!(r.status(), status::READY);
    assert_eq!(r.inb(CMD + 1), 0);
    // READ MULTIPLE with multiple mode off.
    r.outb(CMD + 2, 0);
    r.outb(CMD + 7, op::SET_MULTIPLE_MODE);
    assert_eq!(r.status(), status::READY);
    r.lba28(0, 1);
    r.outb(CMD + 7, op::READ_MULTIPLE);
    assert_eq!(r.inb(CMD + 1), error::ABRT);
}

#[test]
fn commands_during_a_data_phase_are_ignored() {
    let r = rig(100);
    r.lba28(0, 2);
    r.outb(CMD + 7, op::READ_SECTORS);
    let first = r.read_block(100);
    r.outb(CMD + 7, op::IDENTIFY_DEVICE);
    let rest = r.read_block(156);
    assert_eq!([first, rest].concat(), r.image(0, 512), "the read went on");
    assert_eq!(r.stats().ignored_commands, 1);
    // Data written when no write is under way goes nowhere.
    r.read_block(256);
    r.write_block(&[1, 2, 3, 4]);
    assert_eq!(r.image(0, 4), (0..4).map(pattern).collect::<Vec<_>>());
}

#[test]
fn software_reset_aborts_and_restores_the_signature() {
    let r = rig(100);
    r.lba28(5, 4);
    r.outb(CMD + 7, op::READ_SECTORS);
    r.outb(CTL, 0x04 | 0x02);
    assert_eq!(r.inb(CTL), status::BSY);
    r.outb(CTL, 0x02);
    assert_eq!(r.status(), status::READY);
    assert_eq!(r.inb(CMD + 1), error::DIAGNOSTIC_PASSED);
    let sig: Vec<u8> = (2..=5).map(|p| r.inb(CMD + p)).collect();
    assert_eq!(sig, [1, 1, 0, 0], "ATA signature");
    assert_eq!(r.inw(CMD), 0xffff, "the transfer is gone");
    r.outb(CMD + 7, op::EXECUTE_DEVICE_DIAGNOSTIC);
    assert_eq!(r.inb(CMD + 1), error::DIAGNOSTIC_PASSED);
}

#[test]
fn nien_masks_the_line_and_hob_reads_back() {
    let r = rig(100);
    r.outb(CTL, 0x02);
    r.outb(CMD + 7, op::CHECK_POWER_MODE);
    assert_eq!(r.interrupts(), 0, "masked");
    assert_eq!(r.inb(CMD + 2), 0xff, "active");
    r.outb(CTL, 0x00);
    assert_eq!(r.interrupts(), 1, "pending INTRQ shows once unmasked");
    r.status();
    r.lba48(0x0a0b_0c0d_0e0f, 1);
    r.outb(CTL, 0x80);
    assert_eq!(r.inb(CMD + 3), 0x0c, "previous LBA low");
    r.outb(CTL, 0x00);
    assert_eq!(r.inb(CMD + 3), 0x0f);
    r.outb(CTL, 0x80);
    r.outb(CMD + 1, 0);
    assert_eq!(r.inb(CMD + 3), 0x0f, "a register write clears HOB");
}

#[test]
fn flush_and_write_protect() {
    let r = rig(10);
    r.outb(CMD + 7, op::FLUSH_CACHE_EXT);
    assert_eq!(r.status(), status::READY);
    assert_eq!(r.stats().flushes, 1);
    let ro = rig_with(Arc::new(DiskImage::test_image()));
    ro.lba28(0, 1);
    ro.outb(CMD + 7, op::WRITE_SECTORS);
    assert_eq!(ro.status(), status::READY | status::ERR);
    assert_eq!(ro.inb(CMD + 1), error::ABRT);
}

#[test]
fn read_errors_of_the_image_are_unc_at_the_failing_sector() {
    let dir = std::env::temp_dir().join(format!("janus-ide-unc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("img");
    std::fs::write(&path, vec![1u8; 64 * 512]).unwrap();
    let r = rig_with(Arc::new(DiskImage::open(&path).unwrap()));
    // The file shrinks behind the VMM's back.
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(20 * 512)
        .unwrap();
    r.lba28(18, 4);
    r.outb(CMD + 7, op::READ_SECTORS);
    r.read_block(256);
    r.read_block(256);
    assert_eq!(r.status(), status::READY | status::ERR);
    assert_eq!(r.inb(CMD + 1), error::UNC);
    assert_eq!(r.inb(CMD + 3), 20, "the failing sector");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn legacy_ports_follow_the_decode_enable_bits() {
    let r = rig(10);
    assert_eq!(r.config_read(0) & 0xffff_0000, 0x7010_0000);
    assert_eq!(r.config_read(8) >> 8, 0x01_0180);
    assert_eq!(r.config_read(0x20), BM as u32 | 1, "BAR 4");
    assert_eq!(r.config_read(0x40), 0x8000_8000, "IDETIM decode enabled");
    r.config_write(0x40, 0x8000_0000);
    assert_eq!(r.inb(CMD + 7), 0xff, "primary off");
    r.config_write(0x40, 0x0000_8000);
    assert_eq!(r.inb(CMD + 7), status::READY);
    r.config_write(4, 0);
    assert_eq!(r.inb(CMD + 7), 0xff, "I/O space off");
    assert!(
        r.bus.pio_read(BM + 2, &mut [0]) == crate::bus::Access::Unmapped,
        "the bus-master BAR is off too"
    );
}

#[test]
fn dma_read_with_the_bus_master_started_second() {
    let r = rig(600);
    r.enable_bus_master();
    r.prd(&[(BUF as u32, 0x1000, false), (0x30000, 0x0000, true)]);
    r.lba28(100, 136); // 68 KiB: 4 KiB, then a 64 KiB region (count 0)
    r.outb(BM, CMD_TO_MEMORY);
    r.outb(CMD + 7, op::READ_DMA);
    assert_eq!(
        r.inb(CTL),
        status::READY | status::DRQ,
        "waiting for the bus master"
    );
    assert_eq!(r.interrupts(), 0);
    r.outb(BM, CMD_TO_MEMORY | CMD_START);
    assert_eq!(r.interrupts(), 1);
    assert_eq!(r.inb(BM + 2) & 7, ST_INTERRUPT, "done, table used up");
    assert_eq!(r.status(), status::READY);
    let mut got = vec![0u8; 0x1000];
    r.mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
    assert_eq!(got, r.image(100 * 512, 0x1000));
    let mut got = vec![0u8; 0x10000];
    r.mem.read_slice(&mut got, GuestAddress(0x30000)).unwrap();
    assert_eq!(got, r.image(108 * 512, 0x10000));
    assert_eq!(
        *r.dma.0.lock().unwrap(),
        vec![(BUF, 0x1000), (0x30000, 0x10000)]
    );
    r.outb(BM + 2, ST_INTERRUPT);
    assert_eq!(r.inb(BM + 2) & 7, 0);
    let s = r.stats();
    assert_eq!((s.dma_bytes, s.dma_transfers), (136 * 512, 1));
}

#[test]
fn dma_write_ext_with_the_bus_master_started_first() {
    let r = rig(600);
    r.enable_bus_master();
    let data: Vec<u8> = (0..0x3000u32).map(|i| (i / 3) as u8).collect();
    r.mem.write_slice(&data, GuestAddress(BUF)).unwrap();
    r.prd(&[(BUF as u32, 0x3000, true)]);
    r.outb(BM, CMD_START);
    assert_eq!(r.inb(BM + 2) & ST_ACTIVE, ST_ACTIVE);
    r.lba48(300, 24);
    r.outb(CMD + 7, op::WRITE_DMA_EXT);
    assert_eq!(r.interrupts(), 1);
    assert_eq!(r.status(), status::READY);
    assert_eq!(r.inb(BM + 2) & 7, ST_INTERRUPT);
    assert_eq!(r.image(300 * 512, 0x3000), data);
    assert!(r.dma.0.lock().unwrap().is_empty(), "no memory written");
}

#[test]
fn a_longer_table_leaves_the_bus_master_active() {
    let r = rig(600);
    r.enable_bus_master();
    r.prd(&[(BUF as u32, 0x2000, true)]);
    r.lba28(0, 1);
    r.outb(CMD + 7, op::READ_DMA);
    r.outb(BM, CMD_TO_MEMORY | CMD_START);
    assert_eq!(r.inb(BM + 2) & 7, ST_INTERRUPT | ST_ACTIVE);
    assert_eq!(r.status(), status::READY);
    r.outb(BM, CMD_TO_MEMORY);
    assert_eq!(r.inb(BM + 2) & ST_ACTIVE, 0, "stopped by the driver");
}

#[test]
fn dma_outside_guest_memory_is_a_master_abort() {
    let r = rig(600);
    r.enable_bus_master();
    r.prd(&[(BUF as u32, 0x200, false), (0xfff0_0000, 0x200, true)]);
    r.lba28(0, 2);
    r.outb(CMD + 7, op::READ_DMA);
    r.outb(BM, CMD_TO_MEMORY | CMD_START);
    assert_eq!(r.inb(BM + 2) & 7, ST_INTERRUPT | ST_ERROR);
    assert_eq!(r.status(), status::READY | status::ERR);
    assert_eq!(r.inb(CMD + 1), error::ABRT);
    assert_eq!(*r.dma.0.lock().unwrap(), vec![(BUF, 0x200)]);
    // The PRD table itself outside guest memory.
    r.outb(BM, 0);
    r.outb(BM + 2, ST_INTERRUPT | ST_ERROR);
    r.outl(BM + 4, 0xfff0_0000);
    r.lba28(0, 1);
    r.outb(CMD + 7, op::WRITE_DMA);
    r.outb(BM, CMD_START);
    assert_eq!(r.inb(BM + 2) & 7, ST_INTERRUPT | ST_ERROR);
    assert_eq!(r.inb(CMD + 1), error::ABRT);
    assert_eq!(r.image(0, 512), (0..512).map(pattern).collect::<Vec<_>>());
}

#[test]
fn short_tables_and_wrong_directions_abort_without_a_bus_error() {
    let r = rig(600);
    r.enable_bus_master();
    r.prd(&[(BUF as u32, 0x200, true)]);
    r.lba28(0, 2);
    r.outb(CMD + 7, op::READ_DMA);
    r.outb(BM, CMD_TO_MEMORY | CMD_START);
    assert_eq!(r.inb(BM + 2) & 7, ST_INTERRUPT);
    assert_eq!(r.status(), status::READY | status::ERR);
    r.outb(BM, 0);
    r.outb(BM + 2, ST_INTERRUPT);
    r.lba28(0, 1);
    r.outb(CMD + 7, op::READ_DMA);
    r.outb(BM, CMD_START); // reads memory, but the command reads the disk
    assert_eq!(r.inb(BM + 2) & 7, ST_INTERRUPT);
    assert_eq!(r.inb(CMD + 1), error::ABRT);
}

#[test]
fn dma_waits_for_bus_mastering_to_be_enabled() {
    let r = rig(600);
    r.prd(&[(BUF as u32, 0x200, true)]);
    r.lba28(3, 1);
    r.outb(CMD + 7, op::READ_DMA);
    r.outb(BM, CMD_TO_MEMORY | CMD_START);
    assert_eq!(r.interrupts(), 0, "bus mastering is off");
    r.enable_bus_master();
    assert_eq!(r.interrupts(), 1);
    let mut got = vec![0u8; 512];
    r.mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
    assert_eq!(got, r.image(3 * 512, 512));
}

#[test]
fn the_bus_master_bar_moves() {
    let r = rig(600);
    r.enable_bus_master();
    r.config_write(0x20, 0xffff_ffff);
    assert_eq!(r.config_read(0x20), 0xffff_fff1, "16 ports");
    r.config_write(0x20, 0xd000);
    assert_eq!(
        r.bus.pio_read(BM + 2, &mut [0]),
        crate::bus::Access::Unmapped
    );
    r.outl(0xd004, PRD as u32);
    r.mem.write_obj(BUF as u32, GuestAddress(PRD)).unwrap();
    r.mem
        .write_obj(0x8000_0200u32, GuestAddress(PRD + 4))
        .unwrap();
    r.lba28(1, 1);
    r.outb(CMD + 7, op::READ_DMA);
    r.outb(0xd000, CMD_TO_MEMORY | CMD_START);
    assert_eq!(r.inb(0xd002) & 7, ST_INTERRUPT);
    assert_eq!(r.stats().dma_bytes, 512);
}

/// A CD-ROM drive as device 1 of the primary channel, holding `blocks` 2048-byte blocks.
fn rig_with_cdrom(blocks: usize) -> Rig {
    let r = rig(64);
    let iso: Vec<u8> = (0..blocks * atapi::BLOCK).map(pattern).collect();
    let cd = atapi::Cdrom::new(Arc::new(DiskImage::from_bytes(iso, "cd")));
    lock(&r.ide).attach_cdrom(0, 1, cd);
    r.outb(CMD + 6, 0xb0);
    r
}

impl Rig {
    /// Issues PACKET with byte count limit `limit` and writes the 12-byte packet `p`.
    fn packet(&self, limit: u16, p: &[u8]) {
        self.outb(CMD + 1, 0);
        self.outb(CMD + 4, limit as u8);
        self.outb(CMD + 5, (limit >> 8) as u8);
        self.outb(CMD + 7, 0xa0);
        assert_eq!(self.inb(CMD + 7) & status::DRQ, status::DRQ, "packet DRQ");
        assert_eq!(self.inb(CMD + 2), 1, "interrupt reason: command");
        let mut b = [0u8; 12];
        b[..p.len()].copy_from_slice(p);
        for w in b.chunks(2) {
            self.bus.pio_write(CMD, w);
        }
    }

    /// Reads what the packet command hands over, chunk by chunk: (chunk sizes, bytes).
    fn packet_data(&self) -> (Vec<usize>, Vec<u8>) {
        let (mut sizes, mut data) = (Vec::new(), Vec::new());
        while self.inb(CMD + 7) & status::DRQ != 0 {
            assert_eq!(self.inb(CMD + 2), 2, "interrupt reason: data in");
            let n = self.inb(CMD + 4) as usize | (self.inb(CMD + 5) as usize) << 8;
            sizes.push(n);
            data.extend(self.read_block(n.div_ceil(2)).into_iter().take(n));
        }
        assert_eq!(self.inb(CMD + 2), 3, "interrupt reason: done");
        (sizes, data)
    }
}

#[test]
fn atapi_signature_identify_and_reads() {
    let r = rig_with_cdrom(16);
    // The ATAPI signature after reset; IDENTIFY DEVICE aborts, IDENTIFY PACKET DEVICE answers.
    assert_eq!((r.inb(CMD + 4), r.inb(CMD + 5)), (0x14, 0xeb));
    r.outb(CMD + 7, op::IDENTIFY_DEVICE);
    assert_eq!(r.inb(CMD + 7) & status::ERR, status::ERR);
    assert_eq!(r.inb(CMD + 1), error::ABRT);
    r.outb(CMD + 7, op::IDENTIFY_PACKET_DEVICE);
    let id = r.read_block(256);
    assert_eq!(u16::from_le_bytes([id[0], id[1]]), 0x85c0);
    // The first command reports the new medium (UNIT ATTENTION, key 6 in the error register).
    r.packet(0xfffe, &[0x00]);
    assert_eq!(r.inb(CMD + 7) & status::ERR, status::ERR);
    assert_eq!(r.inb(CMD + 1) >> 4, 6);
    r.packet(0xfffe, &[0x00]);
    assert_eq!(r.packet_data().0, Vec::<usize>::new());
    assert_eq!(r.inb(CMD + 7) & status::ERR, 0);
    // READ(10) of blocks 3 and 4 with a byte count limit of 3000: chunks of 3000 and 1096.
    r.packet(3000, &[0x28, 0, 0, 0, 0, 3, 0, 0, 2]);
    let (sizes, data) = r.packet_data();
    assert_eq!(sizes, vec![3000, 1096]);
    let want: Vec<u8> = (3 * 2048..5 * 2048).map(pattern).collect();
    assert!(data == want, "READ(10) data");
    // Past the end: ILLEGAL REQUEST, and REQUEST SENSE says LBA out of range.
    r.packet(0xfffe, &[0x28, 0, 0, 0, 0, 15, 0, 0, 2]);
    assert_eq!(r.inb(CMD + 1) >> 4, 5);
    r.packet(0xfffe, &[0x03, 0, 0, 0, 18]);
    let (_, sense) = r.packet_data();
    assert_eq!((sense[2], sense[12]), (5, 0x21));
    // The disk on device 0 still answers as a disk.
    r.outb(CMD + 6, 0xa0);
    r.outb(CMD + 7, op::IDENTIFY_DEVICE);
    assert_eq!(r.inb(CMD + 7) & (status::ERR | status::DRQ), status::DRQ);
}
