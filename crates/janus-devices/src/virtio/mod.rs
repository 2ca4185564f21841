//! virtio 1.x devices for para-virtualized guests, on the MMIO transport (version 2).
//!
//! A device model implements [`VirtioDevice`]: its type, queues, feature bits, configuration
//! space, and what it does when the driver notifies a queue. The transport ([`mmio`]) does
//! feature negotiation, the status state machine, queue configuration and interrupts; the
//! queues ([`queue`]) check every descriptor chain before a device sees it. Rings and EVENT_IDX
//! arithmetic come from virtio-queue, numbers from virtio-bindings.

pub mod blk;
pub mod console;
pub mod mmio;
pub mod net;
pub mod queue;
pub mod rng;

pub use mmio::MmioTransport;
pub use queue::{Chain, Queues, Stream};

use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};

/// virtio 1.x (no legacy interface): required by the version 2 MMIO transport.
pub const F_VERSION_1: u64 = 1 << VIRTIO_F_VERSION_1;
/// Used-buffer and available-buffer notification suppression by ring index.
pub const F_EVENT_IDX: u64 = 1 << VIRTIO_RING_F_EVENT_IDX;
/// Indirect descriptor tables (virtio-queue follows them; the chain checks cover them).
pub const F_INDIRECT_DESC: u64 = 1 << VIRTIO_RING_F_INDIRECT_DESC;
/// What every Janus device offers on top of its own feature bits.
pub const TRANSPORT_FEATURES: u64 = F_VERSION_1 | F_EVENT_IDX | F_INDIRECT_DESC;

/// A virtio device model behind the transport.
pub trait VirtioDevice: Send {
    /// The virtio device ID (`VIRTIO_ID_*`).
    fn device_type(&self) -> u32;
    /// Short name for logs and reports ("virtio-blk").
    fn name(&self) -> &'static str;
    /// The maximum size of each of its queues (powers of two).
    fn queue_sizes(&self) -> &'static [u16];
    /// Device-specific feature bits it offers (below bit 24).
    fn features(&self) -> u64;
    /// Its configuration space, as the driver reads it (writes are ignored: no Janus device
    /// offers a writable field).
    fn config(&self) -> Vec<u8>;
    /// The driver set DRIVER_OK having accepted `features`.
    fn activate(&mut self, _features: u64, _queues: &mut Queues) {}
    /// The driver notified queue `index`.
    fn notify(&mut self, index: usize, queues: &mut Queues);
    /// The driver reset the device (the transport resets the queues).
    fn reset(&mut self) {}
    /// What it did, in words, for the end-of-run report ("12 reads (48 KiB), ...").
    fn activity(&self) -> String;
}
