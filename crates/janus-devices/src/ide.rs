//! IDE: the PIIX3 IDE controller of a PC (`piix.rs`) with its bus-master DMA engine
//! (`bmdma.rs`), two channels (`channel.rs`) of up to two ATA hard disks each (`drive.rs`), and
//! the ATA register and command definitions they share (`ata.rs`).
//!
//! Written by hand: no maintained crate models IDE. QEMU's `hw/ide` and the ATA/ATAPI-7 and
//! PIIX3 documents are the references; Linux's `ata_piix` and libata are the driver it is
//! tested against.

pub mod ata;
pub mod atapi;
pub mod bmdma;
pub mod channel;
pub mod drive;
pub mod piix;

pub use piix::PiixIde;

/// What the controller did, for the cost-per-byte comparison with virtio: every register
/// access is an exit the guest paid for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdeStats {
    /// Accesses to the task-file and control registers.
    pub register_exits: u64,
    /// Accesses to the data port (one per PIO word or dword).
    pub data_exits: u64,
    /// Accesses to the bus-master registers.
    pub bmdma_exits: u64,
    /// Commands the devices accepted.
    pub commands: u64,
    /// Commands that ended with ERR.
    pub errors: u64,
    /// Commands written while the device was busy (BSY or DRQ), and dropped.
    pub ignored_commands: u64,
    pub pio_bytes: u64,
    pub dma_bytes: u64,
    /// DMA commands the bus master ran.
    pub dma_transfers: u64,
    /// FLUSH CACHE commands (each an fsync of the image).
    pub flushes: u64,
}

impl IdeStats {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &IdeStats) {
        self.register_exits += other.register_exits;
        self.data_exits += other.data_exits;
        self.bmdma_exits += other.bmdma_exits;
        self.commands += other.commands;
        self.errors += other.errors;
        self.ignored_commands += other.ignored_commands;
        self.pio_bytes += other.pio_bytes;
        self.dma_bytes += other.dma_bytes;
        self.dma_transfers += other.dma_transfers;
        self.flushes += other.flushes;
    }

    /// Every exit the controller took.
    pub fn exits(&self) -> u64 {
        self.register_exits + self.data_exits + self.bmdma_exits
    }
}

#[cfg(test)]
mod tests;
