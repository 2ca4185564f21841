//! The PC's interrupt controllers as one unit for engines without an in-kernel irqchip (the
//! soft engine): the 8259 pair with its ELCR, the I/O APIC and the local APIC, behind
//! [`IrqRouter`] (device lines in) and [`InterruptController`] (the CPU's INTR pin out).
//!
//! Wiring, as on a PC with the ACPI MADT Janus describes:
//! - GSIs 0..=15 are ISA IRQs and go to both the PICs and the I/O APIC, IRQ 0 (PIT) to I/O
//!   APIC pin 2 (interrupt source override). IRQ 2 is the PICs' cascade, so a level on GSI 2
//!   is ignored, and I/O APIC pin 0 is not connected. GSIs 16..=23 go to the I/O APIC only.
//! - The PIC's INT output reaches the CPU through the local APIC's LINT0 in ExtINT mode (or
//!   directly when the APIC is off in IA32_APIC_BASE); its vector comes from the PIC's
//!   acknowledge. An ExtINT interrupt is taken before the APIC's own ones, as KVM does.
//! - The local APIC's EOI of a level-triggered vector is broadcast to the I/O APIC.
//!
//! Locking: all state sits behind one mutex (`PcIrqChip::state`), so there is no order to get
//! wrong between the three models. That mutex is always the innermost lock: the chip never
//! calls out while holding it. The bus adapters ([`PcIrqChip::pic_device`] etc.) have their own
//! mutex from the bus, taken first; device models that raise a line while holding their own
//! lock take it first too. So the order is: bus/device mutex, then `state`. The INTR output is
//! mirrored in an `AtomicBool` after every change, so `has_interrupt` never locks; a condvar
//! on `state` wakes halted vCPUs when it rises, another wakes the timer thread when the local
//! APIC timer's deadline changes.
//!
//! PV EOI (KVM's protocol, offered to para-virtualized guests): see [`PvEoi`]. It is the one
//! place the chip touches guest memory, and it does so only on the vCPU's thread; the DMA log
//! it reports those writes to is a leaf lock.

use crate::bus::{Bus, BusDevice, BusError};
use crate::ioapic::IoApic;
use crate::lapic::{ApicBus, LapicEffect, LocalApic};
use crate::pic8259::Pic8259Pair;
use crate::pit8254::MonoClock;
use janus_abi::kvm_para::{MSR_ENABLED, MSR_PV_EOI_EN, PV_EOI_BIT};
use janus_abi::pc::{
    ELCR, IOAPIC_BASE, IOAPIC_ID, IOAPIC_PINS, IOAPIC_PIT_PIN, IOAPIC_SIZE, LAPIC_BASE, LAPIC_SIZE,
    LAPIC_TIMER_HZ, PIC_CASCADE_IRQ, PIC_MASTER, PIC_SLAVE, PIT_IRQ,
};
use janus_engine::{DmaObserver, GuestMemory, InterruptController, IrqRouter};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// IA32_APIC_BASE bits.
const APIC_BASE_BSP: u64 = 1 << 8;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ENABLE: u64 = 1 << 11;
/// Reserved bits below the base address (bit 9 and 0..=7).
const APIC_BASE_RESERVED_LOW: u64 = 0x2ff;

/// KVM's para-virtual EOI. When the interrupt the CPU takes is the only one in service, is
/// edge-triggered and nothing else waits, the chip sets bit 0 of a guest flag word as it
/// delivers it. The guest then ends the interrupt by clearing that bit instead of writing the
/// EOI register (which traps), and the chip performs the EOI the next time the vCPU calls in
/// (KVM: at the next exit). If the bit is still set then, the offer is taken back (the bit
/// cleared) and the guest writes the EOI register as usual.
///
/// The guest clears the bit with a plain read-modify-write, so the chip reads and writes the
/// flag only on the vCPU's own thread: when it acknowledges an interrupt and when the guest
/// accesses APIC registers or the MSR, never from a device or timer thread.
struct PvEoi {
    mem: GuestMemory,
    dma: Arc<dyn DmaObserver>,
    /// MSR_KVM_PV_EOI_EN as last written: the flag's address and the enable bit.
    msr: u64,
    /// The vector whose EOI the guest may do through the flag.
    pending: Option<u8>,
    /// EOIs the guest did through the flag.
    completed: u64,
}

impl PvEoi {
    fn flag(&self) -> Option<GuestAddress> {
        (self.msr & MSR_ENABLED != 0).then_some(GuestAddress(self.msr & !MSR_ENABLED))
    }

    fn put_flag(&self, at: GuestAddress, set: bool) -> bool {
        let ok = self.mem.write_obj(u8::from(set), at).is_ok();
        if ok {
            self.dma.dma_written(at.0, 1);
        }
        ok
    }
}

/// The three models and the clock, under one lock.
struct Chip {
    pic: Pic8259Pair,
    ioapic: IoApic,
    lapic: LocalApic,
    clock: MonoClock,
    /// The local APIC timer deadline the timer thread last saw.
    deadline: Option<u64>,
    /// Present where the VMM offers PV EOI (para mode on the soft engine).
    pv_eoi: Option<PvEoi>,
}

impl Chip {
    fn now(&self) -> u64 {
        (self.clock)()
    }

    fn set_gsi(&mut self, gsi: u32, high: bool) {
        let pin = match gsi {
            PIT_IRQ => IOAPIC_PIT_PIN,
            PIC_CASCADE_IRQ => return,
            g if g < IOAPIC_PINS => g,
            _ => return,
        };
        if gsi < 16 {
            self.pic.set_irq(gsi, high);
        }
        self.ioapic.set_line(pin, high, &mut self.lapic);
    }

    /// INTR as the CPU sees it. While a PV EOI is outstanding, any new request raises it:
    /// the guest may have ended the interrupt in service already, which only the vCPU's call
    /// to [`Chip::acknowledge`] can find out.
    fn intr(&self) -> bool {
        let pic = self.pic.int_output();
        (pic && (self.lapic.passes_pic() || self.lapic.extint_pending()))
            || self.lapic.has_interrupt()
            || (self.pv_eoi_outstanding() && self.lapic.irr_pending())
    }

    fn pv_eoi_outstanding(&self) -> bool {
        self.pv_eoi.as_ref().is_some_and(|p| p.pending.is_some())
    }

    fn acknowledge(&mut self) -> Option<u8> {
        self.sync_pv_eoi();
        if !self.intr() {
            return None;
        }
        if self.pic.int_output() && (self.lapic.passes_pic() || self.lapic.extint_pending()) {
            self.lapic.clear_extint();
            return Some(self.pic.inta());
        }
        let vector = self.lapic.acknowledge()?;
        self.offer_pv_eoi(vector);
        Some(vector)
    }

    /// Settles an outstanding PV EOI (vCPU thread only): the EOI if the guest cleared its
    /// flag, otherwise the offer is withdrawn.
    fn sync_pv_eoi(&mut self) {
        let Some(pv) = &mut self.pv_eoi else { return };
        let (Some(_), Some(at)) = (pv.pending.take(), pv.flag()) else {
            return;
        };
        let flag: u8 = pv.mem.read_obj(at).unwrap_or(0);
        if flag & PV_EOI_BIT as u8 != 0 {
            pv.put_flag(at, false);
        } else {
            pv.completed += 1;
            let effect = self.lapic.eoi();
            self.apply(effect);
        }
    }

    /// Offers the guest a PV EOI for `vector`, just acknowledged, where KVM would.
    fn offer_pv_eoi(&mut self, vector: u8) {
        let Some(pv) = &mut self.pv_eoi else { return };
        let Some(at) = pv.flag() else { return };
        if self.lapic.irr_pending() || !self.lapic.sole_edge_in_service(vector) {
            return;
        }
        if pv.put_flag(at, true) {
            pv.pending = Some(vector);
        }
    }

    /// WRMSR to MSR_KVM_PV_EOI_EN; `None` where PV EOI is not offered (the MSR does not
    /// exist). As in KVM, a misaligned address, or an enabled one outside RAM, is refused.
    fn write_pv_eoi_msr(&mut self, value: u64) -> Option<bool> {
        let pv = self.pv_eoi.as_ref()?;
        let addr = value & !MSR_ENABLED;
        let in_ram = pv.mem.check_range(GuestAddress(addr), 1);
        if !addr.is_multiple_of(4) || (value & MSR_ENABLED != 0 && !in_ram) {
            return Some(false);
        }
        self.sync_pv_eoi();
        if let Some(pv) = &mut self.pv_eoi {
            pv.msr = value;
        }
        Some(true)
    }

    fn lapic_write(&mut self, offset: u64, value: u32) {
        let now = self.now();
        let effect = self.lapic.write(offset, value, now);
        self.apply(effect);
    }

    /// Carries out what a local APIC write asks of the rest of the platform.
    fn apply(&mut self, effect: LapicEffect) {
        match effect {
            LapicEffect::None => {}
            LapicEffect::EoiBroadcast(vector) => self.ioapic.eoi(vector, &mut self.lapic),
            // One APIC: the sender is the only possible target.
            LapicEffect::Ipi(msg) => {
                self.lapic.deliver(&msg);
            }
        }
    }
}

/// The PIC pair, the I/O APIC and one local APIC, shared by the VMM, device threads and the
/// vCPU.
pub struct PcIrqChip {
    state: Mutex<Chip>,
    /// INTR output, mirrored after every change of `state`.
    intr: AtomicBool,
    /// Notified when INTR rises.
    intr_cv: Condvar,
    /// Notified when the local APIC timer's deadline changes.
    timer_cv: Condvar,
}

impl PcIrqChip {
    /// The controllers in their firmware-handoff state (see [`LocalApic::new`]), timed by
    /// `clock` (ns on the platform's monotonic clock), with the local APIC timer fed at
    /// [`LAPIC_TIMER_HZ`].
    pub fn new(clock: MonoClock) -> Arc<PcIrqChip> {
        PcIrqChip::with_timer_hz(clock, LAPIC_TIMER_HZ)
    }

    /// As [`PcIrqChip::new`] with another local APIC timer input clock (it must match what
    /// CPUID leaf 0x15 reports as the crystal frequency).
    pub fn with_timer_hz(clock: MonoClock, timer_hz: u64) -> Arc<PcIrqChip> {
        let chip = Chip {
            pic: Pic8259Pair::new(),
            ioapic: IoApic::new(IOAPIC_ID),
            lapic: LocalApic::new(0, timer_hz),
            clock,
            deadline: None,
            pv_eoi: None,
        };
        Arc::new(PcIrqChip {
            state: Mutex::new(chip),
            intr: AtomicBool::new(false),
            intr_cv: Condvar::new(),
            timer_cv: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Chip> {
        // A poisoned lock means another thread panicked mid-update; the state is still
        // memory-safe, so keep serving the guest (as the bus does).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the state with the timer brought up to date, then publishes the outputs.
    fn with<R>(&self, f: impl FnOnce(&mut Chip) -> R) -> R {
        let mut chip = self.lock();
        let r = self.update(&mut chip, f);
        drop(chip);
        r
    }

    fn update<R>(&self, chip: &mut Chip, f: impl FnOnce(&mut Chip) -> R) -> R {
        let now = chip.now();
        chip.lapic.tick(now);
        let r = f(chip);
        self.publish(chip);
        r
    }

    /// Mirrors INTR into the atomic and wakes whoever waits on a change.
    fn publish(&self, chip: &mut Chip) {
        let out = chip.intr();
        if out && !self.intr.swap(out, Ordering::AcqRel) {
            self.intr_cv.notify_all();
        } else if !out {
            self.intr.store(false, Ordering::Release);
        }
        let deadline = chip.lapic.next_timer_deadline_ns();
        if deadline != chip.deadline {
            chip.deadline = deadline;
            self.timer_cv.notify_all();
        }
    }

    /// Runs the local APIC timer up to now: raises its interrupt if it expired.
    pub fn tick(&self) {
        self.with(|_| ());
    }

    /// When the local APIC timer next fires (ns on the chip's clock), if it will.
    pub fn next_timer_deadline_ns(&self) -> Option<u64> {
        self.with(|c| c.lapic.next_timer_deadline_ns())
    }

    /// For the VMM's timer thread: sleeps until the local APIC timer's deadline, a change of
    /// that deadline, or `max`, and runs the timer. Call it in a loop.
    pub fn run_timer(&self, max: Duration) {
        let mut chip = self.lock();
        self.update(&mut chip, |_| ());
        let now = chip.now();
        let nap = match chip.lapic.next_timer_deadline_ns() {
            Some(d) => max.min(Duration::from_nanos(d.saturating_sub(now))),
            None => max,
        };
        if !nap.is_zero() {
            chip = self
                .timer_cv
                .wait_timeout(chip, nap)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        self.update(&mut chip, |_| ());
    }

    /// IA32_APIC_BASE as RDMSR reads it.
    pub fn apic_base_msr(&self) -> u64 {
        let enabled = self.with(|c| c.lapic.hw_enabled());
        LAPIC_BASE | APIC_BASE_BSP | if enabled { APIC_BASE_ENABLE } else { 0 }
    }

    /// WRMSR to IA32_APIC_BASE. Only bit 11 (global enable) can change: moving the page, x2APIC
    /// mode and reserved bits are refused with `false` (the engine raises #GP). The BSP bit is
    /// read-only and ignored.
    pub fn set_apic_base_msr(&self, value: u64) -> bool {
        let base = value & !0xfff;
        if base != LAPIC_BASE || value & (APIC_BASE_RESERVED_LOW | APIC_BASE_X2APIC) != 0 {
            return false;
        }
        self.with(|c| c.lapic.set_hw_enabled(value & APIC_BASE_ENABLE != 0));
        true
    }

    /// Offers the guest KVM's PV EOI (MSR_KVM_PV_EOI_EN), with its flag in `mem`; writes to
    /// the flag are reported to `dma`.
    pub fn enable_pv_eoi(&self, mem: GuestMemory, dma: Arc<dyn DmaObserver>) {
        self.with(|c| {
            c.pv_eoi = Some(PvEoi {
                mem,
                dma,
                msr: 0,
                pending: None,
                completed: 0,
            })
        });
    }

    /// EOIs the guest did through the PV EOI flag instead of the EOI register.
    pub fn pv_eois(&self) -> u64 {
        self.with(|c| c.pv_eoi.as_ref().map_or(0, |p| p.completed))
    }

    /// NMIs the local APIC received and could not pass on (no NMI pin in the engine yet).
    pub fn nmis(&self) -> u64 {
        self.with(|c| c.lapic.nmis())
    }

    fn pic_read(&self, port: u16) -> u8 {
        self.with(|c| c.pic.read_port(port))
    }

    fn pic_write(&self, port: u16, v: u8) {
        self.with(|c| c.pic.write_port(port, v))
    }

    fn ioapic_read(&self, offset: u64) -> u32 {
        self.with(|c| c.ioapic.read(offset))
    }

    fn ioapic_write(&self, offset: u64, v: u32) {
        self.with(|c| c.ioapic.write(offset, v, &mut c.lapic))
    }

    fn lapic_read(&self, offset: u64) -> u32 {
        self.with(|c| {
            c.sync_pv_eoi();
            if !c.lapic.hw_enabled() {
                return 0;
            }
            let now = c.now();
            c.lapic.read(offset, now)
        })
    }

    fn lapic_write(&self, offset: u64, v: u32) {
        self.with(|c| {
            c.sync_pv_eoi();
            if c.lapic.hw_enabled() {
                c.lapic_write(offset, v);
            }
        })
    }

    /// The PIC ports and the ELCR as one bus device; its offsets are port numbers (map it
    /// with `first_offset` = the base port, as [`PcIrqChip::map`] does).
    pub fn pic_device(self: &Arc<Self>) -> Arc<Mutex<PicPorts>> {
        Arc::new(Mutex::new(PicPorts(self.clone())))
    }

    /// The I/O APIC's MMIO window; offsets from [`IOAPIC_BASE`].
    pub fn ioapic_device(self: &Arc<Self>) -> Arc<Mutex<IoApicMmio>> {
        Arc::new(Mutex::new(IoApicMmio(self.clone())))
    }

    /// The local APIC's register page; offsets from [`LAPIC_BASE`].
    pub fn lapic_device(self: &Arc<Self>) -> Arc<Mutex<LapicMmio>> {
        Arc::new(Mutex::new(LapicMmio(self.clone())))
    }

    /// Maps everything on `bus`: ports 0x20-0x21, 0xa0-0xa1 and 0x4d0-0x4d1, the I/O APIC at
    /// 0xfec00000 and the local APIC at 0xfee00000 (4 KiB each).
    pub fn map(self: &Arc<Self>, bus: &mut Bus) -> Result<(), BusError> {
        let pic = self.pic_device();
        bus.insert_pio_at(PIC_MASTER, 2, PIC_MASTER.into(), "pic-master", pic.clone())?;
        bus.insert_pio_at(PIC_SLAVE, 2, PIC_SLAVE.into(), "pic-slave", pic.clone())?;
        bus.insert_pio_at(ELCR, 2, ELCR.into(), "elcr", pic)?;
        bus.insert_mmio(IOAPIC_BASE, IOAPIC_SIZE, "ioapic", self.ioapic_device())?;
        bus.insert_mmio(LAPIC_BASE, LAPIC_SIZE, "lapic", self.lapic_device())
    }
}

/// IA32_APIC_BASE.
const APIC_BASE_MSR: u32 = 0x1b;

impl IrqRouter for PcIrqChip {
    fn set_level(&self, gsi: u32, high: bool) {
        self.with(|c| c.set_gsi(gsi, high));
    }
}

impl InterruptController for PcIrqChip {
    fn has_interrupt(&self) -> bool {
        self.intr.load(Ordering::Acquire)
    }

    /// The INTA cycle happens under the lock together with the check, so a request that went
    /// away since `has_interrupt` gives `None` rather than a spurious vector.
    fn acknowledge(&self) -> Option<u8> {
        self.with(|c| c.acknowledge())
    }

    fn set_cr8(&self, cr8: u64) {
        self.with(|c| c.lapic.set_cr8(cr8));
    }

    fn cr8(&self) -> Option<u64> {
        Some(self.with(|c| c.lapic.cr8()))
    }

    fn read_msr(&self, index: u32) -> Option<u64> {
        match index {
            APIC_BASE_MSR => Some(self.apic_base_msr()),
            MSR_PV_EOI_EN => self.with(|c| c.pv_eoi.as_ref().map(|p| p.msr)),
            _ => None,
        }
    }

    fn write_msr(&self, index: u32, value: u64) -> Option<bool> {
        match index {
            APIC_BASE_MSR => Some(self.set_apic_base_msr(value)),
            MSR_PV_EOI_EN => self.with(|c| c.write_pv_eoi_msr(value)),
            _ => None,
        }
    }

    /// Sleeps until INTR rises or `timeout` passes, waking for the local APIC timer's deadline
    /// on the way so that a halted guest needs no timer thread for its own APIC timer.
    fn wait(&self, timeout: Duration) {
        let end = Instant::now() + timeout;
        let mut chip = self.lock();
        loop {
            self.update(&mut chip, |_| ());
            if self.intr.load(Ordering::Acquire) {
                return;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let now = chip.now();
            let nap = match chip.lapic.next_timer_deadline_ns() {
                Some(d) => left.min(Duration::from_nanos(d.saturating_sub(now)).max(MIN_NAP)),
                None => left,
            };
            chip = self
                .intr_cv
                .wait_timeout(chip, nap)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Shortest sleep in `wait`, so a clock that is not the host's cannot make it spin.
const MIN_NAP: Duration = Duration::from_micros(1);

/// Bus adapter for the PIC ports and the ELCR. A wider access is split into byte accesses to
/// consecutive ports, as the ISA bus does.
pub struct PicPorts(Arc<PcIrqChip>);

impl BusDevice for PicPorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = match u16::try_from(offset.saturating_add(i as u64)) {
                Ok(port) => self.0.pic_read(port),
                Err(_) => 0xff,
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            if let Ok(port) = u16::try_from(offset.saturating_add(i as u64)) {
                self.0.pic_write(port, b);
            }
        }
    }
}

/// A 32-bit access at a 4-byte-aligned offset inside a 4 KiB page, as APIC registers must be
/// accessed; anything else is refused.
fn dword(offset: u64, len: usize, align: u64) -> Option<u64> {
    (len == 4 && offset.is_multiple_of(align) && offset < 0x1000).then_some(offset)
}

/// Bus adapter for the I/O APIC window (IOREGSEL at 0x00, IOWIN at 0x10; other offsets and
/// widths read 0 and ignore writes).
pub struct IoApicMmio(Arc<PcIrqChip>);

impl BusDevice for IoApicMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = dword(offset, data.len(), 4).map_or(0, |off| self.0.ioapic_read(off));
        fill(data, v);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(off), Ok(bytes)) = (dword(offset, data.len(), 4), data.try_into()) {
            self.0.ioapic_write(off, u32::from_le_bytes(bytes));
        }
    }
}

/// Bus adapter for the local APIC page (registers at 16-byte-aligned offsets, dword accesses;
/// other accesses read 0 and ignore writes).
pub struct LapicMmio(Arc<PcIrqChip>);

impl BusDevice for LapicMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = dword(offset, data.len(), 16).map_or(0, |off| self.0.lapic_read(off));
        fill(data, v);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(off), Ok(bytes)) = (dword(offset, data.len(), 16), data.try_into()) {
            self.0.lapic_write(off, u32::from_le_bytes(bytes));
        }
    }
}

fn fill(data: &mut [u8], v: u32) {
    data.fill(0);
    if data.len() == 4 {
        data.copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// A chip on a clock the test moves, mapped on a bus.
    struct Rig {
        chip: Arc<PcIrqChip>,
        bus: Bus,
        time: Arc<AtomicU64>,
    }

    impl Rig {
        fn new() -> Rig {
            let time = Arc::new(AtomicU64::new(0));
            let t = time.clone();
            // A 1 MHz timer clock keeps the tests' arithmetic in whole microseconds.
            let chip =
                PcIrqChip::with_timer_hz(Box::new(move || t.load(Ordering::SeqCst)), 1_000_000);
            let mut bus = Bus::new();
            chip.map(&mut bus).unwrap();
            Rig { chip, bus, time }
        }

        fn outb(&self, port: u16, v: u8) {
            self.bus.pio_write(port, &[v]);
        }

        fn inb(&self, port: u16) -> u8 {
            let mut d = [0u8];
            self.bus.pio_read(port, &mut d);
            d[0]
        }

        fn mmio_w(&self, addr: u64, v: u32) {
            self.bus.mmio_write(addr, &v.to_le_bytes());
        }

        fn mmio_r(&self, addr: u64) -> u32 {
            let mut d = [0u8; 4];
            self.bus.mmio_read(addr, &mut d);
            u32::from_le_bytes(d)
        }

        fn lapic_w(&self, reg: u64, v: u32) {
            self.mmio_w(LAPIC_BASE + reg, v);
        }

        fn lapic_r(&self, reg: u64) -> u32 {
            self.mmio_r(LAPIC_BASE + reg)
        }

        fn ioapic_w(&self, index: u32, v: u32) {
            self.mmio_w(IOAPIC_BASE, index);
            self.mmio_w(IOAPIC_BASE + 0x10, v);
        }

        fn ioapic_r(&self, index: u32) -> u32 {
            self.mmio_w(IOAPIC_BASE, index);
            self.mmio_r(IOAPIC_BASE + 0x10)
        }

        /// Linux's init_8259A with everything masked but `unmasked` (bits of IRQs 0-15).
        fn init_pic(&self, unmasked: u16) {
            for (cmd, base, icw3) in [(0x20, 0x20, 4), (0xa0, 0x28, 2)] {
                self.outb(cmd, 0x11);
                self.outb(cmd + 1, base);
                self.outb(cmd + 1, icw3);
                self.outb(cmd + 1, 0x01);
            }
            let mask = !unmasked;
            self.outb(0x21, mask as u8);
            self.outb(0xa1, (mask >> 8) as u8);
        }

        fn enable_lapic(&self) {
            self.lapic_w(0xf0, 0x1ff);
        }

        fn set_time(&self, ns: u64) {
            self.time.store(ns, Ordering::SeqCst);
        }
    }

    #[test]
    fn uart_through_ioapic() {
        let r = Rig::new();
        r.enable_lapic();
        r.init_pic(0); // all masked, as Linux leaves them in APIC mode
        r.lapic_w(0x350, 0x10700); // LINT0 masked
                                   // IRQ 4 -> pin 4, vector 0x24, logical flat destination 1, as Linux programs it.
        r.lapic_w(0xd0, 0x0100_0000);
        r.ioapic_w(0x19, 0x0100_0000);
        r.ioapic_w(0x18, 0x24 | (1 << 11));
        assert!(!r.chip.has_interrupt());
        r.chip.set_level(4, true);
        assert!(r.chip.has_interrupt());
        assert_eq!(r.chip.acknowledge(), Some(0x24));
        assert!(!r.chip.has_interrupt());
        r.chip.set_level(4, false);
        r.lapic_w(0xb0, 0);
        assert_eq!(r.lapic_r(0x100 + 0x10), 0, "ISR clear after EOI");
        assert_eq!(r.chip.acknowledge(), None);
    }

    /// A rig with the UART's IRQ 4 routed edge-triggered to vector 0x24 and IRQ 9 level-
    /// triggered to 0x29 through the I/O APIC, and PV EOI offered with its flag at 0x1000.
    fn pv_eoi_rig() -> (Rig, GuestMemory) {
        let r = Rig::new();
        r.enable_lapic();
        r.init_pic(0);
        r.lapic_w(0x350, 0x10700);
        r.lapic_w(0xd0, 0x0100_0000);
        r.ioapic_w(0x19, 0x0100_0000);
        r.ioapic_w(0x18, 0x24 | (1 << 11));
        r.ioapic_w(0x23, 0x0100_0000);
        r.ioapic_w(0x22, 0x29 | (1 << 11) | (1 << 15));
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x2000)]).unwrap();
        r.chip
            .enable_pv_eoi(mem.clone(), Arc::new(janus_engine::NoDmaObserver));
        assert_eq!(r.chip.write_msr(MSR_PV_EOI_EN, 0x1000 | 1), Some(true));
        (r, mem)
    }

    fn flag(mem: &GuestMemory) -> u8 {
        mem.read_obj(GuestAddress(0x1000)).unwrap()
    }

    #[test]
    fn pv_eoi_ends_an_edge_interrupt_without_the_eoi_register() {
        let (r, mem) = pv_eoi_rig();
        r.chip.set_level(4, true);
        r.chip.set_level(4, false);
        assert_eq!(r.chip.acknowledge(), Some(0x24));
        assert_eq!(flag(&mem), 1, "offered");
        // The guest clears the flag instead of writing EOI; the next pulse finds out.
        mem.write_obj(0u8, GuestAddress(0x1000)).unwrap();
        r.chip.set_level(4, true);
        r.chip.set_level(4, false);
        assert!(r.chip.has_interrupt());
        assert_eq!(r.chip.acknowledge(), Some(0x24), "the first one was ended");
        assert_eq!(r.chip.pv_eois(), 1);
        // APIC register accesses settle it too.
        mem.write_obj(0u8, GuestAddress(0x1000)).unwrap();
        assert_eq!(r.lapic_r(0x100 + 0x10), 0, "ISR clear");
        assert_eq!(r.chip.pv_eois(), 2);
    }

    #[test]
    fn pv_eoi_is_withdrawn_when_the_guest_did_not_use_it() {
        let (r, mem) = pv_eoi_rig();
        r.chip.set_level(4, true);
        r.chip.set_level(4, false);
        assert_eq!(r.chip.acknowledge(), Some(0x24));
        // Another request of the same class while the first is in service (flag still set):
        // INTR rises so the vCPU calls in, the offer is withdrawn, nothing is delivered.
        r.chip.set_level(4, true);
        r.chip.set_level(4, false);
        assert!(r.chip.has_interrupt());
        assert_eq!(r.chip.acknowledge(), None);
        assert_eq!(flag(&mem), 0, "withdrawn");
        assert!(!r.chip.has_interrupt(), "no spinning on a blocked request");
        // The guest now writes the EOI register, and the waiting request comes through.
        r.lapic_w(0xb0, 0);
        assert_eq!(r.chip.acknowledge(), Some(0x24));
        assert_eq!(r.chip.pv_eois(), 0);
        assert_eq!(flag(&mem), 1, "offered again: nothing else pending");
    }

    #[test]
    fn pv_eoi_is_not_offered_for_level_or_nested_interrupts() {
        let (r, mem) = pv_eoi_rig();
        r.chip.set_level(9, true);
        assert_eq!(r.chip.acknowledge(), Some(0x29));
        assert_eq!(flag(&mem), 0, "level-triggered: the I/O APIC needs the EOI");
        r.chip.set_level(9, false);
        r.lapic_w(0xb0, 0);
        // Two requests at once: the second waits in IRR, so no offer.
        r.lapic_w(0x300, 0x4_0000 | 0x51); // self IPI, vector 0x51
        r.chip.set_level(4, true);
        assert_eq!(r.chip.acknowledge(), Some(0x51));
        assert_eq!(flag(&mem), 0);
    }

    #[test]
    fn pv_eoi_msr_checks_its_address() {
        let (r, _) = pv_eoi_rig();
        assert_eq!(r.chip.read_msr(MSR_PV_EOI_EN), Some(0x1001));
        assert_eq!(r.chip.write_msr(MSR_PV_EOI_EN, 0x1002 | 1), Some(false));
        assert_eq!(r.chip.write_msr(MSR_PV_EOI_EN, 0x9000 | 1), Some(false));
        assert_eq!(r.chip.write_msr(MSR_PV_EOI_EN, 0x9000), Some(true), "off");
        // Without PV EOI offered the MSR does not exist.
        let plain = Rig::new();
        assert_eq!(plain.chip.write_msr(MSR_PV_EOI_EN, 0x1001), None);
        assert_eq!(plain.chip.read_msr(MSR_PV_EOI_EN), None);
    }

    #[test]
    fn pic_mode_through_lint0() {
        let r = Rig::new();
        // Boot time: the I/O APIC is untouched (all masked), LINT0 is the firmware's ExtINT.
        r.init_pic(1 << 4);
        r.chip.set_level(4, true);
        assert!(r.chip.has_interrupt());
        assert_eq!(r.chip.acknowledge(), Some(0x24));
        assert!(!r.chip.has_interrupt());
        r.chip.set_level(4, false);
        r.outb(0x20, 0x64);
        assert_eq!(r.chip.acknowledge(), None);
        // Masking LINT0 (Linux switching to the I/O APIC) cuts the PIC off.
        r.enable_lapic();
        r.lapic_w(0x350, 0x10700);
        r.chip.set_level(4, true);
        assert!(!r.chip.has_interrupt());
        // An APIC turned off in IA32_APIC_BASE passes INT straight through.
        assert!(r.chip.set_apic_base_msr(LAPIC_BASE | APIC_BASE_BSP));
        assert_eq!(r.chip.apic_base_msr(), LAPIC_BASE | APIC_BASE_BSP);
        assert!(r.chip.has_interrupt());
        assert_eq!(r.chip.acknowledge(), Some(0x24));
        assert_eq!(r.lapic_r(0x30), 0, "page not decoded while off");
        assert!(r
            .chip
            .set_apic_base_msr(LAPIC_BASE | APIC_BASE_ENABLE | APIC_BASE_BSP));
        assert_eq!(r.lapic_r(0x30), 0x0005_0014);
        assert!(!r.chip.set_apic_base_msr(0xfed0_0800), "relocation refused");
        assert!(
            !r.chip.set_apic_base_msr(LAPIC_BASE | 0xc00),
            "x2APIC refused"
        );
    }

    #[test]
    fn pit_reaches_ioapic_pin2_and_pic_irq0() {
        let r = Rig::new();
        r.enable_lapic();
        r.init_pic(1);
        r.lapic_w(0x350, 0x10700);
        r.ioapic_w(0x10 + 2 * 2, 0x30);
        r.chip.set_level(0, true);
        r.chip.set_level(0, false);
        assert_eq!(r.chip.acknowledge(), Some(0x30));
        assert_eq!(
            r.inb(0x20) & 1,
            1,
            "the PIC saw IRQ 0 too (masked off by LINT0)"
        );
        r.lapic_w(0xb0, 0);
        // GSI 2 is the cascade: nothing.
        r.chip.set_level(2, true);
        assert!(!r.chip.has_interrupt());
    }

    #[test]
    fn level_sci_via_ioapic_and_eoi_broadcast() {
        let r = Rig::new();
        r.enable_lapic();
        r.lapic_w(0x350, 0x10700);
        r.ioapic_w(0x10 + 2 * 9, 0x39 | (1 << 15) | (1 << 13));
        r.chip.set_level(9, true);
        assert_eq!(r.chip.acknowledge(), Some(0x39));
        assert_ne!(r.lapic_r(0x180 + 0x10) & (1 << (0x39 - 32)), 0, "TMR set");
        assert_ne!(r.ioapic_r(0x22) & (1 << 14), 0);
        // Still asserted at EOI: delivered again.
        r.lapic_w(0xb0, 0);
        assert!(r.chip.has_interrupt());
        assert_eq!(r.chip.acknowledge(), Some(0x39));
        r.chip.set_level(9, false);
        r.lapic_w(0xb0, 0);
        assert!(!r.chip.has_interrupt());
        assert_eq!(r.ioapic_r(0x22) & (1 << 14), 0);
    }

    #[test]
    fn lapic_timer_through_tick_and_wait() {
        let r = Rig::new();
        r.enable_lapic();
        r.lapic_w(0x3e0, 0xb); // divide by 1: 1 us a count
        r.lapic_w(0x320, 0xef);
        r.set_time(5_000);
        r.lapic_w(0x380, 100);
        assert_eq!(r.chip.next_timer_deadline_ns(), Some(105_000));
        r.set_time(50_000);
        assert_eq!(r.lapic_r(0x390), 55);
        r.chip.tick();
        assert!(!r.chip.has_interrupt());
        r.set_time(105_000);
        // A halted vCPU's wait runs the timer itself.
        r.chip.wait(Duration::from_millis(1));
        assert!(r.chip.has_interrupt());
        assert_eq!(r.chip.acknowledge(), Some(0xef));
    }

    #[test]
    fn wait_wakes_on_a_line_from_another_thread() {
        let r = Rig::new();
        r.enable_lapic();
        r.lapic_w(0x350, 0x10700);
        r.ioapic_w(0x18, 0x41);
        let chip = r.chip.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            chip.set_level(4, true);
        });
        let start = Instant::now();
        r.chip.wait(Duration::from_secs(10));
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(r.chip.has_interrupt());
        t.join().unwrap();
        // Nothing pending: wait returns after its timeout.
        assert_eq!(r.chip.acknowledge(), Some(0x41));
        let start = Instant::now();
        r.chip.wait(Duration::from_millis(10));
        assert!(start.elapsed() >= Duration::from_millis(10));
    }

    #[test]
    fn run_timer_wakes_on_reprogramming() {
        let time0 = Instant::now();
        let chip = PcIrqChip::new(Box::new(move || time0.elapsed().as_nanos() as u64));
        let lapic = chip.lapic_device();
        let write = |reg: u64, v: u32| lapic.lock().unwrap().write(reg, &v.to_le_bytes());
        write(0xf0, 0x1ff);
        write(0x3e0, 0xb);
        write(0x320, 0x50);
        let c = chip.clone();
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            // No deadline yet: sleeps until the one-shot below is programmed, then until it.
            while !c.has_interrupt() && start.elapsed() < Duration::from_secs(5) {
                c.run_timer(Duration::from_secs(10));
            }
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(20));
        write(0x380, 2_000); // 2 ms
        let took = t.join().unwrap();
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_eq!(chip.acknowledge(), Some(0x50));
    }

    #[test]
    fn extint_before_apic_vectors_and_tpr_via_cr8() {
        let r = Rig::new();
        r.enable_lapic();
        r.lapic_w(0x350, 0x700);
        r.init_pic(1 << 3);
        r.ioapic_w(0x10 + 2 * 5, 0x45);
        r.chip.set_level(5, true);
        r.chip.set_level(3, true);
        assert_eq!(r.chip.acknowledge(), Some(0x23), "ExtINT first");
        r.chip.set_cr8(5);
        assert_eq!(r.lapic_r(0x80), 0x50);
        assert_eq!(r.chip.cr8(), Some(5));
        assert!(!r.chip.has_interrupt(), "0x45 below TPR");
        r.chip.set_cr8(3);
        assert_eq!(r.chip.acknowledge(), Some(0x45));
    }

    #[test]
    fn self_ipi_through_icr() {
        let r = Rig::new();
        r.enable_lapic();
        r.lapic_w(0x300, (1 << 18) | 0xfd);
        assert_eq!(r.chip.acknowledge(), Some(0xfd));
        // Physical IPI to ourselves (ID 0), and all-excluding-self reaching nobody.
        r.lapic_w(0x310, 0);
        r.lapic_w(0x300, 0xfc);
        r.lapic_w(0x300, (3 << 18) | 0xfb);
        r.lapic_w(0xb0, 0);
        assert_eq!(r.chip.acknowledge(), Some(0xfc));
        assert_eq!(r.chip.acknowledge(), None);
        // INIT and SIPI do nothing; NMIs are counted.
        r.lapic_w(0x300, (1 << 18) | (5 << 8));
        r.lapic_w(0x300, (1 << 18) | (6 << 8) | 0x10);
        r.lapic_w(0x300, (1 << 18) | (4 << 8));
        assert_eq!(r.chip.nmis(), 1);
    }

    #[test]
    fn bad_widths_and_offsets() {
        let r = Rig::new();
        let mut b2 = [0xaau8; 2];
        r.bus.mmio_read(LAPIC_BASE + 0x30, &mut b2);
        assert_eq!(b2, [0, 0]);
        let mut b8 = [0xaau8; 8];
        r.bus.mmio_read(LAPIC_BASE + 0x30, &mut b8);
        assert_eq!(b8, [0; 8]);
        assert_eq!(r.mmio_r(LAPIC_BASE + 0x34), 0, "unaligned");
        r.bus.mmio_write(LAPIC_BASE + 0xf0, &[0xff, 0x01]);
        assert_eq!(r.lapic_r(0xf0), 0xff, "2-byte write ignored");
        r.bus.mmio_write(IOAPIC_BASE, &[0x01]);
        r.mmio_w(IOAPIC_BASE + 2, 1);
        assert_eq!(r.mmio_r(IOAPIC_BASE), 0);
        assert_eq!(r.mmio_r(IOAPIC_BASE + 0x20), 0);
        // 16-bit port access to the ELCR covers both registers.
        r.bus.pio_write(0x4d0, &[0xff, 0xff]);
        let mut w = [0u8; 2];
        r.bus.pio_read(0x4d0, &mut w);
        assert_eq!(w, [0xf8, 0xde]);
        // Every page offset, every width.
        for off in 0..0x1000u64 {
            for len in [1usize, 2, 4, 8] {
                let mut d = vec![0u8; len];
                r.bus.mmio_read(LAPIC_BASE + off, &mut d);
                r.bus.mmio_read(IOAPIC_BASE + off, &mut d);
            }
        }
        for gsi in [16u32, 23, 24, 1000, u32::MAX] {
            r.chip.set_level(gsi, true);
        }
    }

    #[test]
    fn vanished_level_request_acknowledges_nothing() {
        let r = Rig::new();
        r.init_pic(1 << 5);
        r.outb(0x4d0, 0x20);
        r.chip.set_level(5, true);
        assert!(r.chip.has_interrupt());
        r.chip.set_level(5, false);
        // The PIC alone would answer an INTA with spurious IRQ 7; the CPU samples INTR and
        // acknowledges in one step here, so it takes nothing.
        assert!(!r.chip.has_interrupt());
        assert_eq!(r.chip.acknowledge(), None);
        r.outb(0x20, 0x0b);
        assert_eq!(r.inb(0x20), 0, "nothing in service");
    }

    #[test]
    fn slave_irq_through_pic_mode() {
        let r = Rig::new();
        r.init_pic((1 << 2) | (1 << 12));
        r.chip.set_level(12, true);
        r.chip.set_level(12, false);
        assert_eq!(r.chip.acknowledge(), Some(0x2c));
        r.outb(0xa0, 0x64);
        r.outb(0x20, 0x62);
        assert!(!r.chip.has_interrupt());
    }
}
