//! What the guest runs on, found through CPUID: a plain PC (full virtualization) or Janus with
//! its hypercall doorbell (para-virtualization). Each service below has one path per platform.

use crate::arch::{self, cpuid, inb, outb, outw};
use core::cell::UnsafeCell;
use core::fmt;
use janus_abi::cpuid::{signature_regs, HYPERVISOR_BIT, HYPERVISOR_LEAF_BASE, JANUS_LEAF_DOORBELL};
use janus_abi::hypercall::{self, status, Call};
use janus_abi::pc;
use janus_abi::pvclock::PvclockVcpuTimeInfo;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// No hypervisor visible: drive the PC's hardware.
    Pc,
    /// Janus, with the hypercall doorbell at `doorbell`.
    Janus { doorbell: u16 },
}

impl Platform {
    /// CPUID.1:ECX[31] says whether a hypervisor is present; if so, scan the hypervisor leaves
    /// in steps of 0x100 for Janus's signature (Linux's `hypervisor_cpuid_base` does the same).
    pub fn detect() -> Platform {
        if cpuid(1, 0).ecx & HYPERVISOR_BIT == 0 {
            return Platform::Pc;
        }
        let [b, c, d] = signature_regs();
        for k in 0..0x100u32 {
            let leaf = HYPERVISOR_LEAF_BASE + k * 0x100;
            let r = cpuid(leaf, 0);
            if (r.ebx, r.ecx, r.edx) == (b, c, d) && r.eax > leaf {
                let bell = cpuid(JANUS_LEAF_DOORBELL, 0);
                return Platform::Janus {
                    doorbell: bell.eax as u16,
                };
            }
        }
        Platform::Pc
    }

    pub fn is_para(self) -> bool {
        matches!(self, Platform::Janus { .. })
    }

    pub fn mode_name(self) -> &'static str {
        if self.is_para() {
            "para"
        } else {
            "full"
        }
    }
}

/// A buffer at a fixed guest-physical address that the VMM may write (identity-mapped, so its
/// pointer value is its guest-physical address).
#[repr(C, align(4096))]
pub struct Shared<T>(UnsafeCell<T>);

// SAFETY: the guest is single-threaded; the VMM writes only during a hypercall.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    pub const fn new(v: T) -> Self {
        Shared(UnsafeCell::new(v))
    }
    pub fn ptr(&self) -> *mut T {
        self.0.get()
    }
    pub fn gpa(&self) -> u64 {
        self.ptr() as u64
    }
}

/// Issues call `call` with `req` as its request block and returns the status the VMM wrote.
/// `status_of` picks the status field out of the request type.
fn hypercall<T>(doorbell: u16, call: Call, req: &mut T, status_of: fn(&T) -> &i32) -> i32 {
    let gpa = req as *mut T as u64;
    let port = doorbell + call as u16;
    arch::out_doorbell(port, gpa as u32);
    // SAFETY: `req` is a live, aligned object; volatile because the VMM wrote it behind Rust's
    // back during the `out`.
    unsafe { core::ptr::read_volatile(status_of(req)) }
}

// ---------------------------------------------------------------- console

/// Console output: the 16550 UART byte by byte, or one hypercall per buffer.
pub struct Console {
    platform: Platform,
    buf: [u8; 256],
    len: usize,
}

impl Console {
    pub fn new(platform: Platform) -> Console {
        if !platform.is_para() {
            uart_init();
        }
        Console {
            platform,
            buf: [0; 256],
            len: 0,
        }
    }

    /// Writes `bytes` straight to the device: per byte on the UART, as one call on Janus.
    pub fn write_raw(&mut self, bytes: &[u8]) -> i32 {
        match self.platform {
            Platform::Pc => {
                for &b in bytes {
                    uart_put(b);
                }
                status::OK
            }
            Platform::Janus { doorbell } => {
                let mut req = hypercall::ConsoleWrite {
                    buf_gpa: bytes.as_ptr() as u64,
                    len: bytes.len() as u32,
                    status: status::PENDING,
                };
                hypercall(doorbell, Call::ConsoleWrite, &mut req, |r| &r.status)
            }
        }
    }

    pub fn flush(&mut self) {
        if self.len > 0 {
            let buf = self.buf;
            self.write_raw(&buf[..self.len]);
            self.len = 0;
        }
    }
}

impl fmt::Write for Console {
    /// Line-buffered, so that on Janus each printed line costs one hypercall.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
            if b == b'\n' {
                self.flush();
            }
        }
        Ok(())
    }
}

const UART_THR: u16 = 0;
const UART_IER: u16 = 1;
const UART_FCR: u16 = 2;
const UART_LCR: u16 = 3;
const UART_MCR: u16 = 4;
const UART_LSR: u16 = 5;
const LSR_THR_EMPTY: u8 = 1 << 5;

fn uart_init() {
    let base = pc::COM1;
    outb(base + UART_IER, 0x00); // polled: no interrupts
    outb(base + UART_LCR, 0x80); // DLAB on
    outb(base, 0x01); // divisor 1: 115200 baud
    outb(base + UART_IER, 0x00);
    outb(base + UART_LCR, 0x03); // 8N1, DLAB off
    outb(base + UART_FCR, 0xc7); // FIFOs on and cleared
    outb(base + UART_MCR, 0x03); // DTR, RTS
}

/// Waits for room in the transmitter (LSR polling), then writes the byte.
pub fn uart_put(b: u8) {
    while inb(pc::COM1 + UART_LSR) & LSR_THR_EMPTY == 0 {}
    outb(pc::COM1 + UART_THR, b);
}

// ---------------------------------------------------------------- clocks

/// Where the guest gets time: its TSC calibrated against the PIT plus the CMOS RTC for the date
/// (a PC), or the PV clock page plus the wall-clock base from one hypercall (Janus).
pub enum Clock {
    Pc { tsc_hz: u64 },
    Janus { wall_sec: u64, wall_nsec: u32 },
}

static PVCLOCK: Shared<PvclockVcpuTimeInfo> = Shared::new(PvclockVcpuTimeInfo {
    version: 0,
    pad0: 0,
    tsc_timestamp: 0,
    system_time: 0,
    tsc_to_system_mul: 0,
    tsc_shift: 0,
    flags: 0,
    pad: [0; 2],
});

impl Clock {
    pub fn new(platform: Platform) -> Result<Clock, i32> {
        match platform {
            Platform::Pc => Ok(Clock::Pc {
                tsc_hz: calibrate_tsc(),
            }),
            Platform::Janus { doorbell } => {
                let mut req = hypercall::ClockInfo {
                    pvclock_gpa: PVCLOCK.gpa(),
                    status: status::PENDING,
                    ..Default::default()
                };
                match hypercall(doorbell, Call::ClockInfo, &mut req, |r| &r.status) {
                    status::OK => Ok(Clock::Janus {
                        wall_sec: req.wall_sec,
                        wall_nsec: req.wall_nsec,
                    }),
                    err => Err(err),
                }
            }
        }
    }

    /// Monotonic nanoseconds since an arbitrary origin, for timing the parts.
    pub fn monotonic_ns(&self) -> u64 {
        match self {
            Clock::Pc { tsc_hz } => {
                ((arch::rdtsc() as u128 * 1_000_000_000) / *tsc_hz as u128) as u64
            }
            Clock::Janus { .. } => pvclock_ns(),
        }
    }

    /// Reads the time of day (Unix time) the way the platform offers it: the CMOS RTC in whole
    /// seconds (16 port accesses), or the PV clock page in nanoseconds (no exits at all).
    /// Returned in nanoseconds either way.
    pub fn time_of_day_ns(&self) -> u64 {
        match self {
            Clock::Pc { .. } => rtc_read_unix() * 1_000_000_000,
            Clock::Janus {
                wall_sec,
                wall_nsec,
            } => wall_sec * 1_000_000_000 + *wall_nsec as u64 + pvclock_ns(),
        }
    }

    pub fn describe(&self) -> (&'static str, u64) {
        match self {
            Clock::Pc { tsc_hz } => ("tsc-calibrated-by-pit+cmos-rtc", *tsc_hz / 1000),
            Clock::Janus { .. } => ("pvclock", 0),
        }
    }
}

/// Reads the PV clock page with the version protocol: retry while odd or changed.
fn pvclock_ns() -> u64 {
    let p = PVCLOCK.ptr();
    loop {
        // SAFETY: the page is a live static; volatile because the VMM updates it.
        let v1 = unsafe { core::ptr::addr_of!((*p).version).read_volatile() };
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::Acquire);
        // SAFETY: as above.
        let snapshot = unsafe { p.read_volatile() };
        let tsc = arch::rdtsc();
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::Acquire);
        // SAFETY: as above.
        let v2 = unsafe { core::ptr::addr_of!((*p).version).read_volatile() };
        if v1 & 1 == 0 && v1 == v2 {
            return snapshot.nanos_at(tsc);
        }
    }
}

/// Measures the TSC against 10 ms of PIT channel 2 (mode 0, gate through port 0x61), as
/// Linux's `pit_calibrate_tsc` does.
fn calibrate_tsc() -> u64 {
    const TICKS: u64 = pc::PIT_HZ / 100; // 10 ms
    let ctl = inb(pc::SYSTEM_CONTROL_B);
    outb(pc::SYSTEM_CONTROL_B, (ctl & !0x02) | 0x01); // speaker off, gate on
    outb(pc::PIT_BASE + 3, 0xb0); // channel 2, lobyte/hibyte, mode 0, binary
    outb(pc::PIT_BASE + 2, (TICKS & 0xff) as u8);
    outb(pc::PIT_BASE + 2, (TICKS >> 8) as u8);
    let t0 = arch::rdtsc();
    while inb(pc::SYSTEM_CONTROL_B) & 0x20 == 0 {}
    let t1 = arch::rdtsc();
    ((t1 - t0) * pc::PIT_HZ / TICKS).max(1)
}

fn cmos(reg: u8) -> u8 {
    outb(pc::CMOS_INDEX, reg);
    inb(pc::CMOS_DATA)
}

fn bcd(v: u8) -> u64 {
    ((v >> 4) * 10 + (v & 0xf)) as u64
}

/// Reads the RTC date and time as Linux's `mc146818_get_time` does: wait out an update in
/// progress, read the fields, honour the BCD and 12-hour format bits.
fn rtc_read_unix() -> u64 {
    while cmos(0x0a) & 0x80 != 0 {}
    let (sec, min, hour, day, mon, year) = (cmos(0), cmos(2), cmos(4), cmos(7), cmos(8), cmos(9));
    let reg_b = cmos(0x0b);
    let binary = reg_b & 0x04 != 0;
    let h24 = reg_b & 0x02 != 0;
    let conv = |v: u8| if binary { v as u64 } else { bcd(v) };
    let pm = hour & 0x80 != 0;
    let mut h = conv(hour & 0x7f);
    if !h24 {
        h %= 12;
        if pm {
            h += 12;
        }
    }
    let days = days_from_civil(2000 + conv(year), conv(mon), conv(day));
    days * 86_400 + h * 3600 + conv(min) * 60 + conv(sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------- block

/// Reads `buf.len()` bytes from sector `sector` with one hypercall.
pub fn block_read(doorbell: u16, sector: u64, buf: &mut [u8]) -> i32 {
    let mut req = hypercall::BlockRead {
        sector,
        buf_gpa: buf.as_mut_ptr() as u64,
        len: buf.len() as u32,
        status: status::PENDING,
    };
    hypercall(doorbell, Call::BlockRead, &mut req, |r| &r.status)
}

// ---------------------------------------------------------------- power

// ---------------------------------------------------------------- IDE disk (full mode)

/// The primary ATA channel's legacy ports (every PC's IDE controller decodes them).
mod ata {
    pub const DATA: u16 = 0x1f0;
    pub const COUNT: u16 = 0x1f2;
    pub const LBA_LOW: u16 = 0x1f3;
    pub const LBA_MID: u16 = 0x1f4;
    pub const LBA_HIGH: u16 = 0x1f5;
    pub const DEVICE: u16 = 0x1f6;
    /// Status on reads, command on writes.
    pub const STATUS: u16 = 0x1f7;
    pub const CONTROL: u16 = 0x3f6;
    pub const BSY: u8 = 0x80;
    pub const DF: u8 = 0x20;
    pub const DRQ: u8 = 0x08;
    pub const ERR: u8 = 0x01;
    pub const READ_SECTORS: u8 = 0x20;
    /// Device register: LBA addressing, master.
    pub const LBA_MASTER: u8 = 0xe0;
    /// Control register: no interrupts (the guest polls, as firmware does).
    pub const NIEN: u8 = 0x02;
}

/// Status once the drive is not busy, or `None` if it never settles (no drive: a floating
/// bus reads 0xff).
fn ata_ready() -> Option<u8> {
    for _ in 0..100_000 {
        let s = arch::inb(ata::STATUS);
        if s == 0xff {
            return None;
        }
        if s & ata::BSY == 0 {
            return Some(s);
        }
    }
    None
}

/// Whether the primary master answers (its status register is not floating).
pub fn ide_present() -> bool {
    arch::outb(ata::CONTROL, ata::NIEN);
    arch::outb(ata::DEVICE, ata::LBA_MASTER);
    ata_ready().is_some_and(|s| s != 0)
}

/// Reads `buf.len() / 512` sectors (at most 256) from LBA `lba` of the primary master with
/// READ SECTORS, by PIO: one data-port read per 4 bytes, the way an unaware guest pays for a
/// disk with no DMA.
pub fn ide_read(lba: u32, buf: &mut [u8]) -> Result<(), &'static str> {
    let sectors = buf.len() / 512;
    if sectors == 0 || sectors > 256 || buf.len() % 512 != 0 {
        return Err("IDE read of a bad size");
    }
    arch::outb(ata::CONTROL, ata::NIEN);
    ata_ready().ok_or("IDE drive busy")?;
    arch::outb(ata::DEVICE, ata::LBA_MASTER | (lba >> 24) as u8 & 0x0f);
    arch::outb(ata::COUNT, sectors as u8); // 256 is written as 0
    arch::outb(ata::LBA_LOW, lba as u8);
    arch::outb(ata::LBA_MID, (lba >> 8) as u8);
    arch::outb(ata::LBA_HIGH, (lba >> 16) as u8);
    arch::outb(ata::STATUS, ata::READ_SECTORS);
    for sector in buf.chunks_mut(512) {
        let s = ata_ready().ok_or("IDE drive stuck busy")?;
        if s & (ata::ERR | ata::DF) != 0 || s & ata::DRQ == 0 {
            return Err("IDE read failed");
        }
        for word in sector.chunks_mut(4) {
            word.copy_from_slice(&arch::inl(ata::DATA).to_le_bytes());
        }
    }
    Ok(())
}

/// Powers off: ACPI S5 through the PM1a control block on a PC, the poweroff call on Janus. If
/// that returns, pulse the reset line through the keyboard controller, then halt.
pub fn poweroff(platform: Platform, code: u32) -> ! {
    match platform {
        Platform::Pc => outw(
            pc::PM1A_CNT_BLK,
            (pc::SLP_TYP_S5 << pc::PM1_SLP_TYP_SHIFT) | pc::PM1_SLP_EN,
        ),
        Platform::Janus { doorbell } => {
            let mut req = hypercall::Poweroff {
                code,
                status: status::PENDING,
            };
            hypercall(doorbell, Call::Poweroff, &mut req, |r| &r.status);
        }
    }
    outb(pc::I8042_COMMAND, 0xfe);
    arch::halt_forever()
}
