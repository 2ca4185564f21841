//! The i8254 programmable interval timer at ports 0x40-0x43, with system control port B (0x61)
//! for channel 2's gate and output, computed from host monotonic time.
//!
//! Engines with an in-kernel PIT (kvm) do not put this on the bus. Modelled: all six counter
//! modes, binary and BCD counting, lobyte/hibyte/word access with the read and write
//! flip-flops, counter latch and read-back commands (count and status), the null-count flag,
//! the gate of channel 2 (pause in modes 0 and 4, restart in 2 and 3, trigger in 1 and 5), and
//! port 0x61's refresh toggle. Channel 0's output edges are reported through
//! [`Pit8254::take_irq0_edges`] for the caller to raise IRQ 0.

use crate::bus::BusDevice;
use crate::timer::{Timed, Wakeup};
use janus_abi::pc::PIT_HZ;
use janus_engine::IrqLine;
use std::sync::Arc;
use std::time::Instant;

/// Device offset of port 0x61 when the PIT is mapped at 0x40 (0x61 - 0x40).
pub const PORT61_OFFSET: u64 = 0x21;
/// Ports 0x40..=0x43.
pub const LEN: u16 = 4;

/// Monotonic nanoseconds (injectable for tests).
pub type MonoClock = Box<dyn Fn() -> u64 + Send>;

/// Host monotonic time since `start`.
pub fn host_mono_clock(start: Instant) -> MonoClock {
    Box::new(move || start.elapsed().as_nanos() as u64)
}

fn ticks_between(from_ns: u64, to_ns: u64) -> u64 {
    (to_ns.saturating_sub(from_ns) as u128 * PIT_HZ as u128 / 1_000_000_000) as u64
}

fn tick_to_ns(ticks: u64) -> u64 {
    (ticks as u128 * 1_000_000_000).div_ceil(PIT_HZ as u128) as u64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Low,
    High,
    Word,
}

#[derive(Clone, Debug)]
struct Channel {
    mode: u8,
    access: Access,
    bcd: bool,
    /// Initial count, 1..=0x10000 (0 written means the maximum).
    reload: u64,
    gate: bool,
    write_high_next: bool,
    low_written: u8,
    read_high_next: bool,
    latched: Option<u16>,
    latched_high_next: bool,
    status_latch: Option<u8>,
    /// A count has been written since the last control word.
    loaded: bool,
    /// Host ns when the count was last written (for the null-count flag).
    load_ns: u64,
    /// Counting: host ns when the current run started, if running.
    running_since: Option<u64>,
    /// Ticks counted in earlier runs (modes 0 and 4 pause while the gate is low).
    ticks_before: u64,
    /// Modes 1 and 5 have been triggered by a gate edge.
    triggered: bool,
    /// Channel 0: output rising edges already reported.
    edges_reported: u64,
}

impl Channel {
    fn new(gate: bool) -> Channel {
        Channel {
            mode: 0,
            access: Access::Word,
            bcd: false,
            reload: 0x10000,
            gate,
            write_high_next: false,
            low_written: 0,
            read_high_next: false,
            latched: None,
            latched_high_next: false,
            status_latch: None,
            loaded: false,
            load_ns: 0,
            running_since: None,
            ticks_before: 0,
            triggered: false,
            edges_reported: 0,
        }
    }

    fn modulus(&self) -> u64 {
        if self.bcd {
            10_000
        } else {
            0x10000
        }
    }

    fn ticks(&self, now: u64) -> u64 {
        self.ticks_before + self.running_since.map_or(0, |s| ticks_between(s, now))
    }

    fn counting(&self) -> bool {
        self.loaded && (!matches!(self.mode, 1 | 5) || self.triggered)
    }

    /// (count, output) at `now`.
    fn sample(&self, now: u64) -> (u64, bool) {
        let n = self.reload;
        if !self.counting() {
            return (n % self.modulus(), self.mode != 0);
        }
        let t = self.ticks(now);
        let m = self.modulus();
        match self.mode {
            0 | 1 => ((n + m - t % m) % m, t >= n),
            2 => {
                let phase = t % n;
                (n - phase, phase != n - 1 || n == 1)
            }
            3 => {
                let high = n.div_ceil(2);
                let phase = t % n;
                if phase < high {
                    ((n - 2 * phase) & !1, true)
                } else {
                    ((n - 2 * (phase - high)) & !1, false)
                }
            }
            _ => ((n + m - t % m) % m, t != n),
        }
    }

    fn encode(&self, count: u64) -> u16 {
        if !self.bcd {
            return count as u16;
        }
        let c = count % 10_000;
        ((c / 1000) << 12 | (c / 100 % 10) << 8 | (c / 10 % 10) << 4 | (c % 10)) as u16
    }

    fn decode(&self, raw: u16) -> u64 {
        let v = if self.bcd {
            let d = |s: u16| ((raw >> s) & 0xf).min(9) as u64;
            d(12) * 1000 + d(8) * 100 + d(4) * 10 + d(0)
        } else {
            raw as u64
        };
        if v == 0 {
            self.modulus()
        } else {
            v
        }
    }

    fn start(&mut self, now: u64) {
        self.ticks_before = 0;
        self.running_since = self.gate_lets_count().then_some(now);
    }

    fn gate_lets_count(&self) -> bool {
        self.gate || matches!(self.mode, 1 | 5)
    }

    fn control(&mut self, word: u8, now: u64) {
        let access = (word >> 4) & 3;
        if access == 0 {
            self.latch_count(now);
            return;
        }
        self.access = match access {
            1 => Access::Low,
            2 => Access::High,
            _ => Access::Word,
        };
        self.mode = match (word >> 1) & 7 {
            6 => 2,
            7 => 3,
            m => m,
        };
        self.bcd = word & 1 != 0;
        self.write_high_next = false;
        self.read_high_next = false;
        self.latched = None;
        self.status_latch = None;
        self.loaded = false;
        self.triggered = false;
        self.running_since = None;
        self.ticks_before = 0;
        self.load_ns = now;
    }

    fn latch_count(&mut self, now: u64) {
        if self.latched.is_none() {
            self.latched = Some(self.encode(self.sample(now).0));
            self.latched_high_next = false;
        }
    }

    fn latch_status(&mut self, now: u64) {
        if self.status_latch.is_none() {
            let (_, out) = self.sample(now);
            let access = match self.access {
                Access::Low => 1,
                Access::High => 2,
                Access::Word => 3,
            };
            let null = !self.loaded || ticks_between(self.load_ns, now) == 0;
            self.status_latch = Some(
                (out as u8) << 7
                    | (null as u8) << 6
                    | access << 4
                    | self.mode << 1
                    | self.bcd as u8,
            );
        }
    }

    fn write_count(&mut self, v: u8, now: u64) {
        let raw = match self.access {
            Access::Low => v as u16,
            Access::High => (v as u16) << 8,
            Access::Word => {
                if !self.write_high_next {
                    self.low_written = v;
                    self.write_high_next = true;
                    // Mode 0 stops counting while the count is half written.
                    if self.mode == 0 {
                        self.ticks_before = self.ticks(now);
                        self.running_since = None;
                    }
                    return;
                }
                self.write_high_next = false;
                u16::from_le_bytes([self.low_written, v])
            }
        };
        self.reload = self.decode(raw);
        self.loaded = true;
        self.load_ns = now;
        self.edges_reported = 0;
        if !matches!(self.mode, 1 | 5) {
            self.start(now);
        }
    }

    fn read(&mut self, now: u64) -> u8 {
        if let Some(s) = self.status_latch.take() {
            return s;
        }
        let (value, high_next) = match self.latched {
            Some(l) => (l, &mut self.latched_high_next),
            None => {
                let v = self.encode(self.sample(now).0);
                (v, &mut self.read_high_next)
            }
        };
        let [lo, hi] = value.to_le_bytes();
        let byte = match self.access {
            Access::Low => lo,
            Access::High => hi,
            Access::Word => {
                let b = if *high_next { hi } else { lo };
                *high_next = !*high_next;
                b
            }
        };
        // A latch is released once it has been read in full.
        let done = match self.access {
            Access::Word => !self.latched_high_next,
            _ => true,
        };
        if self.latched.is_some() && done {
            self.latched = None;
        }
        byte
    }

    fn set_gate(&mut self, level: bool, now: u64) {
        let rising = level && !self.gate;
        let falling = !level && self.gate;
        self.gate = level;
        match self.mode {
            0 | 4 if self.loaded => {
                if falling {
                    self.ticks_before = self.ticks(now);
                    self.running_since = None;
                } else if rising {
                    self.running_since = Some(now);
                }
            }
            2 | 3 if self.loaded => {
                if falling {
                    self.running_since = None;
                } else if rising {
                    self.start(now);
                }
            }
            1 | 5 if self.loaded && rising => {
                self.triggered = true;
                self.start(now);
            }
            _ => {}
        }
    }

    /// Output rising edges so far (periodic modes count one per period).
    fn edges(&self, now: u64) -> u64 {
        if !self.counting() || self.running_since.is_none() && self.ticks_before == 0 {
            return 0;
        }
        let t = self.ticks(now);
        match self.mode {
            2 | 3 => t / self.reload,
            0 | 1 => (t >= self.reload) as u64,
            _ => 0,
        }
    }

    /// Host ns of the next output rising edge, if one is coming.
    fn next_edge_ns(&self, now: u64) -> Option<u64> {
        let since = self.running_since?;
        if !self.counting() {
            return None;
        }
        let t = self.ticks(now);
        let next = match self.mode {
            2 | 3 => (t / self.reload + 1) * self.reload,
            0 | 1 if t < self.reload => self.reload,
            _ => return None,
        };
        Some(since + tick_to_ns(next - self.ticks_before))
    }
}

pub struct Pit8254 {
    channels: [Channel; 3],
    clock: MonoClock,
    /// Port 0x61 bits 0..=3 (gate 2, speaker data, parity and channel-check enables).
    port61: u8,
    /// IRQ 0, pulsed on channel 0's rising edges by `tick`.
    irq0: Option<Arc<dyn IrqLine>>,
    /// The timer thread, told when channel 0 is reprogrammed.
    wakeup: Option<Arc<Wakeup>>,
}

impl Pit8254 {
    pub fn new(clock: MonoClock) -> Pit8254 {
        Pit8254 {
            // Channels 0 and 1 have their gates tied high on a PC; channel 2's is port 0x61.
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            clock,
            port61: 0,
            irq0: None,
            wakeup: None,
        }
    }

    /// Connects channel 0's output to IRQ 0 and its reprogramming to the timer thread.
    pub fn connect(&mut self, irq0: Arc<dyn IrqLine>, wakeup: Arc<Wakeup>) {
        self.irq0 = Some(irq0);
        self.wakeup = Some(wakeup);
    }

    /// Channel 0 output rising edges since the last call: the IRQ 0 edges to deliver
    /// (several missed periods coalesce into one interrupt, as lost ticks do on hardware).
    pub fn take_irq0_edges(&mut self) -> u64 {
        let now = (self.clock)();
        let ch = &mut self.channels[0];
        let edges = ch.edges(now);
        let new = edges.saturating_sub(ch.edges_reported);
        ch.edges_reported = edges;
        new
    }

    /// Host monotonic ns at which channel 0's output next rises, if it will.
    pub fn next_irq0_ns(&self) -> Option<u64> {
        self.channels[0].next_edge_ns((self.clock)())
    }

    fn read_port61(&self, now: u64) -> u8 {
        // Bit 4 toggles with the DRAM refresh cycle, every 15.085 us.
        let refresh = ((now / 15_085) & 1) as u8;
        let out2 = self.channels[2].sample(now).1 as u8;
        (self.port61 & 0x0f) | refresh << 4 | out2 << 5
    }
}

impl BusDevice for Pit8254 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let now = (self.clock)();
        let v = match offset {
            0..=2 => self.channels[offset as usize].read(now),
            PORT61_OFFSET => self.read_port61(now),
            _ => 0xff, // the control register is write-only
        };
        data.fill(0xff);
        if let Some(b) = data.first_mut() {
            *b = v;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        let now = (self.clock)();
        match offset {
            0..=2 => {
                self.channels[offset as usize].write_count(v, now);
                if offset == 0 {
                    if let Some(w) = &self.wakeup {
                        w.kick();
                    }
                }
            }
            3 => {
                let sel = v >> 6;
                if sel == 3 {
                    // Read-back: bits 1..=3 select channels; bit 5 clear latches counts, bit 4
                    // clear latches status.
                    for (i, ch) in self.channels.iter_mut().enumerate() {
                        if v & (2 << i) != 0 {
                            if v & 0x20 == 0 {
                                ch.latch_count(now);
                            }
                            if v & 0x10 == 0 {
                                ch.latch_status(now);
                            }
                        }
                    }
                } else {
                    self.channels[sel as usize].control(v, now);
                }
            }
            PORT61_OFFSET => {
                self.port61 = v & 0x0f;
                self.channels[2].set_gate(v & 1 != 0, now);
            }
            _ => {}
        }
    }
}

impl Timed for Pit8254 {
    /// The first channel 0 edge not yet reported: now if one is already due, else the next.
    fn next_deadline(&self) -> Option<u64> {
        self.irq0.as_ref()?;
        let now = (self.clock)();
        let ch = &self.channels[0];
        if ch.edges(now) > ch.edges_reported {
            return Some(now);
        }
        self.next_irq0_ns()
    }

    /// Pulses IRQ 0 once if channel 0's output rose since the last tick (missed periods
    /// coalesce, as lost ticks do).
    fn tick(&mut self, _now: u64) {
        let edges = self.take_irq0_edges();
        tracing::trace!(
            "pit: tick, {edges} channel 0 edges, mode {}",
            self.channels[0].mode
        );
        if edges > 0 {
            if let Some(line) = &self.irq0 {
                if let Err(e) = line.pulse() {
                    tracing::warn!("pit: raising IRQ 0 failed: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    fn pit() -> (Pit8254, Arc<AtomicU64>) {
        let t = Arc::new(AtomicU64::new(1_000_000));
        let c = t.clone();
        (Pit8254::new(Box::new(move || c.load(Ordering::SeqCst))), t)
    }

    /// Advances the fake clock by `ticks` PIT ticks (rounded up to whole nanoseconds).
    fn advance(t: &AtomicU64, ticks: u64) {
        t.fetch_add(tick_to_ns(ticks), Ordering::SeqCst);
    }

    fn rd(p: &mut Pit8254, off: u64) -> u8 {
        let mut d = [0];
        p.read(off, &mut d);
        d[0]
    }

    fn read_word(p: &mut Pit8254, ch: u64) -> u16 {
        u16::from_le_bytes([rd(p, ch), rd(p, ch)])
    }

    #[test]
    fn mode2_counts_down_and_latches() {
        let (mut p, t) = pit();
        p.write(3, &[0x34]); // ch0, word, mode 2
        p.write(0, &[0x00]);
        p.write(0, &[0x10]); // 0x1000
        advance(&t, 0x100);
        p.write(3, &[0x00]); // latch ch0
        advance(&t, 0x200);
        assert_eq!(
            read_word(&mut p, 0),
            0x1000 - 0x100,
            "latched value, not live"
        );
        let live = read_word(&mut p, 0);
        assert_eq!(live, 0x1000 - 0x300);
    }

    #[test]
    fn mode2_periodic_edges_for_irq0() {
        let (mut p, t) = pit();
        p.write(3, &[0x34]);
        p.write(0, &[0x9c]);
        p.write(0, &[0x2e]); // 11932 ticks = 10 ms
        assert_eq!(p.take_irq0_edges(), 0);
        let next = p.next_irq0_ns().unwrap();
        assert!(next.abs_diff(t.load(Ordering::SeqCst) + 10_000_000) < 2_000);
        advance(&t, 11_932 * 3 + 5);
        assert_eq!(p.take_irq0_edges(), 3);
        assert_eq!(p.take_irq0_edges(), 0);
    }

    #[test]
    fn channel2_mode0_calibration_through_port61() {
        let (mut p, t) = pit();
        p.write(PORT61_OFFSET, &[0x01]); // gate on, speaker off
        p.write(3, &[0xb0]); // ch2, word, mode 0
        p.write(2, &[0x9c]);
        p.write(2, &[0x2e]); // 11932
        assert_eq!(
            rd(&mut p, PORT61_OFFSET) & 0x20,
            0,
            "OUT2 low while counting"
        );
        advance(&t, 11_000);
        assert_eq!(rd(&mut p, PORT61_OFFSET) & 0x20, 0);
        advance(&t, 1_000);
        assert_ne!(
            rd(&mut p, PORT61_OFFSET) & 0x20,
            0,
            "OUT2 high at terminal count"
        );
        assert_eq!(
            rd(&mut p, PORT61_OFFSET) & 0x01,
            0x01,
            "gate bit reads back"
        );
    }

    #[test]
    fn gate_pauses_mode0() {
        let (mut p, t) = pit();
        p.write(PORT61_OFFSET, &[0x01]);
        p.write(3, &[0xb0]);
        p.write(2, &[0x00]);
        p.write(2, &[0x10]);
        advance(&t, 0x100);
        p.write(PORT61_OFFSET, &[0x00]); // gate off: pause
        advance(&t, 0x500);
        p.write(3, &[0x80]); // latch ch2
        assert_eq!(read_word(&mut p, 2), 0x1000 - 0x100);
    }

    #[test]
    fn readback_status_and_null_count() {
        let (mut p, t) = pit();
        p.write(3, &[0x36]); // ch0 word mode 3
        p.write(3, &[0xe2]); // read-back status of ch0 only
        let s = rd(&mut p, 0);
        assert_eq!(s & 0x3f, 0x36, "access, mode, bcd as programmed");
        assert_ne!(s & 0x40, 0, "null count before a count is loaded");
        p.write(0, &[0x00]);
        p.write(0, &[0x00]); // 65536
        advance(&t, 10);
        p.write(3, &[0xe2]);
        let s = rd(&mut p, 0);
        assert_eq!(s & 0x40, 0);
        assert_ne!(s & 0x80, 0, "mode 3 starts high");
    }

    #[test]
    fn readback_latches_count_of_selected_channels() {
        let (mut p, t) = pit();
        p.write(3, &[0x74]); // ch1 word mode 2
        p.write(1, &[0x00]);
        p.write(1, &[0x20]);
        advance(&t, 0x10);
        p.write(3, &[0xd4]); // read-back: latch count of ch1 (bit 2), not status
        advance(&t, 0x10);
        assert_eq!(read_word(&mut p, 1), 0x2000 - 0x10);
    }

    #[test]
    fn bcd_and_byte_access() {
        let (mut p, t) = pit();
        p.write(3, &[0x15]); // ch0, low byte only, mode 2, BCD
        p.write(0, &[0x99]); // 99 (BCD)
        advance(&t, 9);
        assert_eq!(rd(&mut p, 0), 0x90);
        p.write(3, &[0x24]); // ch0, high byte only, mode 2, binary
        p.write(0, &[0x01]); // 0x0100
        advance(&t, 0x10);
        assert_eq!(rd(&mut p, 0), 0x00, "high byte of 0xf0");
    }

    #[test]
    fn mode3_square_wave_output() {
        let (mut p, t) = pit();
        p.write(PORT61_OFFSET, &[0x01]);
        p.write(3, &[0xb6]); // ch2 word mode 3
        p.write(2, &[100]);
        p.write(2, &[0]);
        advance(&t, 10);
        assert_ne!(rd(&mut p, PORT61_OFFSET) & 0x20, 0, "first half high");
        advance(&t, 50);
        assert_eq!(rd(&mut p, PORT61_OFFSET) & 0x20, 0, "second half low");
        advance(&t, 50);
        assert_ne!(rd(&mut p, PORT61_OFFSET) & 0x20, 0, "next period high");
    }

    #[test]
    fn mode1_waits_for_gate_trigger() {
        let (mut p, t) = pit();
        p.write(3, &[0xb2]); // ch2 word mode 1
        p.write(2, &[0x00]);
        p.write(2, &[0x01]); // 256
        advance(&t, 1000);
        assert_ne!(
            rd(&mut p, PORT61_OFFSET) & 0x20,
            0,
            "idle high before trigger"
        );
        p.write(PORT61_OFFSET, &[0x01]); // rising gate: trigger
        advance(&t, 10);
        assert_eq!(rd(&mut p, PORT61_OFFSET) & 0x20, 0, "low while counting");
        advance(&t, 300);
        assert_ne!(rd(&mut p, PORT61_OFFSET) & 0x20, 0, "high after the count");
    }

    #[test]
    fn refresh_bit_toggles() {
        let (mut p, t) = pit();
        let a = rd(&mut p, PORT61_OFFSET) & 0x10;
        t.fetch_add(15_085, Ordering::SeqCst);
        let b = rd(&mut p, PORT61_OFFSET) & 0x10;
        assert_ne!(a, b);
    }

    #[derive(Default)]
    struct Count(AtomicU64);
    impl IrqLine for Count {
        fn set_level(&self, high: bool) -> janus_engine::Result<()> {
            if high {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }
    }

    #[test]
    fn timed_tick_pulses_irq0() {
        let (mut p, t) = pit();
        let line = Arc::new(Count::default());
        p.connect(line.clone(), Arc::new(Wakeup::new()));
        assert_eq!(p.next_deadline(), None, "nothing programmed");
        p.write(3, &[0x34]);
        p.write(0, &[0x9c]);
        p.write(0, &[0x2e]); // 10 ms period
        let d = p.next_deadline().unwrap();
        t.store(d, Ordering::SeqCst);
        assert!(
            p.next_deadline().unwrap() <= d,
            "an edge due now is a deadline now"
        );
        p.tick(d);
        assert_eq!(line.0.load(Ordering::SeqCst), 1);
        p.tick(d);
        assert_eq!(line.0.load(Ordering::SeqCst), 1, "one pulse per edge");
        assert!(p.next_deadline().unwrap() > d);
    }

    #[test]
    fn control_port_reads_ff() {
        let (mut p, _) = pit();
        assert_eq!(rd(&mut p, 3), 0xff);
    }
}
