//! Running a vector program under the soft CPU and natively, and comparing the records.

use super::super::host::F80;
use crate::testing::{End, TestMachine, CODE, DATA};
use iced_x86::code_asm::*;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

/// Emits part of a test program.
pub type Emit = fn(&mut CodeAssembler) -> Result<(), IcedError>;

/// One input vector: st(0) and st(1) values for the set-up, a memory operand at
/// `[rsi + 20]`, and the RFLAGS the instruction runs with.
pub struct Vector {
    pub a: F80,
    pub b: F80,
    pub mem: Vec<u8>,
    pub flags: u64,
}

/// The control word the program loads, at `DATA`.
const CW_AT: u64 = DATA;
/// An FLDENV image with the program's control word and all four condition codes set.
pub const DIRTY_ENV: u64 = DATA + 0x40;
/// The same with SF and IE set too (for masked control words only: with IE unmasked the
/// load would leave an exception pending).
pub const STICKY_ENV: u64 = DATA + 0x80;
/// Input vectors.
const IN: u64 = DATA + 0x1000;
const IN_STRIDE: usize = 48;
/// Output records: FNSAVE image, RFLAGS, RAX, then a memory result at `[rdi + 128]`.
const OUT_STRIDE: usize = 160;
pub const REC_FLAGS: usize = 108;
pub const REC_RAX: usize = 116;
pub const REC_MEM: usize = 128;
/// RAX before the instruction under test (to see what FSTSW AX merges).
const RAX_BEFORE: u64 = 0x1111_2222_3333_4444;

fn out_offset(n: usize) -> usize {
    (0x1000 + n * IN_STRIDE).next_multiple_of(0x1000)
}

/// The loop over `n` vectors, without its final HLT or RET.
pub fn program(setup: Emit, op: Emit, n: usize) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut top = a.create_label();
    a.mov(rsi, IN)?;
    a.mov(rdi, DATA + out_offset(n) as u64)?;
    a.mov(ecx, n as u32)?;
    a.set_label(&mut top)?;
    a.fninit()?;
    a.fldcw(word_ptr(CW_AT))?;
    setup(&mut a)?;
    a.push(qword_ptr(rsi + 32))?;
    a.popfq()?;
    a.mov(rax, RAX_BEFORE)?;
    op(&mut a)?;
    a.fnsave(ptr(rdi))?;
    a.pushfq()?;
    a.pop(qword_ptr(rdi + REC_FLAGS as i32))?;
    a.mov(qword_ptr(rdi + REC_RAX as i32), rax)?;
    a.add(rsi, IN_STRIDE as i32)?;
    a.add(rdi, OUT_STRIDE as i32)?;
    a.dec(ecx)?;
    a.jnz(top)?;
    a.assemble(CODE)
}

/// The data area both runs start from.
fn data_image(cw: u16, vectors: &[Vector]) -> Vec<u8> {
    let n = vectors.len();
    let mut d = vec![0u8; out_offset(n) + n * OUT_STRIDE];
    d[..2].copy_from_slice(&cw.to_le_bytes());
    for (at, sw) in [(DIRTY_ENV, 0x4700u16), (STICKY_ENV, 0x4741)] {
        let env = &mut d[(at - DATA) as usize..][..28];
        env[..2].copy_from_slice(&cw.to_le_bytes());
        env[4..6].copy_from_slice(&sw.to_le_bytes());
        env[8..10].copy_from_slice(&0xffffu16.to_le_bytes());
    }
    for (j, v) in vectors.iter().enumerate() {
        let r = &mut d[0x1000 + j * IN_STRIDE..][..IN_STRIDE];
        r[..10].copy_from_slice(&v.a.to_bytes());
        r[10..20].copy_from_slice(&v.b.to_bytes());
        r[20..20 + v.mem.len()].copy_from_slice(&v.mem);
        r[32..40].copy_from_slice(&v.flags.to_le_bytes());
    }
    d[out_offset(n)..].fill(0xcc);
    d
}

/// The final x87 state in FXSAVE layout (control, status, abridged tags, registers in
/// stack order), as far as both runs can be compared.
pub type Final = (u16, u16, u8, [[u8; 10]; 8]);

/// Runs `code` (plus HLT) under the soft CPU with `data` at `DATA`; returns the data area
/// and the final x87 state.
pub fn run_guest(name: &str, code: &[u8], data: &[u8]) -> (Vec<u8>, Final) {
    let mut m = TestMachine::long_mode(&[code, &[0xf4]].concat());
    m.write(DATA, data);
    let end = m.run();
    assert_eq!(
        end,
        End::Halt,
        "{name}: guest did not halt (unimplemented: {:?})",
        m.vcpu.cpu.stats.unimplemented
    );
    let f = m.regs().fpu.clone();
    let regs = std::array::from_fn(|k| {
        let mut r = [0u8; 10];
        r.copy_from_slice(&f.st[(f.top() + k) & 7][..10]);
        r
    });
    (m.read(DATA, data.len()), (f.fcw, f.fsw, f.ftw, regs))
}

// ------------------------------------------------------------------ native

const NATIVE_CODE_SIZE: usize = 0x1_0000;
const NATIVE_DATA_SIZE: usize = 0x40_0000;

/// Native runs use fixed addresses, so they take turns.
static NATIVE: Mutex<()> = Mutex::new(());

/// Maps the code and data areas at `CODE` and `DATA` in this process, once.
fn native_areas() -> &'static Result<(), String> {
    static MAPPED: OnceLock<Result<(), String>> = OnceLock::new();
    MAPPED.get_or_init(|| {
        for (addr, len) in [(CODE, NATIVE_CODE_SIZE), (DATA, NATIVE_DATA_SIZE)] {
            // SAFETY: a fresh anonymous mapping at a fixed address that MAP_FIXED_NOREPLACE
            // refuses to place over anything already mapped.
            let p = unsafe {
                libc::mmap(
                    addr as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            if p as u64 != addr {
                return Err(format!("cannot map {len:#x} bytes at {addr:#x}"));
            }
        }
        Ok(())
    })
}

/// FXSAVE areas for the native call: the host's own state, the start state, the end state.
#[repr(C, align(16))]
struct Areas {
    host: [u8; 512],
    init: [u8; 512],
    out: [u8; 512],
}

/// Runs `code` (plus RET) natively with `data` at `DATA`; returns the data area and the
/// final x87 state (from FXSAVE).
pub fn run_native(code: &[u8], data: &[u8]) -> (Vec<u8>, Final) {
    let _turn = NATIVE.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = native_areas() {
        panic!("{e}");
    }
    let code = [code, &[0xc3]].concat();
    assert!(code.len() <= NATIVE_CODE_SIZE && data.len() <= NATIVE_DATA_SIZE);
    // SAFETY: both areas were mapped above (read/write) and the copies stay inside them.
    unsafe {
        std::ptr::copy_nonoverlapping(code.as_ptr(), CODE as *mut u8, code.len());
        std::ptr::copy_nonoverlapping(data.as_ptr(), DATA as *mut u8, data.len());
    }
    protect(libc::PROT_READ | libc::PROT_EXEC);
    let mut areas = Areas {
        host: [0; 512],
        init: [0; 512],
        out: [0; 512],
    };
    // The FNINIT state, MXCSR at its reset value.
    areas.init[..2].copy_from_slice(&0x037fu16.to_le_bytes());
    areas.init[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
    call_native(&mut areas);
    protect(libc::PROT_READ | libc::PROT_WRITE);
    let mut out = vec![0u8; data.len()];
    // SAFETY: reads back the data area mapped above.
    unsafe { std::ptr::copy_nonoverlapping(DATA as *const u8, out.as_mut_ptr(), out.len()) };
    let x = &areas.out;
    let regs = std::array::from_fn(|k| {
        let mut r = [0u8; 10];
        r.copy_from_slice(&x[32 + 16 * k..42 + 16 * k]);
        r
    });
    let w = |o: usize| u16::from_le_bytes([x[o], x[o + 1]]);
    (out, (w(0), w(2), x[4], regs))
}

fn protect(prot: libc::c_int) {
    // SAFETY: changes the protection of the code area this module mapped.
    let r = unsafe { libc::mprotect(CODE as *mut libc::c_void, NATIVE_CODE_SIZE, prot) };
    assert_eq!(r, 0, "mprotect");
}

/// Calls the code at `CODE` with the x87/SSE state of `areas.init`, saving the host's state
/// around it.
fn call_native(areas: &mut Areas) {
    let p: *mut Areas = areas;
    // SAFETY: the code at `CODE` is a test program built by `program`: it uses only RAX, RCX,
    // RSI, RDI, RFLAGS, the stack (balanced) and the x87 state, reads and writes only the data
    // area, and returns. Its x87 state is bracketed by FXSAVE/FXRSTOR of the host's own state,
    // neither of which takes a pending x87 exception. R12 (callee-saved) holds `p`.
    unsafe {
        core::arch::asm!(
            "fxsave64 [r12]",
            "fxrstor64 [r12 + 512]",
            "call {entry}",
            "fxsave64 [r12 + 1024]",
            "fxrstor64 [r12]",
            entry = in(reg) CODE,
            in("r12") p,
            clobber_abi("C"),
        );
    }
}

// ------------------------------------------------------------------ comparing

/// Runs the program over `vectors` under control word `cw` both ways and compares every
/// record; panics with a description of the first differences.
pub fn run_vectors(name: &str, cw: u16, setup: Emit, op: Emit, vectors: &[Vector]) {
    let code = program(setup, op, vectors.len()).expect("test program assembles");
    let data = data_image(cw, vectors);
    let (guest, guest_final) = run_guest(name, &code, &data);
    let (native, native_final) = run_native(&code, &data);
    assert_eq!(
        guest_final, native_final,
        "{name} cw={cw:#06x}: final x87 state (soft, native)"
    );
    let base = out_offset(vectors.len());
    let mut report = String::new();
    let mut bad = 0;
    for (j, v) in vectors.iter().enumerate() {
        let g = &guest[base + j * OUT_STRIDE..][..OUT_STRIDE];
        let h = &native[base + j * OUT_STRIDE..][..OUT_STRIDE];
        if masked(g, h) != masked(h, h) {
            bad += 1;
            if bad <= 4 {
                let _ = writeln!(
                    report,
                    "vector {j}: a={:04x}:{:016x} b={:04x}:{:016x} mem={:02x?} flags={:#x}\n  soft:   {}\n  native: {}",
                    v.a.se, v.a.sig, v.b.se, v.b.sig, v.mem, v.flags, describe(g), describe(h)
                );
            }
        }
    }
    assert!(
        bad == 0,
        "{name} cw={cw:#06x}: {bad} of {} vectors differ\n{report}",
        vectors.len()
    );
}

/// A record without what may legitimately differ: the selectors (the test runs with other
/// CS and DS than the host process), also in an FNSTENV image at the memory result, and the
/// non-arithmetic RFLAGS bits. `native` is the host's record. The host may lose its x87
/// instruction and data pointers at any context switch (AMD parts do not save them unless an
/// exception is pending, and Linux then restores zeros or whatever its own last x87
/// instruction left), so a native pointer that does not point into the test's code or data
/// says nothing about the instruction, and that pointer (with the opcode, for the instruction
/// pointer) is not compared. That keeps the verdict independent of scheduling: a pointer the
/// host kept is compared exactly.
fn masked(rec: &[u8], native: &[u8]) -> Vec<u8> {
    let mut r = rec.to_vec();
    for sel in [16, 24, REC_MEM + 16, REC_MEM + 24] {
        r[sel..sel + 2].fill(0);
    }
    let d = |o: usize| u32::from_le_bytes([native[o], native[o + 1], native[o + 2], native[o + 3]]);
    let within = |v: u32, base: u64| (base..base + (1 << 20)).contains(&(v as u64));
    // The FNSAVE record, and an FNSTENV image the instruction may have stored at REC_MEM.
    for env in [0, REC_MEM] {
        if !within(d(env + 12), CODE) {
            r[env + 12..env + 16].fill(0);
            r[env + 18..env + 20].fill(0);
        }
        if !within(d(env + 20), DATA) {
            r[env + 20..env + 24].fill(0);
        }
    }
    let flags = u64::from_le_bytes(r[REC_FLAGS..REC_FLAGS + 8].try_into().unwrap_or_default());
    r[REC_FLAGS..REC_FLAGS + 8].copy_from_slice(&(flags & 0x8d5).to_le_bytes());
    r
}

/// A record in words.
pub fn describe(rec: &[u8]) -> String {
    let w = |o: usize| u16::from_le_bytes([rec[o], rec[o + 1]]);
    let d = |o: usize| u32::from_le_bytes([rec[o], rec[o + 1], rec[o + 2], rec[o + 3]]);
    let mut s = format!(
        "cw={:04x} sw={:04x} tw={:04x} fip={:08x} fop={:03x} fdp={:08x} flags={:03x} rax={:016x} mem={:02x?}\n          st:",
        w(0),
        w(4),
        w(8),
        d(12),
        d(16) >> 16,
        d(20),
        u64::from_le_bytes(rec[REC_FLAGS..REC_FLAGS + 8].try_into().unwrap_or_default()) & 0x8d5,
        u64::from_le_bytes(rec[REC_RAX..REC_RAX + 8].try_into().unwrap_or_default()),
        &rec[REC_MEM..REC_MEM + 10],
    );
    for k in 0..8 {
        let v = F80::from_bytes(&rec[28 + 10 * k..]);
        let _ = write!(s, " {:04x}:{:016x}", v.se, v.sig);
    }
    s
}
