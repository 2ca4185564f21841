//! Booting through firmware: the image (SeaBIOS) is mapped at the top of the 32-bit address
//! space as a PC's flash is, with its last 128 KiB also at 0xE0000-0xFFFFF (the ISA BIOS
//! window, here shadow RAM holding a copy from the start), and the CPU starts at the reset
//! vector (F000:FFF0, linear 0xFFFFFFF0). The firmware learns about the machine from the
//! CMOS, the PCI bus and fw_cfg (`fw_cfg_items`).
//!
//! Not modelled yet: the i440FX PAM registers' read-only settings (the 0xC0000-0xFFFFF
//! window is RAM the guest may always write).

use crate::config::VmConfig;
use crate::{Result, VmmError};
use janus_devices::fw_cfg::{self, File, FwCfgItems};
use janus_engine::{CpuState, GuestMemory};
use std::path::Path;
use vm_memory::{Bytes, GuestAddress};

/// Largest firmware image (the flash window below 4 GiB QEMU allows for a PC's BIOS).
pub const MAX_SIZE: u64 = 16 << 20;
/// The ISA BIOS window below 1 MiB.
const ISA_BIOS_END: u64 = 0x10_0000;
const ISA_BIOS_MAX: u64 = 128 << 10;

/// Checks the image's size: whole 64 KiB blocks, as a flash part has (and QEMU requires).
pub fn check(image: &[u8], path: &Path) -> Result<()> {
    if image.is_empty() || !(image.len() as u64).is_multiple_of(64 << 10) {
        return Err(VmmError::Config(format!(
            "--firmware: {} is {} bytes, not a whole number of 64 KiB blocks (not a BIOS image?)",
            path.display(),
            image.len()
        )));
    }
    Ok(())
}

/// Where the image lies: its last byte at 4 GiB - 1.
pub fn rom_base(len: u64) -> u64 {
    crate::memory::FOUR_GIB - len
}

/// Copies the image to its window below 4 GiB (a region `memory::create` made) and its last
/// 128 KiB to the ISA BIOS window; returns the CPU's power-on state.
pub fn load(mem: &GuestMemory, image: &[u8]) -> Result<CpuState> {
    let len = image.len() as u64;
    let err = |what: &str| VmmError::Memory(format!("cannot place the firmware {what}"));
    mem.write_slice(image, GuestAddress(rom_base(len)))
        .map_err(|_| err("below 4 GiB"))?;
    let low = len.min(ISA_BIOS_MAX) as usize;
    mem.write_slice(
        &image[image.len() - low..],
        GuestAddress(ISA_BIOS_END - low as u64),
    )
    .map_err(|_| err("below 1 MiB"))?;
    Ok(CpuState::power_on())
}

/// What fw_cfg tells the firmware: the RAM (also as an E820 map), the CPUs, no display (so
/// SeaBIOS writes its screen to COM1 through `etc/sercon-port`), the boot order, the
/// IRQ 0 override, and the ACPI tables for `acpi` with the loader script that installs them.
pub fn fw_cfg_items(
    config: &VmConfig,
    ram: &[(u64, u64)],
    acpi: &janus_boot::acpi::AcpiConfig,
) -> Result<FwCfgItems> {
    use janus_boot::acpi_loader::{self, LOADER_FILE, RSDP_FILE, TABLES_FILE};
    const E820_RAM: u32 = 1;
    let e820: Vec<(u64, u64, u32)> = ram.iter().map(|&(a, l)| (a, l, E820_RAM)).collect();
    let tables = acpi_loader::build(acpi)?;
    let file = |name: &str, data: Vec<u8>| File {
        name: name.into(),
        data,
    };
    Ok(FwCfgItems {
        ram_size: config.memory_bytes,
        cpus: config.vcpus as u16,
        nographic: true,
        files: vec![
            fw_cfg::e820_file(&e820),
            // `--boot`: one device path per line, in order.
            File {
                name: "bootorder".into(),
                data: config
                    .boot
                    .iter()
                    .map(|d| format!("{}\n", d.firmware_path()))
                    .collect::<String>()
                    .into_bytes(),
            },
            File {
                name: "etc/sercon-port".into(),
                data: janus_abi::pc::COM1.to_le_bytes().to_vec(),
            },
            file(TABLES_FILE, tables.tables),
            file(RSDP_FILE, tables.rsdp),
            file(LOADER_FILE, tables.loader),
        ],
        // The PIT reaches the I/O APIC on pin 2, as the ACPI MADT's override says.
        arch: vec![(fw_cfg::X86_IRQ0_OVERRIDE, 1u32.to_le_bytes().to_vec())],
    })
}
