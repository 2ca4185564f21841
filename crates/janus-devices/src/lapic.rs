//! A local APIC in xAPIC mode (the register page at 0xfee00000), for the soft engine.
//!
//! Modelled: ID, version 0x00050014 (integrated APIC, LVT entries 0..=5), TPR/APR/PPR, EOI with
//! the EOI broadcast to the I/O APIC for level-triggered vectors, LDR/DFR (flat and cluster
//! logical destinations), SVR software enable (disabling masks every LVT), ISR/TMR/IRR, ESR
//! with its write-then-read semantics, ICR (fixed and lowest-priority IPIs; the sender reaches
//! itself only, as there is one APIC), the six LVT entries, and the timer in one-shot and
//! periodic mode with the divide configuration, driven by the platform's monotonic clock.
//! TSC-deadline mode is not advertised and cannot be selected.
//!
//! Not modelled: NMI, SMI, INIT and SIPI have no effect beyond being counted (the engine has no
//! NMI pin yet and there is one CPU); LINT0/LINT1 in modes other than ExtINT do nothing; the
//! thermal and performance-counter LVTs are registers only.
//!
//! Every method takes the current time (`now`, ns on the platform's monotonic clock) where the
//! timer needs it, so that the state is a plain value the interrupt-controller glue owns and
//! tests can drive with any clock. State that is per CPU lives here; routing between several
//! APICs belongs to the glue ([`ApicBus`]).

use tracing::debug;

/// The version register: integrated APIC (0x14), highest LVT entry 5.
pub const VERSION: u32 = 0x0005_0014;

// Register offsets in the xAPIC page.
const REG_ID: u64 = 0x020;
const REG_VERSION: u64 = 0x030;
const REG_TPR: u64 = 0x080;
const REG_APR: u64 = 0x090;
const REG_PPR: u64 = 0x0a0;
const REG_EOI: u64 = 0x0b0;
const REG_RRD: u64 = 0x0c0;
const REG_LDR: u64 = 0x0d0;
const REG_DFR: u64 = 0x0e0;
const REG_SVR: u64 = 0x0f0;
const REG_ISR: u64 = 0x100;
const REG_TMR: u64 = 0x180;
const REG_IRR: u64 = 0x200;
const REG_ESR: u64 = 0x280;
const REG_ICR_LOW: u64 = 0x300;
const REG_ICR_HIGH: u64 = 0x310;
const REG_LVT_TIMER: u64 = 0x320;
const REG_LVT_ERROR: u64 = 0x370;
const REG_TIMER_INITIAL: u64 = 0x380;
const REG_TIMER_CURRENT: u64 = 0x390;
const REG_TIMER_DIVIDE: u64 = 0x3e0;

/// LVT indices (register 0x320 + 0x10 * index).
const LVT_TIMER: usize = 0;
const LVT_LINT0: usize = 3;
const LVT_LINT1: usize = 4;
const LVT_ERROR: usize = 5;
const LVT_COUNT: usize = 6;

/// Writable bits of each LVT entry: vector, delivery mode where the entry has one, polarity
/// and trigger for the LINT pins, the mask, and the timer's periodic bit (bit 18, TSC
/// deadline, is left out because it is not advertised).
const LVT_WRITABLE: [u32; LVT_COUNT] = [
    0x0003_00ff,
    0x0001_07ff,
    0x0001_07ff,
    0x0001_a7ff,
    0x0001_a7ff,
    0x0001_00ff,
];
const LVT_MASKED: u32 = 1 << 16;
const LVT_TIMER_PERIODIC: u32 = 1 << 17;

const SVR_ENABLED: u32 = 1 << 8;
/// Spurious vector, software enable and focus-check disable; EOI-broadcast suppression is not
/// advertised.
const SVR_WRITABLE: u32 = 0x3ff;

/// ICR low bits that stick: vector, delivery mode, destination mode, level, trigger and the
/// destination shorthand (delivery status always reads idle).
const ICR_LOW_WRITABLE: u32 = 0x000c_cfff;

/// ESR bits.
const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;

/// How an interrupt message is to be handled by its target (ICR, LVT and I/O APIC encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    StartUp,
    ExtInt,
    Reserved,
}

impl DeliveryMode {
    /// Decodes bits 10:8 of an ICR, LVT or redirection entry.
    pub fn from_bits(entry: u32) -> DeliveryMode {
        match (entry >> 8) & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            6 => DeliveryMode::StartUp,
            7 => DeliveryMode::ExtInt,
            _ => DeliveryMode::Reserved,
        }
    }
}

/// Which local APICs a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// APIC ID (0xff: all).
    Physical(u8),
    /// Message destination address matched against LDR/DFR (0xff: all).
    Logical(u8),
    /// ICR shorthands, relative to the sending APIC.
    ToSelf,
    AllIncludingSelf,
    AllExcludingSelf,
}

/// An interrupt message on the APIC bus (from the I/O APIC or an IPI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApicMessage {
    pub vector: u8,
    pub mode: DeliveryMode,
    pub dest: Destination,
    /// Level-triggered (sets the TMR bit, so the EOI is broadcast).
    pub level: bool,
}

/// Whatever delivers messages to local APICs. Returns whether some APIC accepted it.
pub trait ApicBus {
    fn deliver(&mut self, msg: &ApicMessage) -> bool;
}

/// What a register write asks of the rest of the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LapicEffect {
    None,
    /// EOI of a level-triggered vector: the I/O APICs must clear their remote IRR.
    EoiBroadcast(u8),
    /// An IPI was sent (ICR low written).
    Ipi(ApicMessage),
}

/// 256 vector bits laid out as the ISR/TMR/IRR registers are (eight 32-bit words).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Vectors([u32; 8]);

impl Vectors {
    fn set(&mut self, v: u8, on: bool) {
        let (w, b) = (usize::from(v >> 5), v & 31);
        if on {
            self.0[w] |= 1 << b;
        } else {
            self.0[w] &= !(1 << b);
        }
    }

    fn get(&self, v: u8) -> bool {
        self.0[usize::from(v >> 5)] & (1 << (v & 31)) != 0
    }

    fn highest(&self) -> Option<u8> {
        (0..8)
            .rev()
            .find(|&w| self.0[w] != 0)
            .map(|w| (w as u32 * 32 + 31 - self.0[w].leading_zeros()) as u8)
    }
}

/// The timer's counting state; the mode and vector live in the LVT entry.
#[derive(Clone, Debug)]
struct Timer {
    /// Input clock before the divider.
    hz: u64,
    initial: u32,
    divide: u32,
    /// Counting from `initial` (phase-adjusted after a divider change) since this time.
    start_ns: u64,
    running: bool,
    /// Periodic: expirations already handled since `start_ns`.
    fired: u64,
}

impl Timer {
    /// log2 of the divider: divide configuration bits 3,1:0 = 000 -> 2 ... 110 -> 128, 111 -> 1.
    fn shift(&self) -> u32 {
        let v = ((self.divide & 8) >> 1) | (self.divide & 3);
        (v + 1) & 7
    }

    /// Divided ticks since `start_ns`.
    fn elapsed(&self, now: u64) -> u64 {
        let input =
            u128::from(now.saturating_sub(self.start_ns)) * u128::from(self.hz) / 1_000_000_000;
        (input >> self.shift()).min(u128::from(u64::MAX)) as u64
    }

    /// Nanoseconds after `start_ns` at which `ticks` divided ticks have passed.
    fn ns_for(&self, ticks: u64) -> u64 {
        let ns = (u128::from(ticks) << self.shift()) * 1_000_000_000;
        ns.div_ceil(u128::from(self.hz)).min(u128::from(u64::MAX)) as u64
    }

    fn expirations(&self, now: u64, periodic: bool) -> u64 {
        if !self.running {
            return 0;
        }
        let e = self.elapsed(now);
        let n = u64::from(self.initial);
        if periodic {
            e / n
        } else {
            u64::from(e >= n)
        }
    }

    fn current(&self, now: u64, periodic: bool) -> u32 {
        if !self.running {
            return 0;
        }
        let e = self.elapsed(now);
        let n = u64::from(self.initial);
        let left = if periodic {
            n - e % n
        } else {
            n.saturating_sub(e)
        };
        left as u32
    }

    fn next_deadline(&self, periodic: bool) -> Option<u64> {
        if !self.running {
            return None;
        }
        let periods = if periodic { self.fired + 1 } else { 1 };
        let ticks = periods.saturating_mul(u64::from(self.initial));
        Some(self.start_ns.saturating_add(self.ns_for(ticks)))
    }

    fn start(&mut self, initial: u32, now: u64) {
        self.initial = initial;
        self.running = initial != 0;
        self.start_ns = now;
        self.fired = 0;
    }

    /// A divider change: the count carries on from where it is at the new rate.
    fn set_divide(&mut self, v: u32, now: u64, periodic: bool) {
        let left = self.current(now, periodic);
        self.divide = v & 0xb;
        if self.running && left != 0 {
            let done = u64::from(self.initial - left);
            self.start_ns = now.saturating_sub(self.ns_for(done));
            self.fired = 0;
        }
    }
}

/// One local APIC.
#[derive(Clone, Debug)]
pub struct LocalApic {
    id: u8,
    /// IA32_APIC_BASE bit 11: when clear the APIC is off and the PIC's INT reaches the CPU
    /// directly.
    hw_enabled: bool,
    tpr: u8,
    ldr: u32,
    dfr: u32,
    svr: u32,
    isr: Vectors,
    tmr: Vectors,
    irr: Vectors,
    /// What ESR reads: the errors latched by the last ESR write.
    esr: u32,
    /// Errors since the last ESR write.
    esr_pending: u32,
    icr_low: u32,
    icr_high: u32,
    lvt: [u32; LVT_COUNT],
    timer: Timer,
    /// An ExtINT message (from the I/O APIC) waits for the PIC's acknowledge.
    extint_pending: bool,
    /// NMIs received; there is no NMI pin to the engine yet.
    nmis: u64,
}

impl LocalApic {
    /// The bootstrap processor's APIC as PC firmware leaves it (and as KVM resets it):
    /// software-disabled, every LVT masked except LINT0, which passes the PIC's INT as ExtINT
    /// (virtual-wire mode), and LINT1 set to NMI. `timer_hz` is the timer's input clock.
    pub fn new(id: u8, timer_hz: u64) -> LocalApic {
        let mut apic = LocalApic::power_on(id, timer_hz);
        apic.lvt[LVT_LINT0] = 7 << 8;
        apic.lvt[LVT_LINT1] = LVT_MASKED | (4 << 8);
        apic
    }

    /// The architectural power-up state.
    fn power_on(id: u8, timer_hz: u64) -> LocalApic {
        LocalApic {
            id,
            hw_enabled: true,
            tpr: 0,
            ldr: 0,
            dfr: 0xffff_ffff,
            svr: 0xff,
            isr: Vectors::default(),
            tmr: Vectors::default(),
            irr: Vectors::default(),
            esr: 0,
            esr_pending: 0,
            icr_low: 0,
            icr_high: 0,
            lvt: [LVT_MASKED; LVT_COUNT],
            timer: Timer {
                hz: timer_hz.max(1),
                initial: 0,
                divide: 0,
                start_ns: 0,
                running: false,
                fired: 0,
            },
            extint_pending: false,
            nmis: 0,
        }
    }

    pub fn id(&self) -> u8 {
        self.id
    }

    pub fn hw_enabled(&self) -> bool {
        self.hw_enabled
    }

    /// IA32_APIC_BASE bit 11. Turning the APIC off resets it to its power-up state, which it
    /// keeps when turned on again.
    pub fn set_hw_enabled(&mut self, on: bool) {
        if !on && self.hw_enabled {
            *self = LocalApic {
                hw_enabled: false,
                ..LocalApic::power_on(self.id, self.timer.hz)
            };
        }
        self.hw_enabled = on;
    }

    fn sw_enabled(&self) -> bool {
        self.svr & SVR_ENABLED != 0
    }

    fn timer_periodic(&self) -> bool {
        self.lvt[LVT_TIMER] & LVT_TIMER_PERIODIC != 0
    }

    /// NMIs that arrived (IPI, I/O APIC or LVT); the engine has no NMI input to pass them to.
    pub fn nmis(&self) -> u64 {
        self.nmis
    }

    /// CR8 (TPR bits 7:4).
    pub fn cr8(&self) -> u64 {
        u64::from(self.tpr >> 4)
    }

    pub fn set_cr8(&mut self, cr8: u64) {
        self.tpr = ((cr8 & 0xf) as u8) << 4;
    }

    fn isrv(&self) -> u8 {
        self.isr.highest().unwrap_or(0)
    }

    /// Processor priority: the task priority, or the class of the highest vector in service
    /// if that is higher.
    pub fn ppr(&self) -> u8 {
        let isrv = self.isrv();
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xf0
        }
    }

    /// Arbitration priority (SDM 11.8.3.1 for xAPIC).
    fn apr(&self) -> u8 {
        let irrv = self.irr.highest().unwrap_or(0);
        let isrv = self.isrv();
        let t = self.tpr >> 4;
        if t >= irrv >> 4 && t > isrv >> 4 {
            self.tpr
        } else {
            (self.tpr & 0xf0).max(isrv & 0xf0).max(irrv & 0xf0)
        }
    }

    /// The vector the APIC would deliver now: the highest requested one whose priority class
    /// is above the processor priority.
    fn deliverable(&self) -> Option<u8> {
        if !self.hw_enabled {
            return None;
        }
        let v = self.irr.highest()?;
        (v & 0xf0 > self.ppr() & 0xf0).then_some(v)
    }

    /// A fixed interrupt is deliverable to the CPU.
    pub fn has_interrupt(&self) -> bool {
        self.deliverable().is_some()
    }

    /// Interrupt acknowledge for a fixed interrupt: moves it from IRR to ISR.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let v = self.deliverable()?;
        self.irr.set(v, false);
        self.isr.set(v, true);
        Some(v)
    }

    /// Some vector is requested (IRR not empty), deliverable now or not.
    pub fn irr_pending(&self) -> bool {
        self.irr.highest().is_some()
    }

    /// `vector` is the only one in service, and edge-triggered: its EOI has no effect beyond
    /// this APIC (the condition under which KVM offers the guest a para-virtual EOI).
    pub fn sole_edge_in_service(&self, vector: u8) -> bool {
        let mut others = self.isr;
        others.set(vector, false);
        self.isr.get(vector) && others.highest().is_none() && !self.tmr.get(vector)
    }

    /// LINT0 passes the PIC's INT to the CPU (ExtINT mode, unmasked), or the APIC is off and
    /// the INT pin goes to the CPU directly.
    pub fn passes_pic(&self) -> bool {
        if !self.hw_enabled {
            return true;
        }
        let lint0 = self.lvt[LVT_LINT0];
        lint0 & LVT_MASKED == 0 && DeliveryMode::from_bits(lint0) == DeliveryMode::ExtInt
    }

    /// An ExtINT message is pending (its vector comes from the PIC's acknowledge).
    pub fn extint_pending(&self) -> bool {
        self.extint_pending && self.hw_enabled
    }

    pub fn clear_extint(&mut self) {
        self.extint_pending = false;
    }

    /// Accepts a fixed interrupt into IRR, recording its trigger mode in TMR.
    pub fn accept(&mut self, vector: u8, level: bool) {
        if vector < 16 {
            self.signal_error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return;
        }
        self.irr.set(vector, true);
        self.tmr.set(vector, level);
    }

    /// Records an error and raises the error LVT (unless its vector is itself illegal, which
    /// would only record another error).
    fn signal_error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        let lvt = self.lvt[LVT_ERROR];
        let vector = (lvt & 0xff) as u8;
        if lvt & LVT_MASKED == 0 && vector >= 16 {
            self.accept(vector, false);
        } else if lvt & LVT_MASKED == 0 {
            self.esr_pending |= ESR_RECEIVE_ILLEGAL_VECTOR;
        }
    }

    /// Does this APIC take messages for `dest`? (The shorthands are relative to the sender;
    /// with one APIC the sender is always this one.)
    pub fn matches(&self, dest: Destination) -> bool {
        match dest {
            Destination::Physical(d) => d == 0xff || d == self.id,
            Destination::Logical(mda) => self.logical_match(mda),
            Destination::ToSelf | Destination::AllIncludingSelf => true,
            Destination::AllExcludingSelf => false,
        }
    }

    fn logical_match(&self, mda: u8) -> bool {
        if mda == 0xff {
            return true;
        }
        let logical_id = (self.ldr >> 24) as u8;
        match self.dfr >> 28 {
            // Flat: one bit per APIC.
            0xf => logical_id & mda != 0,
            // Cluster: cluster number in bits 7:4, members in bits 3:0.
            0x0 => logical_id >> 4 == mda >> 4 && logical_id & mda & 0xf != 0,
            _ => false,
        }
    }

    /// Handles a message addressed to this APIC.
    pub fn receive(&mut self, msg: &ApicMessage) {
        match msg.mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                self.accept(msg.vector, msg.level)
            }
            DeliveryMode::ExtInt => self.extint_pending = true,
            DeliveryMode::Nmi => self.nmis += 1,
            mode => debug!(?mode, "local APIC: message ignored"),
        }
    }

    /// Runs the timer up to `now`: an expiry sets the timer vector in IRR unless the timer LVT
    /// is masked (periods missed meanwhile collapse into one interrupt).
    pub fn tick(&mut self, now: u64) {
        let periodic = self.timer_periodic();
        let n = self.timer.expirations(now, periodic);
        if n <= self.timer.fired {
            return;
        }
        self.timer.fired = n;
        if !periodic {
            self.timer.running = false;
        }
        let lvt = self.lvt[LVT_TIMER];
        if lvt & LVT_MASKED == 0 && self.hw_enabled {
            self.accept((lvt & 0xff) as u8, false);
        }
    }

    /// When the timer next raises an interrupt (ns on the clock `now` comes from), if it is
    /// running and not masked.
    pub fn next_timer_deadline_ns(&self) -> Option<u64> {
        if self.lvt[LVT_TIMER] & LVT_MASKED != 0 || !self.hw_enabled {
            return None;
        }
        self.timer.next_deadline(self.timer_periodic())
    }

    /// A 32-bit read of the register at `offset` (16-byte aligned, below 0x400; the caller
    /// checks the access width and alignment).
    pub fn read(&mut self, offset: u64, now: u64) -> u32 {
        self.tick(now);
        match offset {
            REG_ID => u32::from(self.id) << 24,
            REG_VERSION => VERSION,
            REG_TPR => u32::from(self.tpr),
            REG_APR => u32::from(self.apr()),
            REG_PPR => u32::from(self.ppr()),
            // Write-only and remote read (not supported by integrated APICs of this version).
            REG_EOI | REG_RRD => 0,
            REG_LDR => self.ldr,
            REG_DFR => self.dfr,
            REG_SVR => self.svr,
            0x100..=0x170 => self.isr.0[reg_word(offset, REG_ISR)],
            0x180..=0x1f0 => self.tmr.0[reg_word(offset, REG_TMR)],
            0x200..=0x270 => self.irr.0[reg_word(offset, REG_IRR)],
            REG_ESR => self.esr,
            REG_ICR_LOW => self.icr_low,
            REG_ICR_HIGH => self.icr_high,
            REG_LVT_TIMER..=REG_LVT_ERROR => self.lvt[reg_word(offset, REG_LVT_TIMER)],
            REG_TIMER_INITIAL => self.timer.initial,
            REG_TIMER_CURRENT => self.timer.current(now, self.timer_periodic()),
            REG_TIMER_DIVIDE => self.timer.divide,
            _ => {
                self.signal_error(ESR_ILLEGAL_REGISTER);
                0
            }
        }
    }

    /// A 32-bit write of `value` to the register at `offset` (as for [`LocalApic::read`]).
    pub fn write(&mut self, offset: u64, value: u32, now: u64) -> LapicEffect {
        self.tick(now);
        match offset {
            REG_ID => self.id = (value >> 24) as u8,
            REG_TPR => self.tpr = value as u8,
            REG_EOI => return self.eoi(),
            REG_LDR => self.ldr = value & 0xff00_0000,
            REG_DFR => self.dfr = value | 0x0fff_ffff,
            REG_SVR => self.write_svr(value),
            REG_ESR => {
                self.esr = self.esr_pending;
                self.esr_pending = 0;
            }
            REG_ICR_LOW => return self.write_icr(value),
            REG_ICR_HIGH => self.icr_high = value & 0xff00_0000,
            REG_LVT_TIMER..=REG_LVT_ERROR => self.write_lvt(reg_word(offset, REG_LVT_TIMER), value),
            REG_TIMER_INITIAL => self.timer.start(value, now),
            REG_TIMER_DIVIDE => self.timer.set_divide(value, now, self.timer_periodic()),
            // Read-only registers ignore writes.
            REG_VERSION | REG_APR | REG_PPR | REG_RRD | REG_TIMER_CURRENT => {}
            0x100..=0x270 => {}
            _ => self.signal_error(ESR_ILLEGAL_REGISTER),
        }
        LapicEffect::None
    }

    /// EOI: ends the highest vector in service.
    pub fn eoi(&mut self) -> LapicEffect {
        let Some(v) = self.isr.highest() else {
            return LapicEffect::None;
        };
        self.isr.set(v, false);
        if self.tmr.get(v) {
            LapicEffect::EoiBroadcast(v)
        } else {
            LapicEffect::None
        }
    }

    fn write_svr(&mut self, value: u32) {
        self.svr = value & SVR_WRITABLE;
        if !self.sw_enabled() {
            for lvt in &mut self.lvt {
                *lvt |= LVT_MASKED;
            }
        }
    }

    fn write_lvt(&mut self, index: usize, value: u32) {
        let mut v = value & LVT_WRITABLE[index];
        // A software-disabled APIC keeps every LVT masked.
        if !self.sw_enabled() {
            v |= LVT_MASKED;
        }
        // Switching between one-shot and periodic stops the timer (as KVM does).
        if index == LVT_TIMER && (v ^ self.lvt[index]) & LVT_TIMER_PERIODIC != 0 {
            self.timer.running = false;
            self.timer.initial = 0;
        }
        self.lvt[index] = v;
    }

    fn write_icr(&mut self, value: u32) -> LapicEffect {
        self.icr_low = value & ICR_LOW_WRITABLE;
        let mode = DeliveryMode::from_bits(value);
        let vector = value as u8;
        let logical = value & (1 << 11) != 0;
        let dest_field = (self.icr_high >> 24) as u8;
        let dest = match (value >> 18) & 3 {
            0 if logical => Destination::Logical(dest_field),
            0 => Destination::Physical(dest_field),
            1 => Destination::ToSelf,
            2 => Destination::AllIncludingSelf,
            _ => Destination::AllExcludingSelf,
        };
        if matches!(mode, DeliveryMode::Fixed | DeliveryMode::LowestPriority) && vector < 16 {
            self.signal_error(ESR_SEND_ILLEGAL_VECTOR);
            return LapicEffect::None;
        }
        LapicEffect::Ipi(ApicMessage {
            vector,
            mode,
            dest,
            level: false,
        })
    }
}

impl ApicBus for LocalApic {
    fn deliver(&mut self, msg: &ApicMessage) -> bool {
        if !self.hw_enabled || !self.matches(msg.dest) {
            return false;
        }
        self.receive(msg);
        true
    }
}

/// Index of a register in a bank of 16-byte-spaced registers starting at `base`.
fn reg_word(offset: u64, base: u64) -> usize {
    ((offset - base) / 0x10) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 1_000_000; // 1 us per input tick

    fn enabled() -> LocalApic {
        let mut a = LocalApic::new(0, HZ);
        a.write(REG_SVR, SVR_ENABLED | 0xff, 0);
        a
    }

    fn eoi(a: &mut LocalApic) -> LapicEffect {
        a.write(REG_EOI, 0, 0)
    }

    #[test]
    fn reset_state_and_version() {
        let mut a = LocalApic::new(0, HZ);
        assert_eq!(a.read(REG_VERSION, 0), 0x0005_0014);
        assert_eq!(a.read(REG_ID, 0), 0);
        assert_eq!(a.read(REG_SVR, 0), 0xff);
        assert_eq!(a.read(REG_DFR, 0), 0xffff_ffff);
        assert_eq!(a.read(REG_LVT_TIMER, 0), LVT_MASKED);
        assert_eq!(a.read(0x350, 0), 0x700, "LINT0 ExtINT (virtual wire)");
        assert!(a.passes_pic());
        assert_eq!(a.read(REG_LVT_ERROR, 0), LVT_MASKED);
    }

    #[test]
    fn svr_enable_and_disable_masks_lvts() {
        let mut a = LocalApic::new(0, HZ);
        // Software-disabled: LVTs stay masked.
        a.write(REG_LVT_TIMER, 0x40, 0);
        assert_eq!(a.read(REG_LVT_TIMER, 0), 0x40 | LVT_MASKED);
        a.write(REG_SVR, SVR_ENABLED | 0xff, 0);
        assert_eq!(a.read(REG_SVR, 0), 0x1ff);
        a.write(REG_LVT_TIMER, 0x40, 0);
        assert_eq!(a.read(REG_LVT_TIMER, 0), 0x40);
        // Disabling masks every LVT, LINT0 included.
        a.write(REG_SVR, 0xff, 0);
        assert_eq!(a.read(REG_LVT_TIMER, 0), 0x40 | LVT_MASKED);
        assert!(!a.passes_pic());
        // Writable bits only.
        a.write(REG_SVR, 0xffff_ffff, 0);
        assert_eq!(a.read(REG_SVR, 0), 0x3ff);
    }

    #[test]
    fn tpr_blocks_lower_classes() {
        let mut a = enabled();
        a.write(REG_TPR, 0x50, 0);
        a.accept(0x45, false);
        assert!(!a.has_interrupt());
        assert_eq!(a.read(REG_PPR, 0), 0x50);
        a.accept(0x50, false);
        assert!(!a.has_interrupt(), "same class as TPR is blocked");
        a.accept(0x61, false);
        assert_eq!(a.acknowledge(), Some(0x61));
        assert_eq!(a.read(REG_PPR, 0), 0x60);
        a.write(REG_TPR, 0, 0);
        assert!(!a.has_interrupt(), "0x50 is below 0x61 in service");
        eoi(&mut a);
        assert_eq!(a.acknowledge(), Some(0x50));
        eoi(&mut a);
        assert_eq!(a.acknowledge(), Some(0x45));
        // CR8 is TPR bits 7:4.
        a.set_cr8(0x9);
        assert_eq!(a.read(REG_TPR, 0), 0x90);
        a.write(REG_TPR, 0xa7, 0);
        assert_eq!(a.cr8(), 0xa);
    }

    #[test]
    fn nested_priorities_and_eoi_order() {
        let mut a = enabled();
        a.accept(0x31, false);
        assert_eq!(a.acknowledge(), Some(0x31));
        a.accept(0x32, false);
        assert!(!a.has_interrupt(), "same class does not nest");
        a.accept(0x80, false);
        assert_eq!(a.acknowledge(), Some(0x80), "higher class nests");
        assert_eq!(a.read(REG_ISR + 0x10, 0), 1 << 17, "0x31 in ISR word 1");
        assert_eq!(a.read(REG_ISR + 0x40, 0), 1, "0x80 in ISR word 4");
        assert_eq!(a.read(REG_IRR + 0x10, 0), 1 << 18, "0x32 still requested");
        assert_eq!(a.read(REG_PPR, 0), 0x80);
        // EOI ends the highest in service first.
        eoi(&mut a);
        assert_eq!(a.read(REG_ISR + 0x40, 0), 0);
        assert!(!a.has_interrupt());
        eoi(&mut a);
        assert_eq!(a.acknowledge(), Some(0x32));
        eoi(&mut a);
        assert_eq!(
            eoi(&mut a),
            LapicEffect::None,
            "EOI with nothing in service"
        );
    }

    #[test]
    fn level_eoi_broadcasts() {
        let mut a = enabled();
        a.accept(0x41, true);
        assert_eq!(a.read(REG_TMR + 0x20, 0), 1 << 1);
        assert_eq!(a.acknowledge(), Some(0x41));
        assert_eq!(eoi(&mut a), LapicEffect::EoiBroadcast(0x41));
        a.accept(0x41, false);
        assert_eq!(a.read(REG_TMR + 0x20, 0), 0, "edge clears TMR");
    }

    #[test]
    fn self_ipi_and_illegal_vector() {
        let mut a = enabled();
        // Shorthand self, fixed.
        let eff = a.write(REG_ICR_LOW, (1 << 18) | 0x55, 0);
        let LapicEffect::Ipi(msg) = eff else {
            panic!("no IPI: {eff:?}")
        };
        assert_eq!(msg.dest, Destination::ToSelf);
        assert!(a.deliver(&msg));
        assert_eq!(a.acknowledge(), Some(0x55));
        // Physical destination: our ID.
        a.write(REG_ICR_HIGH, 0, 0);
        let LapicEffect::Ipi(msg) = a.write(REG_ICR_LOW, 0x66, 0) else {
            panic!()
        };
        assert!(a.deliver(&msg));
        let LapicEffect::Ipi(other) = ({
            a.write(REG_ICR_HIGH, 3 << 24, 0);
            a.write(REG_ICR_LOW, 0x66, 0)
        }) else {
            panic!()
        };
        assert!(!a.deliver(&other), "APIC 3 does not exist");
        assert_eq!(a.read(REG_ICR_HIGH, 0), 3 << 24);
        assert_eq!(a.read(REG_ICR_LOW, 0), 0x66);
        // Vector below 16: send error, nothing sent; ESR reads after a write.
        assert_eq!(a.write(REG_ICR_LOW, (1 << 18) | 0x05, 0), LapicEffect::None);
        assert_eq!(a.read(REG_ESR, 0), 0);
        a.write(REG_ESR, 0, 0);
        assert_eq!(a.read(REG_ESR, 0), ESR_SEND_ILLEGAL_VECTOR);
        a.write(REG_ESR, 0, 0);
        assert_eq!(a.read(REG_ESR, 0), 0);
        // INIT and SIPI are ignored.
        for mode in [5u32, 6] {
            if let LapicEffect::Ipi(m) = a.write(REG_ICR_LOW, (1 << 18) | (mode << 8), 0) {
                a.deliver(&m);
            }
        }
        assert!(a.has_interrupt(), "0x66 still pending");
    }

    #[test]
    fn error_lvt_fires() {
        let mut a = enabled();
        a.write(REG_LVT_ERROR, 0xfe, 0);
        a.read(0x3f0, 0); // unimplemented register
        assert_eq!(a.acknowledge(), Some(0xfe));
        a.write(REG_ESR, 0, 0);
        assert_eq!(a.read(REG_ESR, 0), ESR_ILLEGAL_REGISTER);
        a.accept(3, false);
        a.write(REG_ESR, 0, 0);
        assert_eq!(a.read(REG_ESR, 0), ESR_RECEIVE_ILLEGAL_VECTOR);
    }

    #[test]
    fn logical_destinations() {
        let mut a = enabled();
        a.write(REG_LDR, 0x0100_0000, 0);
        assert!(a.matches(Destination::Logical(0x01)));
        assert!(a.matches(Destination::Logical(0x03)));
        assert!(!a.matches(Destination::Logical(0x02)));
        assert!(a.matches(Destination::Logical(0xff)));
        // Cluster model.
        a.write(REG_DFR, 0x0fff_ffff, 0);
        assert_eq!(a.read(REG_DFR, 0), 0x0fff_ffff);
        a.write(REG_LDR, 0x2100_0000, 0);
        assert!(a.matches(Destination::Logical(0x21)));
        assert!(!a.matches(Destination::Logical(0x11)));
        assert!(a.matches(Destination::Physical(0)));
        assert!(a.matches(Destination::Physical(0xff)));
        assert!(!a.matches(Destination::AllExcludingSelf));
    }

    fn timer(a: &mut LocalApic, lvt: u32, divide: u32, count: u32, now: u64) {
        a.write(REG_LVT_TIMER, lvt, now);
        a.write(REG_TIMER_DIVIDE, divide, now);
        a.write(REG_TIMER_INITIAL, count, now);
    }

    #[test]
    fn timer_one_shot() {
        let mut a = enabled();
        // Divide by 2 (divide config 0): one count every 2 us.
        timer(&mut a, 0x40, 0, 100, 1_000);
        assert_eq!(a.next_timer_deadline_ns(), Some(1_000 + 200_000));
        assert_eq!(a.read(REG_TIMER_CURRENT, 1_000), 100);
        assert_eq!(a.read(REG_TIMER_CURRENT, 1_000 + 50_000), 75);
        assert_eq!(a.read(REG_TIMER_INITIAL, 1_000 + 50_000), 100);
        a.tick(1_000 + 199_999);
        assert!(!a.has_interrupt());
        a.tick(1_000 + 200_000);
        assert_eq!(a.acknowledge(), Some(0x40));
        assert_eq!(a.read(REG_TIMER_CURRENT, 1_000_000), 0);
        assert_eq!(a.next_timer_deadline_ns(), None);
        eoi(&mut a);
        a.tick(10_000_000);
        assert!(!a.has_interrupt(), "one shot only");
        // Writing 0 stops a running timer.
        timer(&mut a, 0x40, 0, 100, 0);
        a.write(REG_TIMER_INITIAL, 0, 10);
        a.tick(1_000_000);
        assert!(!a.has_interrupt());
    }

    #[test]
    fn timer_periodic_with_divide() {
        let mut a = enabled();
        // Divide by 16 (0b0011): 16 us per count; 10 counts = 160 us.
        timer(&mut a, LVT_TIMER_PERIODIC | 0xec, 0x3, 10, 0);
        assert_eq!(a.read(REG_TIMER_DIVIDE, 0), 3);
        assert_eq!(a.read(REG_TIMER_CURRENT, 16_000), 9);
        assert_eq!(a.read(REG_TIMER_CURRENT, 159_999), 1);
        assert_eq!(a.next_timer_deadline_ns(), Some(160_000));
        a.tick(160_000);
        assert_eq!(a.acknowledge(), Some(0xec));
        eoi(&mut a);
        assert_eq!(a.read(REG_TIMER_CURRENT, 160_000), 10, "reloaded");
        assert_eq!(a.next_timer_deadline_ns(), Some(320_000));
        // Missed periods collapse into one interrupt; the phase keeps to the start.
        a.tick(1_000_000);
        assert_eq!(a.acknowledge(), Some(0xec));
        assert!(!a.has_interrupt());
        eoi(&mut a);
        assert_eq!(a.next_timer_deadline_ns(), Some(1_120_000));
        assert_eq!(a.read(REG_TIMER_CURRENT, 1_000_000), 8);
        // Divide by 1 (0b1011).
        timer(&mut a, LVT_TIMER_PERIODIC | 0xec, 0xb, 1000, 2_000_000);
        assert_eq!(a.read(REG_TIMER_CURRENT, 2_500_000), 500);
        // A divider change carries on from the current count at the new rate (2 us a count).
        a.write(REG_TIMER_DIVIDE, 0x0, 2_500_000);
        assert_eq!(a.read(REG_TIMER_CURRENT, 2_500_000), 500);
        assert_eq!(a.read(REG_TIMER_CURRENT, 2_700_000), 400);
        assert_eq!(a.next_timer_deadline_ns(), Some(3_500_000));
    }

    #[test]
    fn timer_masked_counts_without_interrupt() {
        let mut a = enabled();
        timer(&mut a, LVT_MASKED | 0x40, 0xb, 100, 0);
        assert_eq!(a.next_timer_deadline_ns(), None);
        a.tick(150_000);
        assert!(!a.has_interrupt());
        assert_eq!(
            a.read(REG_TIMER_CURRENT, 150_000),
            0,
            "one shot expired while masked"
        );
        // A periodic timer unmasked later does not deliver the expiries it missed.
        timer(
            &mut a,
            LVT_MASKED | LVT_TIMER_PERIODIC | 0x40,
            0xb,
            100,
            1_000_000,
        );
        a.tick(1_450_000);
        a.write(REG_LVT_TIMER, LVT_TIMER_PERIODIC | 0x40, 1_450_000);
        assert!(!a.has_interrupt());
        assert_eq!(a.next_timer_deadline_ns(), Some(1_500_000));
        a.tick(1_500_000);
        assert_eq!(a.acknowledge(), Some(0x40));
        // Switching modes stops the timer.
        a.write(REG_LVT_TIMER, 0x40, 1_500_000);
        assert_eq!(a.read(REG_TIMER_INITIAL, 1_500_000), 0);
        assert_eq!(a.next_timer_deadline_ns(), None);
    }

    #[test]
    fn hw_disable_resets_and_passes_pic() {
        let mut a = enabled();
        a.accept(0x40, false);
        a.set_hw_enabled(false);
        assert!(!a.has_interrupt());
        assert!(a.passes_pic());
        assert!(!a.deliver(&ApicMessage {
            vector: 0x41,
            mode: DeliveryMode::Fixed,
            dest: Destination::Physical(0),
            level: false,
        }));
        a.set_hw_enabled(true);
        assert!(!a.has_interrupt(), "power-up state: IRR clear");
        assert_eq!(a.read(REG_SVR, 0), 0xff);
        assert!(!a.passes_pic(), "power-up state: LINT0 masked");
    }

    #[test]
    fn apr_follows_sdm() {
        let mut a = enabled();
        a.write(REG_TPR, 0x30, 0);
        assert_eq!(a.read(REG_APR, 0), 0x30);
        a.accept(0x51, false);
        assert_eq!(a.read(REG_APR, 0), 0x50);
    }

    #[test]
    fn every_offset_is_safe() {
        let mut a = enabled();
        for off in (0..0x1000u64).step_by(0x10) {
            a.read(off, 0);
            a.write(off, 0xffff_ffff, 0);
            a.read(off, 0);
        }
        a.tick(u64::MAX);
        a.next_timer_deadline_ns();
    }
}
