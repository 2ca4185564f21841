//! The ATA side of an IDE channel as the host sees it: the task-file registers, the status and
//! error bits, the command opcodes a hard disk answers, and how a command's registers name its
//! sectors (LBA28, LBA48 or CHS).
//!
//! References: ATA/ATAPI-7 (T13/1532D) volume 1 for the commands and register protocol;
//! ATA8-ACS for the 48-bit forms.

/// Bytes in a sector.
pub const SECTOR: usize = 512;

/// Status register bits.
pub mod status {
    /// The device is busy; no other bit is valid.
    pub const BSY: u8 = 0x80;
    /// The device is ready to accept commands.
    pub const DRDY: u8 = 0x40;
    /// Device fault.
    pub const DF: u8 = 0x20;
    /// Seek complete (obsolete, but drivers and QEMU still show it).
    pub const DSC: u8 = 0x10;
    /// The device is ready to transfer a block of data.
    pub const DRQ: u8 = 0x08;
    /// The last command ended with an error (see the error register).
    pub const ERR: u8 = 0x01;
    /// Idle and ready.
    pub const READY: u8 = DRDY | DSC;
}

/// Error register bits.
pub mod error {
    /// Uncorrectable data error: the medium (here, the host image) could not be read.
    pub const UNC: u8 = 0x40;
    /// ID not found: the address is beyond the medium.
    pub const IDNF: u8 = 0x10;
    /// The command was aborted: not supported, bad parameters, or it could not complete.
    pub const ABRT: u8 = 0x04;
    /// After reset or EXECUTE DEVICE DIAGNOSTIC: device 0 passed, device 1 passed or absent.
    pub const DIAGNOSTIC_PASSED: u8 = 0x01;
}

/// Device register bits.
pub mod device {
    /// Selects device 1 (the slave).
    pub const DEV: u8 = 0x10;
    /// The address is an LBA, not cylinder/head/sector.
    pub const LBA: u8 = 0x40;
    /// Bits 7 and 5 are obsolete and always read as one on old drives; kept as written.
    pub const HEAD_MASK: u8 = 0x0f;
}

/// Device control register bits.
pub mod control {
    /// Interrupts disabled: INTRQ is released.
    pub const NIEN: u8 = 0x02;
    /// Software reset of both devices while set.
    pub const SRST: u8 = 0x04;
    /// Reads return the previous ("high order") contents of the LBA48 registers.
    pub const HOB: u8 = 0x80;
}

/// Command opcodes.
pub mod op {
    pub const NOP: u8 = 0x00;
    pub const RECALIBRATE: u8 = 0x10;
    pub const READ_SECTORS: u8 = 0x20;
    pub const READ_SECTORS_NO_RETRY: u8 = 0x21;
    pub const READ_SECTORS_EXT: u8 = 0x24;
    pub const READ_DMA_EXT: u8 = 0x25;
    pub const READ_MULTIPLE_EXT: u8 = 0x29;
    pub const WRITE_SECTORS: u8 = 0x30;
    pub const WRITE_SECTORS_NO_RETRY: u8 = 0x31;
    pub const WRITE_SECTORS_EXT: u8 = 0x34;
    pub const WRITE_DMA_EXT: u8 = 0x35;
    pub const WRITE_MULTIPLE_EXT: u8 = 0x39;
    pub const READ_VERIFY: u8 = 0x40;
    pub const READ_VERIFY_NO_RETRY: u8 = 0x41;
    pub const READ_VERIFY_EXT: u8 = 0x42;
    pub const SEEK: u8 = 0x70;
    pub const EXECUTE_DEVICE_DIAGNOSTIC: u8 = 0x90;
    pub const INITIALIZE_DEVICE_PARAMETERS: u8 = 0x91;
    pub const IDENTIFY_PACKET_DEVICE: u8 = 0xa1;
    pub const READ_MULTIPLE: u8 = 0xc4;
    pub const WRITE_MULTIPLE: u8 = 0xc5;
    pub const SET_MULTIPLE_MODE: u8 = 0xc6;
    pub const READ_DMA: u8 = 0xc8;
    pub const READ_DMA_NO_RETRY: u8 = 0xc9;
    pub const WRITE_DMA: u8 = 0xca;
    pub const WRITE_DMA_NO_RETRY: u8 = 0xcb;
    pub const STANDBY_IMMEDIATE: u8 = 0xe0;
    pub const IDLE_IMMEDIATE: u8 = 0xe1;
    pub const STANDBY: u8 = 0xe2;
    pub const IDLE: u8 = 0xe3;
    pub const CHECK_POWER_MODE: u8 = 0xe5;
    pub const FLUSH_CACHE: u8 = 0xe7;
    pub const IDENTIFY_DEVICE: u8 = 0xec;
    pub const FLUSH_CACHE_EXT: u8 = 0xea;
    pub const SET_FEATURES: u8 = 0xef;
}

/// How a read or write command moves its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// PIO, one sector per DRQ block.
    Pio,
    /// PIO, the block size SET MULTIPLE MODE chose per DRQ block.
    PioMultiple,
    /// Bus-master DMA.
    Dma,
}

/// What a command opcode asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Identify,
    Read {
        protocol: Protocol,
        ext: bool,
    },
    Write {
        protocol: Protocol,
        ext: bool,
    },
    /// READ VERIFY SECTORS: check the range, move no data.
    Verify {
        ext: bool,
    },
    Flush,
    SetFeatures,
    SetMultipleMode,
    InitializeDeviceParameters,
    ExecuteDeviceDiagnostic,
    CheckPowerMode,
    /// Commands a disk completes at once with nothing to do: power management, RECALIBRATE,
    /// SEEK.
    NoData,
    /// Not supported by this device (including NOP, which always aborts): ERR with ABRT.
    Unsupported,
}

impl Command {
    pub fn decode(opcode: u8) -> Command {
        use Protocol::*;
        let read = |protocol, ext| Command::Read { protocol, ext };
        let write = |protocol, ext| Command::Write { protocol, ext };
        match opcode {
            op::IDENTIFY_DEVICE => Command::Identify,
            op::READ_SECTORS | op::READ_SECTORS_NO_RETRY => read(Pio, false),
            op::READ_SECTORS_EXT => read(Pio, true),
            op::READ_MULTIPLE => read(PioMultiple, false),
            op::READ_MULTIPLE_EXT => read(PioMultiple, true),
            op::READ_DMA | op::READ_DMA_NO_RETRY => read(Dma, false),
            op::READ_DMA_EXT => read(Dma, true),
            op::WRITE_SECTORS | op::WRITE_SECTORS_NO_RETRY => write(Pio, false),
            op::WRITE_SECTORS_EXT => write(Pio, true),
            op::WRITE_MULTIPLE => write(PioMultiple, false),
            op::WRITE_MULTIPLE_EXT => write(PioMultiple, true),
            op::WRITE_DMA | op::WRITE_DMA_NO_RETRY => write(Dma, false),
            op::WRITE_DMA_EXT => write(Dma, true),
            op::READ_VERIFY | op::READ_VERIFY_NO_RETRY => Command::Verify { ext: false },
            op::READ_VERIFY_EXT => Command::Verify { ext: true },
            op::FLUSH_CACHE | op::FLUSH_CACHE_EXT => Command::Flush,
            op::SET_FEATURES => Command::SetFeatures,
            op::SET_MULTIPLE_MODE => Command::SetMultipleMode,
            op::INITIALIZE_DEVICE_PARAMETERS => Command::InitializeDeviceParameters,
            op::EXECUTE_DEVICE_DIAGNOSTIC => Command::ExecuteDeviceDiagnostic,
            op::CHECK_POWER_MODE => Command::CheckPowerMode,
            op::STANDBY_IMMEDIATE | op::IDLE_IMMEDIATE | op::STANDBY | op::IDLE => Command::NoData,
            // RECALIBRATE is 0x1x and SEEK 0x7x in ATA-1; drivers still send the base codes.
            0x10..=0x1f | 0x70..=0x7f => Command::NoData,
            _ => Command::Unsupported,
        }
    }
}

/// A task-file register with its LBA48 "previous content" byte: each write pushes the old
/// value into `hob`, which reads back while the device control HOB bit is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fifo {
    pub cur: u8,
    pub hob: u8,
}

impl Fifo {
    pub fn write(&mut self, v: u8) {
        self.hob = self.cur;
        self.cur = v;
    }

    pub fn read(&self, hob: bool) -> u8 {
        if hob {
            self.hob
        } else {
            self.cur
        }
    }
}

/// The command block registers of one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Taskfile {
    pub feature: Fifo,
    pub nsect: Fifo,
    pub lbal: Fifo,
    pub lbam: Fifo,
    pub lbah: Fifo,
    pub device: u8,
}

/// The cylinder/head/sector translation in effect (INITIALIZE DEVICE PARAMETERS changes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors: u8,
}

impl Geometry {
    /// The default translation of a disk of `total` sectors: 16 heads, 63 sectors per track,
    /// as many cylinders as fit (at most 16383, as ATA caps them).
    pub fn for_sectors(total: u64) -> Geometry {
        let cylinders = (total / (16 * 63)).clamp(1, 16383) as u16;
        Geometry {
            cylinders,
            heads: 16,
            sectors: 63,
        }
    }

    /// Sectors the translation covers.
    pub fn capacity(&self) -> u64 {
        self.cylinders as u64 * self.heads as u64 * self.sectors as u64
    }
}

impl Taskfile {
    /// The sector count: 1-256 for 28-bit commands, 1-65536 for 48-bit ones (0 means the most).
    pub fn count(&self, ext: bool) -> u64 {
        if ext {
            match (self.nsect.hob as u64) << 8 | self.nsect.cur as u64 {
                0 => 65536,
                n => n,
            }
        } else {
            match self.nsect.cur {
                0 => 256,
                n => n as u64,
            }
        }
    }

    /// The first sector a command names, or `None` for a CHS address with sector 0 or outside
    /// the translation.
    pub fn address(&self, ext: bool, geometry: &Geometry) -> Option<u64> {
        let low = (self.lbah.cur as u64) << 16 | (self.lbam.cur as u64) << 8 | self.lbal.cur as u64;
        if ext {
            let high =
                (self.lbah.hob as u64) << 16 | (self.lbam.hob as u64) << 8 | self.lbal.hob as u64;
            return Some(high << 24 | low);
        }
        if self.device & device::LBA != 0 {
            return Some(((self.device & device::HEAD_MASK) as u64) << 24 | low);
        }
        let cylinder = (self.lbah.cur as u64) << 8 | self.lbam.cur as u64;
        let head = (self.device & device::HEAD_MASK) as u64;
        let sector = self.lbal.cur as u64;
        let g = geometry;
        let valid = (1..=g.sectors as u64).contains(&sector)
            && head < g.heads as u64
            && cylinder < g.cylinders as u64;
        valid.then(|| (cylinder * g.heads as u64 + head) * g.sectors as u64 + sector - 1)
    }

    /// Writes `lba` back into the address registers, as a device reports the last sector it
    /// transferred or the one that failed.
    pub fn set_address(&mut self, lba: u64, ext: bool, geometry: &Geometry) {
        let b = |shift: u32| (lba >> shift) as u8;
        if ext {
            self.lbal = Fifo {
                cur: b(0),
                hob: b(24),
            };
            self.lbam = Fifo {
                cur: b(8),
                hob: b(32),
            };
            self.lbah = Fifo {
                cur: b(16),
                hob: b(40),
            };
        } else if self.device & device::LBA != 0 {
            self.lbal.cur = b(0);
            self.lbam.cur = b(8);
            self.lbah.cur = b(16);
            self.device = (self.device & !device::HEAD_MASK) | (b(24) & device::HEAD_MASK);
        } else {
            let g = geometry;
            let per_cylinder = (g.heads as u64 * g.sectors as u64).max(1);
            let cylinder = lba / per_cylinder;
            let head = (lba % per_cylinder) / g.sectors.max(1) as u64;
            let sector = lba % g.sectors.max(1) as u64 + 1;
            self.lbal.cur = sector as u8;
            self.lbam.cur = cylinder as u8;
            self.lbah.cur = (cylinder >> 8) as u8;
            self.device = (self.device & !device::HEAD_MASK) | (head as u8 & device::HEAD_MASK);
        }
    }

    /// What a device shows after reset or diagnostics: the ATA signature (count and LBA low
    /// 1, LBA mid and high 0), device 0 selected.
    pub fn set_signature(&mut self) {
        *self = Taskfile::default();
        self.nsect.cur = 1;
        self.lbal.cur = 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tf(nsect: u8, lbal: u8, lbam: u8, lbah: u8, device: u8) -> Taskfile {
        let mut t = Taskfile::default();
        t.nsect.write(nsect);
        t.lbal.write(lbal);
        t.lbam.write(lbam);
        t.lbah.write(lbah);
        t.device = device;
        t
    }

    #[test]
    fn lba28_addresses_and_counts() {
        let g = Geometry::for_sectors(1 << 20);
        let t = tf(0, 0x78, 0x56, 0x34, 0xe2);
        assert_eq!(t.address(false, &g), Some(0x0234_5678));
        assert_eq!(t.count(false), 256, "0 means 256");
        assert_eq!(tf(5, 0, 0, 0, 0x40).count(false), 5);
    }

    #[test]
    fn lba48_uses_the_previous_bytes() {
        let g = Geometry::for_sectors(1 << 20);
        // Each register is written twice: the high order byte first.
        let mut t = Taskfile::default();
        t.nsect.write(0x00);
        t.nsect.write(0x00);
        t.lbal.write(0x44);
        t.lbal.write(0x11);
        t.lbam.write(0x55);
        t.lbam.write(0x22);
        t.lbah.write(0x66);
        t.lbah.write(0x33);
        t.device = 0x40;
        assert_eq!(t.address(true, &g), Some(0x6655_4433_2211));
        assert_eq!(t.count(true), 65536, "0 means 65536");
        t.nsect.write(0x02);
        assert_eq!(t.count(true), 0x0002, "previous byte 0, current 2");
        assert_eq!(t.lbal.read(true), 0x44);
        assert_eq!(t.lbal.read(false), 0x11);
    }

    #[test]
    fn chs_addresses_follow_the_geometry() {
        let g = Geometry {
            cylinders: 100,
            heads: 16,
            sectors: 63,
        };
        // Cylinder 2, head 3, sector 4.
        let t = tf(1, 4, 2, 0, 0xa3);
        assert_eq!(t.address(false, &g), Some((2 * 16 + 3) * 63 + 3));
        assert_eq!(tf(1, 0, 0, 0, 0xa0).address(false, &g), None, "sector 0");
        assert_eq!(tf(1, 64, 0, 0, 0xa0).address(false, &g), None, "sector 64");
        assert_eq!(tf(1, 1, 100, 0, 0xa0).address(false, &g), None, "cylinder");
        let mut back = tf(1, 0, 0, 0, 0xa0);
        back.set_address((2 * 16 + 3) * 63 + 3, false, &g);
        assert_eq!(back.address(false, &g), t.address(false, &g));
    }

    #[test]
    fn set_address_round_trips() {
        let g = Geometry::for_sectors(1 << 30);
        let mut t = tf(1, 0, 0, 0, 0xe0);
        t.set_address(0x0abc_def1, false, &g);
        assert_eq!(t.address(false, &g), Some(0x0abc_def1));
        assert_eq!(t.device, 0xea);
        t.set_address(0x1234_5678_9abc, true, &g);
        assert_eq!(t.address(true, &g), Some(0x1234_5678_9abc));
    }

    #[test]
    fn opcodes() {
        assert_eq!(Command::decode(op::IDENTIFY_DEVICE), Command::Identify);
        assert_eq!(
            Command::decode(op::READ_MULTIPLE_EXT),
            Command::Read {
                protocol: Protocol::PioMultiple,
                ext: true
            }
        );
        assert_eq!(
            Command::decode(op::WRITE_DMA),
            Command::Write {
                protocol: Protocol::Dma,
                ext: false
            }
        );
        assert_eq!(Command::decode(0x7f), Command::NoData, "seek");
        assert_eq!(Command::decode(op::NOP), Command::Unsupported);
        assert_eq!(
            Command::decode(op::IDENTIFY_PACKET_DEVICE),
            Command::Unsupported
        );
        assert_eq!(Command::decode(op::FLUSH_CACHE_EXT), Command::Flush);
    }

    #[test]
    fn default_geometry() {
        let g = Geometry::for_sectors(8 << 11);
        assert_eq!((g.heads, g.sectors, g.cylinders), (16, 63, 16));
        assert_eq!(Geometry::for_sectors(0).cylinders, 1);
        assert_eq!(Geometry::for_sectors(u64::MAX).cylinders, 16383);
    }
}
