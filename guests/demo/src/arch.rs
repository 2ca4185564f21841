//! The few machine instructions the guest needs, and the C memory functions the compiler calls.

use core::arch::asm;

pub fn outb(port: u16, value: u8) {
    // SAFETY: port output has no memory effects visible to Rust; the guest owns the machine.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

pub fn outw(port: u16, value: u16) {
    // SAFETY: as for `outb`.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    }
}

pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port input has no memory effects visible to Rust.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    }
    v
}

pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: port input has no memory effects visible to Rust.
    unsafe {
        asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags))
    }
    v
}

/// Rings a hypercall doorbell: a 32-bit `out` with EAX = guest-physical address of the request.
/// The VMM reads and writes the request block during the instruction, so this asm is a memory
/// clobber (no `nomem`).
pub fn out_doorbell(port: u16, request_gpa: u32) {
    // SAFETY: the request block is live for the duration of the instruction; the VMM writes only
    // inside it.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") request_gpa, options(nostack, preserves_flags))
    }
}

pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC reads a counter; CR4.TSD is clear in this guest.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    ((hi as u64) << 32) | lo as u64
}

pub struct Cpuid {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

pub fn cpuid(leaf: u32, subleaf: u32) -> Cpuid {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    Cpuid {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

/// Runs `dec rcx; jnz` `n` times (n >= 1) and returns how many iterations ran.
pub fn count_down(n: u64) -> u64 {
    let left: u64;
    // SAFETY: register-only loop; no memory is touched.
    unsafe { asm!("2:", "dec rcx", "jnz 2b", inout("rcx") n => left, options(nomem, nostack)) };
    n - left
}

/// Stops the CPU for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: with interrupts disabled HLT only returns on NMI/SMI; we loop again.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

// The compiler lowers copies and fills to these; without a C library the guest supplies them.
// `rep movsb`/`rep stosb` keep them short and stop the optimizer from turning a byte loop back
// into a call to itself.

/// # Safety
/// C `memcpy` contract: `n` bytes valid at both pointers, no overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the ranges; DF is clear per the SysV ABI.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags))
    };
    dst
}

/// # Safety
/// C `memmove` contract: `n` bytes valid at both pointers; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: forward copy is correct when dst is below src or the ranges do not overlap.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: copy backwards with DF set, restoring DF before returning.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
             options(nostack))
    };
    dst
}

/// # Safety
/// C `memset` contract: `n` bytes valid at `dst`.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
             options(nostack, preserves_flags))
    };
    dst
}

/// # Safety
/// C `memcmp` contract: `n` bytes valid at both pointers.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n, within the caller's ranges; volatile keeps this a loop, not a call.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// # Safety
/// As `memcmp`.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}
