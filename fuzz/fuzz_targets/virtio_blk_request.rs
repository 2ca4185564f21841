//! virtio-blk requests: any chains, headers and data a guest can write, on a small writable
//! image. Nothing may panic, and the image must keep its size.
#![no_main]

mod common;

use janus_devices::disk::DiskImage;
use janus_devices::virtio::blk::Block;
use janus_devices::virtio::VirtioDevice;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let mem = common::memory(rest);
    let mut qs = common::queues(&mem, &[256], control);
    let disk = Arc::new(DiskImage::from_bytes(vec![0x5a; 64 << 10], "fuzz"));
    let mut blk = Block::new(disk.clone(), "fuzz");
    blk.notify(0, &mut qs);
    blk.notify(0, &mut qs);
    assert_eq!(disk.size(), 64 << 10);
});
