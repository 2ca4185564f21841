//! Register offsets and bits of the 82540EM, as the "PCI/PCI-X Family of Gigabit Ethernet
//! Controllers Software Developer's Manual" (8254x SDM, 317453) names them in chapter 13.

/// Device control.
pub const CTRL: u32 = 0x0000;
/// Device status (read-only).
pub const STATUS: u32 = 0x0008;
/// EEPROM/flash control: the bit-banged Microwire interface.
pub const EECD: u32 = 0x0010;
/// EEPROM read: a word read without bit-banging.
pub const EERD: u32 = 0x0014;
/// MDI control: the PHY's registers.
pub const MDIC: u32 = 0x0020;
/// VLAN Ethertype.
pub const VET: u32 = 0x0038;
/// Interrupt cause read (read to clear), set, mask set/read, mask clear.
pub const ICR: u32 = 0x00c0;
pub const ICS: u32 = 0x00c8;
pub const IMS: u32 = 0x00d0;
pub const IMC: u32 = 0x00d8;
pub const RCTL: u32 = 0x0100;
pub const TCTL: u32 = 0x0400;
/// Receive descriptor ring: base low/high, length, head, tail.
pub const RDBAL: u32 = 0x2800;
pub const RDBAH: u32 = 0x2804;
pub const RDLEN: u32 = 0x2808;
pub const RDH: u32 = 0x2810;
pub const RDT: u32 = 0x2818;
/// Transmit descriptor ring.
pub const TDBAL: u32 = 0x3800;
pub const TDBAH: u32 = 0x3804;
pub const TDLEN: u32 = 0x3808;
pub const TDH: u32 = 0x3810;
pub const TDT: u32 = 0x3818;
/// Statistics registers: 0x4000-0x40fc, each cleared when read.
pub const STATS_START: u32 = 0x4000;
pub const STATS_END: u32 = 0x4100;
/// Multicast table array: 128 dwords, a 4096-bit hash filter.
pub const MTA: u32 = 0x5200;
/// Receive addresses: 16 pairs of (low, high); RAH bit 31 is Address Valid.
pub const RAL0: u32 = 0x5400;
pub const RAH0: u32 = 0x5404;
pub const RA_PAIRS: u32 = 16;
/// VLAN filter table array: 128 dwords, one bit per VLAN ID.
pub const VFTA: u32 = 0x5600;
/// The memory BAR's size: 128 KiB of registers.
pub const MMIO_SIZE: u32 = 0x2_0000;

/// Statistics the device counts (offsets in the statistics block).
pub mod stat {
    /// Missed packets: no room in the receive FIFO.
    pub const MPC: u32 = 0x4010;
    pub const GPRC: u32 = 0x4074;
    pub const BPRC: u32 = 0x4078;
    pub const MPRC: u32 = 0x407c;
    pub const GPTC: u32 = 0x4080;
    pub const GORCL: u32 = 0x4088;
    pub const GOTCL: u32 = 0x4090;
    /// Receive no buffers: a frame waited for a descriptor.
    pub const RNBC: u32 = 0x40a0;
    /// Receive oversize: longer than the long-packet limit.
    pub const ROC: u32 = 0x40ac;
    pub const TORL: u32 = 0x40c0;
    pub const TOTL: u32 = 0x40c8;
    pub const TPR: u32 = 0x40d0;
    pub const TPT: u32 = 0x40d4;
    pub const MPTC: u32 = 0x40f0;
    pub const BPTC: u32 = 0x40f4;
    /// TCP segmentation contexts the transmitter carried out.
    pub const TSCTC: u32 = 0x40f8;
}

/// CTRL: set link up, device reset (self-clearing), VLAN mode (strip/insert tags).
pub const CTRL_SLU: u32 = 1 << 6;
pub const CTRL_RST: u32 = 1 << 26;
pub const CTRL_VME: u32 = 1 << 30;
/// CTRL after power-up: full duplex, speed 1000 selected, link up.
pub const CTRL_DEFAULT: u32 = 0x0000_0001 | 2 << 8 | CTRL_SLU;

/// STATUS: full duplex, link up, 1000 Mb/s, and the auto-detected speed 1000.
pub const STATUS_FD: u32 = 1 << 0;
pub const STATUS_LU: u32 = 1 << 1;
pub const STATUS_SPEED_1000: u32 = 2 << 6;
pub const STATUS_ASDV_1000: u32 = 2 << 8;

/// EECD: clock, chip select, data in (to the EEPROM), data out (from it), request, grant,
/// present.
pub const EECD_SK: u32 = 1 << 0;
pub const EECD_CS: u32 = 1 << 1;
pub const EECD_DI: u32 = 1 << 2;
pub const EECD_DO: u32 = 1 << 3;
pub const EECD_REQ: u32 = 1 << 6;
pub const EECD_GNT: u32 = 1 << 7;
pub const EECD_PRES: u32 = 1 << 8;

/// EERD: start, done, the word address (15:8) and the data (31:16).
pub const EERD_START: u32 = 1 << 0;
pub const EERD_DONE: u32 = 1 << 4;

/// MDIC: data (15:0), register (20:16), PHY address (25:21), opcode (27:26), ready, error.
pub const MDIC_OP_WRITE: u32 = 1 << 26;
pub const MDIC_OP_READ: u32 = 2 << 26;
pub const MDIC_READY: u32 = 1 << 28;
pub const MDIC_ERROR: u32 = 1 << 30;

/// Interrupt causes.
pub const ICR_TXDW: u32 = 1 << 0;
pub const ICR_TXQE: u32 = 1 << 1;
pub const ICR_LSC: u32 = 1 << 2;
pub const ICR_RXDMT0: u32 = 1 << 4;
pub const ICR_RXO: u32 = 1 << 6;
pub const ICR_RXT0: u32 = 1 << 7;
/// The causes the 82540 has (bits 0-16, less the reserved ones).
pub const ICR_VALID: u32 = 0x0001_f6df;

/// RCTL: enable, unicast/multicast promiscuous, long packets, descriptor minimum threshold
/// (9:8), multicast offset (13:12), broadcast accept, buffer size (17:16), VLAN filter,
/// buffer size extension, strip the Ethernet CRC.
pub const RCTL_EN: u32 = 1 << 1;
pub const RCTL_UPE: u32 = 1 << 3;
pub const RCTL_MPE: u32 = 1 << 4;
pub const RCTL_LPE: u32 = 1 << 5;
pub const RCTL_BAM: u32 = 1 << 15;
pub const RCTL_VFE: u32 = 1 << 18;
pub const RCTL_BSEX: u32 = 1 << 25;
pub const RCTL_SECRC: u32 = 1 << 26;

/// TCTL: enable.
pub const TCTL_EN: u32 = 1 << 1;

/// Descriptor rings: 16-byte descriptors, lengths in multiples of 128 bytes.
pub const DESC_SIZE: u64 = 16;
pub const RING_ALIGN: u32 = 128;
