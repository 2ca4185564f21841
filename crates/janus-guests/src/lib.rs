//! Guest images built into Janus, so `janus demo` needs no download.

/// The demo guest (guests/demo): a static x86-64 ELF entered in 64-bit mode at 1 MiB.
pub static DEMO_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo.elf"));

#[cfg(test)]
mod tests {
    #[test]
    fn demo_is_a_static_x86_64_elf_at_1mib() {
        let elf = super::DEMO_ELF;
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(elf[4], 2, "64-bit");
        assert_eq!(u16::from_le_bytes([elf[16], elf[17]]), 2, "ET_EXEC");
        assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 62, "x86-64");
        let entry = u64::from_le_bytes(elf[24..32].try_into().unwrap());
        assert_eq!(entry, 0x10_0000);
    }
}
