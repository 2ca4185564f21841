//! The PCI bus behind configuration mechanism #1 (ports 0xCF8 address, 0xCFC..=0xCFF data),
//! with the host bridge every PC has (Intel 440FX, 8086:1237) at 00:00.0.
//!
//! Functions implement [`PciFunction`] over a 256-byte configuration space. Reads of absent
//! functions return all ones, which is how software finds an empty slot. BARs are sized the
//! standard way: writing all ones reads back the size mask.

use crate::bus::BusDevice;
use std::collections::BTreeMap;

/// Vendor/device of the host bridge: Intel 82441FX (440FX) PMC, what QEMU's `pc` machine and
/// the stock drivers expect.
pub const HOST_BRIDGE: (u16, u16) = (0x8086, 0x1237);

/// A PCI function's configuration space and BAR behaviour.
pub trait PciFunction: Send {
    /// Reads the 32-bit register at `offset` (dword-aligned).
    fn read_config(&mut self, offset: u8) -> u32;
    /// Writes `value` to the bytes of the dword at `offset` selected by `mask`.
    fn write_config(&mut self, offset: u8, value: u32, mask: u32);
}

/// A plain configuration space: read-only identity fields, writable command/status, BARs with
/// size masks, interrupt line.
pub struct ConfigSpace {
    regs: [u32; 64],
    /// Per-dword writable bits.
    writable: [u32; 64],
    /// For each BAR: the size mask (`!(size - 1)` plus the type bits kept), 0 = unused.
    bar_masks: [u32; 6],
}

impl ConfigSpace {
    /// A type-0 header for `vendor:device` with class `class << 8 | prog_if`, revision.
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8) -> ConfigSpace {
        let mut regs = [0u32; 64];
        regs[0] = vendor as u32 | (device as u32) << 16;
        regs[2] = (class << 8) | revision as u32;
        let mut writable = [0u32; 64];
        writable[1] = 0x0000_0547; // command: I/O, memory, bus master, parity, SERR, INTx dis.
        writable[3] = 0x0000_ff00; // latency timer
        writable[15] = 0x0000_00ff; // interrupt line
        ConfigSpace {
            regs,
            writable,
            bar_masks: [0; 6],
        }
    }

    /// Declares BAR `n`: an I/O BAR (`io`) or 32-bit memory BAR of `size` bytes (a power of
    /// two), at `base`.
    pub fn set_bar(&mut self, n: usize, size: u32, io: bool, base: u32) {
        let size = size.max(if io { 4 } else { 16 }).next_power_of_two();
        let type_bits = if io { 1 } else { 0 };
        self.bar_masks[n] = !(size - 1) | type_bits;
        self.regs[4 + n] = (base & !(size - 1)) | type_bits;
        self.writable[4 + n] = !(size - 1);
    }

    /// Sets the interrupt pin (1 = INTA#) and the line firmware assigned.
    pub fn set_interrupt(&mut self, pin: u8, line: u8) {
        self.regs[15] = (self.regs[15] & !0xffff) | (pin as u32) << 8 | line as u32;
    }

    /// Subsystem vendor and device.
    pub fn set_subsystem(&mut self, vendor: u16, device: u16) {
        self.regs[11] = vendor as u32 | (device as u32) << 16;
    }

    /// The current value of a BAR's address bits.
    pub fn bar(&self, n: usize) -> u32 {
        self.regs[4 + n] & self.bar_masks[n] & !0xf
    }

    pub fn command(&self) -> u16 {
        self.regs[1] as u16
    }

    /// Raw dword access for device-specific registers.
    pub fn reg_mut(&mut self, offset: u8) -> &mut u32 {
        &mut self.regs[(offset as usize / 4) & 63]
    }

    /// Makes bits of a device-specific dword writable.
    pub fn set_writable(&mut self, offset: u8, bits: u32) {
        self.writable[(offset as usize / 4) & 63] = bits;
    }
}

impl PciFunction for ConfigSpace {
    fn read_config(&mut self, offset: u8) -> u32 {
        self.regs[(offset as usize / 4) & 63]
    }

    fn write_config(&mut self, offset: u8, value: u32, mask: u32) {
        let i = (offset as usize / 4) & 63;
        let w = self.writable[i] & mask;
        if i == 1 {
            // Status bits (upper half) are write-one-to-clear.
            let clear = value & mask & 0xf900_0000;
            self.regs[1] &= !clear;
        }
        self.regs[i] = (self.regs[i] & !w) | (value & w);
        if (4..10).contains(&i) {
            let n = i - 4;
            // Keep the type bits and size alignment whatever was written.
            self.regs[i] = (self.regs[i] & self.bar_masks[n]) | (self.bar_masks[n] & 1);
        }
    }
}

/// Bus 0 with the functions present, addressed as (device, function).
pub struct PciBus {
    address: u32,
    functions: BTreeMap<(u8, u8), Box<dyn PciFunction>>,
}

impl Default for PciBus {
    fn default() -> PciBus {
        PciBus::new()
    }
}

impl PciBus {
    /// A bus holding the host bridge at 00:00.0.
    pub fn new() -> PciBus {
        let mut bus = PciBus {
            address: 0,
            functions: BTreeMap::new(),
        };
        let bridge = ConfigSpace::new(HOST_BRIDGE.0, HOST_BRIDGE.1, 0x06_0000, 0x02);
        bus.add(0, 0, Box::new(bridge));
        bus
    }

    /// Adds a function at `device.function` (replacing nothing: the first one wins).
    pub fn add(&mut self, device: u8, function: u8, f: Box<dyn PciFunction>) {
        self.functions
            .entry((device & 31, function & 7))
            .or_insert(f);
    }

    /// The enabled configuration address's function and register, if it names one on bus 0.
    fn target(&self) -> Option<((u8, u8), u8)> {
        let a = self.address;
        if a & (1 << 31) == 0 || (a >> 16) & 0xff != 0 {
            return None;
        }
        let dev = ((a >> 11) & 31) as u8;
        let func = ((a >> 8) & 7) as u8;
        Some(((dev, func), (a & 0xfc) as u8))
    }
}

/// Offsets of the two port windows when the bus is mapped at 0xCF8 (address, 4 bytes) and
/// 0xCFC (data, 4 bytes) as one 8-port range.
const DATA: u64 = 4;

impl BusDevice for PciBus {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if offset < DATA {
            if offset == 0 && data.len() == 4 {
                data.copy_from_slice(&self.address.to_le_bytes());
            }
            return;
        }
        let Some((key, reg)) = self.target() else {
            return;
        };
        let Some(f) = self.functions.get_mut(&key) else {
            return;
        };
        let v = f.read_config(reg).to_le_bytes();
        let start = (offset - DATA) as usize;
        for (i, b) in data.iter_mut().enumerate() {
            if let Some(x) = v.get(start + i) {
                *b = *x;
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset < DATA {
            // Only a dword write to 0xCF8 sets the address; byte writes there belong to other
            // mechanisms (0xCF9 is the reset control register, mapped separately).
            if offset == 0 && data.len() == 4 {
                self.address = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            }
            return;
        }
        let Some((key, reg)) = self.target() else {
            return;
        };
        let Some(f) = self.functions.get_mut(&key) else {
            return;
        };
        let start = (offset - DATA) as usize;
        let mut value = 0u32;
        let mut mask = 0u32;
        for (i, b) in data.iter().enumerate() {
            let shift = 8 * (start + i);
            if shift < 32 {
                value |= (*b as u32) << shift;
                mask |= 0xff << shift;
            }
        }
        f.write_config(reg, value, mask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(bus: &mut PciBus, dev: u8, func: u8, reg: u8) {
        let a = 0x8000_0000u32 | (dev as u32) << 11 | (func as u32) << 8 | reg as u32;
        bus.write(0, &a.to_le_bytes());
    }

    fn read32(bus: &mut PciBus, dev: u8, func: u8, reg: u8) -> u32 {
        select(bus, dev, func, reg);
        let mut d = [0u8; 4];
        bus.read(DATA, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn host_bridge_and_empty_slots() {
        let mut bus = PciBus::new();
        assert_eq!(read32(&mut bus, 0, 0, 0), 0x1237_8086);
        assert_eq!(
            read32(&mut bus, 0, 0, 8) >> 8,
            0x06_0000,
            "class: host bridge"
        );
        assert_eq!(read32(&mut bus, 1, 0, 0), 0xffff_ffff, "empty slot");
        assert_eq!(read32(&mut bus, 31, 7, 0), 0xffff_ffff);
        // Address register reads back.
        let mut d = [0u8; 4];
        bus.read(0, &mut d);
        assert_eq!(
            u32::from_le_bytes(d),
            0x8000_ff00,
            "31.7 reg 0, as last selected"
        );
    }

    #[test]
    fn disabled_address_and_other_buses_read_ones() {
        let mut bus = PciBus::new();
        bus.write(0, &0x0000_0000u32.to_le_bytes()); // enable bit clear
        let mut d = [0u8; 4];
        bus.read(DATA, &mut d);
        assert_eq!(d, [0xff; 4]);
        bus.write(0, &0x8001_0000u32.to_le_bytes()); // bus 1
        bus.read(DATA, &mut d);
        assert_eq!(d, [0xff; 4]);
    }

    #[test]
    fn byte_and_word_reads_within_the_dword() {
        let mut bus = PciBus::new();
        select(&mut bus, 0, 0, 0);
        let mut w = [0u8; 2];
        bus.read(DATA + 2, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x1237, "device id");
        let mut b = [0u8; 1];
        bus.read(DATA + 1, &mut b);
        assert_eq!(b[0], 0x80);
    }

    #[test]
    fn bar_sizing_and_command_register() {
        let mut bus = PciBus::new();
        let mut cs = ConfigSpace::new(0x8086, 0x100e, 0x02_0000, 3);
        cs.set_bar(0, 0x2_0000, false, 0xfebc_0000);
        cs.set_bar(1, 0x40, true, 0xc000);
        cs.set_interrupt(1, 11);
        bus.add(3, 0, Box::new(cs));
        select(&mut bus, 3, 0, 0x10);
        bus.write(DATA, &u32::MAX.to_le_bytes());
        assert_eq!(
            read32(&mut bus, 3, 0, 0x10),
            0xfffe_0000,
            "memory BAR size 128 KiB"
        );
        select(&mut bus, 3, 0, 0x14);
        bus.write(DATA, &u32::MAX.to_le_bytes());
        assert_eq!(
            read32(&mut bus, 3, 0, 0x14),
            0xffff_ffc1,
            "I/O BAR size 64, I/O bit"
        );
        select(&mut bus, 3, 0, 0x10);
        bus.write(DATA, &0xfeb0_0000u32.to_le_bytes());
        assert_eq!(read32(&mut bus, 3, 0, 0x10), 0xfeb0_0000, "relocated");
        select(&mut bus, 3, 0, 4);
        bus.write(DATA, &[0x07, 0x00]);
        assert_eq!(read32(&mut bus, 3, 0, 4) & 0xffff, 0x7);
        assert_eq!(
            read32(&mut bus, 3, 0, 0x3c) & 0xffff,
            0x010b,
            "pin A, line 11"
        );
        // The vendor id is read-only.
        select(&mut bus, 3, 0, 0);
        bus.write(DATA, &0u32.to_le_bytes());
        assert_eq!(read32(&mut bus, 3, 0, 0), 0x100e_8086);
    }
}
