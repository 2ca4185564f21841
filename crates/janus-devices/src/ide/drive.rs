//! An ATA hard disk backed by a [`DiskImage`]: what IDENTIFY DEVICE reports, the settings a
//! host may change (transfer mode, READ/WRITE MULTIPLE block size, write cache, CHS
//! translation), and sector I/O against the image.
//!
//! The drive reports itself as ATA/ATAPI-7 with LBA48, FLUSH CACHE (EXT), a write cache
//! (enabled at power-on; FLUSH CACHE is an fsync of the image, and with the cache disabled
//! every write command ends with one), PIO modes 0-4, multiword DMA 0-2 and Ultra DMA 0-5.
//! It claims nothing it does not implement: no SMART, security, HPA or power-up-in-standby.

use super::ata::{Geometry, SECTOR};
use crate::disk::DiskImage;
use std::sync::Arc;

/// Most sectors per DRQ block for READ/WRITE MULTIPLE (IDENTIFY word 47).
pub const MAX_MULTIPLE: u8 = 16;

const MODEL: &str = "JANUS HARDDISK";
const FIRMWARE: &str = "1.0";

/// The DMA mode SET FEATURES selected, reported in IDENTIFY words 63 and 88.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaMode {
    Multiword(u8),
    Ultra(u8),
}

/// What SET FEATURES 03h accepts: PIO modes 0-4, multiword DMA 0-2, Ultra DMA 0-5.
const MAX_PIO: u8 = 4;
const MAX_MWDMA: u8 = 2;
const MAX_UDMA: u8 = 5;

pub struct Drive {
    disk: Arc<DiskImage>,
    sectors: u64,
    serial: String,
    geometry: Geometry,
    default_geometry: Geometry,
    /// Sectors per DRQ block for READ/WRITE MULTIPLE; 0 = those commands are refused.
    multiple: u8,
    dma_mode: Option<DmaMode>,
    write_cache: bool,
    read_look_ahead: bool,
}

impl Drive {
    /// A drive over `disk`; `unit` (0-3: channel * 2 + device) makes the serial number.
    pub fn new(disk: Arc<DiskImage>, unit: u8) -> Drive {
        let sectors = disk.size() / SECTOR as u64;
        let geometry = Geometry::for_sectors(sectors);
        Drive {
            disk,
            sectors,
            serial: format!("JANUS-IDE-{unit}"),
            geometry,
            default_geometry: geometry,
            // As QEMU's drives: Linux uses READ/WRITE MULTIPLE when IDENTIFY word 59 says a
            // block size is set, and does not set one itself.
            multiple: MAX_MULTIPLE,
            dma_mode: None,
            write_cache: true,
            read_look_ahead: true,
        }
    }

    /// Sectors on the medium (a partial sector at the end of the image is not addressable).
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The READ/WRITE MULTIPLE block size, 0 if none is set.
    pub fn multiple(&self) -> u8 {
        self.multiple
    }

    /// Whether the image refuses writes.
    pub fn read_only(&self) -> bool {
        self.disk.read_only()
    }

    /// Whether `count` sectors from `lba` are on the medium.
    pub fn in_range(&self, lba: u64, count: u64) -> bool {
        lba.checked_add(count)
            .is_some_and(|end| end <= self.sectors)
    }

    pub fn read(&self, lba: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.disk.read_at(lba * SECTOR as u64, buf)
    }

    /// Writes sectors; with the write cache disabled the data is on stable storage before
    /// this returns.
    pub fn write(&self, lba: u64, buf: &[u8]) -> std::io::Result<()> {
        self.disk.write_at(lba * SECTOR as u64, buf)?;
        if !self.write_cache {
            self.disk.flush()?;
        }
        Ok(())
    }

    /// FLUSH CACHE: everything written so far reaches stable storage.
    pub fn flush(&self) -> std::io::Result<()> {
        self.disk.flush()
    }

    /// SET FEATURES with `feature` and the count register `count`; false if refused (ABRT).
    pub fn set_feature(&mut self, feature: u8, count: u8) -> bool {
        match feature {
            0x02 => self.write_cache = true,
            0x82 => self.write_cache = false,
            0xaa => self.read_look_ahead = true,
            0x55 => self.read_look_ahead = false,
            0x03 => return self.set_transfer_mode(count),
            // Reverting to power-on defaults after reset: enabled or disabled, nothing to do,
            // since a reset keeps this drive's settings either way.
            0x66 | 0xcc => {}
            _ => return false,
        }
        true
    }

    fn set_transfer_mode(&mut self, value: u8) -> bool {
        let mode = value & 7;
        match value >> 3 {
            // PIO default (with or without IORDY) or PIO flow-control mode n.
            0 => mode <= 1,
            1 => mode <= MAX_PIO,
            4 if mode <= MAX_MWDMA => {
                self.dma_mode = Some(DmaMode::Multiword(mode));
                true
            }
            8 if mode <= MAX_UDMA => {
                self.dma_mode = Some(DmaMode::Ultra(mode));
                true
            }
            _ => false,
        }
    }

    /// SET MULTIPLE MODE: a power of two up to [`MAX_MULTIPLE`], or 0 to turn it off.
    pub fn set_multiple(&mut self, count: u8) -> bool {
        let ok = count == 0 || (count.is_power_of_two() && count <= MAX_MULTIPLE);
        if ok {
            self.multiple = count;
        }
        ok
    }

    /// INITIALIZE DEVICE PARAMETERS: the CHS translation the host wants.
    pub fn initialize_parameters(&mut self, heads: u8, sectors: u8) -> bool {
        if sectors == 0 {
            return false;
        }
        let per_cylinder = heads as u64 * sectors as u64;
        let cylinders = (self.sectors / per_cylinder).clamp(1, u16::MAX as u64) as u16;
        self.geometry = Geometry {
            cylinders,
            heads,
            sectors,
        };
        true
    }

    /// The 512 bytes of IDENTIFY DEVICE.
    pub fn identify(&self) -> [u8; SECTOR] {
        let mut w = [0u16; 256];
        let g = self.default_geometry;
        let cur = self.geometry;
        w[0] = 0x0040; // ATA device, not removable
        w[1] = g.cylinders;
        w[3] = g.heads as u16;
        w[6] = g.sectors as u16;
        put_string(&mut w[10..20], &self.serial);
        put_string(&mut w[23..27], FIRMWARE);
        put_string(&mut w[27..47], MODEL);
        w[47] = 0x8000 | MAX_MULTIPLE as u16;
        w[49] = 1 << 11 | 1 << 9 | 1 << 8; // IORDY, LBA, DMA
        w[50] = 0x4000;
        w[51] = 0x0200; // obsolete PIO timing: mode 2
        w[53] = 0x0007; // words 54-58, 64-70 and 88 are valid
        w[54] = cur.cylinders;
        w[55] = cur.heads as u16;
        w[56] = cur.sectors as u16;
        put_u32(&mut w[57..59], cur.capacity().min(self.sectors) as u32);
        if self.multiple != 0 {
            w[59] = 0x0100 | self.multiple as u16;
        }
        put_u32(&mut w[60..62], self.sectors.min(0x0fff_ffff) as u32);
        w[63] = 0x0007;
        w[64] = 0x0003; // PIO 3 and 4
        w[65..69].fill(120); // the fastest cycle times, in ns
        w[80] = 0x00f0; // ATA-4 to ATA-7
        w[82] = 1 << 14 | 1 << 6 | 1 << 5; // NOP, read look-ahead, write cache
        w[83] = 1 << 14 | 1 << 13 | 1 << 12 | 1 << 10; // FLUSH CACHE EXT, FLUSH CACHE, LBA48
        w[84] = 1 << 14;
        w[85] = 1 << 14 | (self.read_look_ahead as u16) << 6 | (self.write_cache as u16) << 5;
        w[86] = 1 << 13 | 1 << 12 | 1 << 10;
        w[87] = 1 << 14;
        w[88] = (1 << (MAX_UDMA + 1)) - 1;
        match self.dma_mode {
            Some(DmaMode::Multiword(n)) => w[63] |= 1 << (8 + n),
            Some(DmaMode::Ultra(n)) => w[88] |= 1 << (8 + n),
            None => {}
        }
        // Device 0, reset by software; the cable is an 80-conductor one.
        w[93] = 1 << 14 | 1 << 13 | 1;
        for (i, word) in w[100..104].iter_mut().enumerate() {
            *word = (self.sectors >> (16 * i)) as u16;
        }
        let mut out = [0u8; SECTOR];
        for (i, word) in w.iter().enumerate() {
            out[2 * i..2 * i + 2].copy_from_slice(&word.to_le_bytes());
        }
        // Integrity word: signature A5h, then the byte that makes all 512 sum to zero.
        out[510] = 0xa5;
        let sum = out[..511].iter().fold(0u8, |a, &b| a.wrapping_add(b));
        out[511] = sum.wrapping_neg();
        out
    }
}

/// An ATA string: space-padded, two characters per word with the first in the high byte.
fn put_string(words: &mut [u16], s: &str) {
    let mut bytes = s.bytes().chain(std::iter::repeat(b' '));
    for w in words {
        let hi = bytes.next().unwrap_or(b' ');
        let lo = bytes.next().unwrap_or(b' ');
        *w = (hi as u16) << 8 | lo as u16;
    }
}

fn put_u32(words: &mut [u16], v: u32) {
    words[0] = v as u16;
    words[1] = (v >> 16) as u16;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(id: &[u8], n: usize) -> u16 {
        u16::from_le_bytes([id[2 * n], id[2 * n + 1]])
    }

    fn drive(sectors: u64) -> Drive {
        let disk = DiskImage::from_bytes(vec![0u8; sectors as usize * SECTOR + 100], "test");
        Drive::new(Arc::new(disk), 0)
    }

    #[test]
    fn identify_describes_the_disk() {
        let d = drive(20_000);
        let id = d.identify();
        assert_eq!(word(&id, 0), 0x0040);
        assert_eq!(&id[54..62], b"AJUN SAH", "model, bytes swapped in words");
        assert_eq!(word(&id, 60) as u32 | (word(&id, 61) as u32) << 16, 20_000);
        assert_eq!(word(&id, 100), 20_000, "48-bit capacity");
        assert_ne!(word(&id, 49) & (1 << 9), 0, "LBA");
        assert_ne!(word(&id, 83) & (1 << 10), 0, "LBA48");
        assert_eq!(word(&id, 59), 0x0110, "multiple mode 16 set");
        assert_eq!(
            id.iter().fold(0u8, |a, &b| a.wrapping_add(b)),
            0,
            "checksum"
        );
        assert_eq!(id[510], 0xa5);
    }

    #[test]
    fn transfer_modes_show_in_identify() {
        let mut d = drive(100);
        assert!(d.set_feature(0x03, 0x0c), "PIO 4");
        assert!(!d.set_feature(0x03, 0x0d), "PIO 5");
        assert!(d.set_feature(0x03, 0x22), "MWDMA 2");
        assert_eq!(word(&d.identify(), 63), 0x0407);
        assert!(!d.set_feature(0x03, 0x23), "MWDMA 3");
        assert!(d.set_feature(0x03, 0x45), "UDMA 5");
        let id = d.identify();
        assert_eq!(word(&id, 88), 0x203f);
        assert_eq!(word(&id, 63), 0x0007, "MWDMA deselected");
        assert!(!d.set_feature(0x03, 0x46), "UDMA 6");
        assert!(!d.set_feature(0x03, 0x12), "single-word DMA");
        assert!(!d.set_feature(0x77, 0), "unknown feature");
    }

    #[test]
    fn write_cache_setting() {
        let mut d = drive(100);
        assert_ne!(word(&d.identify(), 85) & (1 << 5), 0);
        assert!(d.set_feature(0x82, 0));
        assert_eq!(word(&d.identify(), 85) & (1 << 5), 0);
    }

    #[test]
    fn multiple_mode_and_geometry() {
        let mut d = drive(100_000);
        assert!(d.set_multiple(8));
        assert_eq!(word(&d.identify(), 59), 0x0108);
        assert!(!d.set_multiple(3));
        assert!(!d.set_multiple(32));
        assert!(d.set_multiple(0));
        assert_eq!(word(&d.identify(), 59), 0);
        assert!(d.initialize_parameters(4, 32));
        assert_eq!(d.geometry().heads, 4);
        assert_eq!(word(&d.identify(), 55), 4);
        assert!(!d.initialize_parameters(4, 0));
    }

    #[test]
    fn range_checks() {
        let d = drive(100);
        assert!(d.in_range(99, 1));
        assert!(!d.in_range(99, 2));
        assert!(!d.in_range(u64::MAX, 2));
        assert_eq!(d.sectors(), 100, "the partial sector is not counted");
    }
}
