//! The PCI bus behind configuration mechanism #1 (ports 0xCF8 address, 0xCFC..=0xCFF data),
//! with the chipset every PC has: the Intel 440FX host bridge (8086:1237) at 00:00.0 and, in
//! the machine, the PIIX3 ISA bridge (8086:7000) at 00:01.0 with its IDE function at 00:01.1.
//!
//! Functions implement [`PciFunction`] over a 256-byte [`ConfigSpace`]. Reads of absent
//! functions return all ones, which is how software finds an empty slot. BARs are sized the
//! standard way (writing all ones reads back the size mask) and the guest may move them: the
//! bus keeps a decode table of every enabled BAR, rebuilt after each configuration write, and
//! [`PciBus::bar_decoder`] gives the device bus a [`DynamicRanges`] that routes port and MMIO
//! accesses through it. So BAR relocation needs no change to the device bus's fixed map, and a
//! BAR can never shadow a legacy device: fixed ranges are looked up first.
//!
//! Interrupts: PCI INTx pins are routed to I/O APIC inputs by [`intx_gsi`], and the ACPI
//! `_PRT` lists the same routing ([`intx_routes`]); see that function for why.

use crate::bus::{lock, AddressSpace, BusDevice, BusError, DynamicRanges};
use crate::Bus;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Configuration mechanism #1: the address register (a dword at 0xCF8) and the data window
/// (0xCFC..=0xCFF).
pub const CONFIG_ADDRESS: u16 = 0xcf8;
pub const CONFIG_DATA: u16 = 0xcfc;

/// Vendor/device of the host bridge: Intel 82441FX (440FX) PMC, what QEMU's `pc` machine and
/// the stock drivers expect.
pub const HOST_BRIDGE: (u16, u16) = (0x8086, 0x1237);
/// Vendor/device of the PIIX3 PCI-to-ISA bridge (function 0 of the PIIX3).
pub const PIIX3_ISA: (u16, u16) = (0x8086, 0x7000);

/// Command register: I/O space decoding on.
pub const COMMAND_IO: u16 = 1 << 0;
/// Command register: memory space decoding on.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: the function may master the bus (DMA).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command register: INTx disabled.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// Status register: medium DEVSEL timing and fast back-to-back capable, what the PIIX3 and
/// 440FX report.
const STATUS_DEFAULT: u32 = 0x0280;
/// Header type register's multi-function bit: software scans functions 1-7 only when
/// function 0 sets it.
const HEADER_MULTI_FUNCTION: u32 = 0x80 << 16;

/// A PCI function's configuration space, BAR behaviour and BAR registers.
pub trait PciFunction: Send {
    /// The configuration space the bus decodes BARs from.
    fn config(&self) -> &ConfigSpace;
    fn config_mut(&mut self) -> &mut ConfigSpace;
    /// Reads the 32-bit register at `offset` (dword-aligned).
    fn read_config(&mut self, offset: u8) -> u32 {
        self.config().read(offset)
    }
    /// Writes `value` to the bytes of the dword at `offset` selected by `mask`.
    fn write_config(&mut self, offset: u8, value: u32, mask: u32) {
        self.config_mut().write(offset, value, mask)
    }
    /// A read at `offset` into BAR `bar`, where the guest placed it. Nothing there by default:
    /// the bus floats high.
    fn bar_read(&mut self, _bar: u8, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    /// A write at `offset` into BAR `bar`.
    fn bar_write(&mut self, _bar: u8, _offset: u64, _data: &[u8]) {}
    /// The function's name in exit reports.
    fn name(&self) -> &'static str {
        "pci"
    }
}

/// Where one BAR decodes now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarRegion {
    pub bar: u8,
    pub space: AddressSpace,
    pub base: u64,
    pub size: u64,
}

/// A plain configuration space: read-only identity fields, writable command/status, BARs with
/// size masks, interrupt line, and device-specific registers made writable by the device.
#[derive(Clone)]
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
        regs[1] = STATUS_DEFAULT << 16;
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

    /// Marks function 0 of a multi-function device, so software scans its other functions.
    pub fn set_multi_function(&mut self) {
        self.regs[3] |= HEADER_MULTI_FUNCTION;
    }

    /// Sets the command register, as firmware leaves it.
    pub fn set_command(&mut self, command: u16) {
        self.regs[1] = (self.regs[1] & !0xffff) | (command as u32 & self.writable[1]);
    }

    /// The current value of a BAR's address bits.
    pub fn bar(&self, n: usize) -> u32 {
        self.regs[4 + n] & self.bar_masks[n] & !0xf
    }

    pub fn command(&self) -> u16 {
        self.regs[1] as u16
    }

    /// Where BAR `n` decodes now: `None` if it is unused, unassigned (address 0), or its
    /// space is switched off in the command register.
    pub fn bar_region(&self, n: usize) -> Option<BarRegion> {
        let mask = *self.bar_masks.get(n)?;
        if mask == 0 {
            return None;
        }
        let io = mask & 1 != 0;
        let (space, enable, addr_mask) = if io {
            (AddressSpace::Pio, COMMAND_IO, !0x3u32)
        } else {
            (AddressSpace::Mmio, COMMAND_MEMORY, !0xfu32)
        };
        let size = (!(mask & addr_mask)).wrapping_add(1) as u64;
        let base = (self.regs[4 + n] & mask & addr_mask) as u64;
        // An I/O BAR above the 64 KiB port space is unreachable (x86 ports are 16 bits).
        let reachable = !io || base + size <= 0x1_0000;
        (self.command() & enable != 0 && base != 0 && reachable).then_some(BarRegion {
            bar: n as u8,
            space,
            base,
            size,
        })
    }

    /// Reads a dword for device-specific registers.
    pub fn reg(&self, offset: u8) -> u32 {
        self.regs[(offset as usize / 4) & 63]
    }

    /// Raw dword access for device-specific registers.
    pub fn reg_mut(&mut self, offset: u8) -> &mut u32 {
        &mut self.regs[(offset as usize / 4) & 63]
    }

    /// Makes bits of a device-specific dword writable.
    pub fn set_writable(&mut self, offset: u8, bits: u32) {
        self.writable[(offset as usize / 4) & 63] = bits;
    }

    /// Reads the dword at `offset`.
    pub fn read(&self, offset: u8) -> u32 {
        self.reg(offset)
    }

    /// Writes the bytes of `value` selected by `mask` to the dword at `offset`, keeping
    /// read-only bits.
    pub fn write(&mut self, offset: u8, value: u32, mask: u32) {
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

impl PciFunction for ConfigSpace {
    fn config(&self) -> &ConfigSpace {
        self
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        self
    }

    fn name(&self) -> &'static str {
        "pci-bridge"
    }
}

/// The PIIX3's function 0, the PCI-to-ISA bridge. Janus's ISA devices are fixed on the device
/// bus, so it only answers configuration cycles: it is there because a PC has it, because
/// function 0 must exist for software to find the IDE function beside it, and because Linux's
/// PIIX quirks read and write its registers (stored, without effect). The PIRQ route control
/// registers (0x60-0x63) read as "routing disabled": interrupts are routed through ACPI.
pub fn piix3_isa_bridge() -> ConfigSpace {
    let mut cs = ConfigSpace::new(PIIX3_ISA.0, PIIX3_ISA.1, 0x06_0100, 0x00);
    cs.set_multi_function();
    cs.set_command(COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER);
    for offset in (0x40..=0xfcu8).step_by(4) {
        cs.set_writable(offset, u32::MAX);
    }
    *cs.reg_mut(0x60) = 0x8080_8080;
    cs
}

/// A function shared between the PCI bus and the fixed ranges it may also decode (the IDE
/// controller's legacy ports).
pub type SharedFunction = Arc<Mutex<dyn PciFunction>>;

/// One enabled BAR in the decode table.
#[derive(Clone)]
struct Decode {
    key: (u8, u8),
    region: BarRegion,
    name: &'static str,
    function: SharedFunction,
}

/// Bus 0 with the functions present, addressed as (device, function).
pub struct PciBus {
    address: u32,
    functions: BTreeMap<(u8, u8), SharedFunction>,
    /// Every enabled BAR, where it is now.
    decode: Vec<Decode>,
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
            decode: Vec::new(),
        };
        let mut bridge = ConfigSpace::new(HOST_BRIDGE.0, HOST_BRIDGE.1, 0x06_0000, 0x02);
        bridge.set_command(COMMAND_IO | COMMAND_MEMORY);
        bus.add(0, 0, Arc::new(Mutex::new(bridge)));
        bus
    }

    /// Adds a function at `device.function` (replacing nothing: the first one wins).
    pub fn add(&mut self, device: u8, function: u8, f: SharedFunction) {
        let key = (device & 31, function & 7);
        if self.functions.contains_key(&key) {
            return;
        }
        self.functions.insert(key, f);
        self.update_decode(key);
    }

    /// Maps configuration mechanism #1 on `bus` and hands it the BARs as dynamic ranges.
    /// 0xCF9, between the two registers, is the reset control register (mapped elsewhere);
    /// byte accesses to 0xCFA/0xCFB (Linux's mechanism check writes 0xCFB) reach the PCI bus and
    /// do nothing.
    pub fn map(pci: &Arc<Mutex<PciBus>>, bus: &mut Bus) -> Result<(), BusError> {
        bus.insert_pio_at(CONFIG_ADDRESS, 1, 0, "pci", pci.clone())?;
        bus.insert_pio_at(CONFIG_ADDRESS + 2, 2, 2, "pci", pci.clone())?;
        bus.insert_pio_at(CONFIG_DATA, 4, DATA, "pci", pci.clone())?;
        bus.set_dynamic_ranges(PciBus::bar_decoder(pci));
        Ok(())
    }

    /// The device bus's view of the BARs (what [`PciBus::map`] installs).
    pub fn bar_decoder(bus: &Arc<Mutex<PciBus>>) -> Arc<dyn DynamicRanges> {
        Arc::new(BarDecoder(bus.clone()))
    }

    /// Rebuilds the decode entries of function `key` from its configuration space.
    fn update_decode(&mut self, key: (u8, u8)) {
        self.decode.retain(|d| d.key != key);
        let Some(f) = self.functions.get(&key) else {
            return;
        };
        let (regions, name) = {
            let g = lock(f);
            let cs = g.config();
            let regions: Vec<BarRegion> = (0..6).filter_map(|n| cs.bar_region(n)).collect();
            (regions, g.name())
        };
        for region in regions {
            self.decode.push(Decode {
                key,
                region,
                name,
                function: f.clone(),
            });
        }
    }

    /// The BAR that decodes `addr` in `space`: its function, BAR number and the offset.
    fn find(&self, space: AddressSpace, addr: u64) -> Option<(Decode, u64)> {
        self.decode.iter().find_map(|d| {
            let r = &d.region;
            let off = addr.wrapping_sub(r.base);
            (r.space == space && addr >= r.base && off < r.size).then(|| (d.clone(), off))
        })
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
        let Some(f) = self.functions.get(&key) else {
            return;
        };
        let v = lock(f).read_config(reg).to_le_bytes();
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
        let Some(f) = self.functions.get(&key) else {
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
        lock(f).write_config(reg, value, mask);
        // A BAR or the command register may have changed.
        self.update_decode(key);
    }
}

/// Routes port and MMIO accesses to the BAR that decodes them now.
struct BarDecoder(Arc<Mutex<PciBus>>);

impl BarDecoder {
    /// The decode entry for `addr`, looked up with the bus unlocked again before the device
    /// is called (a DMA transfer may take a while).
    fn find(&self, space: AddressSpace, addr: u64) -> Option<(Decode, u64)> {
        lock(&self.0).find(space, addr)
    }
}

impl DynamicRanges for BarDecoder {
    fn read(&self, space: AddressSpace, addr: u64, data: &mut [u8]) -> Option<&'static str> {
        let (d, off) = self.find(space, addr)?;
        lock(&d.function).bar_read(d.region.bar, off, data);
        Some(d.name)
    }

    fn write(&self, space: AddressSpace, addr: u64, data: &[u8]) -> Option<&'static str> {
        let (d, off) = self.find(space, addr)?;
        lock(&d.function).bar_write(d.region.bar, off, data);
        Some(d.name)
    }
}

/// The I/O APIC input of the first PCI interrupt line.
pub const INTX_FIRST_GSI: u32 = 16;
/// PCI interrupt lines (PIRQA#-PIRQD#), as on a PC board.
pub const INTX_LINES: u32 = 4;

/// The GSI that INTx pin `pin` (0 = INTA#) of device `slot` on bus 0 drives.
///
/// The four lines go to I/O APIC inputs 16-19, which no ISA device uses, so PCI interrupts are
/// level-triggered and shareable without the PIIX's PIRQ routers or ACPI link devices (the
/// `_PRT` names the GSIs directly). Pins rotate by slot (the usual swizzle), so the INTA# of
/// neighbouring slots land on different lines. A guest that runs without the I/O APIC (`noapic`)
/// gets no PCI interrupts; none of Janus's devices needs one yet (the IDE controller is in
/// legacy mode on IRQ 14 and 15).
pub fn intx_gsi(slot: u8, pin: u8) -> u32 {
    INTX_FIRST_GSI + (slot as u32 + pin as u32) % INTX_LINES
}

/// Every (slot, pin, GSI) of bus 0, for the ACPI `_PRT`. Slot 0 (the host bridge) has no
/// interrupt.
pub fn intx_routes() -> Vec<(u8, u8, u32)> {
    (1..32u8)
        .flat_map(|slot| (0..4u8).map(move |pin| (slot, pin, intx_gsi(slot, pin))))
        .collect()
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

    fn write32(bus: &mut PciBus, dev: u8, func: u8, reg: u8, v: u32) {
        select(bus, dev, func, reg);
        bus.write(DATA, &v.to_le_bytes());
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
        bus.add(3, 0, Arc::new(Mutex::new(cs)));
        write32(&mut bus, 3, 0, 0x10, u32::MAX);
        assert_eq!(
            read32(&mut bus, 3, 0, 0x10),
            0xfffe_0000,
            "memory BAR size 128 KiB"
        );
        write32(&mut bus, 3, 0, 0x14, u32::MAX);
        assert_eq!(
            read32(&mut bus, 3, 0, 0x14),
            0xffff_ffc1,
            "I/O BAR size 64, I/O bit"
        );
        write32(&mut bus, 3, 0, 0x10, 0xfeb0_0000);
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
        write32(&mut bus, 3, 0, 0, 0);
        assert_eq!(read32(&mut bus, 3, 0, 0), 0x100e_8086);
    }

    /// A function with a 128 KiB memory BAR 0 and a 32-port I/O BAR 1 that records accesses.
    struct Nic {
        cs: ConfigSpace,
        seen: Vec<(u8, u64, usize)>,
    }

    impl PciFunction for Nic {
        fn config(&self) -> &ConfigSpace {
            &self.cs
        }
        fn config_mut(&mut self) -> &mut ConfigSpace {
            &mut self.cs
        }
        fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
            self.seen.push((bar, offset, data.len()));
            data.fill(bar + 1);
        }
        fn name(&self) -> &'static str {
            "nic"
        }
    }

    fn nic_bus() -> (Arc<Mutex<PciBus>>, Arc<Mutex<Nic>>) {
        let mut cs = ConfigSpace::new(0x8086, 0x100e, 0x02_0000, 3);
        cs.set_bar(0, 0x2_0000, false, 0xfebc_0000);
        cs.set_bar(1, 0x20, true, 0xc040);
        let nic = Arc::new(Mutex::new(Nic {
            cs,
            seen: Vec::new(),
        }));
        let bus = Arc::new(Mutex::new(PciBus::new()));
        lock(&bus).add(3, 0, nic.clone());
        (bus, nic)
    }

    #[test]
    fn bars_decode_only_when_enabled_and_follow_relocation() {
        let (bus, nic) = nic_bus();
        let bars = PciBus::bar_decoder(&bus);
        let mut d = [0u8; 4];
        let mmio = AddressSpace::Mmio;
        assert_eq!(bars.read(mmio, 0xfebc_0010, &mut d), None, "decode off");
        write32(
            &mut lock(&bus),
            3,
            0,
            4,
            (COMMAND_MEMORY | COMMAND_IO) as u32,
        );
        assert_eq!(bars.read(mmio, 0xfebc_0010, &mut d), Some("nic"));
        assert_eq!(d, [1; 4]);
        assert_eq!(bars.read(mmio, 0xfebe_0000, &mut d), None, "past the end");
        assert_eq!(
            bars.read(AddressSpace::Pio, 0xc05f, &mut d[..1]),
            Some("nic")
        );
        assert_eq!(bars.read(AddressSpace::Pio, 0xc060, &mut d[..1]), None);
        // Sizing, then moving the memory BAR: the old address goes dead, the new one answers.
        write32(&mut lock(&bus), 3, 0, 0x10, u32::MAX);
        write32(&mut lock(&bus), 3, 0, 0x10, 0xd000_0000);
        assert_eq!(bars.read(mmio, 0xfebc_0010, &mut d), None);
        assert_eq!(bars.read(mmio, 0xd001_fffc, &mut d), Some("nic"));
        assert_eq!(
            lock(&nic).seen,
            vec![(0, 0x10, 4), (1, 0x1f, 1), (0, 0x1_fffc, 4)]
        );
        // Memory decoding off again: only the I/O BAR answers.
        write32(&mut lock(&bus), 3, 0, 4, COMMAND_IO as u32);
        assert_eq!(bars.read(mmio, 0xd000_0000, &mut d), None);
        assert_eq!(bars.write(AddressSpace::Pio, 0xc040, &[1]), Some("nic"));
    }

    #[test]
    fn unassigned_and_out_of_range_bars_do_not_decode() {
        let mut cs = ConfigSpace::new(1, 2, 0, 0);
        cs.set_bar(0, 0x100, true, 0);
        cs.set_bar(1, 0x1000, false, 0xc000_0000);
        cs.set_command(COMMAND_IO | COMMAND_MEMORY);
        assert_eq!(cs.bar_region(0), None, "address 0 is unassigned");
        assert_eq!(
            cs.bar_region(1),
            Some(BarRegion {
                bar: 1,
                space: AddressSpace::Mmio,
                base: 0xc000_0000,
                size: 0x1000
            })
        );
        cs.write(0x10, 0xffff_ff00, u32::MAX);
        assert_eq!(cs.bar_region(0), None, "an I/O BAR beyond 64 KiB of ports");
        assert_eq!(cs.bar_region(2), None);
        assert_eq!(cs.bar_region(9), None);
    }

    #[test]
    fn isa_bridge_is_multi_function_with_routing_disabled() {
        let mut bus = PciBus::new();
        bus.add(1, 0, Arc::new(Mutex::new(piix3_isa_bridge())));
        assert_eq!(read32(&mut bus, 1, 0, 0), 0x7000_8086);
        assert_eq!(read32(&mut bus, 1, 0, 8) >> 8, 0x06_0100);
        assert_eq!((read32(&mut bus, 1, 0, 0xc) >> 16) & 0xff, 0x80);
        assert_eq!(read32(&mut bus, 1, 0, 0x60), 0x8080_8080);
        write32(&mut bus, 1, 0, 0x60, 0x0b0a_8080);
        assert_eq!(read32(&mut bus, 1, 0, 0x60), 0x0b0a_8080, "stored");
    }

    #[test]
    fn intx_lines_rotate_by_slot() {
        assert_eq!(intx_gsi(1, 0), 17);
        assert_eq!(intx_gsi(3, 0), 19);
        assert_eq!(intx_gsi(4, 0), 16);
        assert_eq!(intx_gsi(3, 1), 16);
        let routes = intx_routes();
        assert_eq!(routes.len(), 31 * 4);
        assert!(routes
            .iter()
            .all(|&(s, p, g)| (16..20).contains(&g) && g == intx_gsi(s, p)));
    }
}
