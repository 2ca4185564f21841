//! ACPI tables for firmware to install: QEMU's `etc/table-loader` protocol (fw_cfg files
//! SeaBIOS and OVMF execute). The tables go in one file (`etc/acpi/tables`) built as if it
//! sat at address 0, the RSDP in another (`etc/acpi/rsdp`); the loader script tells the
//! firmware to allocate each (the RSDP in the F segment, where an OS's scan finds it), to
//! add each file's final address to the pointers between them, and to fix every checksum.
//! The tables are the ones a direct boot gets (`acpi.rs`). Written from QEMU's
//! hw/acpi/bios-linker-loader.c description of the format; the code is Janus's.

use crate::acpi::{self, AcpiConfig};
use crate::Result;
use acpi_tables::facs::FACS;
use acpi_tables::rsdp::Rsdp;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;

pub const TABLES_FILE: &str = "etc/acpi/tables";
pub const RSDP_FILE: &str = "etc/acpi/rsdp";
pub const LOADER_FILE: &str = "etc/table-loader";

const CMD_ALLOCATE: u32 = 1;
const CMD_ADD_POINTER: u32 = 2;
const CMD_ADD_CHECKSUM: u32 = 3;
/// Allocation zones: anywhere in RAM, or the F segment (0xF0000-0xFFFFF).
const ZONE_HIGH: u8 = 1;
const ZONE_FSEG: u8 = 2;
/// Each command is 128 bytes; file names are 56 (with their terminating zero).
const COMMAND_LEN: usize = 128;
const NAME_LEN: usize = 56;

/// The three fw_cfg files: tables, RSDP, loader script.
pub struct LoaderFiles {
    pub tables: Vec<u8>,
    pub rsdp: Vec<u8>,
    pub loader: Vec<u8>,
}

#[derive(Default)]
struct Script(Vec<u8>);

impl Script {
    fn command(&mut self, cmd: u32, body: &[u8]) {
        let mut c = [0u8; COMMAND_LEN];
        c[..4].copy_from_slice(&cmd.to_le_bytes());
        c[4..4 + body.len()].copy_from_slice(body);
        self.0.extend_from_slice(&c);
    }

    fn name(file: &str) -> [u8; NAME_LEN] {
        let mut n = [0u8; NAME_LEN];
        n[..file.len()].copy_from_slice(file.as_bytes());
        n
    }

    fn allocate(&mut self, file: &str, align: u32, zone: u8) {
        let mut b = Self::name(file).to_vec();
        b.extend_from_slice(&align.to_le_bytes());
        b.push(zone);
        self.command(CMD_ALLOCATE, &b);
    }

    /// Adds `src`'s address to the `size`-byte pointer at `offset` in `dest`.
    fn add_pointer(&mut self, dest: &str, src: &str, offset: usize, size: u8) {
        let mut b = Self::name(dest).to_vec();
        b.extend_from_slice(&Self::name(src));
        b.extend_from_slice(&(offset as u32).to_le_bytes());
        b.push(size);
        self.command(CMD_ADD_POINTER, &b);
    }

    /// Sets the byte at `offset` in `file` so that `len` bytes from `start` sum to zero.
    fn add_checksum(&mut self, file: &str, offset: usize, start: usize, len: usize) {
        let mut b = Self::name(file).to_vec();
        for v in [offset, start, len] {
            b.extend_from_slice(&(v as u32).to_le_bytes());
        }
        self.command(CMD_ADD_CHECKSUM, &b);
    }
}

fn bytes(t: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    t.to_aml_bytes(&mut v);
    v
}

/// Byte offset of a table's checksum, and of the FADT's pointers.
const CHECKSUM: usize = 9;
const FADT_FIRMWARE_CTRL: usize = 36;
const FADT_DSDT: usize = 40;
const FADT_X_DSDT: usize = 140;
const XSDT_ENTRIES: usize = 36;
const RSDP_XSDT: usize = 24;

/// Builds the tables for `cfg` with the loader script that installs them.
pub fn build(cfg: &AcpiConfig) -> Result<LoaderFiles> {
    // The FACS first (the allocation is 64-byte aligned, as the FACS must be), then the
    // tables, each at a 16-byte boundary.
    let mut t = bytes(&FACS::new());
    let place = |t: &mut Vec<u8>, table: &[u8]| {
        t.resize(t.len().next_multiple_of(16), 0);
        let at = t.len();
        t.extend_from_slice(table);
        at
    };
    let facs = 0;
    let dsdt = place(&mut t, &acpi::dsdt(cfg));
    let fadt = place(&mut t, &acpi::fadt(facs as u64, dsdt as u64)?);
    let madt = place(&mut t, &acpi::madt(cfg)?);
    let mut x = XSDT::new(acpi::OEM_ID, acpi::OEM_TABLE_ID, 1);
    x.add_entry(fadt as u64);
    x.add_entry(madt as u64);
    let xsdt = place(&mut t, &bytes(&x));
    let rsdp = bytes(&Rsdp::new(acpi::OEM_ID, xsdt as u64));

    let mut s = Script::default();
    s.allocate(RSDP_FILE, 16, ZONE_FSEG);
    s.allocate(TABLES_FILE, 64, ZONE_HIGH);
    s.add_pointer(TABLES_FILE, TABLES_FILE, fadt + FADT_FIRMWARE_CTRL, 4);
    s.add_pointer(TABLES_FILE, TABLES_FILE, fadt + FADT_DSDT, 4);
    s.add_pointer(TABLES_FILE, TABLES_FILE, fadt + FADT_X_DSDT, 8);
    for k in 0..2 {
        s.add_pointer(TABLES_FILE, TABLES_FILE, xsdt + XSDT_ENTRIES + 8 * k, 8);
    }
    s.add_pointer(RSDP_FILE, TABLES_FILE, RSDP_XSDT, 8);
    for at in [dsdt, fadt, madt, xsdt] {
        let len = u32::from_le_bytes(t[at + 4..at + 8].try_into().unwrap_or_default()) as usize;
        s.add_checksum(TABLES_FILE, at + CHECKSUM, at, len);
    }
    // The RSDP's checksum covers its first 20 bytes, the extended one all 36.
    s.add_checksum(RSDP_FILE, 8, 0, 20);
    s.add_checksum(RSDP_FILE, 32, 0, rsdp.len());
    Ok(LoaderFiles {
        tables: t,
        rsdp,
        loader: s.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the script as firmware would, with the tables at `base` and the RSDP at `rsdp_at`.
    fn execute(f: &LoaderFiles, base: u64, rsdp_at: u64) -> (Vec<u8>, Vec<u8>) {
        let (mut t, mut r) = (f.tables.clone(), f.rsdp.clone());
        for c in f.loader.chunks(COMMAND_LEN) {
            let cmd = u32::from_le_bytes(c[..4].try_into().unwrap());
            let name = |o: usize| {
                let n = &c[o..o + NAME_LEN];
                String::from_utf8(n[..n.iter().position(|&b| b == 0).unwrap()].to_vec()).unwrap()
            };
            let u32_at = |o: usize| u32::from_le_bytes(c[o..o + 4].try_into().unwrap()) as usize;
            match cmd {
                CMD_ALLOCATE => {}
                CMD_ADD_POINTER => {
                    let (dest, src) = (name(4), name(4 + NAME_LEN));
                    let (off, size) = (u32_at(4 + 2 * NAME_LEN), c[8 + 2 * NAME_LEN] as usize);
                    let add = if src == TABLES_FILE { base } else { rsdp_at };
                    let file = if dest == TABLES_FILE { &mut t } else { &mut r };
                    let mut v = [0u8; 8];
                    v[..size].copy_from_slice(&file[off..off + size]);
                    let p = u64::from_le_bytes(v) + add;
                    file[off..off + size].copy_from_slice(&p.to_le_bytes()[..size]);
                }
                CMD_ADD_CHECKSUM => {
                    let file = if name(4) == TABLES_FILE {
                        &mut t
                    } else {
                        &mut r
                    };
                    let (off, start, len) = (
                        u32_at(4 + NAME_LEN),
                        u32_at(8 + NAME_LEN),
                        u32_at(12 + NAME_LEN),
                    );
                    let sum = file[start..start + len]
                        .iter()
                        .fold(0u8, |a, b| a.wrapping_add(*b));
                    file[off] = file[off].wrapping_sub(sum);
                }
                other => panic!("command {other}"),
            }
        }
        (t, r)
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    #[test]
    fn the_script_links_the_tables_wherever_they_land() {
        let f = build(&AcpiConfig::new(1)).unwrap();
        assert_eq!(f.loader.len() % COMMAND_LEN, 0);
        let base = 0x1fff_0000u64;
        let (t, r) = execute(&f, base, 0xf_5000);
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(sum(&r[..20]), 0);
        assert_eq!(sum(&r), 0);
        let xsdt = (u64::from_le_bytes(r[24..32].try_into().unwrap()) - base) as usize;
        assert_eq!(&t[xsdt..xsdt + 4], b"XSDT");
        let at = |o: usize| u64::from_le_bytes(t[o..o + 8].try_into().unwrap()) - base;
        let fadt = at(xsdt + 36) as usize;
        let madt = at(xsdt + 44) as usize;
        assert_eq!(&t[fadt..fadt + 4], b"FACP");
        assert_eq!(&t[madt..madt + 4], b"APIC");
        let u32_at = |o: usize| u32::from_le_bytes(t[o..o + 4].try_into().unwrap()) as u64;
        assert_eq!(u32_at(fadt + 36), base, "FACS at the allocation's start");
        let dsdt = (u32_at(fadt + 40) - base) as usize;
        assert_eq!(at(fadt + 140) as usize, dsdt);
        assert_eq!(&t[dsdt..dsdt + 4], b"DSDT");
        assert_eq!(&t[..4], b"FACS");
        for o in [xsdt, fadt, madt, dsdt] {
            let len = u32_at(o + 4) as usize;
            assert_eq!(
                sum(&t[o..o + len]),
                0,
                "{}",
                String::from_utf8_lossy(&t[o..o + 4])
            );
        }
    }
}
