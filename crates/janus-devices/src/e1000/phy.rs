//! The 82540EM's internal copper PHY (an M88E1011 core, PHY address 1), reached through MDIC.
//!
//! The link is always up at 1000 Mb/s full duplex with auto-negotiation complete: there is no
//! cable to pull. The driver identifies the PHY by its ID registers (0x0141, 0x0c20 for the
//! 82540EM), resets it through the control register (self-clearing), starts auto-negotiation
//! and reads the status register until it says link; that is all `e1000` needs for "Link is
//! Up". Other registers keep what the driver writes.

use super::regs::{MDIC_ERROR, MDIC_OP_READ, MDIC_OP_WRITE, MDIC_READY};

/// The PHY's address on the MDI bus.
const ADDRESS: u32 = 1;

/// Registers (IEEE 802.3 clause 22, then Marvell's).
const BMCR: usize = 0x00;
const BMSR: usize = 0x01;
const PHYID1: usize = 0x02;
const PHYID2: usize = 0x03;
const ANAR: usize = 0x04;
const ANLPAR: usize = 0x05;
const ANER: usize = 0x06;
const GBCR: usize = 0x09;
const GBSR: usize = 0x0a;
const EXTSR: usize = 0x0f;
const M88_SPEC_CTRL: usize = 0x10;
const M88_SPEC_STATUS: usize = 0x11;
const M88_EXT_SPEC_CTRL: usize = 0x14;

/// BMCR: reset and restart auto-negotiation clear themselves.
const BMCR_RESET: u16 = 1 << 15;
const BMCR_RESTART_AN: u16 = 1 << 9;
/// BMCR after reset: 1000 Mb/s, full duplex, auto-negotiation on.
const BMCR_DEFAULT: u16 = 0x1140;
/// BMSR: extended capabilities, link up, auto-negotiation able and complete, 10/100
/// half/full, preamble suppression, extended status (read-only).
const BMSR_VALUE: u16 = 0x796d;

/// The register file.
#[derive(Clone)]
pub struct Phy {
    regs: [u16; 32],
}

impl Default for Phy {
    fn default() -> Phy {
        Phy::new()
    }
}

impl Phy {
    pub fn new() -> Phy {
        let mut regs = [0u16; 32];
        regs[BMCR] = BMCR_DEFAULT;
        regs[BMSR] = BMSR_VALUE;
        regs[PHYID1] = 0x0141;
        regs[PHYID2] = 0x0c20;
        // Advertises 10/100 half/full and pause; the partner the same; 1000 full/half.
        regs[ANAR] = 0x0de1;
        regs[ANLPAR] = 0x45e1;
        regs[ANER] = 0x0001;
        regs[GBCR] = 0x0e00;
        regs[GBSR] = 0x3c00;
        regs[EXTSR] = 0x3000;
        regs[M88_SPEC_CTRL] = 0x0360;
        // 1000 Mb/s, full duplex, speed and duplex resolved, link up.
        regs[M88_SPEC_STATUS] = 0xac00;
        regs[M88_EXT_SPEC_CTRL] = 0x0d60;
        Phy { regs }
    }

    fn read(&self, reg: usize) -> u16 {
        self.regs[reg & 31]
    }

    fn write(&mut self, reg: usize, v: u16) {
        match reg & 31 {
            BMCR if v & BMCR_RESET != 0 => {
                // A reset restores the defaults and completes at once.
                *self = Phy::new();
            }
            BMCR => self.regs[BMCR] = v & !BMCR_RESTART_AN,
            // Status, IDs and what the partner said are read-only.
            BMSR | PHYID1 | PHYID2 | ANLPAR | ANER | GBSR | EXTSR | M88_SPEC_STATUS => {}
            r => self.regs[r] = v,
        }
    }

    /// A write to MDIC: the operation completes at once, and the value to read back (READY,
    /// with the data for a read, or ERROR for a PHY address that has no PHY).
    pub fn mdic(&mut self, value: u32) -> u32 {
        let reg = ((value >> 16) & 31) as usize;
        let address = (value >> 21) & 31;
        let op = value & (3 << 26);
        let keep = value & 0x0fff_0000;
        if address != ADDRESS {
            return keep | MDIC_READY | MDIC_ERROR;
        }
        match op {
            MDIC_OP_READ => keep | MDIC_READY | self.read(reg) as u32,
            MDIC_OP_WRITE => {
                self.write(reg, value as u16);
                keep | MDIC_READY | (value & 0xffff)
            }
            _ => keep | MDIC_READY | MDIC_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(phy: &mut Phy, reg: u32) -> u32 {
        phy.mdic(MDIC_OP_READ | ADDRESS << 21 | reg << 16)
    }

    #[test]
    fn identifies_as_the_82540em_phy_with_link() {
        let mut phy = Phy::new();
        let id1 = read(&mut phy, 2);
        assert_eq!(id1 & MDIC_READY, MDIC_READY);
        assert_eq!(id1 & 0xffff, 0x0141);
        assert_eq!(read(&mut phy, 3) & 0xfff0, 0x0c20);
        let bmsr = read(&mut phy, 1) & 0xffff;
        assert_ne!(bmsr & 0x4, 0, "link");
        assert_ne!(bmsr & 0x20, 0, "auto-negotiation complete");
    }

    #[test]
    fn reset_and_restart_clear_themselves() {
        let mut phy = Phy::new();
        phy.mdic(MDIC_OP_WRITE | ADDRESS << 21 | 4 << 16 | 0x1234);
        assert_eq!(read(&mut phy, 4) & 0xffff, 0x1234);
        phy.mdic(MDIC_OP_WRITE | ADDRESS << 21 | 0x9140);
        assert_eq!(read(&mut phy, 0) & 0xffff, BMCR_DEFAULT as u32);
        assert_eq!(read(&mut phy, 4) & 0xffff, 0x0de1, "defaults back");
        phy.mdic(MDIC_OP_WRITE | ADDRESS << 21 | 0x1340);
        assert_eq!(read(&mut phy, 0) & 0xffff, 0x1140);
        phy.mdic(MDIC_OP_WRITE | ADDRESS << 21 | 1 << 16);
        assert_eq!(read(&mut phy, 1) & 0xffff, BMSR_VALUE as u32, "read-only");
    }

    #[test]
    fn other_addresses_and_opcodes_are_errors() {
        let mut phy = Phy::new();
        let v = phy.mdic(MDIC_OP_READ | 2 << 21 | 2 << 16);
        assert_eq!(v & (MDIC_READY | MDIC_ERROR), MDIC_READY | MDIC_ERROR);
        let v = phy.mdic(ADDRESS << 21);
        assert_ne!(v & MDIC_ERROR, 0);
    }
}
