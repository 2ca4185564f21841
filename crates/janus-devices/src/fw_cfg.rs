//! QEMU's firmware configuration interface (fw_cfg), as firmware (SeaBIOS, OVMF) and Linux's
//! `qemu_fw_cfg` driver find it on a PC: a 16-bit selector at port 0x510, a byte-wide data port
//! at 0x511, and the DMA interface's address register at 0x514 (big-endian, 64-bit; the write
//! of its low half starts the transfer).
//!
//! Items are numbered: the signature ("QEMU"), the feature bits (traditional interface, DMA),
//! a few fixed numeric items (RAM size, CPU count, no-graphics flag), the file directory at
//! 0x19, and named files from 0x20 up (`etc/e820`, `bootorder`, `etc/sercon-port`, ...). A
//! read past an item's end gives 0, as QEMU's does. This follows QEMU's
//! docs/specs/fw_cfg.rst; the code is Janus's.

use crate::bus::BusDevice;
use janus_engine::{DmaObserver, GuestMemory};
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// The selector port; the data port is the next one, the DMA address register at +4.
pub const PORT: u16 = 0x510;
/// Ports the device answers: selector (2), data (1), a gap, and the DMA address (8).
pub const LEN: u16 = 0x0c;
/// Offset of the DMA address register from `PORT`.
const DMA_OFFSET: u64 = 4;

pub const SIGNATURE: u16 = 0x00;
pub const ID: u16 = 0x01;
pub const UUID: u16 = 0x02;
pub const RAM_SIZE: u16 = 0x03;
pub const NOGRAPHIC: u16 = 0x04;
pub const NB_CPUS: u16 = 0x05;
pub const MAX_CPUS: u16 = 0x0f;
pub const FILE_DIR: u16 = 0x19;
/// The first file's selector.
pub const FILE_FIRST: u16 = 0x20;
/// Selector bit of the architecture-specific items.
const ARCH_LOCAL: u16 = 0x8000;
/// x86's: the PIT's IRQ 0 reaches the I/O APIC on pin 2 (so firmware's MP table says so).
pub const X86_IRQ0_OVERRIDE: u16 = 0x8002;

/// Feature bits in the ID item.
const FEATURE_TRADITIONAL: u32 = 1;
const FEATURE_DMA: u32 = 2;
/// "QEMU CFG" in the DMA register's big-endian read-back, as QEMU answers.
const DMA_SIGNATURE: u64 = 0x5145_4d55_2043_4647;

/// DMA control bits.
const DMA_ERROR: u32 = 0x01;
const DMA_READ: u32 = 0x02;
const DMA_SKIP: u32 = 0x04;
const DMA_SELECT: u32 = 0x08;
const DMA_WRITE: u32 = 0x10;

/// Longest file name (with its terminating zero) the directory holds.
const NAME_LEN: usize = 56;

/// A named item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    pub name: String,
    pub data: Vec<u8>,
}

/// What the machine gives the firmware.
#[derive(Clone, Debug, Default)]
pub struct FwCfgItems {
    pub ram_size: u64,
    pub cpus: u16,
    /// No display: firmware writes its screen to the serial console (SeaBIOS through
    /// `etc/sercon-port`).
    pub nographic: bool,
    pub files: Vec<File>,
    /// Architecture-specific items (selector with bit 15 set) and their bytes.
    pub arch: Vec<(u16, Vec<u8>)>,
}

/// An E820 entry as `etc/e820` holds it (address, length, type; 20 bytes, little-endian).
pub fn e820_file(entries: &[(u64, u64, u32)]) -> File {
    let mut data = Vec::with_capacity(entries.len() * 20);
    for &(addr, len, kind) in entries {
        data.extend_from_slice(&addr.to_le_bytes());
        data.extend_from_slice(&len.to_le_bytes());
        data.extend_from_slice(&kind.to_le_bytes());
    }
    File {
        name: "etc/e820".into(),
        data,
    }
}

/// Guest memory for the DMA interface.
pub struct Dma {
    pub mem: GuestMemory,
    pub observer: Arc<dyn DmaObserver>,
}

pub struct FwCfg {
    /// Items by selector (`None`: no such item, reads give 0).
    items: Vec<Option<Vec<u8>>>,
    /// The architecture's own items, by selector without bit 15.
    arch: Vec<Option<Vec<u8>>>,
    selector: u16,
    offset: usize,
    dma: Option<Dma>,
    /// The DMA address register's high half, written first.
    dma_high: u32,
    /// Transfers the guest asked for, and those that failed (bad address or control).
    pub dma_transfers: u64,
    pub dma_errors: u64,
}

impl FwCfg {
    /// The device with `items`, and the DMA interface when `dma` is given. File names longer
    /// than the directory holds are cut.
    pub fn new(items: &FwCfgItems, dma: Option<Dma>) -> FwCfg {
        let mut v: Vec<Option<Vec<u8>>> = vec![None; FILE_FIRST as usize + items.files.len()];
        v[SIGNATURE as usize] = Some(b"QEMU".to_vec());
        let features = FEATURE_TRADITIONAL | if dma.is_some() { FEATURE_DMA } else { 0 };
        v[ID as usize] = Some(features.to_le_bytes().to_vec());
        v[UUID as usize] = Some(vec![0; 16]);
        v[RAM_SIZE as usize] = Some(items.ram_size.to_le_bytes().to_vec());
        v[NOGRAPHIC as usize] = Some((items.nographic as u16).to_le_bytes().to_vec());
        v[NB_CPUS as usize] = Some(items.cpus.to_le_bytes().to_vec());
        v[MAX_CPUS as usize] = Some(items.cpus.to_le_bytes().to_vec());
        // The directory: a big-endian count, then per file its size (BE32), selector (BE16),
        // two reserved bytes and its name, zero-padded.
        let mut dir = (items.files.len() as u32).to_be_bytes().to_vec();
        for (k, f) in items.files.iter().enumerate() {
            let select = FILE_FIRST + k as u16;
            dir.extend_from_slice(&(f.data.len() as u32).to_be_bytes());
            dir.extend_from_slice(&select.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut name = [0u8; NAME_LEN];
            let n = f.name.len().min(NAME_LEN - 1);
            name[..n].copy_from_slice(&f.name.as_bytes()[..n]);
            dir.extend_from_slice(&name);
            v[select as usize] = Some(f.data.clone());
        }
        v[FILE_DIR as usize] = Some(dir);
        let mut arch: Vec<Option<Vec<u8>>> = Vec::new();
        for (key, data) in &items.arch {
            let k = (key & 0x3fff) as usize;
            if arch.len() <= k {
                arch.resize(k + 1, None);
            }
            arch[k] = Some(data.clone());
        }
        FwCfg {
            items: v,
            arch,
            selector: 0,
            offset: 0,
            dma,
            dma_high: 0,
            dma_transfers: 0,
            dma_errors: 0,
        }
    }

    fn select(&mut self, key: u16) {
        self.selector = key;
        self.offset = 0;
    }

    fn item(&self) -> &[u8] {
        // Bit 15 selects the architecture's own items (x86: the legacy ACPI, SMBIOS and E820
        // tables, which Janus does not give, and the IRQ 0 override); bit 14 marks a write.
        let table = if self.selector & ARCH_LOCAL != 0 {
            &self.arch
        } else {
            &self.items
        };
        table
            .get((self.selector & 0x3fff) as usize)
            .and_then(|i| i.as_deref())
            .unwrap_or(&[])
    }

    fn read_byte(&mut self) -> u8 {
        let b = self.item().get(self.offset).copied().unwrap_or(0);
        self.offset = self.offset.saturating_add(1);
        b
    }

    /// Runs the DMA request whose descriptor is at guest address `at`: the control word (and
    /// selector), length and address, big-endian; the control word is written back with 0 on
    /// success or the error bit.
    fn dma(&mut self, at: u64) {
        self.dma_transfers += 1;
        let ok = self.dma_request(at);
        let Some(dma) = &self.dma else {
            return;
        };
        if !ok {
            self.dma_errors += 1;
        }
        let control = if ok { 0u32 } else { DMA_ERROR };
        let a = GuestAddress(at);
        if dma.mem.write_obj(control.to_be_bytes(), a).is_ok() {
            dma.observer.dma_written(at, 4);
        }
    }

    fn dma_request(&mut self, at: u64) -> bool {
        let Some(dma) = &self.dma else {
            return false;
        };
        let mut desc = [0u8; 16];
        if dma.mem.read_slice(&mut desc, GuestAddress(at)).is_err() {
            return false;
        }
        let control = u32::from_be_bytes(desc[0..4].try_into().unwrap_or_default());
        let len = u32::from_be_bytes(desc[4..8].try_into().unwrap_or_default()) as usize;
        let addr = u64::from_be_bytes(desc[8..16].try_into().unwrap_or_default());
        if control & DMA_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        if control & DMA_WRITE != 0 {
            // Janus's items are read-only; a write is an error, as QEMU reports for them.
            return false;
        }
        if control & DMA_READ != 0 {
            // The destination is checked before anything is copied or allocated: the length
            // is the guest's (up to 4 GiB).
            let a = GuestAddress(addr);
            if !self.dma.as_ref().is_some_and(|d| d.mem.check_range(a, len)) {
                return false;
            }
            let item = self.item();
            let start = self.offset.min(item.len());
            let end = self.offset.saturating_add(len).min(item.len());
            let mut data = item[start..end].to_vec();
            data.resize(len, 0);
            let Some(dma) = &self.dma else {
                return false;
            };
            if dma.mem.write_slice(&data, a).is_err() {
                return false;
            }
            dma.observer.dma_written(addr, len as u64);
            self.offset = self.offset.saturating_add(len);
        } else if control & DMA_SKIP != 0 {
            self.offset = self.offset.saturating_add(len);
        }
        control & !(DMA_SELECT | DMA_READ | DMA_SKIP | DMA_WRITE | 0xffff_0000) == 0
    }
}

impl BusDevice for FwCfg {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            // Reading the selector gives nothing useful on QEMU either.
            0 | 2 | 3 => data.fill(0),
            1 => {
                for b in data.iter_mut() {
                    *b = self.read_byte();
                }
            }
            o if (DMA_OFFSET..DMA_OFFSET + 8).contains(&o) && self.dma.is_some() => {
                let sig = DMA_SIGNATURE.to_be_bytes();
                for (k, b) in data.iter_mut().enumerate() {
                    *b = sig.get((o - DMA_OFFSET) as usize + k).copied().unwrap_or(0);
                }
            }
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let value = |d: &[u8]| {
            let mut v = [0u8; 4];
            let n = d.len().min(4);
            v[..n].copy_from_slice(&d[..n]);
            v
        };
        match (offset, data.len()) {
            (0, 2) => self.select(u16::from_le_bytes([data[0], data[1]])),
            // The high half of the DMA address, then the low half, which starts the request.
            (4, 4) => self.dma_high = u32::from_be_bytes(value(data)),
            (8, 4) => {
                let low = u32::from_be_bytes(value(data));
                let at = (self.dma_high as u64) << 32 | low as u64;
                self.dma_high = 0;
                if self.dma.is_some() {
                    self.dma(at);
                }
            }
            // Byte writes to the data port (the old write interface) are ignored.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(dma: bool) -> (FwCfg, GuestMemory) {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("memory");
        let items = FwCfgItems {
            ram_size: 512 << 20,
            cpus: 1,
            nographic: true,
            files: vec![
                e820_file(&[(0, 0x9fc00, 1)]),
                File {
                    name: "etc/sercon-port".into(),
                    data: 0x3f8u16.to_le_bytes().to_vec(),
                },
            ],
            arch: vec![(X86_IRQ0_OVERRIDE, 1u32.to_le_bytes().to_vec())],
        };
        let d = dma.then(|| Dma {
            mem: mem.clone(),
            observer: Arc::new(janus_engine::NoDmaObserver),
        });
        (FwCfg::new(&items, d), mem)
    }

    fn read_item(d: &mut FwCfg, key: u16, len: usize) -> Vec<u8> {
        d.write(0, &key.to_le_bytes());
        (0..len)
            .map(|_| {
                let mut b = [0u8];
                d.read(1, &mut b);
                b[0]
            })
            .collect()
    }

    #[test]
    fn signature_features_and_numbers() {
        let (mut d, _) = device(false);
        assert_eq!(read_item(&mut d, SIGNATURE, 4), b"QEMU");
        assert_eq!(read_item(&mut d, ID, 4), [1, 0, 0, 0]);
        assert_eq!(read_item(&mut d, RAM_SIZE, 8), (512u64 << 20).to_le_bytes());
        assert_eq!(read_item(&mut d, NB_CPUS, 2), [1, 0]);
        // Past the end, and an item that does not exist: zeros.
        assert_eq!(read_item(&mut d, NOGRAPHIC, 4), [1, 0, 0, 0]);
        assert_eq!(read_item(&mut d, 0x1234, 2), [0, 0]);
        // x86's legacy ACPI table count (0x8000) is absent, not the signature.
        assert_eq!(read_item(&mut d, 0x8000, 2), [0, 0]);
        assert_eq!(read_item(&mut d, X86_IRQ0_OVERRIDE, 4), [1, 0, 0, 0]);
        let (mut d, _) = device(true);
        assert_eq!(read_item(&mut d, ID, 4), [3, 0, 0, 0]);
    }

    #[test]
    fn the_directory_names_every_file() {
        let (mut d, _) = device(false);
        let count = u32::from_be_bytes(read_item(&mut d, FILE_DIR, 4).try_into().unwrap());
        assert_eq!(count, 2);
        let dir = read_item(&mut d, FILE_DIR, 4 + 2 * 64);
        let entry = &dir[4 + 64..4 + 128];
        assert_eq!(u32::from_be_bytes(entry[0..4].try_into().unwrap()), 2);
        let select = u16::from_be_bytes(entry[4..6].try_into().unwrap());
        assert_eq!(select, FILE_FIRST + 1);
        assert!(entry[8..].starts_with(b"etc/sercon-port\0"));
        assert_eq!(read_item(&mut d, select, 2), [0xf8, 0x03]);
        let e820 = read_item(&mut d, FILE_FIRST, 20);
        assert_eq!(&e820[8..16], &0x9fc00u64.to_le_bytes());
    }

    #[test]
    fn dma_reads_skips_and_reports_errors() {
        let (mut d, mem) = device(true);
        let mut sig = [0u8; 8];
        d.read(4, &mut sig);
        assert_eq!(&sig, b"QEMU CFG");
        // Select the signature and read 6 bytes (two past its end) to 0x2000.
        let desc = |control: u32, len: u32, addr: u64| {
            let mut v = control.to_be_bytes().to_vec();
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(&addr.to_be_bytes());
            v
        };
        let go = |d: &mut FwCfg, at: u32| {
            d.write(4, &0u32.to_be_bytes());
            d.write(8, &at.to_be_bytes());
        };
        mem.write_slice(&[0xaa; 8], GuestAddress(0x2000)).unwrap();
        let c = (SIGNATURE as u32) << 16 | DMA_SELECT | DMA_READ;
        mem.write_slice(&desc(c, 6, 0x2000), GuestAddress(0x1000))
            .unwrap();
        go(&mut d, 0x1000);
        let mut out = [0u8; 8];
        mem.read_slice(&mut out, GuestAddress(0x2000)).unwrap();
        assert_eq!(&out, b"QEMU\0\0\xaa\xaa");
        let mut control = [0u8; 4];
        mem.read_slice(&mut control, GuestAddress(0x1000)).unwrap();
        assert_eq!(control, [0; 4]);
        // Skip two bytes of RAM_SIZE, read one.
        let c = (RAM_SIZE as u32) << 16 | DMA_SELECT | DMA_SKIP;
        mem.write_slice(&desc(c, 3, 0), GuestAddress(0x1000))
            .unwrap();
        go(&mut d, 0x1000);
        mem.write_slice(&desc(DMA_READ, 1, 0x2000), GuestAddress(0x1000))
            .unwrap();
        go(&mut d, 0x1000);
        mem.read_slice(&mut out[..1], GuestAddress(0x2000)).unwrap();
        assert_eq!(out[0], 0x20, "byte 3 of 512 MiB");
        // A read to an address outside RAM fails with the error bit.
        mem.write_slice(&desc(DMA_READ, 16, 1 << 40), GuestAddress(0x1000))
            .unwrap();
        go(&mut d, 0x1000);
        mem.read_slice(&mut control, GuestAddress(0x1000)).unwrap();
        assert_eq!(u32::from_be_bytes(control), DMA_ERROR);
        assert_eq!(d.dma_errors, 1);
    }
}
