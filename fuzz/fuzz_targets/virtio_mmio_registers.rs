//! The virtio-mmio transport's register page: any sequence of reads and writes of any width
//! at any offset, with the guest's RAM (rings, descriptors) from the input too. Nothing may
//! panic; the rings must not move once DRIVER_OK is set.
#![no_main]

mod common;

use janus_devices::virtio::rng::Rng;
use janus_devices::virtio::MmioTransport;
use janus_devices::BusDevice;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first 1 KiB is guest RAM; the rest is accesses of 8 bytes each:
    // offset (2), width selector (1), write flag (1), value (4).
    let (ram, ops) = data.split_at(data.len().min(1024));
    let mem = common::memory(ram);
    let rng = Rng::new();
    let queues = common::bare_queues(&mem, &[64]);
    let mut t = MmioTransport::new(rng, queues);
    for op in ops.chunks_exact(8) {
        let offset = u16::from_le_bytes([op[0], op[1]]) as u64 % 0x1100;
        let width = [1usize, 2, 4, 8][op[2] as usize % 4];
        let value = u32::from_le_bytes([op[4], op[5], op[6], op[7]]) as u64;
        let bytes = value.to_le_bytes();
        if op[3] & 1 == 1 {
            t.write(offset, &bytes[..width]);
        } else {
            let mut buf = [0u8; 8];
            t.read(offset, &mut buf[..width]);
        }
    }
});
