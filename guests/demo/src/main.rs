//! The Janus demo guest: one workload, run unchanged under full and para virtualization.
//!
//! It reads CPUID to learn where it runs. Without the hypervisor bit it is an ordinary PC
//! program (UART, PIT, CMOS RTC, ACPI poweroff); with Janus's leaves it uses hypercalls and the
//! PV clock page. Each part is bracketed by POST codes on port 0x80 so the VMM can attribute
//! exits and time to it, and ends with a result line the VMM checks.

#![no_std]
#![no_main]

mod arch;
mod platform;
mod pvh;

use core::fmt::Write;
use janus_abi::boot::{BootInfo, BOOT_INFO_MAGIC};
use janus_abi::demo::{self, Part, LINE_PREFIX};
use janus_abi::{hypercall::status, pc};
use platform::{Clock, Console, Platform, Shared};

core::arch::global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "    lea rsp, [rip + __stack_top]",
    "    xor ebp, ebp",
    "    call {main}",
    "    ud2",
    main = sym guest_main,
);

static TEXT: Shared<[u8; demo::CONSOLE_BYTES]> = Shared::new([0; demo::CONSOLE_BYTES]);
static BLOCK: Shared<[u8; demo::BLOCK_BYTES]> = Shared::new([0; demo::BLOCK_BYTES]);

/// Everything a part needs.
struct Guest {
    platform: Platform,
    console: Console,
    clock: Clock,
}

impl Guest {
    /// Runs `body` between the part's POST codes, then `checksum` on what it returned (outside
    /// the timed span, so both modes time only the work), and prints the result line.
    /// `body` returns (ops, value to checksum) or an error text.
    fn part<R>(
        &mut self,
        part: Part,
        body: impl FnOnce(&mut Guest) -> Result<(u64, R), &'static str>,
        checksum: impl FnOnce(R) -> u64,
    ) {
        let t0 = self.clock.monotonic_ns();
        arch::outb(pc::POST_CODE, part.begin_code());
        let result = body(self);
        arch::outb(pc::POST_CODE, part.end_code());
        let ns = self.clock.monotonic_ns().saturating_sub(t0);
        let name = part.name();
        let _ = match result {
            Ok((ops, r)) => {
                let sum = checksum(r);
                writeln!(
                    self.console,
                    "{LINE_PREFIX}part={name} ops={ops} checksum={sum:#018x} guest_ns={ns}"
                )
            }
            Err(e) => writeln!(self.console, "{LINE_PREFIX}part={name} error=\"{e}\""),
        };
    }
}

fn cmdline(info: &BootInfo) -> &'static str {
    if info.cmdline_len == 0 || info.cmdline_len > 4096 {
        return "";
    }
    // SAFETY: the VMM placed `cmdline_len` bytes at `cmdline_gpa` (identity-mapped low memory).
    let bytes = unsafe {
        core::slice::from_raw_parts(info.cmdline_gpa as *const u8, info.cmdline_len as usize)
    };
    core::str::from_utf8(bytes).unwrap_or("")
}

#[no_mangle]
extern "C" fn guest_main(info: *const BootInfo) -> ! {
    let platform = Platform::detect();
    let mut console = Console::new(platform);
    // SAFETY: RDI points at the boot info the VMM wrote; checked by magic before use.
    let info = unsafe { info.read() };
    if info.magic != BOOT_INFO_MAGIC {
        let _ = writeln!(console, "{LINE_PREFIX}error=\"no boot info\"");
        platform::poweroff(platform, 2);
    }
    let cmdline = cmdline(&info);
    let compute_iters =
        demo::cmdline_u64(cmdline, "compute").unwrap_or(demo::DEFAULT_COMPUTE_ITERS);
    let loop_iters = demo::cmdline_u64(cmdline, "loop")
        .unwrap_or(demo::DEFAULT_LOOP_ITERS)
        .max(1);

    let clock = match Clock::new(platform) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(
                console,
                "{LINE_PREFIX}error=\"clock setup failed: status {e}\""
            );
            platform::poweroff(platform, 3);
        }
    };
    let (clock_name, tsc_khz) = clock.describe();
    let _ = writeln!(
        console,
        "{LINE_PREFIX}mode={} clock={clock_name} tsc_khz={tsc_khz} mem_mib={} cmdline=\"{cmdline}\"",
        platform.mode_name(),
        info.mem_size >> 20
    );
    let mut g = Guest {
        platform,
        console,
        clock,
    };

    // The text is generated before the part starts so that both modes time only the output.
    // SAFETY: single-threaded guest; TEXT is not aliased.
    let text = unsafe { &mut *TEXT.ptr() };
    for (i, b) in text.iter_mut().enumerate() {
        *b = demo::console_byte(i);
    }
    g.part(
        Part::Console,
        |g| match g.console.write_raw(text) {
            status::OK => Ok((demo::CONSOLE_BYTES as u64, ())),
            _ => Err("console write failed"),
        },
        |()| demo::fnv1a(demo::FNV_OFFSET, text),
    );

    // The clock part's checksum is the number of reads that did not go backwards.
    let mut last_time = 0;
    g.part(
        Part::Clock,
        |g| {
            let mut monotonic = 0u64;
            for _ in 0..demo::CLOCK_READS {
                let t = g.clock.time_of_day_ns();
                if t >= last_time {
                    monotonic += 1;
                }
                last_time = t;
            }
            Ok((demo::CLOCK_READS as u64, monotonic))
        },
        |monotonic| monotonic,
    );
    let _ = writeln!(
        g.console,
        "{LINE_PREFIX}time_of_day={}",
        last_time / 1_000_000_000
    );

    // The compute part's checksum is its result: the work is the checksum.
    g.part(
        Part::Compute,
        |_| Ok((compute_iters, demo::compute(compute_iters))),
        |sum| sum,
    );

    match g.platform {
        Platform::Janus { doorbell } => g.part(
            Part::Block,
            |_| {
                // SAFETY: single-threaded guest; BLOCK is not aliased.
                let buf = unsafe { &mut *BLOCK.ptr() };
                for (i, chunk) in buf.chunks_mut(demo::BLOCK_REQUEST_BYTES).enumerate() {
                    let sector = (i * demo::BLOCK_REQUEST_BYTES / 512) as u64;
                    if platform::block_read(doorbell, sector, chunk) != status::OK {
                        return Err("block read failed");
                    }
                }
                Ok(((demo::BLOCK_BYTES / demo::BLOCK_OP_BYTES) as u64, &*buf))
            },
            |buf| demo::fnv1a_words(demo::FNV_OFFSET, buf),
        ),
        Platform::Pc if platform::ide_present() => g.part(
            Part::Block,
            |_| {
                // SAFETY: single-threaded guest; BLOCK is not aliased.
                let buf = unsafe { &mut *BLOCK.ptr() };
                for (i, chunk) in buf.chunks_mut(demo::BLOCK_REQUEST_BYTES).enumerate() {
                    let lba = (i * demo::BLOCK_REQUEST_BYTES / 512) as u32;
                    platform::ide_read(lba, chunk)?;
                }
                Ok(((demo::BLOCK_BYTES / demo::BLOCK_OP_BYTES) as u64, &*buf))
            },
            |buf| demo::fnv1a_words(demo::FNV_OFFSET, buf),
        ),
        Platform::Pc => {
            let _ = writeln!(
                g.console,
                "{LINE_PREFIX}part=block skipped=\"no IDE disk on the primary channel\""
            );
        }
    }

    // Exactly two instructions per iteration, whatever the compiler does around it.
    g.part(
        Part::Loop,
        |_| Ok((loop_iters, arch::count_down(loop_iters))),
        |done| done,
    );

    let _ = writeln!(g.console, "{LINE_PREFIX}done");
    g.console.flush();
    platform::poweroff(g.platform, 0)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    // The UART exists in both modes; use it directly so a panic is visible whatever broke.
    struct Raw;
    impl Write for Raw {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            s.bytes().for_each(platform::uart_put);
            Ok(())
        }
    }
    let _ = writeln!(Raw, "{LINE_PREFIX}panic=\"{}\"", info.message());
    platform::poweroff(Platform::detect(), 101)
}
