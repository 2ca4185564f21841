//! A small guest for the virtio fuzz targets: 64 KiB of RAM filled from the fuzzer's input,
//! with one queue whose rings sit at fixed places in it.

use janus_devices::virtio::Queues;
use janus_engine::{GuestMemory, IrqLine, NoDmaObserver};
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress};
use virtio_queue::QueueT;

pub const RAM: usize = 0x1_0000;
pub const DESC: u64 = 0x0;
pub const AVAIL: u64 = 0x1000;
pub const USED: u64 = 0x2000;

pub struct NoLine;
impl IrqLine for NoLine {
    fn set_level(&self, _high: bool) -> janus_engine::Result<()> {
        Ok(())
    }
}

/// Guest RAM holding `data` from address 0.
pub fn memory(data: &[u8]) -> GuestMemory {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
    let n = data.len().min(RAM);
    mem.write_slice(&data[..n], GuestAddress(0)).unwrap();
    mem
}

/// Queues of `sizes`, unconfigured (the driver sets them up through the transport).
pub fn bare_queues(mem: &GuestMemory, sizes: &[u16]) -> Queues {
    Queues::new(
        "fuzz",
        sizes,
        mem.clone(),
        Arc::new(NoDmaObserver),
        Arc::new(NoLine),
    )
}

/// Queues of `sizes` with queue 0 on the fixed rings, `size` entries (the first input byte
/// picks it), activated with or without EVENT_IDX.
pub fn queues(mem: &GuestMemory, sizes: &[u16], control: u8) -> Queues {
    let mut qs = bare_queues(mem, sizes);
    let q = qs.get_mut(0).unwrap();
    q.set_size(1 << (control % 9).min(sizes[0].trailing_zeros() as u8));
    q.set_desc_table_address(Some(DESC as u32), Some(0));
    q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    q.set_used_ring_address(Some(USED as u32), Some(0));
    q.set_ready(true);
    qs.activate(control & 0x80 != 0);
    qs
}
