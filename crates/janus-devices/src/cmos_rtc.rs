//! The MC146818 real-time clock and CMOS RAM behind ports 0x70 (index) and 0x71 (data).
//!
//! Time follows the host's wall clock, shifted by whatever the guest sets. Modelled: the time
//! and date registers in BCD or binary and 12- or 24-hour form (register B), the
//! update-in-progress bit (register A) for the 244 µs before and the 1984 µs of each update
//! cycle, the SET bit that freezes the registers while the guest writes a new time, register D's
//! valid-RAM bit, the CMOS memory-size bytes a PC BIOS leaves for the OS, and the periodic,
//! alarm and update-ended interrupts on IRQ 8 (flags in register C, the line held until
//! register C is read), driven through [`Timed`].

use crate::bus::BusDevice;
use crate::timer::{Timed, Wakeup};
use janus_engine::IrqLine;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECONDS: usize = 0x00;
const MINUTES: usize = 0x02;
const HOURS: usize = 0x04;
const WEEKDAY: usize = 0x06;
const DAY: usize = 0x07;
const MONTH: usize = 0x08;
const YEAR: usize = 0x09;
const REG_A: usize = 0x0a;
const REG_B: usize = 0x0b;
const REG_C: usize = 0x0c;
const REG_D: usize = 0x0d;
const CENTURY: usize = 0x32;

const REG_A_UIP: u8 = 0x80;
/// Divider 010 (32.768 kHz time base) and rate 0110 (1024 Hz): the power-on value.
const REG_A_DEFAULT: u8 = 0x26;
const REG_B_SET: u8 = 0x80;
const REG_B_PIE: u8 = 0x40;
const REG_B_AIE: u8 = 0x20;
const REG_B_UIE: u8 = 0x10;
const REG_C_IRQF: u8 = 0x80;
const REG_C_PF: u8 = 0x40;
const REG_C_AF: u8 = 0x20;
const REG_C_UF: u8 = 0x10;
const SECONDS_ALARM: usize = 0x01;
const MINUTES_ALARM: usize = 0x03;
const HOURS_ALARM: usize = 0x05;
const REG_B_BINARY: u8 = 0x04;
const REG_B_24H: u8 = 0x02;
const REG_D_VRT: u8 = 0x80;
const HOUR_PM: u8 = 0x80;

/// UIP rises this long before the seconds roll over...
const UIP_LEAD_NS: u64 = 244_000;
/// ...and stays up for the update cycle that follows.
const UPDATE_CYCLE_NS: u64 = 1_984_000;

/// Source of wall-clock time since the Unix epoch (injectable for tests).
pub type WallClock = Box<dyn Fn() -> Duration + Send>;

/// Host wall-clock time.
pub fn host_wall_clock() -> WallClock {
    Box::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    })
}

/// Broken-down time in binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fields {
    sec: u8,
    min: u8,
    hour: u8,
    weekday: u8,
    day: u8,
    month: u8,
    year: u16,
}

impl Fields {
    fn from_unix(secs: i64) -> Fields {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        Fields {
            sec: (rem % 60) as u8,
            min: (rem / 60 % 60) as u8,
            hour: (rem / 3600) as u8,
            // RTC counts Sunday as 1; 1970-01-01 was a Thursday.
            weekday: ((days + 4).rem_euclid(7) + 1) as u8,
            day: d,
            month: m,
            year: y as u16,
        }
    }

    fn to_unix(self) -> i64 {
        let days = days_from_civil(self.year as i64, self.month.clamp(1, 12), self.day.max(1));
        days * 86_400 + self.hour as i64 * 3600 + self.min as i64 * 60 + self.sec as i64
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u8, d: u8) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0xf)
}

pub struct CmosRtc {
    index: usize,
    ram: [u8; 128],
    clock: WallClock,
    /// Guest time minus host time, in nanoseconds.
    offset_ns: i128,
    /// While register B's SET bit is on: the frozen time the guest is editing.
    latched: Option<Fields>,
    irq: Option<Arc<dyn IrqLine>>,
    wakeup: Option<Arc<Wakeup>>,
    /// The platform's monotonic clock, which `Timed` deadlines are expressed in.
    mono: Option<crate::pit8254::MonoClock>,
    /// Guest-time ns of the next periodic flag and the next update cycle.
    next_periodic: Option<i128>,
    next_update: i128,
}

impl CmosRtc {
    /// `below_4g` and `above_4g` are the bytes of guest RAM below and above 4 GiB, recorded in
    /// the CMOS memory-size bytes as a PC BIOS does.
    pub fn new(clock: WallClock, below_4g: u64, above_4g: u64) -> CmosRtc {
        let mut ram = [0u8; 128];
        ram[REG_A] = REG_A_DEFAULT;
        ram[REG_B] = REG_B_24H;
        ram[REG_D] = REG_D_VRT;
        ram[0x14] = 0x02; // equipment: math coprocessor present
        ram[0x15..0x17].copy_from_slice(&640u16.to_le_bytes()); // base memory, KiB
        let ext_kib = (below_4g.saturating_sub(1 << 20) >> 10).min(0xffff) as u16;
        ram[0x17..0x19].copy_from_slice(&ext_kib.to_le_bytes());
        ram[0x30..0x32].copy_from_slice(&ext_kib.to_le_bytes());
        let over_16m = (below_4g.saturating_sub(16 << 20) >> 16).min(0xffff) as u16;
        ram[0x34..0x36].copy_from_slice(&over_16m.to_le_bytes());
        let over_4g = (above_4g >> 16).min(0xff_ffff) as u32;
        ram[0x5b..0x5e].copy_from_slice(&over_4g.to_le_bytes()[..3]);
        let sum: u16 = ram[0x10..0x2e].iter().map(|&b| b as u16).sum();
        ram[0x2e..0x30].copy_from_slice(&sum.to_be_bytes());
        let mut rtc = CmosRtc {
            index: 0,
            ram,
            clock,
            offset_ns: 0,
            latched: None,
            irq: None,
            wakeup: None,
            mono: None,
            next_periodic: None,
            next_update: 0,
        };
        rtc.next_update = rtc.next_second();
        rtc
    }

    /// Connects IRQ 8 and the timer thread, whose deadlines are on `mono`.
    pub fn connect(
        &mut self,
        irq8: Arc<dyn IrqLine>,
        wakeup: Arc<Wakeup>,
        mono: crate::pit8254::MonoClock,
    ) {
        self.irq = Some(irq8);
        self.wakeup = Some(wakeup);
        self.mono = Some(mono);
    }

    fn next_second(&self) -> i128 {
        (self.now_ns().div_euclid(1_000_000_000) + 1) * 1_000_000_000
    }

    /// Period of the periodic interrupt from register A's rate bits, if enabled.
    fn period_ns(&self) -> Option<i128> {
        let rs = self.ram[REG_A] & 0xf;
        let hz: i128 = match rs {
            0 => return None,
            1 => 256,
            2 => 128,
            r => 32_768 >> (r - 1),
        };
        Some(1_000_000_000 / hz)
    }

    fn reschedule(&mut self) {
        let now = self.now_ns();
        self.next_periodic = self.period_ns().map(|p| (now.div_euclid(p) + 1) * p);
        self.next_update = self.next_second();
        if let Some(w) = &self.wakeup {
            w.kick();
        }
    }

    /// Sets flags in register C; raises IRQ 8 when an enabled one is set and the line was low.
    fn flag(&mut self, flags: u8) {
        let enabled = self.ram[REG_B] & (REG_B_PIE | REG_B_AIE | REG_B_UIE);
        let was_up = self.ram[REG_C] & REG_C_IRQF != 0;
        self.ram[REG_C] |= flags;
        // Each flag in C sits at the same bit as its enable in B (PF/PIE, AF/AIE, UF/UIE).
        if flags & enabled != 0 {
            self.ram[REG_C] |= REG_C_IRQF;
            if !was_up {
                if let Some(line) = &self.irq {
                    let _ = line.set_level(true);
                }
            }
        }
    }

    fn alarm_matches(&self, f: &Fields) -> bool {
        let field = |reg: usize, v: u8| {
            let a = self.ram[reg];
            a & 0xc0 == 0xc0 || self.decode(a) == v
        };
        field(SECONDS_ALARM, f.sec) && field(MINUTES_ALARM, f.min) && field(HOURS_ALARM, f.hour)
    }

    /// Guest time now, in nanoseconds since the epoch.
    fn now_ns(&self) -> i128 {
        (self.clock)().as_nanos() as i128 + self.offset_ns
    }

    fn current_fields(&self) -> Fields {
        match self.latched {
            Some(f) => f,
            None => Fields::from_unix(self.now_ns().div_euclid(1_000_000_000) as i64),
        }
    }

    fn update_in_progress(&self) -> bool {
        if self.latched.is_some() {
            return false; // updates are inhibited while SET is on
        }
        let sub = self.now_ns().rem_euclid(1_000_000_000) as u64;
        !(UPDATE_CYCLE_NS..1_000_000_000 - UIP_LEAD_NS).contains(&sub)
    }

    fn binary(&self) -> bool {
        self.ram[REG_B] & REG_B_BINARY != 0
    }

    fn encode(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            from_bcd(v)
        }
    }

    fn encode_hour(&self, h: u8) -> u8 {
        if self.ram[REG_B] & REG_B_24H != 0 {
            return self.encode(h);
        }
        let h12 = match h % 12 {
            0 => 12,
            x => x,
        };
        self.encode(h12) | if h >= 12 { HOUR_PM } else { 0 }
    }

    fn decode_hour(&self, v: u8) -> u8 {
        if self.ram[REG_B] & REG_B_24H != 0 {
            return self.decode(v);
        }
        let h = self.decode(v & !HOUR_PM) % 12;
        if v & HOUR_PM != 0 {
            h + 12
        } else {
            h
        }
    }

    fn read_register(&mut self, reg: usize) -> u8 {
        let f = self.current_fields();
        match reg {
            SECONDS => self.encode(f.sec),
            MINUTES => self.encode(f.min),
            HOURS => self.encode_hour(f.hour),
            WEEKDAY => self.encode(f.weekday),
            DAY => self.encode(f.day),
            MONTH => self.encode(f.month),
            YEAR => self.encode((f.year % 100) as u8),
            CENTURY => self.encode((f.year / 100) as u8),
            REG_A => {
                let uip = if self.update_in_progress() {
                    REG_A_UIP
                } else {
                    0
                };
                (self.ram[REG_A] & !REG_A_UIP) | uip
            }
            REG_C => {
                let v = std::mem::take(&mut self.ram[REG_C]);
                if v & REG_C_IRQF != 0 {
                    if let Some(line) = &self.irq {
                        let _ = line.set_level(false);
                    }
                }
                v
            }
            _ => self.ram[reg],
        }
    }

    fn write_register(&mut self, reg: usize, v: u8) {
        match reg {
            SECONDS | MINUTES | HOURS | WEEKDAY | DAY | MONTH | YEAR | CENTURY => {
                let mut f = self.current_fields();
                match reg {
                    SECONDS => f.sec = self.decode(v).min(59),
                    MINUTES => f.min = self.decode(v).min(59),
                    HOURS => f.hour = self.decode_hour(v).min(23),
                    WEEKDAY => f.weekday = self.decode(v),
                    DAY => f.day = self.decode(v).clamp(1, 31),
                    MONTH => f.month = self.decode(v).clamp(1, 12),
                    YEAR => f.year = f.year / 100 * 100 + self.decode(v).min(99) as u16,
                    _ => f.year = self.decode(v).min(99) as u16 * 100 + f.year % 100,
                }
                self.set_time(f);
            }
            REG_A => {
                self.ram[REG_A] = v & !REG_A_UIP;
                self.reschedule();
            }
            REG_B => {
                let was_set = self.ram[REG_B] & REG_B_SET != 0;
                let now_set = v & REG_B_SET != 0;
                if now_set && !was_set {
                    self.latched = Some(self.current_fields());
                }
                self.ram[REG_B] = v;
                if was_set && !now_set {
                    if let Some(f) = self.latched.take() {
                        self.restart_at(f);
                    }
                }
                self.reschedule();
            }
            REG_C | REG_D => {} // read-only
            _ => self.ram[reg] = v,
        }
    }

    /// A time-register write: edit the latch while SET is on, else restart the clock there.
    fn set_time(&mut self, f: Fields) {
        match &mut self.latched {
            Some(l) => *l = f,
            None => self.restart_at(f),
        }
    }

    /// Runs the clock from `f` at the start of its second.
    fn restart_at(&mut self, f: Fields) {
        let target = f.to_unix() as i128 * 1_000_000_000;
        self.offset_ns = target - (self.clock)().as_nanos() as i128;
    }
}

impl Timed for CmosRtc {
    fn next_deadline(&self) -> Option<u64> {
        self.irq.as_ref()?;
        let mono = self.mono.as_ref()?;
        // Guest time runs with the host's wall clock; a deadline `d` guest-ns away is `d` ns
        // away on the monotonic clock too.
        let (guest_now, mono_now) = (self.now_ns(), mono() as i128);
        let to_mono = |guest_ns: i128| (mono_now + (guest_ns - guest_now).max(0)) as u64;
        let b = self.ram[REG_B];
        let mut next = None::<u64>;
        if b & REG_B_PIE != 0 {
            if let Some(p) = self.next_periodic {
                next = Some(to_mono(p));
            }
        }
        if b & (REG_B_UIE | REG_B_AIE) != 0 && self.latched.is_none() {
            let u = to_mono(self.next_update);
            next = Some(next.map_or(u, |n| n.min(u)));
        }
        next
    }

    fn tick(&mut self, _now: u64) {
        let now = self.now_ns();
        if let (Some(p), Some(at)) = (self.period_ns(), self.next_periodic) {
            if now >= at {
                self.flag(REG_C_PF);
                self.next_periodic = Some((now.div_euclid(p) + 1) * p);
            }
        }
        if self.latched.is_none() && now >= self.next_update {
            let f = Fields::from_unix(now.div_euclid(1_000_000_000) as i64);
            let mut flags = REG_C_UF;
            if self.alarm_matches(&f) {
                flags |= REG_C_AF;
            }
            self.flag(flags);
            self.next_update = self.next_second();
        }
    }
}

impl BusDevice for CmosRtc {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if offset == 1 {
            if let Some(b) = data.first_mut() {
                *b = self.read_register(self.index);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            // Bit 7 of the index port masks NMIs on a PC; Janus raises none, so only the
            // register number matters.
            0 => self.index = (v & 0x7f) as usize,
            _ => self.write_register(self.index, v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// 2026-11-21 13:45:30 UTC, a Saturday.
    const T0: u64 = 1_795_268_730;

    fn rtc_at(ns: Arc<AtomicU64>) -> CmosRtc {
        CmosRtc::new(
            Box::new(move || Duration::from_nanos(ns.load(Ordering::SeqCst))),
            512 << 20,
            0,
        )
    }

    fn fixed(secs: u64, sub_ns: u64) -> (CmosRtc, Arc<AtomicU64>) {
        let ns = Arc::new(AtomicU64::new(secs * 1_000_000_000 + sub_ns));
        (rtc_at(ns.clone()), ns)
    }

    fn get(r: &mut CmosRtc, reg: u8) -> u8 {
        r.write(0, &[reg]);
        let mut d = [0];
        r.read(1, &mut d);
        d[0]
    }

    fn set(r: &mut CmosRtc, reg: u8, v: u8) {
        r.write(0, &[reg]);
        r.write(1, &[v]);
    }

    #[test]
    fn civil_conversions_agree() {
        for days in [-1000i64, 0, 59, 365 * 30 + 7, 20_000, 40_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn reads_bcd_24h_time_and_date() {
        let (mut r, _) = fixed(T0, 500_000_000);
        assert_eq!(get(&mut r, 0x00), 0x30);
        assert_eq!(get(&mut r, 0x02), 0x45);
        assert_eq!(get(&mut r, 0x04), 0x13);
        assert_eq!(get(&mut r, 0x07), 0x21);
        assert_eq!(get(&mut r, 0x08), 0x11);
        assert_eq!(get(&mut r, 0x09), 0x26);
        assert_eq!(get(&mut r, 0x32), 0x20);
        assert_eq!(get(&mut r, 0x06), 7, "Saturday");
        assert_eq!(get(&mut r, 0x0d), 0x80, "valid RAM and time");
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let (mut r, _) = fixed(T0, 0);
        set(&mut r, 0x0b, REG_B_BINARY); // binary, 12-hour
        assert_eq!(get(&mut r, 0x00), 30);
        assert_eq!(get(&mut r, 0x04), 1 | HOUR_PM);
        set(&mut r, 0x0b, 0); // BCD, 12-hour
        assert_eq!(get(&mut r, 0x04), 0x01 | HOUR_PM);
    }

    #[test]
    fn update_in_progress_window() {
        let (mut r, ns) = fixed(T0, 500_000_000);
        assert_eq!(get(&mut r, 0x0a) & REG_A_UIP, 0);
        ns.store(T0 * 1_000_000_000 + 999_900_000, Ordering::SeqCst);
        assert_ne!(get(&mut r, 0x0a) & REG_A_UIP, 0, "244 us before the update");
        ns.store((T0 + 1) * 1_000_000_000 + 1_000_000, Ordering::SeqCst);
        assert_ne!(get(&mut r, 0x0a) & REG_A_UIP, 0, "during the update cycle");
        ns.store((T0 + 1) * 1_000_000_000 + 3_000_000, Ordering::SeqCst);
        assert_eq!(get(&mut r, 0x0a) & REG_A_UIP, 0);
        assert_eq!(get(&mut r, 0x0a) & 0x7f, REG_A_DEFAULT);
    }

    #[test]
    fn guest_sets_time_with_set_bit() {
        let (mut r, ns) = fixed(T0, 0);
        set(&mut r, 0x0b, REG_B_SET | REG_B_24H);
        set(&mut r, 0x04, 0x08); // 08h
        set(&mut r, 0x02, 0x00);
        set(&mut r, 0x00, 0x00);
        ns.fetch_add(5_000_000_000, Ordering::SeqCst);
        assert_eq!(get(&mut r, 0x00), 0x00, "frozen while SET");
        set(&mut r, 0x0b, REG_B_24H);
        ns.fetch_add(2_000_000_000, Ordering::SeqCst);
        assert_eq!(get(&mut r, 0x04), 0x08);
        assert_eq!(get(&mut r, 0x02), 0x00);
        assert_eq!(get(&mut r, 0x00), 0x02, "runs again from the new time");
        assert_eq!(get(&mut r, 0x07), 0x21, "date kept");
    }

    #[test]
    fn register_c_clears_on_read_and_d_is_read_only() {
        let (mut r, _) = fixed(T0, 0);
        r.ram[REG_C] = 0x90;
        assert_eq!(get(&mut r, 0x0c), 0x90);
        assert_eq!(get(&mut r, 0x0c), 0);
        set(&mut r, 0x0d, 0);
        assert_eq!(get(&mut r, 0x0d), 0x80);
    }

    #[test]
    fn memory_size_bytes() {
        let (mut r, _) = fixed(T0, 0);
        let lo = get(&mut r, 0x34) as u16 | (get(&mut r, 0x35) as u16) << 8;
        assert_eq!(lo as u64, (512 - 16) * 16, "64 KiB blocks above 16 MiB");
        assert_eq!(get(&mut r, 0x15), 0x80);
        assert_eq!(get(&mut r, 0x16), 0x02, "640 KiB base memory");
    }

    #[derive(Default)]
    struct Level(std::sync::Mutex<Vec<bool>>);
    impl IrqLine for Level {
        fn set_level(&self, high: bool) -> janus_engine::Result<()> {
            self.0.lock().unwrap().push(high);
            Ok(())
        }
    }

    #[test]
    fn periodic_interrupt_until_register_c_is_read() {
        let (mut r, ns) = fixed(T0, 0);
        let line = Arc::new(Level::default());
        let n = ns.clone();
        r.connect(
            line.clone(),
            Arc::new(Wakeup::new()),
            Box::new(move || n.load(Ordering::SeqCst)),
        );
        set(&mut r, 0x0a, 0x26); // 1024 Hz
        set(&mut r, 0x0b, REG_B_24H | REG_B_PIE);
        let d = r.next_deadline().expect("periodic scheduled");
        ns.store(d, Ordering::SeqCst);
        r.tick(d);
        assert_eq!(*line.0.lock().unwrap(), vec![true], "IRQ 8 raised");
        let c = get(&mut r, 0x0c);
        assert_eq!(c & (REG_C_IRQF | REG_C_PF), REG_C_IRQF | REG_C_PF);
        assert_eq!(
            *line.0.lock().unwrap(),
            vec![true, false],
            "lowered by reading C"
        );
        assert!(r.next_deadline().unwrap() > d);
    }

    #[test]
    fn update_and_alarm_interrupts() {
        let (mut r, ns) = fixed(T0, 500_000_000);
        let line = Arc::new(Level::default());
        let n = ns.clone();
        r.connect(
            line.clone(),
            Arc::new(Wakeup::new()),
            Box::new(move || n.load(Ordering::SeqCst)),
        );
        // Alarm at 13:45:31 (BCD), update-ended interrupts on.
        set(&mut r, 0x01, 0x31);
        set(&mut r, 0x03, 0x45);
        set(&mut r, 0x05, 0x13);
        set(&mut r, 0x0b, REG_B_24H | REG_B_UIE | REG_B_AIE);
        let d = r.next_deadline().unwrap();
        ns.store(d, Ordering::SeqCst);
        r.tick(d);
        // PF follows the periodic rate whether or not PIE is set, as on the MC146818.
        let c = get(&mut r, 0x0c) & !REG_C_PF;
        assert_eq!(
            c,
            REG_C_IRQF | REG_C_UF | REG_C_AF,
            "update and alarm at :31"
        );
        // Without enables, flags are set but no interrupt.
        set(&mut r, 0x0b, REG_B_24H);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn ram_is_kept_and_index_masks_nmi_bit() {
        let (mut r, _) = fixed(T0, 0);
        set(&mut r, 0x80 | 0x40, 0x5a);
        assert_eq!(get(&mut r, 0x40), 0x5a);
        let mut d = [0];
        r.read(0, &mut d);
        assert_eq!(d[0], 0xff, "index port is write-only");
    }
}
