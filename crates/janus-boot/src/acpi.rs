//! ACPI tables for the PC platform, written into the BIOS area where firmware would leave them.
//!
//! ```text
//! 0xe0000  RSDP (revision 2; 16-byte aligned, so the legacy scan of 0xe0000..0xfffff finds it)
//!          FACS (64-byte aligned)
//!          XSDT -> FADT, MADT
//!          FADT -> FACS, DSDT
//!          MADT, DSDT        (each table 16-byte aligned, all below 1 MiB)
//! ```
//!
//! The FADT describes a legacy (not hardware-reduced) PC whose fixed hardware is Janus's ACPI PM
//! block: PM1a event and control blocks, a 24-bit PM timer, the SCI on IRQ 9. There is no SMI
//! command port: the platform is always in ACPI mode. The reset register is the i8042 command
//! port (write 0xFE), the reset every PC has (port 0xCF9 resets too, for OSes that try it).
//!
//! The DSDT holds `\_S5` (soft off) with [`pc::SLP_TYP_S5`], so an OS that powers off writes that
//! sleep type to PM1a_CNT, and any extra AML the platform adds ([`AcpiConfig::dsdt_aml`], for
//! example a PCI host bridge: Linux finds PCI through the DSDT when ACPI is on).
//!
//! The MADT lists one local APIC per vCPU (APIC ID = vCPU index), one I/O APIC (by default with
//! the next ID), the two ISA overrides a PC has (IRQ 0 -> GSI 2, SCI level-triggered), the LINT1
//! NMI and PCAT_COMPAT (8259s present). There is no HPET table: the platform has no HPET.

use crate::{layout, BootError, Result};
use acpi_tables::aml;
use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use janus_abi::pc;
use janus_engine::GuestMemory;
use vm_memory::{Bytes, GuestAddress};

/// OEM ID in every table header.
pub const OEM_ID: [u8; 6] = *b"JANUS ";
/// OEM table ID in every table header.
pub const OEM_TABLE_ID: [u8; 8] = *b"JANUSPC ";
const OEM_REVISION: u32 = 1;

/// Most vCPUs the tables describe: APIC IDs are 8 bits, the I/O APIC takes the ID after the last
/// CPU, and 0xFF is the broadcast ID.
pub const MAX_VCPUS: u32 = 254;

/// IAPC_BOOT_ARCH: legacy (ISA) devices present.
pub const BOOT_ARCH_LEGACY_DEVICES: u16 = 1 << 0;
/// IAPC_BOOT_ARCH: an 8042 keyboard controller is present.
pub const BOOT_ARCH_8042: u16 = 1 << 1;
/// IAPC_BOOT_ARCH: probing for VGA is not safe (there is none).
pub const BOOT_ARCH_VGA_NOT_PRESENT: u16 = 1 << 2;

/// MADT flags: the PC's dual 8259 PICs are present (and must be masked to use the APICs).
pub const MADT_PCAT_COMPAT: u32 = 1;
/// MADT entry type: interrupt source override.
pub const MADT_INT_SRC_OVERRIDE: u8 = 2;
/// MADT entry type: local APIC NMI.
pub const MADT_LAPIC_NMI: u8 = 4;
/// MPS INTI flags: active high.
pub const INTI_ACTIVE_HIGH: u16 = 0b01;
/// MPS INTI flags: edge-triggered.
pub const INTI_EDGE: u16 = 0b01 << 2;
/// MPS INTI flags: level-triggered.
pub const INTI_LEVEL: u16 = 0b11 << 2;

/// What the tables describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiConfig {
    /// vCPUs (1..=[`MAX_VCPUS`]); vCPU `i` has APIC ID `i` and ACPI processor UID `i`.
    pub vcpus: u32,
    /// The I/O APIC's ID in the MADT; [`AcpiConfig::new`] makes it the one after the last
    /// CPU's. It should match what the I/O APIC model reports in its ID register (Linux on
    /// x86-64 takes the MADT's value and never reprograms the register, so a mismatch is
    /// harmless but confusing).
    pub ioapic_id: u8,
    /// AML appended to the DSDT's body after `\_S5` (devices the platform wants the OS to find
    /// through ACPI, such as a PCI host bridge). Empty by default.
    pub dsdt_aml: Vec<u8>,
}

impl AcpiConfig {
    pub fn new(vcpus: u32) -> AcpiConfig {
        AcpiConfig {
            vcpus,
            ioapic_id: vcpus.min(MAX_VCPUS) as u8,
            dsdt_aml: Vec::new(),
        }
    }
}

/// Guest-physical addresses of the tables [`write_acpi`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcpiLayout {
    pub rsdp: u64,
    pub facs: u64,
    pub xsdt: u64,
    pub fadt: u64,
    pub madt: u64,
    pub dsdt: u64,
    /// First byte after the last table.
    pub end: u64,
}

fn bad(msg: impl Into<String>) -> BootError {
    BootError::Acpi(msg.into())
}

fn to_bytes(t: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    t.to_aml_bytes(&mut v);
    v
}

/// The DSDT: `\_S5` and the platform's extra AML.
pub fn dsdt(cfg: &AcpiConfig) -> Vec<u8> {
    let typ = pc::SLP_TYP_S5 as u8;
    // Package { SLP_TYP for PM1a_CNT, SLP_TYP for PM1b_CNT, reserved, reserved }.
    let s5 = aml::Name::new(
        "_S5_".into(),
        &aml::Package::new(vec![&typ, &typ, &aml::ZERO, &aml::ZERO]),
    );
    let mut table = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    table.append_slice(&to_bytes(&s5));
    if !cfg.dsdt_aml.is_empty() {
        table.append_slice(&cfg.dsdt_aml);
    }
    table.as_slice().to_vec()
}

fn gas_io(port: u16, bytes: u8, access: AccessSize) -> GAS {
    GAS::new(AddressSpace::SystemIo, bytes * 8, 0, access, port.into())
}

/// The FADT (revision 6, 276 bytes) pointing at the FACS and DSDT.
pub fn fadt(facs: u64, dsdt: u64) -> Result<Vec<u8>> {
    let facs32 = u32::try_from(facs).map_err(|_| bad("FACS above 4 GiB"))?;
    let dsdt32 = u32::try_from(dsdt).map_err(|_| bad("DSDT above 4 GiB"))?;
    let mut f = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        // WBINVD works; C1 (HLT) works on every CPU; no fixed power or sleep button; the RTC
        // alarm is not in PM1 status; reset through RESET_REG; physical APIC destination mode
        // (Linux then never uses logical/flat delivery, which the emulated APICs need not model).
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::FixRtc)
        .flag(Flags::ResetRegSup)
        .flag(Flags::ForceApicPhysicalDestinationMode);
    // Exactly one of FIRMWARE_CTRL / X_FIRMWARE_CTRL may be set; DSDT and X_DSDT agree.
    f.firmware_ctrl = facs32.into();
    f.dsdt = dsdt32.into();
    f.x_dsdt = dsdt.into();
    f.sci_int = (pc::SCI_IRQ as u16).into();
    // SMI_CMD = 0: no SMI handler, ACPI mode is always on (ACPI_ENABLE/DISABLE stay 0).
    f.smi_cmd = 0.into();
    f.pm1a_evt_blk = u32::from(pc::PM1A_EVT_BLK).into();
    f.pm1a_cnt_blk = u32::from(pc::PM1A_CNT_BLK).into();
    f.pm_tmr_blk = u32::from(pc::PM_TMR_BLK).into();
    f.pm1_evt_len = 4;
    f.pm1_cnt_len = 2;
    f.pm_tmr_len = 4;
    // No C2/C3 (latencies above the spec's limits say "not supported").
    f.p_lvl2_lat = 101.into();
    f.p_lvl3_lat = 1001.into();
    f.century = pc::CMOS_CENTURY;
    f.iapc_boot_arch =
        (BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_8042 | BOOT_ARCH_VGA_NOT_PRESENT).into();
    f.reset_reg = gas_io(pc::I8042_COMMAND, 1, AccessSize::ByteAccess);
    f.reset_value = pc::I8042_CMD_RESET;
    f.x_pm1a_evt_blk = gas_io(pc::PM1A_EVT_BLK, 4, AccessSize::Undefined);
    f.x_pm1a_cnt_blk = gas_io(pc::PM1A_CNT_BLK, 2, AccessSize::Undefined);
    f.x_pm_tmr_blk = gas_io(pc::PM_TMR_BLK, 4, AccessSize::Undefined);
    Ok(to_bytes(&f.finalize()))
}

/// The MADT: local APICs, the I/O APIC, the ISA overrides and the LINT1 NMI.
pub fn madt(cfg: &AcpiConfig) -> Result<Vec<u8>> {
    if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
        return Err(bad(format!(
            "{} vCPUs cannot be described; 1 to {MAX_VCPUS} can",
            cfg.vcpus
        )));
    }
    let lapic = u32::try_from(pc::LAPIC_BASE).map_err(|_| bad("local APIC above 4 GiB"))?;
    let ioapic = u32::try_from(pc::IOAPIC_BASE).map_err(|_| bad("I/O APIC above 4 GiB"))?;
    let mut t = Sdt::new(*b"APIC", 44, 5, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    t.write_u32(36, lapic);
    t.write_u32(40, MADT_PCAT_COMPAT);
    for i in 0..cfg.vcpus as u8 {
        t.append_slice(&to_bytes(&ProcessorLocalApic::new(
            i,
            i,
            EnabledStatus::Enabled,
        )));
    }
    if cfg.ioapic_id == 0xff {
        return Err(bad("I/O APIC ID 0xff is the broadcast ID"));
    }
    t.append_slice(&to_bytes(&IoApic::new(cfg.ioapic_id, ioapic, 0)));
    // The PIT's IRQ 0 is wired to I/O APIC pin 2 (pin 0 carries the 8259's INTR), edge.
    t.append_slice(&int_src_override(0, 2, INTI_ACTIVE_HIGH | INTI_EDGE));
    // The SCI is level-triggered, active high, on its own pin.
    t.append_slice(&int_src_override(
        pc::SCI_IRQ as u8,
        pc::SCI_IRQ,
        INTI_ACTIVE_HIGH | INTI_LEVEL,
    ));
    // LINT1 of every processor (UID 0xFF) is the NMI input.
    t.append_slice(&[MADT_LAPIC_NMI, 6, 0xff, 0, 0, 1]);
    Ok(t.as_slice().to_vec())
}

fn int_src_override(irq: u8, gsi: u32, flags: u16) -> [u8; 10] {
    let mut e = [0u8; 10];
    e[0] = MADT_INT_SRC_OVERRIDE;
    e[1] = 10;
    e[2] = 0; // bus: ISA
    e[3] = irq;
    e[4..8].copy_from_slice(&gsi.to_le_bytes());
    e[8..10].copy_from_slice(&flags.to_le_bytes());
    e
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// Builds every table for `cfg` and writes them at [`layout::ACPI_START`]; returns where each
/// one went. Fails (writing nothing) if they do not fit below 1 MiB.
pub fn write_acpi_tables(mem: &GuestMemory, cfg: &AcpiConfig) -> Result<AcpiLayout> {
    let rsdp = layout::ACPI_START;
    let facs = align_up(rsdp + Rsdp::len() as u64, 64);
    let xsdt = align_up(facs + FACS::len() as u64, 16);
    // The XSDT has a 36-byte header and two 8-byte entries.
    let fadt_at = align_up(xsdt + 36 + 2 * 8, 16);
    let madt_at = align_up(fadt_at + acpi_tables::fadt::FADT::len() as u64, 16);
    let madt = madt(cfg)?;
    let dsdt_at = align_up(madt_at + madt.len() as u64, 16);
    let dsdt = dsdt(cfg);
    let end = dsdt_at + dsdt.len() as u64;
    if end > layout::BIOS_AREA_END {
        return Err(bad(format!(
            "the tables need {} bytes; {} fit in the BIOS area",
            end - rsdp,
            layout::BIOS_AREA_END - rsdp
        )));
    }
    let fadt = fadt(facs, dsdt_at)?;
    let mut x = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    x.add_entry(fadt_at);
    x.add_entry(madt_at);
    let xsdt_bytes = to_bytes(&x);
    debug_assert_eq!(xsdt_bytes.len(), 36 + 2 * 8);

    // Clear the whole area first: stale bytes must not look like a second RSDP to the scan.
    let area = (layout::BIOS_AREA_END - layout::ACPI_START) as usize;
    mem.write_slice(&vec![0u8; area], GuestAddress(layout::ACPI_START))?;
    for (at, bytes) in [
        (rsdp, to_bytes(&Rsdp::new(OEM_ID, xsdt))),
        (facs, to_bytes(&FACS::new())),
        (xsdt, xsdt_bytes),
        (fadt_at, fadt),
        (madt_at, madt),
        (dsdt_at, dsdt),
    ] {
        mem.write_slice(&bytes, GuestAddress(at))?;
    }
    Ok(AcpiLayout {
        rsdp,
        facs,
        xsdt,
        fadt: fadt_at,
        madt: madt_at,
        dsdt: dsdt_at,
        end,
    })
}

/// Writes the tables (see [`write_acpi_tables`]) and returns the RSDP's address.
pub fn write_acpi(mem: &GuestMemory, cfg: &AcpiConfig) -> Result<u64> {
    Ok(write_acpi_tables(mem, cfg)?.rsdp)
}

/// Start of the 32-bit PCI memory window (the MMIO hole below 4 GiB, up to the I/O APIC).
pub const PCI_MMIO_START: u32 = 0xc000_0000;
/// End (inclusive) of the 32-bit PCI memory window.
pub const PCI_MMIO_END: u32 = 0xfebf_ffff;

/// A virtio-mmio device as the DSDT declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmio {
    /// Its register page.
    pub base: u32,
    pub size: u32,
    /// Its interrupt: level-triggered, active-high.
    pub gsi: u32,
}

/// AML for virtio-mmio devices, `\_SB.VRnn`: each an `LNRO0005` device (the ACPI ID Linux's
/// virtio_mmio driver binds) with its register page and interrupt. Under ACPI this is how
/// Linux finds them when its virtio_mmio has no `device=` parameter (Debian builds it
/// without), and it lets the interrupt be a level-triggered GSI above the ISA range.
pub fn virtio_mmio_aml(devices: &[VirtioMmio]) -> Vec<u8> {
    use aml::{Device, Interrupt, Memory32Fixed, Name, Path, ResourceTemplate};
    let mut out = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let hid = Name::new("_HID".into(), &"LNRO0005");
        let uid_value = i as u32;
        let uid = Name::new("_UID".into(), &uid_value);
        let regs = Memory32Fixed::new(true, d.base, d.size);
        let irq = Interrupt::new(true, false, false, false, d.gsi);
        let crs_value = ResourceTemplate::new(vec![&regs, &irq]);
        let crs = Name::new("_CRS".into(), &crs_value);
        let path = Path::new(&format!("\\_SB_.VR{i:02}"));
        Device::new(path, vec![&hid, &uid, &crs]).to_aml_bytes(&mut out);
    }
    out
}

/// AML for QEMU's pvpanic device (`\_SB.PEVT`, `QEMU0001`) at I/O port `port`, which Linux's
/// `pvpanic-mmio` driver binds to.
pub fn pvpanic_aml(port: u16) -> Vec<u8> {
    use aml::{Device, Name, Path, ResourceTemplate, IO};
    let hid = Name::new("_HID".into(), &"QEMU0001");
    let io = IO::new(port, port, 1, 1);
    let crs_value = ResourceTemplate::new(vec![&io]);
    let crs = Name::new("_CRS".into(), &crs_value);
    let mut out = Vec::new();
    Device::new(Path::new("\\_SB_.PEVT"), vec![&hid, &crs]).to_aml_bytes(&mut out);
    out
}

/// One `_PRT` entry: PCI `slot`'s interrupt `pin` (0 = INTA#) is wired to `gsi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciRoute {
    pub slot: u8,
    pub pin: u8,
    pub gsi: u32,
}

/// AML for the PCI host bridge `\_SB.PCI0` (PNP0A03, bus 0): its bus, I/O and memory windows
/// and the interrupt routing of its slots. Under ACPI, Linux enumerates PCI only below a host
/// bridge the DSDT declares.
pub fn pci_host_bridge_aml(routes: &[PciRoute]) -> Vec<u8> {
    use aml::{
        AddressSpaceCacheable, Device, EISAName, Name, Package, Path, ResourceTemplate, Zero, IO,
    };
    let hid = EISAName::new("PNP0A03");
    let bus = aml::AddressSpace::<u16>::new_bus_number(0, 0xff);
    let cfg_ports = IO::new(0xcf8, 0xcf8, 1, 8);
    let io_low = aml::AddressSpace::<u16>::new_io(0x0000, 0x0cf7, None);
    let io_high = aml::AddressSpace::<u16>::new_io(0x0d00, 0xffff, None);
    let memory = |min, max| {
        aml::AddressSpace::<u32>::new_memory(
            AddressSpaceCacheable::NotCacheable,
            true,
            min,
            max,
            None,
        )
    };
    let vga = memory(0x000a_0000, 0x000b_ffff);
    let mmio = memory(PCI_MMIO_START, PCI_MMIO_END);
    let crs = ResourceTemplate::new(vec![&bus, &cfg_ports, &io_low, &io_high, &vga, &mmio]);
    // Each _PRT entry: Package { address (slot << 16 | 0xFFFF), pin, source (0 = GSI), GSI }.
    let fields: Vec<(u32, u8, u32)> = routes
        .iter()
        .map(|r| (((r.slot as u32) << 16) | 0xffff, r.pin, r.gsi))
        .collect();
    let entries: Vec<Package> = fields
        .iter()
        .map(|(addr, pin, gsi)| Package::new(vec![addr, pin, &Zero {}, gsi]))
        .collect();
    let prt = Package::new(entries.iter().map(|e| e as &dyn Aml).collect());
    let hid_name = Name::new("_HID".into(), &hid);
    let adr = Name::new("_ADR".into(), &Zero {});
    let bbn = Name::new("_BBN".into(), &Zero {});
    let uid = Name::new("_UID".into(), &Zero {});
    let crs_name = Name::new("_CRS".into(), &crs);
    let prt_name = Name::new("_PRT".into(), &prt);
    let dev = Device::new(
        Path::new("\\_SB_.PCI0"),
        vec![&hid_name, &adr, &bbn, &uid, &crs_name, &prt_name],
    );
    let mut out = Vec::new();
    dev.to_aml_bytes(&mut out);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    #[test]
    fn pci_host_bridge_declares_pnp0a03_and_routes() {
        let aml = pci_host_bridge_aml(&[PciRoute {
            slot: 3,
            pin: 0,
            gsi: 11,
        }]);
        // DeviceOp (0x5b 0x82) and the compressed EISA id of PNP0A03 (0x41d00a03).
        assert_eq!(&aml[..2], &[0x5b, 0x82]);
        assert!(aml.windows(4).any(|w| w == [0x41, 0xd0, 0x0a, 0x03]));
        assert!(aml.windows(4).any(|w| w == b"_PRT"));
        assert!(aml.windows(4).any(|w| w == 0x0003_ffffu32.to_le_bytes()));
    }

    fn mem() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap()
    }

    fn bytes(m: &GuestMemory, at: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        m.read_slice(&mut v, GuestAddress(at)).unwrap();
        v
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, &x| a.wrapping_add(x))
    }

    fn u16_at(b: &[u8], o: usize) -> u16 {
        u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    /// Reads a whole system description table at `at` and checks its checksum.
    pub(crate) fn table(m: &GuestMemory, at: u64, sig: &[u8; 4]) -> Vec<u8> {
        let head = bytes(m, at, 36);
        assert_eq!(&head[..4], sig, "signature at {at:#x}");
        let t = bytes(m, at, u32_at(&head, 4) as usize);
        assert_eq!(sum(&t), 0, "{} checksum", String::from_utf8_lossy(sig));
        assert_eq!(&t[10..16], &OEM_ID);
        t
    }

    /// What an OS without boot_params.acpi_rsdp_addr does: scan 0xe0000..0xfffff in 16-byte
    /// steps for a signature with a valid checksum.
    pub(crate) fn scan_rsdp(m: &GuestMemory) -> Vec<u64> {
        let area = bytes(m, 0xe_0000, 0x2_0000);
        (0..area.len() - 36)
            .step_by(16)
            .filter(|&o| &area[o..o + 8] == b"RSD PTR " && sum(&area[o..o + 20]) == 0)
            .map(|o| 0xe_0000 + o as u64)
            .collect()
    }

    /// Follows RSDP -> XSDT -> tables and returns (signature, address) of each XSDT entry.
    pub(crate) fn walk(m: &GuestMemory, rsdp: u64) -> Vec<([u8; 4], u64)> {
        let r = bytes(m, rsdp, 36);
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(sum(&r[..20]), 0, "RSDP checksum");
        assert_eq!(r[15], 2, "RSDP revision");
        assert_eq!(u32_at(&r, 20), 36);
        assert_eq!(sum(&r), 0, "RSDP extended checksum");
        let x = table(m, u64_at(&r, 24), b"XSDT");
        x[36..]
            .chunks(8)
            .map(|c| {
                let at = u64::from_le_bytes(c.try_into().unwrap());
                let sig: [u8; 4] = bytes(m, at, 4).try_into().unwrap();
                (sig, at)
            })
            .collect()
    }

    fn find(list: &[([u8; 4], u64)], sig: &[u8; 4]) -> u64 {
        list.iter().find(|(s, _)| s == sig).unwrap().1
    }

    /// Decodes an AML integer constant at `b[0..]`: (value, bytes used).
    fn aml_int(b: &[u8]) -> (u64, usize) {
        match b[0] {
            0x00 => (0, 1),
            0x01 => (1, 1),
            0x0a => (b[1].into(), 2),
            0x0b => (u16_at(b, 1).into(), 3),
            0x0c => (u32_at(b, 1).into(), 5),
            op => panic!("not an integer: {op:#x}"),
        }
    }

    /// The `\_S5` package of a DSDT: its first two values.
    pub(crate) fn s5(dsdt: &[u8]) -> (u64, u64) {
        let at = dsdt[36..]
            .windows(5)
            .position(|w| w == b"\x08_S5_")
            .expect("no Name(_S5_)")
            + 36
            + 5;
        assert_eq!(dsdt[at], 0x12, "PackageOp");
        assert_eq!(dsdt[at + 2], 4, "four elements");
        let (a, n) = aml_int(&dsdt[at + 3..]);
        let (b, _) = aml_int(&dsdt[at + 3 + n..]);
        (a, b)
    }

    #[test]
    fn tables_parse_back() {
        let m = mem();
        let cfg = AcpiConfig::new(4);
        let lay = write_acpi_tables(&m, &cfg).unwrap();
        assert_eq!(lay.rsdp, 0xe_0000);
        assert_eq!(scan_rsdp(&m), vec![lay.rsdp]);
        let list = walk(&m, lay.rsdp);
        assert_eq!(list.len(), 2);
        assert_eq!(find(&list, b"FACP"), lay.fadt);
        assert_eq!(find(&list, b"APIC"), lay.madt);
        assert!(lay.end <= layout::BIOS_AREA_END);
        for at in [lay.xsdt, lay.fadt, lay.madt, lay.dsdt] {
            assert!(at.is_multiple_of(16));
        }
        assert!(lay.facs.is_multiple_of(64));
        let facs = bytes(&m, lay.facs, 64);
        assert_eq!(&facs[..4], b"FACS");
        assert_eq!(u32_at(&facs, 4), 64);
    }

    #[test]
    fn fadt_fields() {
        let m = mem();
        let lay = write_acpi_tables(&m, &AcpiConfig::new(1)).unwrap();
        let f = table(&m, lay.fadt, b"FACP");
        assert_eq!(f.len(), 276);
        assert!(f[8] >= 5, "FADT revision {}", f[8]);
        assert_eq!(u32_at(&f, 36) as u64, lay.facs, "FIRMWARE_CTRL");
        assert_eq!(
            u64_at(&f, 132),
            0,
            "X_FIRMWARE_CTRL must be 0 when FIRMWARE_CTRL is set"
        );
        assert_eq!(u32_at(&f, 40) as u64, lay.dsdt, "DSDT");
        assert_eq!(u64_at(&f, 140), lay.dsdt, "X_DSDT");
        assert_eq!(u16_at(&f, 46), 9, "SCI_INT");
        assert_eq!(u32_at(&f, 48), 0, "SMI_CMD");
        assert_eq!((f[52], f[53]), (0, 0), "ACPI_ENABLE/DISABLE");
        assert_eq!(u32_at(&f, 56), u32::from(pc::PM1A_EVT_BLK));
        assert_eq!(u32_at(&f, 64), u32::from(pc::PM1A_CNT_BLK));
        assert_eq!(u32_at(&f, 76), 0x608, "PM_TMR_BLK");
        assert_eq!(u32_at(&f, 80), 0, "no GPE0 block");
        assert_eq!((f[88], f[89], f[91], f[92]), (4, 2, 4, 0), "block lengths");
        assert_eq!(f[108], 0x32, "CENTURY");
        let boot_arch = u16_at(&f, 109);
        assert_ne!(boot_arch & BOOT_ARCH_8042, 0);
        assert_ne!(boot_arch & BOOT_ARCH_VGA_NOT_PRESENT, 0);
        let flags = u32_at(&f, 112);
        assert_eq!(flags & (1 << 8), 0, "TMR_VAL_EXT: 24-bit timer");
        assert_eq!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
        assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
        // RESET_REG: system I/O, 8 bits, port 0x64; value 0xfe.
        assert_eq!((f[116], f[117], f[118]), (1, 8, 0));
        assert_eq!(u64_at(&f, 120), 0x64);
        assert_eq!(f[128], 0xfe);
        // X_ blocks: system I/O GAS matching the 32-bit fields.
        for (off, port, bits) in [(148, 0x600, 32), (172, 0x604, 16), (208, 0x608, 32)] {
            assert_eq!(
                (f[off], f[off + 1], f[off + 2]),
                (1, bits, 0),
                "GAS at {off}"
            );
            assert_eq!(u64_at(&f, off + 4), port);
        }
    }

    #[test]
    fn dsdt_has_s5() {
        let m = mem();
        let lay = write_acpi_tables(&m, &AcpiConfig::new(1)).unwrap();
        let d = table(&m, lay.dsdt, b"DSDT");
        let typ = u64::from(pc::SLP_TYP_S5);
        assert_eq!(s5(&d), (typ, typ));
    }

    #[test]
    fn dsdt_carries_extra_aml() {
        let m = mem();
        let mut cfg = AcpiConfig::new(1);
        let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0501"));
        let dev = aml::Device::new("_SB_.COM1".into(), vec![&hid]);
        dev.to_aml_bytes(&mut cfg.dsdt_aml);
        let lay = write_acpi_tables(&m, &cfg).unwrap();
        let d = table(&m, lay.dsdt, b"DSDT");
        assert!(d.ends_with(&cfg.dsdt_aml));
        assert_eq!(s5(&d).0, u64::from(pc::SLP_TYP_S5));
    }

    #[test]
    fn virtio_devices_are_declared() {
        let aml = virtio_mmio_aml(&[
            VirtioMmio {
                base: 0xfed0_0000,
                size: 0x1000,
                gsi: 20,
            },
            VirtioMmio {
                base: 0xfed0_1000,
                size: 0x1000,
                gsi: 21,
            },
        ]);
        let count = |needle: &[u8]| aml.windows(needle.len()).filter(|w| *w == needle).count();
        assert_eq!(count(b"LNRO0005\0"), 2);
        assert_eq!(count(b"VR01"), 1);
        // Memory32Fixed (0x86), read-write, base, length.
        let mut regs = vec![0x86, 9, 0, 1];
        regs.extend_from_slice(&0xfed0_1000u32.to_le_bytes());
        regs.extend_from_slice(&0x1000u32.to_le_bytes());
        assert_eq!(count(&regs), 1);
        // Extended interrupt (0x89): consumer, level, active-high, exclusive; GSI 21.
        assert_eq!(count(&[0x89, 6, 0, 1, 1, 21, 0, 0, 0]), 1);
    }

    #[test]
    fn madt_entries() {
        let m = mem();
        let cfg = AcpiConfig::new(3);
        let lay = write_acpi_tables(&m, &cfg).unwrap();
        let t = table(&m, lay.madt, b"APIC");
        assert_eq!(u32_at(&t, 36) as u64, pc::LAPIC_BASE);
        assert_eq!(u32_at(&t, 40), MADT_PCAT_COMPAT);
        let (mut cpus, mut ioapics, mut overrides, mut nmis) = (vec![], vec![], vec![], 0);
        let mut o = 44;
        while o < t.len() {
            let (kind, len) = (t[o], t[o + 1] as usize);
            assert!(
                len >= 2 && o + len <= t.len(),
                "entry at {o} overruns the table"
            );
            let e = &t[o..o + len];
            match kind {
                0 => {
                    assert_eq!(len, 8);
                    assert_eq!(u32_at(e, 4) & 1, 1, "enabled");
                    cpus.push((e[2], e[3]));
                }
                1 => {
                    assert_eq!(len, 12);
                    ioapics.push((e[2], u32_at(e, 4), u32_at(e, 8)));
                }
                2 => {
                    assert_eq!(len, 10);
                    assert_eq!(e[2], 0, "ISA bus");
                    overrides.push((e[3], u32_at(e, 4), u16_at(e, 8)));
                }
                4 => {
                    assert_eq!(len, 6);
                    assert_eq!((e[2], e[5]), (0xff, 1), "all CPUs, LINT1");
                    nmis += 1;
                }
                k => panic!("unexpected MADT entry type {k}"),
            }
            o += len;
        }
        assert_eq!(o, t.len());
        assert_eq!(cpus, vec![(0, 0), (1, 1), (2, 2)]);
        assert_eq!(ioapics, vec![(3, pc::IOAPIC_BASE as u32, 0)]);
        assert_eq!(
            overrides,
            vec![
                (0, 2, INTI_ACTIVE_HIGH | INTI_EDGE),
                (9, 9, INTI_ACTIVE_HIGH | INTI_LEVEL)
            ]
        );
        assert_eq!(nmis, 1);

        // The I/O APIC ID can follow the device model instead.
        let cfg = AcpiConfig {
            ioapic_id: 0,
            ..AcpiConfig::new(2)
        };
        let t = table(&m, write_acpi_tables(&m, &cfg).unwrap().madt, b"APIC");
        assert_eq!(&t[44 + 2 * 8..44 + 2 * 8 + 3], &[1, 12, 0]);
    }

    #[test]
    fn rejects_bad_cpu_counts() {
        let m = mem();
        for n in [0, MAX_VCPUS + 1] {
            let err = write_acpi(&m, &AcpiConfig::new(n)).unwrap_err().to_string();
            assert!(err.contains("vCPUs"), "{err}");
        }
        let lay = write_acpi_tables(&m, &AcpiConfig::new(MAX_VCPUS)).unwrap();
        let t = table(&m, lay.madt, b"APIC");
        assert_eq!(t.len(), 44 + 8 * MAX_VCPUS as usize + 12 + 2 * 10 + 6);
    }

    #[test]
    fn rejects_tables_that_do_not_fit() {
        let m = mem();
        let mut cfg = AcpiConfig::new(1);
        cfg.dsdt_aml = vec![0xa3; 0x2_0000]; // 128 KiB of Noop
        let err = write_acpi(&m, &cfg).unwrap_err().to_string();
        assert!(err.contains("fit"), "{err}");
    }

    #[test]
    fn rewriting_leaves_one_rsdp() {
        let m = mem();
        m.write_slice(&[0xffu8; 0x100], GuestAddress(0xe_0000))
            .unwrap();
        write_acpi(&m, &AcpiConfig::new(2)).unwrap();
        write_acpi(&m, &AcpiConfig::new(1)).unwrap();
        assert_eq!(scan_rsdp(&m).len(), 1);
    }
}
