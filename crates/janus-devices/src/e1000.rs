//! The Intel 82540EM Gigabit Ethernet controller (PCI 8086:100e), the network card of full
//! mode, which Linux's stock `e1000` driver drives.
//!
//! `device.rs` is the PCI function (BARs, register file, interrupts, reset, the transmit ring),
//! `eeprom.rs` the Microwire EEPROM with the MAC address, `phy.rs` the copper PHY behind MDIC,
//! `tx.rs` the transmit descriptors and offloads (checksums, TCP segmentation), `rx.rs` the
//! receive filter, FIFO, descriptors and thread, `frame.rs` the byte-level work on frames,
//! `regs.rs` the register map.
//!
//! Written by hand: no crate models the e1000. The reference is Intel's "PCI/PCI-X Family of
//! Gigabit Ethernet Controllers Software Developer's Manual" (8254x SDM); Linux's `e1000` is
//! the driver it is tested against.
//!
//! Guest mistakes (rings of length zero or outside RAM, heads and tails beyond their ring,
//! buffers outside RAM, packets too long, impossible segmentation contexts) never touch memory
//! outside guest RAM: the transmitter stops where it is, a bad packet is dropped, a receive
//! buffer that is not RAM gets the RXE error bit. Each is counted and logged once.

mod device;
pub mod eeprom;
pub mod frame;
pub mod phy;
pub mod regs;
pub mod rx;
pub mod tx;

pub use device::{E1000, E1000_ID, SLOT};
pub use rx::receive_thread;

/// What the card did, for `janus run`'s report line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct E1000Stats {
    /// Register accesses through the memory BAR and the I/O BAR (each an exit).
    pub mmio_exits: u64,
    pub io_exits: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub rx_frames: u64,
    /// Bytes written to receive buffers (with the FCS the card appends).
    pub rx_bytes: u64,
    /// Frames lost: FIFO full, too long, refused by the host.
    pub dropped: u64,
    /// Interrupts raised (rising edges of INTA#).
    pub interrupts: u64,
    /// TCP segmentation contexts the driver set up.
    pub tso_contexts: u64,
    /// Guest mistakes (see the module documentation).
    pub guest_errors: u64,
}

impl E1000Stats {
    /// Every exit the card took.
    pub fn exits(&self) -> u64 {
        self.mmio_exits + self.io_exits
    }
}

#[cfg(test)]
mod tests;
