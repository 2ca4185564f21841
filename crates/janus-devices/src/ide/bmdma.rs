//! The PIIX bus-master IDE function (BMIDE): for each channel a command register, a status
//! register and the physical region descriptor (PRD) table pointer, 8 bytes per channel in the
//! I/O BAR, and the walk over a PRD table that moves a DMA command's data to or from guest
//! memory.
//!
//! A PRD entry is 8 bytes: the region's physical address (bit 0 ignored), then its byte count
//! in bits 15:1 (0 means 64 KiB) with end-of-table in bit 31. Every region is checked against
//! guest RAM before a byte moves; a region outside it, or a table outside it, is the master
//! abort a real PIIX would get: the status error bit, and the device aborts the command.
//! A table that ends before the command's data does ends the command the same way without the
//! error bit (real hardware would leave the device waiting until the driver times out; an
//! error now serves the guest better and looks the same to a driver). A table that never says
//! end-of-table is cut off after [`MAX_PRD_ENTRIES`].
//!
//! Reference: Intel 82371FB (PIIX) and 82371SB (PIIX3) datasheet, section 2.7 ("Bus Master
//! IDE Registers") and 3.9 ("Bus Master Function").

use janus_engine::{DmaObserver, GuestMemory};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// Command register: start (1) or stop (0) the bus master.
pub const CMD_START: u8 = 0x01;
/// Command register: the bus master writes memory (a READ DMA), else it reads memory.
pub const CMD_TO_MEMORY: u8 = 0x08;
/// Status register: a transfer is under way (or the PRD table has regions left).
pub const ST_ACTIVE: u8 = 0x01;
/// Status register: a master abort (memory fault) stopped the transfer; write 1 to clear.
pub const ST_ERROR: u8 = 0x02;
/// Status register: the device raised its interrupt; write 1 to clear.
pub const ST_INTERRUPT: u8 = 0x04;
/// Status register: device 0 / device 1 is DMA capable (set by firmware, kept for drivers).
pub const ST_DRIVE_DMA: u8 = 0x60;

/// Register offsets within a channel's 8 bytes.
const REG_COMMAND: u64 = 0;
const REG_STATUS: u64 = 2;
const REG_PRD: u64 = 4;

/// PRD entries a transfer may read before the table counts as unterminated. Linux uses at
/// most 256 per command; a 32 MiB LBA48 transfer in 64 KiB regions needs 512.
pub const MAX_PRD_ENTRIES: u32 = 8192;
const PRD_EOT: u32 = 1 << 31;

/// One channel's bus-master registers.
#[derive(Clone, Debug, Default)]
pub struct BusMaster {
    command: u8,
    status: u8,
    prd: u32,
}

impl BusMaster {
    /// Firmware marks both drives DMA capable, as BIOSes do.
    pub fn new() -> BusMaster {
        BusMaster {
            status: ST_DRIVE_DMA,
            ..Default::default()
        }
    }

    /// Reads the register byte at `offset` (0-7).
    pub fn read(&self, offset: u64) -> u8 {
        match offset {
            REG_COMMAND => self.command,
            REG_STATUS => self.status,
            4..=7 => (self.prd >> (8 * (offset - REG_PRD))) as u8,
            _ => 0,
        }
    }

    /// Writes the register byte at `offset` (0-7).
    pub fn write(&mut self, offset: u64, v: u8) {
        match offset {
            REG_COMMAND => {
                // Starting sets Active; stopping clears it and abandons what is left.
                if v & CMD_START == 0 {
                    self.status &= !ST_ACTIVE;
                } else if self.command & CMD_START == 0 {
                    self.status |= ST_ACTIVE;
                }
                self.command = v & (CMD_START | CMD_TO_MEMORY);
            }
            REG_STATUS => {
                let cleared = v & (ST_ERROR | ST_INTERRUPT);
                self.status = (self.status & !cleared & !ST_DRIVE_DMA) | (v & ST_DRIVE_DMA);
            }
            4..=7 => {
                let shift = 8 * (offset - REG_PRD);
                let v = (v as u32) << shift;
                // The table is dword aligned: bits 1:0 read as zero.
                self.prd = ((self.prd & !(0xff << shift)) | v) & !3;
            }
            _ => {}
        }
    }

    /// Started, and not finished with its table.
    pub fn active(&self) -> bool {
        self.status & ST_ACTIVE != 0
    }

    /// The direction the guest programmed: true when the bus master writes memory.
    pub fn to_memory(&self) -> bool {
        self.command & CMD_TO_MEMORY != 0
    }

    /// The device raised its interrupt.
    pub fn set_interrupt(&mut self) {
        self.status |= ST_INTERRUPT;
    }

    /// A transfer ended: `fault` is a master abort, `regions_left` says the table described
    /// more than the device moved (Active then stays set, as on the PIIX).
    pub fn finish(&mut self, fault: bool, regions_left: bool) {
        if !regions_left {
            self.status &= !ST_ACTIVE;
        }
        if fault {
            self.status |= ST_ERROR;
        }
    }

    /// A walker over the table the PRD pointer names.
    pub fn cursor(&self) -> PrdCursor {
        PrdCursor {
            next_entry: self.prd as u64,
            entries: 0,
            region: (0, 0),
            last: false,
        }
    }
}

/// Why a PRD walk stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaFault {
    /// A region or the table itself is not guest RAM (a master abort).
    Memory { addr: u64 },
    /// The table ended (or ran past [`MAX_PRD_ENTRIES`]) before the data did.
    TableEnd,
}

/// The data one step of a transfer moves, and which way.
pub enum Transfer<'a> {
    /// Device to memory: these bytes are written to the regions.
    ToMemory(&'a [u8]),
    /// Memory to device: the regions are read into this buffer.
    FromMemory(&'a mut [u8]),
}

/// Position in a PRD table during one transfer.
#[derive(Clone, Debug)]
pub struct PrdCursor {
    next_entry: u64,
    entries: u32,
    /// What is left of the current region: address and length.
    region: (u64, u64),
    /// The current region came from the end-of-table entry.
    last: bool,
}

impl PrdCursor {
    /// Whether the table has regions left that the transfer did not use.
    pub fn regions_left(&self) -> bool {
        self.region.1 > 0 || !self.last
    }

    /// The next piece of a region, at most `want` bytes: its address and length.
    fn next_piece(&mut self, mem: &GuestMemory, want: usize) -> Result<(u64, usize), DmaFault> {
        while self.region.1 == 0 {
            if self.last || self.entries >= MAX_PRD_ENTRIES {
                return Err(DmaFault::TableEnd);
            }
            let at = self.next_entry;
            let mut entry = [0u8; 8];
            mem.read_slice(&mut entry, GuestAddress(at))
                .map_err(|_| DmaFault::Memory { addr: at })?;
            let base = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
            let count = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
            self.entries += 1;
            self.next_entry = at + 8;
            self.last = count & PRD_EOT != 0;
            let len = match count & 0xfffe {
                0 => 0x1_0000,
                n => n as u64,
            };
            self.region = ((base & !1) as u64, len);
        }
        let (addr, len) = self.region;
        let n = (want as u64).min(len);
        self.region = (addr + n, len - n);
        Ok((addr, n as usize))
    }

    /// Moves `data` through the next regions of the table. Each region is checked to be guest
    /// RAM before it is touched; writes are reported to `observer`. On a fault, what came
    /// before it has moved.
    pub fn transfer(
        &mut self,
        mem: &GuestMemory,
        observer: &dyn DmaObserver,
        mut data: Transfer<'_>,
    ) -> Result<(), DmaFault> {
        let total = match &data {
            Transfer::ToMemory(d) => d.len(),
            Transfer::FromMemory(d) => d.len(),
        };
        let mut done = 0;
        while done < total {
            let (addr, n) = self.next_piece(mem, total - done)?;
            let at = GuestAddress(addr);
            if !mem.check_range(at, n) {
                return Err(DmaFault::Memory { addr });
            }
            let moved = match &mut data {
                Transfer::ToMemory(d) => mem.write_slice(&d[done..done + n], at),
                Transfer::FromMemory(d) => mem.read_slice(&mut d[done..done + n], at),
            };
            moved.map_err(|_| DmaFault::Memory { addr })?;
            if matches!(data, Transfer::ToMemory(_)) {
                observer.dma_written(addr, n as u64);
            }
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Written;
    use janus_engine::NoDmaObserver;

    fn mem() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn prd(mem: &GuestMemory, at: u64, entries: &[(u32, u32)]) {
        for (i, (base, count)) in entries.iter().enumerate() {
            let a = GuestAddress(at + 8 * i as u64);
            mem.write_obj(*base, a).unwrap();
            mem.write_obj(*count, GuestAddress(a.0 + 4)).unwrap();
        }
    }

    fn bm_at(table: u32) -> BusMaster {
        let mut bm = BusMaster::new();
        for (i, b) in table.to_le_bytes().iter().enumerate() {
            bm.write(4 + i as u64, *b);
        }
        bm
    }

    #[test]
    fn registers() {
        let mut bm = bm_at(0x1237);
        assert_eq!(bm.read(4), 0x34, "dword aligned");
        assert_eq!(bm.read(5), 0x12);
        assert_eq!(bm.read(2), ST_DRIVE_DMA);
        bm.write(0, CMD_START | CMD_TO_MEMORY | 0x40);
        assert!(bm.active() && bm.to_memory());
        assert_eq!(bm.read(0), 0x09, "reserved bits read as zero");
        bm.set_interrupt();
        bm.finish(true, false);
        assert_eq!(bm.read(2), ST_DRIVE_DMA | ST_INTERRUPT | ST_ERROR);
        bm.write(2, ST_INTERRUPT | ST_ACTIVE | 0x20);
        assert_eq!(
            bm.read(2),
            ST_ERROR | 0x20,
            "write-one-to-clear; Active read-only"
        );
        bm.write(0, CMD_START);
        bm.write(0, 0);
        assert!(!bm.active(), "stopped");
        assert_eq!(bm.read(1), 0);
    }

    #[test]
    fn scatters_across_regions_and_reports_writes() {
        let m = mem();
        prd(&m, 0x1000, &[(0x2000, 0x200), (0x3001, 0x8000_0400)]);
        let mut c = bm_at(0x1000).cursor();
        let data: Vec<u8> = (0..0x600u32).map(|i| i as u8).collect();
        let log = Written::default();
        c.transfer(&m, &log, Transfer::ToMemory(&data)).unwrap();
        assert!(!c.regions_left());
        let mut back = vec![0u8; 0x400];
        m.read_slice(&mut back, GuestAddress(0x3000)).unwrap();
        assert_eq!(back, data[0x200..], "address bit 0 ignored");
        assert_eq!(
            *log.0.lock().unwrap(),
            vec![(0x2000, 0x200), (0x3000, 0x400)]
        );
        // And back the other way.
        let mut c = bm_at(0x1000).cursor();
        let mut read = vec![0u8; 0x600];
        c.transfer(&m, &NoDmaObserver, Transfer::FromMemory(&mut read))
            .unwrap();
        assert_eq!(read, data);
    }

    #[test]
    fn zero_count_is_64k_and_leftovers_keep_active() {
        let m = mem();
        prd(&m, 0x1000, &[(0x10000, 0x8000_0000)]);
        let mut c = bm_at(0x1000).cursor();
        let data = vec![7u8; 0x1000];
        c.transfer(&m, &NoDmaObserver, Transfer::ToMemory(&data))
            .unwrap();
        assert!(c.regions_left(), "60 KiB of the region unused");
        c.transfer(&m, &NoDmaObserver, Transfer::ToMemory(&vec![1u8; 0xf000]))
            .unwrap();
        assert!(!c.regions_left());
        assert_eq!(
            c.transfer(&m, &NoDmaObserver, Transfer::ToMemory(&[0; 2])),
            Err(DmaFault::TableEnd)
        );
    }

    #[test]
    fn regions_outside_ram_fault_before_writing() {
        let m = mem();
        prd(&m, 0x1000, &[(0x2000, 0x200), (0xfff00, 0x8000_0200)]);
        let mut c = bm_at(0x1000).cursor();
        let log = Written::default();
        let err = c.transfer(&m, &log, Transfer::ToMemory(&[9u8; 0x400]));
        assert_eq!(err, Err(DmaFault::Memory { addr: 0xfff00 }));
        assert_eq!(
            *log.0.lock().unwrap(),
            vec![(0x2000, 0x200)],
            "first region only"
        );
        // The table itself outside RAM.
        let mut c = bm_at(0xffff_fff0).cursor();
        assert_eq!(
            c.transfer(&m, &log, Transfer::ToMemory(&[0; 2])),
            Err(DmaFault::Memory { addr: 0xffff_fff0 })
        );
    }

    #[test]
    fn short_and_unterminated_tables() {
        let m = mem();
        prd(&m, 0x1000, &[(0x2000, 0x8000_0200)]);
        let mut c = bm_at(0x1000).cursor();
        let mut buf = vec![0u8; 0x400];
        assert_eq!(
            c.transfer(&m, &NoDmaObserver, Transfer::FromMemory(&mut buf)),
            Err(DmaFault::TableEnd)
        );
        // A table of 2-byte regions with no end: cut off, not followed forever.
        let entries: Vec<(u32, u32)> = (0..MAX_PRD_ENTRIES + 8).map(|_| (0x4000, 2)).collect();
        prd(&m, 0x8000, &entries);
        let mut c = bm_at(0x8000).cursor();
        let mut big = vec![0u8; 4 * MAX_PRD_ENTRIES as usize];
        assert_eq!(
            c.transfer(&m, &NoDmaObserver, Transfer::FromMemory(&mut big)),
            Err(DmaFault::TableEnd)
        );
    }
}
