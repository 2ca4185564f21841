//! The queue walk: any descriptor table and available ring a guest can write. Every chain
//! handed out must lie in RAM with its readable buffers first; nothing may panic or loop.
#![no_main]

mod common;

use janus_devices::virtio::queue::in_ram;
use janus_devices::virtio::Stream;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let mem = common::memory(rest);
    let mut qs = common::queues(&mem, &[256], control);
    // More pops than the ring can hold: the walk must stop by itself.
    for _ in 0..600 {
        let Some(chain) = qs.pop(0) else { break };
        for b in chain.readable.iter().chain(&chain.writable) {
            assert!(in_ram(&mem, b.addr, b.len as u64));
        }
        let out = Stream::new(&chain.readable);
        let mut buf = vec![0u8; out.len().min(4096) as usize];
        out.read(&mem, 0, &mut buf);
        let inp = Stream::new(&chain.writable);
        inp.write(&qs, 0, &buf[..buf.len().min(inp.len() as usize)]);
        qs.add_used(0, chain.head, 0);
        qs.notify_driver(0);
    }
});
