//! Floating-point operations executed on the host's own SSE unit.
//!
//! Design decision: the soft engine requires an x86-64 host, so SSE/SSE2 floating point runs on
//! the host's SSE unit and results, rounding and exception flags are bit-exact with hardware
//! (including RCPPS/RSQRTPS, whose precision is the host's).
//!
//! Every function here is one `asm!` block that saves the host MXCSR, loads the control value
//! it is given (the guest's rounding, DAZ and FTZ with every exception masked), runs the
//! instruction on xmm0 (destination) and xmm1 (source), stores the resulting MXCSR and restores
//! the host's. Doing all of that inside one block keeps compiler-generated float code from ever
//! running under the guest's control bits, and leaves the host MXCSR as it was (Rust requires
//! that of an `asm!` block).

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the soft engine executes SSE floating point on the host: it needs an x86-64 host");

use std::arch::asm;

/// `(control, destination, source) -> (destination after, MXCSR after)`.
pub type Bin = fn(u32, u128, u128) -> (u128, u32);
/// `(control, source) -> (integer result, MXCSR after)` (CVTSS2SI and friends).
pub type ToInt = fn(u32, u128) -> (u64, u32);
/// `(control, destination, integer source) -> (destination after, MXCSR after)`.
pub type FromInt = fn(u32, u128, u64) -> (u128, u32);
/// `(control, first, second) -> (RFLAGS after, MXCSR after)` (COMISS and friends).
pub type Compare = fn(u32, u128, u128) -> (u64, u32);

/// Defines `Bin` functions: each runs its instruction lines on xmm0 (destination) and xmm1.
macro_rules! bin {
    ($($name:ident: $($insn:expr),+;)*) => {$(
        pub fn $name(ctl: u32, a: u128, b: u128) -> (u128, u32) {
            let mut v = [a, b];
            let mut csr = ctl;
            let mut save = 0u32;
            // SAFETY: the block reads and writes only `v`, `csr` and `save` (live locals whose
            // pointers it is given) and xmm0/xmm1 (declared clobbered); `ctl` holds only the
            // rounding, DAZ, FTZ and mask bits, which every x86-64 host accepts, and the
            // host's MXCSR is restored before the block ends.
            unsafe {
                asm!(
                    "stmxcsr dword ptr [{save}]",
                    "ldmxcsr dword ptr [{csr}]",
                    "movdqu xmm0, xmmword ptr [{v}]",
                    "movdqu xmm1, xmmword ptr [{v} + 16]",
                    $($insn,)+
                    "movdqu xmmword ptr [{v}], xmm0",
                    "stmxcsr dword ptr [{csr}]",
                    "ldmxcsr dword ptr [{save}]",
                    v = in(reg) v.as_mut_ptr(),
                    csr = in(reg) &mut csr as *mut u32,
                    save = in(reg) &mut save as *mut u32,
                    out("xmm0") _,
                    out("xmm1") _,
                    options(nostack),
                );
            }
            (v[0], csr)
        }
    )*};
}

/// Defines `ToInt` functions: the instruction converts xmm1 into `{r}` (64-bit register).
macro_rules! to_int {
    ($($name:ident: $insn:expr;)*) => {$(
        pub fn $name(ctl: u32, b: u128) -> (u64, u32) {
            let v = b;
            let mut csr = ctl;
            let mut save = 0u32;
            let r: u64;
            // SAFETY: as in `bin!`: only the given locals, xmm1 and the output register are
            // touched, and the host MXCSR is restored.
            unsafe {
                asm!(
                    "stmxcsr dword ptr [{save}]",
                    "ldmxcsr dword ptr [{csr}]",
                    "movdqu xmm1, xmmword ptr [{v}]",
                    "xor {r:e}, {r:e}",
                    $insn,
                    "stmxcsr dword ptr [{csr}]",
                    "ldmxcsr dword ptr [{save}]",
                    v = in(reg) &v as *const u128,
                    csr = in(reg) &mut csr as *mut u32,
                    save = in(reg) &mut save as *mut u32,
                    r = out(reg) r,
                    out("xmm1") _,
                    options(nostack),
                );
            }
            (r, csr)
        }
    )*};
}

/// Defines `FromInt` functions: the instruction converts `{g}` into xmm0.
macro_rules! from_int {
    ($($name:ident: $insn:expr;)*) => {$(
        pub fn $name(ctl: u32, a: u128, g: u64) -> (u128, u32) {
            let mut v = a;
            let mut csr = ctl;
            let mut save = 0u32;
            // SAFETY: as in `bin!`.
            unsafe {
                asm!(
                    "stmxcsr dword ptr [{save}]",
                    "ldmxcsr dword ptr [{csr}]",
                    "movdqu xmm0, xmmword ptr [{v}]",
                    $insn,
                    "movdqu xmmword ptr [{v}], xmm0",
                    "stmxcsr dword ptr [{csr}]",
                    "ldmxcsr dword ptr [{save}]",
                    v = in(reg) &mut v as *mut u128,
                    csr = in(reg) &mut csr as *mut u32,
                    save = in(reg) &mut save as *mut u32,
                    g = in(reg) g,
                    out("xmm0") _,
                    options(nostack),
                );
            }
            (v, csr)
        }
    )*};
}

/// Defines `Compare` functions: the instruction compares xmm0 with xmm1 and sets RFLAGS.
macro_rules! compare {
    ($($name:ident: $insn:expr;)*) => {$(
        pub fn $name(ctl: u32, a: u128, b: u128) -> (u64, u32) {
            let v = [a, b];
            let mut csr = ctl;
            let mut save = 0u32;
            let f: u64;
            // SAFETY: as in `bin!`; PUSHFQ/POP use the stack, which is why `nostack` is not
            // given.
            unsafe {
                asm!(
                    "stmxcsr dword ptr [{save}]",
                    "ldmxcsr dword ptr [{csr}]",
                    "movdqu xmm0, xmmword ptr [{v}]",
                    "movdqu xmm1, xmmword ptr [{v} + 16]",
                    $insn,
                    "pushfq",
                    "pop {f}",
                    "stmxcsr dword ptr [{csr}]",
                    "ldmxcsr dword ptr [{save}]",
                    v = in(reg) v.as_ptr(),
                    csr = in(reg) &mut csr as *mut u32,
                    save = in(reg) &mut save as *mut u32,
                    f = out(reg) f,
                    out("xmm0") _,
                    out("xmm1") _,
                );
            }
            (f, csr)
        }
    )*};
}

bin! {
    addps: "addps xmm0, xmm1"; addpd: "addpd xmm0, xmm1";
    addss: "addss xmm0, xmm1"; addsd: "addsd xmm0, xmm1";
    subps: "subps xmm0, xmm1"; subpd: "subpd xmm0, xmm1";
    subss: "subss xmm0, xmm1"; subsd: "subsd xmm0, xmm1";
    mulps: "mulps xmm0, xmm1"; mulpd: "mulpd xmm0, xmm1";
    mulss: "mulss xmm0, xmm1"; mulsd: "mulsd xmm0, xmm1";
    divps: "divps xmm0, xmm1"; divpd: "divpd xmm0, xmm1";
    divss: "divss xmm0, xmm1"; divsd: "divsd xmm0, xmm1";
    minps: "minps xmm0, xmm1"; minpd: "minpd xmm0, xmm1";
    minss: "minss xmm0, xmm1"; minsd: "minsd xmm0, xmm1";
    maxps: "maxps xmm0, xmm1"; maxpd: "maxpd xmm0, xmm1";
    maxss: "maxss xmm0, xmm1"; maxsd: "maxsd xmm0, xmm1";
    sqrtps: "sqrtps xmm0, xmm1"; sqrtpd: "sqrtpd xmm0, xmm1";
    sqrtss: "sqrtss xmm0, xmm1"; sqrtsd: "sqrtsd xmm0, xmm1";
    rcpps: "rcpps xmm0, xmm1"; rcpss: "rcpss xmm0, xmm1";
    rsqrtps: "rsqrtps xmm0, xmm1"; rsqrtss: "rsqrtss xmm0, xmm1";
    cvtps2pd: "cvtps2pd xmm0, xmm1"; cvtpd2ps: "cvtpd2ps xmm0, xmm1";
    cvtss2sd: "cvtss2sd xmm0, xmm1"; cvtsd2ss: "cvtsd2ss xmm0, xmm1";
    cvtdq2ps: "cvtdq2ps xmm0, xmm1"; cvtps2dq: "cvtps2dq xmm0, xmm1";
    cvttps2dq: "cvttps2dq xmm0, xmm1"; cvtdq2pd: "cvtdq2pd xmm0, xmm1";
    cvtpd2dq: "cvtpd2dq xmm0, xmm1"; cvttpd2dq: "cvttpd2dq xmm0, xmm1";
    // The MMX-register conversions run as their XMM counterparts on the low quadword (the
    // caller zeroes the unused source lanes, which convert exactly). Using the host's MMX
    // registers instead would switch the host x87 unit into MMX mode.
    cvtpi2ps: "cvtdq2ps xmm1, xmm1", "movsd xmm0, xmm1";
}

/// Defines the eight predicate forms of a compare instruction as a table indexed by imm8.
macro_rules! cmp_table {
    ($table:ident, $insn:literal, $($name:ident = $p:literal),+) => {
        bin! { $($name: concat!($insn, " xmm0, xmm1, ", $p);)+ }
        /// The compare with predicate imm8 & 7.
        pub const $table: [Bin; 8] = [$($name),+];
    };
}

cmp_table!(
    CMPPS,
    "cmpps",
    cmpps0 = 0,
    cmpps1 = 1,
    cmpps2 = 2,
    cmpps3 = 3,
    cmpps4 = 4,
    cmpps5 = 5,
    cmpps6 = 6,
    cmpps7 = 7
);
cmp_table!(
    CMPPD,
    "cmppd",
    cmppd0 = 0,
    cmppd1 = 1,
    cmppd2 = 2,
    cmppd3 = 3,
    cmppd4 = 4,
    cmppd5 = 5,
    cmppd6 = 6,
    cmppd7 = 7
);
cmp_table!(
    CMPSS,
    "cmpss",
    cmpss0 = 0,
    cmpss1 = 1,
    cmpss2 = 2,
    cmpss3 = 3,
    cmpss4 = 4,
    cmpss5 = 5,
    cmpss6 = 6,
    cmpss7 = 7
);
cmp_table!(
    CMPSD,
    "cmpsd",
    cmpsd0 = 0,
    cmpsd1 = 1,
    cmpsd2 = 2,
    cmpsd3 = 3,
    cmpsd4 = 4,
    cmpsd5 = 5,
    cmpsd6 = 6,
    cmpsd7 = 7
);

to_int! {
    cvtss2si32: "cvtss2si {r:e}, xmm1"; cvtss2si64: "cvtss2si {r}, xmm1";
    cvttss2si32: "cvttss2si {r:e}, xmm1"; cvttss2si64: "cvttss2si {r}, xmm1";
    cvtsd2si32: "cvtsd2si {r:e}, xmm1"; cvtsd2si64: "cvtsd2si {r}, xmm1";
    cvttsd2si32: "cvttsd2si {r:e}, xmm1"; cvttsd2si64: "cvttsd2si {r}, xmm1";
}

from_int! {
    cvtsi2ss32: "cvtsi2ss xmm0, {g:e}"; cvtsi2ss64: "cvtsi2ss xmm0, {g}";
    cvtsi2sd32: "cvtsi2sd xmm0, {g:e}"; cvtsi2sd64: "cvtsi2sd xmm0, {g}";
}

compare! {
    comiss: "comiss xmm0, xmm1"; ucomiss: "ucomiss xmm0, xmm1";
    comisd: "comisd xmm0, xmm1"; ucomisd: "ucomisd xmm0, xmm1";
}

/// MXCSR exception flags (bits 0..=5); the mask for flag `f` is `f << 7`.
pub const IE: u32 = 1 << 0;
pub const DE: u32 = 1 << 1;
pub const ZE: u32 = 1 << 2;
pub const OE: u32 = 1 << 3;
pub const UE: u32 = 1 << 4;
pub const PE: u32 = 1 << 5;
pub const FLAGS: u32 = 0x3f;
const MASKS: u32 = FLAGS << 7;
const DAZ: u32 = 1 << 6;
const RC: u32 = 3 << 13;
const FTZ: u32 = 1 << 15;

/// The host control value for a guest MXCSR: its rounding control and DAZ, every exception
/// masked and no flags. FTZ is kept only while the guest masks underflow: hardware ignores it
/// when underflow is unmasked, and an unflushed result is what tells an exact tiny result.
pub fn control(guest: u32) -> u32 {
    let ftz = if guest & (UE << 7) != 0 {
        guest & FTZ
    } else {
        0
    };
    (guest & (RC | DAZ)) | ftz | MASKS
}

/// The exceptions the guest leaves unmasked.
pub fn unmasked(guest: u32) -> u32 {
    !(guest >> 7) & FLAGS
}
