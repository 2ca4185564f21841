//! The 82540EM as a PCI function: configuration space, the register file behind the memory
//! BAR and the I/O BAR's IOADDR/IODATA window, interrupts, reset, and the transmit ring.

use super::eeprom::Eeprom;
use super::frame::{destination, insert_vlan, Destination};
use super::phy::Phy;
use super::regs::*;
use super::rx::Fifo;
use super::tx::{Frame, Transmitter, TxError, CMD_RS, STA_DD};
use super::E1000Stats;
use crate::pci::{self, ConfigSpace, PciBus, PciFunction, COMMAND_BUS_MASTER};
use crate::pci::{COMMAND_INTX_DISABLE, COMMAND_IO, COMMAND_MEMORY};
use crate::tap::Backend;
use janus_engine::{DmaObserver, GuestMemory, IrqLine};
use std::sync::{Arc, Mutex};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Intel 82540EM Gigabit Ethernet Controller (the "PRO/1000 MT Desktop").
pub const E1000_ID: (u16, u16) = (0x8086, 0x100e);
/// Subsystem: Intel PRO/1000 MT Desktop Adapter.
const SUBSYSTEM: (u16, u16) = (0x8086, 0x001e);
/// Class: network controller, Ethernet.
const CLASS: u32 = 0x02_0000;
const REVISION: u8 = 0x03;

/// Where the card sits on bus 0, and where Janus, as firmware, places its BARs (inside the
/// host bridge windows the DSDT declares; Linux keeps them).
pub const SLOT: u8 = 3;
pub const MMIO_BAR: u8 = 0;
pub const IO_BAR: u8 = 1;
pub const MMIO_DEFAULT_BASE: u32 = 0xfebc_0000;
pub const IO_DEFAULT_BASE: u16 = 0xc040;
/// The I/O BAR: IOADDR at 0, IODATA at 4.
const IO_SIZE: u32 = 8;
const IOADDR: u64 = 0;
const IODATA: u64 = 4;

/// Registers in the 128 KiB memory BAR, as dwords.
const REG_DWORDS: usize = (MMIO_SIZE / 4) as usize;

/// Guest mistakes, each logged once per device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GuestError {
    /// A descriptor ring of length zero, or not in guest RAM.
    Ring,
    /// A head or tail beyond the end of its ring.
    Index,
    Tx(TxError),
    /// A receive buffer outside guest RAM.
    RxBuffer,
    /// A frame that needs more descriptors than the ring has.
    RingTooSmall,
}

/// The Intel 82540EM: PCI configuration, MAC registers, EEPROM, PHY, and the rings.
pub struct E1000 {
    pub(super) config: ConfigSpace,
    pub(super) regs: Box<[u32]>,
    pub(super) eeprom: Eeprom,
    phy: Phy,
    mac: [u8; 6],
    /// IOADDR: the register IODATA reaches.
    io_addr: u32,
    pub(super) mem: GuestMemory,
    observer: Arc<dyn DmaObserver>,
    irq: Arc<dyn IrqLine>,
    irq_high: bool,
    pub(super) backend: Arc<dyn Backend>,
    tx: Transmitter,
    pub(super) fifo: Fifo,
    pub(super) stats: E1000Stats,
    /// Wakes the receive thread: the receiver was enabled (or the device reset).
    pub(super) wake: EventFd,
    /// Guest errors already logged (one bit per kind) and whether a host error was.
    logged: u32,
    host_warned: bool,
    frames: Vec<Frame>,
}

impl E1000 {
    /// A card with address `mac` on `backend`, DMA into `mem` (writes reported to
    /// `observer`), interrupting on `irq`.
    pub fn new(
        mem: GuestMemory,
        observer: Arc<dyn DmaObserver>,
        irq: Arc<dyn IrqLine>,
        backend: Arc<dyn Backend>,
        mac: [u8; 6],
    ) -> std::io::Result<E1000> {
        let mut config = ConfigSpace::new(E1000_ID.0, E1000_ID.1, CLASS, REVISION);
        config.set_bar(MMIO_BAR as usize, MMIO_SIZE, false, MMIO_DEFAULT_BASE);
        config.set_bar(IO_BAR as usize, IO_SIZE, true, IO_DEFAULT_BASE as u32);
        config.set_subsystem(SUBSYSTEM.0, SUBSYSTEM.1);
        config.set_interrupt(1, pci::intx_gsi(SLOT, 0) as u8);
        config.set_command(COMMAND_IO | COMMAND_MEMORY);
        let mut nic = E1000 {
            config,
            regs: vec![0u32; REG_DWORDS].into_boxed_slice(),
            eeprom: Eeprom::new(mac, E1000_ID.1, E1000_ID.0),
            phy: Phy::new(),
            mac,
            io_addr: 0,
            mem,
            observer,
            irq,
            irq_high: false,
            backend,
            tx: Transmitter::default(),
            fifo: Fifo::default(),
            stats: E1000Stats::default(),
            wake: EventFd::new(EFD_NONBLOCK)?,
            logged: 0,
            host_warned: false,
            frames: Vec::new(),
        };
        nic.reset();
        Ok(nic)
    }

    /// Puts the card at 00:03.0 on `pci`.
    pub fn install(nic: &Arc<Mutex<E1000>>, pci: &mut PciBus) {
        pci.add(SLOT, 0, nic.clone());
    }

    pub fn stats(&self) -> E1000Stats {
        let mut s = self.stats;
        s.tso_contexts = self.tx.tso_contexts;
        s
    }

    /// The power-up state, which CTRL.RST also restores: the receive address from the EEPROM,
    /// link up, interrupts masked, both rings off. The PHY keeps its state, as on the part.
    fn reset(&mut self) {
        self.regs.fill(0);
        self.set(CTRL, CTRL_DEFAULT);
        self.set(VET, 0x8100);
        // Packet buffer allocation: 48 KiB receive, 16 KiB transmit.
        self.set(0x1000, 0x30);
        let mac = self.mac;
        self.set(RAL0, u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]));
        self.set(RAH0, u16::from_le_bytes([mac[4], mac[5]]) as u32 | 1 << 31);
        self.eeprom = Eeprom::new(mac, E1000_ID.1, E1000_ID.0);
        self.tx.reset();
        self.fifo.clear();
        self.update_irq();
        self.wake_receiver();
    }

    pub(super) fn get(&self, reg: u32) -> u32 {
        self.regs[(reg as usize / 4) % REG_DWORDS]
    }

    pub(super) fn set(&mut self, reg: u32, v: u32) {
        self.regs[(reg as usize / 4) % REG_DWORDS] = v;
    }

    pub(super) fn wake_receiver(&self) {
        // A full counter already means "wake up".
        let _ = self.wake.write(1);
    }

    /// Counts a guest mistake and logs the first of each kind.
    pub(super) fn guest_error(&mut self, e: GuestError) {
        self.stats.guest_errors += 1;
        let bit = 1u32
            << match e {
                GuestError::Ring => 0,
                GuestError::Index => 1,
                GuestError::Tx(_) => 2,
                GuestError::RxBuffer => 3,
                GuestError::RingTooSmall => 4,
            };
        if self.logged & bit == 0 {
            self.logged |= bit;
            tracing::warn!("e1000: guest error: {e:?} (further ones are counted)");
        }
    }

    pub(super) fn host_error(&mut self, what: &str, e: std::io::Error) {
        self.stats.dropped += 1;
        if !self.host_warned {
            self.host_warned = true;
            let name = self.backend.name().to_owned();
            tracing::warn!("e1000: {what} on {name}: {e} (further errors are counted)");
        }
    }

    /// Whether the card may master the bus (DMA).
    pub(super) fn mastering(&self) -> bool {
        self.config.command() & COMMAND_BUS_MASTER != 0
    }

    /// Raises interrupt causes.
    pub(super) fn interrupt(&mut self, causes: u32) {
        self.set(ICR, self.get(ICR) | (causes & ICR_VALID));
        self.update_irq();
    }

    /// INTA# is asserted while a cause is pending and enabled (and INTx is not disabled).
    fn update_irq(&mut self) {
        let high =
            self.get(ICR) & self.get(IMS) != 0 && self.config.command() & COMMAND_INTX_DISABLE == 0;
        if high != self.irq_high {
            self.irq_high = high;
            if high {
                self.stats.interrupts += 1;
            }
            let _ = self.irq.set_level(high);
        }
    }

    /// Reads guest memory at `addr`, if it all is RAM.
    pub(super) fn dma_read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let at = GuestAddress(addr);
        self.mem.check_range(at, buf.len()) && self.mem.read_slice(buf, at).is_ok()
    }

    /// Writes guest memory at `addr` if it all is RAM, and reports the write.
    pub(super) fn dma_write(&self, addr: u64, data: &[u8]) -> bool {
        let at = GuestAddress(addr);
        if !self.mem.check_range(at, data.len()) || self.mem.write_slice(data, at).is_err() {
            return false;
        }
        self.observer.dma_written(addr, data.len() as u64);
        true
    }

    /// A descriptor ring from its registers: base and descriptor count, if it has any and
    /// lies in guest RAM.
    pub(super) fn ring(&mut self, bal: u32) -> Option<(u64, u32)> {
        let base = (self.get(bal + 4) as u64) << 32 | self.get(bal) as u64;
        let len = self.get(bal + 8);
        let count = len / DESC_SIZE as u32;
        if count == 0 || !self.mem.check_range(GuestAddress(base), len as usize) {
            self.guest_error(GuestError::Ring);
            return None;
        }
        Some((base, count))
    }

    /// Register read, with the side effects reads have (ICR and statistics clear).
    fn read_reg(&mut self, reg: u32) -> u32 {
        match reg {
            STATUS => STATUS_FD | STATUS_LU | STATUS_SPEED_1000 | STATUS_ASDV_1000,
            EECD => self.eeprom.read_eecd(),
            ICR => {
                let v = self.get(ICR);
                self.set(ICR, 0);
                self.update_irq();
                v
            }
            ICS | IMC => 0,
            STATS_START..STATS_END => {
                let v = self.get(reg);
                self.set(reg, 0);
                v
            }
            _ => self.get(reg),
        }
    }

    /// What a narrow write merges into: registers that act on the bits written start from 0.
    fn merge_base(&self, reg: u32) -> u32 {
        match reg {
            ICR | ICS | IMS | IMC | CTRL => 0,
            EECD => self.eeprom.read_eecd(),
            _ => self.get(reg),
        }
    }

    fn write_reg(&mut self, reg: u32, v: u32) {
        match reg {
            CTRL if v & CTRL_RST != 0 => self.reset(),
            CTRL => self.set(CTRL, v),
            STATUS | STATS_START..STATS_END => {}
            EECD => self.eeprom.write_eecd(v),
            EERD => {
                let r = self.eeprom.eerd(v);
                self.set(EERD, r);
            }
            MDIC => {
                let r = self.phy.mdic(v);
                self.set(MDIC, r);
            }
            ICR => {
                self.set(ICR, self.get(ICR) & !v);
                self.update_irq();
            }
            ICS => self.interrupt(v),
            IMS => {
                self.set(IMS, (self.get(IMS) | v) & ICR_VALID);
                self.update_irq();
            }
            IMC => {
                self.set(IMS, self.get(IMS) & !v);
                self.update_irq();
            }
            RCTL => {
                self.set(RCTL, v);
                self.wake_receiver();
                self.deliver();
            }
            TCTL => {
                self.set(TCTL, v);
                self.transmit();
            }
            // Ring bases are 16-byte aligned, lengths multiples of 128 (up to 20 bits), heads
            // and tails 16 bits: the low bits are not implemented and read as zero.
            RDBAL | TDBAL => self.set(reg, v & !0xf),
            RDLEN | TDLEN => self.set(reg, v & 0xf_ff80),
            RDH | TDH => self.set(reg, v & 0xffff),
            RDT => {
                self.set(RDT, v & 0xffff);
                self.deliver();
            }
            TDT => {
                self.set(TDT, v & 0xffff);
                self.transmit();
            }
            _ => self.set(reg, v),
        }
    }

    /// Reads `data.len()` bytes of registers from `offset`, a dword at a time.
    fn read_regs(&mut self, offset: u64, data: &mut [u8]) {
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let reg = (at & !3) as u32 % MMIO_SIZE;
            let shift = (at & 3) as usize;
            let n = (4 - shift).min(data.len() - done);
            let v = self.read_reg(reg).to_le_bytes();
            data[done..done + n].copy_from_slice(&v[shift..shift + n]);
            done += n;
        }
    }

    /// Writes registers from `offset`; a narrow write merges into the register's dword.
    fn write_regs(&mut self, offset: u64, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let reg = (at & !3) as u32 % MMIO_SIZE;
            let shift = (at & 3) as usize;
            let n = (4 - shift).min(data.len() - done);
            let mut v = self.merge_base(reg).to_le_bytes();
            v[shift..shift + n].copy_from_slice(&data[done..done + n]);
            self.write_reg(reg, u32::from_le_bytes(v));
            done += n;
        }
    }

    /// Sends the descriptors between TDH and TDT. A ring outside RAM, or a head or tail
    /// beyond it, stops the transmitter where it is (counted) until the driver fixes it.
    fn transmit(&mut self) {
        if self.get(TCTL) & TCTL_EN == 0 || !self.mastering() {
            return;
        }
        let mut head = self.get(TDH);
        let tail = self.get(TDT);
        if head == tail {
            return;
        }
        let Some((base, count)) = self.ring(TDBAL) else {
            return;
        };
        if head >= count || tail >= count {
            self.guest_error(GuestError::Index);
            return;
        }
        while head != tail {
            let at = base + head as u64 * DESC_SIZE;
            let mut d = [0u8; 16];
            if !self.dma_read(at, &mut d) {
                self.guest_error(GuestError::Ring);
                break;
            }
            let mut frames = std::mem::take(&mut self.frames);
            if let Err(e) = self.tx.descriptor(&d, &self.mem, &mut frames) {
                self.guest_error(GuestError::Tx(e));
            }
            for f in frames.drain(..) {
                self.send(f);
            }
            self.frames = frames;
            if d[11] & CMD_RS != 0 {
                self.dma_write(at + 12, &[d[12] | STA_DD]);
            }
            head = (head + 1) % count;
            self.set(TDH, head);
        }
        self.interrupt(ICR_TXDW | ICR_TXQE);
    }

    /// One frame out to the backend, with its VLAN tag inserted if asked.
    fn send(&mut self, f: Frame) {
        let mut bytes = f.bytes;
        if let Some(tci) = f.vlan.filter(|_| self.get(CTRL) & CTRL_VME != 0) {
            insert_vlan(&mut bytes, self.get(VET) as u16, tci);
        }
        if let Err(e) = self.backend.write_frame(&bytes) {
            self.host_error("write", e);
            return;
        }
        let len = bytes.len() as u64;
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += len;
        // The hardware counts octets with the FCS it appends.
        self.count(stat::GPTC, 1);
        self.count(stat::TPT, 1);
        self.count64(stat::GOTCL, len + 4);
        self.count64(stat::TOTL, len + 4);
        match destination(&bytes) {
            Destination::Broadcast => self.count(stat::BPTC, 1),
            Destination::Multicast => self.count(stat::MPTC, 1),
            Destination::Unicast => {}
        }
    }

    /// Adds to a 32-bit statistics register (saturating, as the hardware's counters do).
    pub(super) fn count(&mut self, reg: u32, n: u32) {
        self.set(reg, self.get(reg).saturating_add(n));
    }

    /// Adds to a 64-bit statistics pair (low, then high).
    pub(super) fn count64(&mut self, low: u32, n: u64) {
        let v = (self.get(low + 4) as u64) << 32 | self.get(low) as u64;
        let v = v.saturating_add(n);
        self.set(low, v as u32);
        self.set(low + 4, (v >> 32) as u32);
    }

    /// An I/O BAR access: IOADDR selects a register, IODATA reaches it.
    fn io_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        match offset {
            IOADDR..IODATA => {
                let v = self.io_addr.to_le_bytes();
                for (i, b) in data.iter_mut().enumerate() {
                    *b = v.get(offset as usize + i).copied().unwrap_or(0xff);
                }
            }
            _ if (self.io_addr as u64) < MMIO_SIZE as u64 => {
                self.read_regs(self.io_addr as u64 + (offset - IODATA), data);
            }
            _ => {}
        }
    }

    fn io_write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            IOADDR..IODATA => {
                let mut v = self.io_addr.to_le_bytes();
                for (i, b) in data.iter().enumerate() {
                    if let Some(x) = v.get_mut(offset as usize + i) {
                        *x = *b;
                    }
                }
                self.io_addr = u32::from_le_bytes(v);
            }
            _ if (self.io_addr as u64) < MMIO_SIZE as u64 => {
                self.write_regs(self.io_addr as u64 + (offset - IODATA), data);
            }
            _ => {}
        }
    }
}

impl PciFunction for E1000 {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }

    fn write_config(&mut self, offset: u8, value: u32, mask: u32) {
        self.config.write(offset, value, mask);
        // INTx may have been disabled or enabled, bus mastering turned on under waiting work.
        self.update_irq();
        self.transmit();
        self.deliver();
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        match bar {
            MMIO_BAR => {
                self.stats.mmio_exits += 1;
                self.read_regs(offset, data);
            }
            IO_BAR => {
                self.stats.io_exits += 1;
                self.io_read(offset, data);
            }
            _ => data.fill(0xff),
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        match bar {
            MMIO_BAR => {
                self.stats.mmio_exits += 1;
                self.write_regs(offset, data);
            }
            IO_BAR => {
                self.stats.io_exits += 1;
                self.io_write(offset, data);
            }
            _ => {}
        }
    }

    fn name(&self) -> &'static str {
        "e1000"
    }
}
