//! Kernel images are user input, and what they say is used to place things in guest memory:
//! the bzImage setup header (setup size, load flags, alignment, init size, command-line and
//! initramfs limits), ELF program headers and notes (the PVH entry). The first input byte picks
//! the loader and the command line's length; the rest is the image. A few inputs start with a
//! real bzImage or ELF signature so the fuzzer gets past the magic checks quickly.
//!
//! Checked: nothing panics, and each loader either accepts the image or names the problem.

#![no_main]

use janus_boot::acpi::AcpiConfig;
use janus_boot::linux::{load_linux, LinuxBoot};
use janus_engine::GuestMemory;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vm_memory::GuestAddress;

/// Guest RAM: 64 MiB, made once (loaders only write inside it).
fn memory() -> &'static GuestMemory {
    static MEM: OnceLock<GuestMemory> = OnceLock::new();
    MEM.get_or_init(|| GuestMemory::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap())
}

/// `data` with a bzImage header or an ELF header forced in, so most runs test what follows.
fn image(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut image = data.to_vec();
    match kind % 3 {
        0 => {
            image.resize(image.len().max(0x270), 0);
            image[0x202..0x206].copy_from_slice(b"HdrS");
            image[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        }
        1 => {
            image.resize(image.len().max(64), 0);
            image[..4].copy_from_slice(b"\x7fELF");
            image[4] = 2; // 64-bit
            image[5] = 1; // little-endian
        }
        _ => {}
    }
    image
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let image = image(control, rest);
    let cmdline = "console=ttyS0 ".repeat((control >> 4) as usize);
    let mem = memory();
    if control & 0x08 == 0 {
        let acpi = AcpiConfig::new(1);
        let initramfs = [0u8; 512];
        let boot = LinuxBoot {
            kernel: &image,
            initramfs: (control & 0x04 != 0).then_some(&initramfs[..]),
            cmdline: &cmdline,
            acpi: &acpi,
        };
        if let Err(e) = load_linux(mem, &boot) {
            assert!(!e.to_string().is_empty());
        }
    } else if let Err(e) = janus_boot::load_elf_guest(mem, &image, &cmdline) {
        assert!(!e.to_string().is_empty());
    }
});
