//! Exceptions: #XM/#UD for unmasked SIMD exceptions (checked against the host, which raises
//! SIGFPE), #GP for misalignment and reserved MXCSR bits, #NM, #UD, #MF, and that a faulting
//! instruction changes nothing.

use super::harness::{assemble, load, unload, Native, Rng, State};
use crate::cpu::{Dtr, CR4_OSFXSR, CR4_OSXMMEXCPT};
use crate::testing::{End, TestMachine, CODE, DATA};
use iced_x86::code_asm::*;
use janus_engine::cpu::bits;
use std::cell::Cell;
use std::sync::Once;

const HANDLERS: u64 = CODE + 0x800;
const IDT: u64 = DATA + 0x1000;
/// R15 before any handler runs.
const NO_FAULT: u64 = 0xdead;

/// A machine running `insn` then HLT, with an IDT whose handler for vector v does
/// `mov r15, v; hlt`.
fn machine(insn: &[u8]) -> TestMachine {
    let mut code = insn.to_vec();
    code.push(0xf4);
    let mut m = TestMachine::long_mode(&code);
    for v in 0..32u64 {
        let h = HANDLERS + 8 * v;
        m.write(h, &[0x41, 0xbf, v as u8, 0, 0, 0, 0xf4]);
        let lo = (h & 0xffff) | 0x08 << 16 | 0x8e00 << 32 | ((h >> 16) & 0xffff) << 48;
        m.write_u64(IDT + 16 * v, lo);
        m.write_u64(IDT + 16 * v + 8, h >> 32);
    }
    let r = m.regs();
    r.idtr = Dtr {
        base: IDT,
        limit: 32 * 16 - 1,
    };
    r.gpr[15] = NO_FAULT;
    m
}

/// Runs `insn` from `s` (after `setup`); returns the vector taken (or None), the error code
/// pushed and the state after.
fn fault_of(
    insn: &[u8],
    s: &State,
    setup: impl FnOnce(&mut TestMachine),
) -> (Option<u8>, u64, State) {
    let mut m = machine(insn);
    load(&mut m, s);
    setup(&mut m);
    assert_eq!(m.run(), End::Halt);
    let mark = m.regs().gpr[15];
    let stack = m.regs().gpr[4];
    let vector = (mark != NO_FAULT).then_some(mark as u8);
    let with_error = matches!(vector, Some(8 | 10..=14 | 17));
    let error = if with_error { m.read_u64(stack) } else { 0 };
    if let Some(v) = vector {
        // The saved RIP is the faulting instruction's.
        let rip_slot = stack + if with_error { 8 } else { 0 };
        assert_eq!(m.read_u64(rip_slot), CODE, "vector {v}: saved RIP");
    }
    (vector, error, unload(&mut m))
}

/// The state with the flags a fault would have set in MXCSR: the rest must be unchanged.
fn with_mxcsr(s: &State, mxcsr: u32) -> State {
    State { mxcsr, ..s.clone() }
}

thread_local! {
    /// MXCSR at the last SIGFPE on this thread.
    static TRAPPED: Cell<Option<u32>> = const { Cell::new(None) };
}

/// SIGFPE from an unmasked SIMD exception in a native run: record MXCSR, then mask every
/// exception in the interrupted context so the instruction completes when it restarts.
extern "C" fn on_sigfpe(_: i32, _: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext_t whose fpregs points at the saved FPU
    // state of the interrupted thread.
    unsafe {
        let uc = ctx as *mut libc::ucontext_t;
        let fp = (*uc).uc_mcontext.fpregs;
        TRAPPED.with(|t| t.set(Some((*fp).mxcsr)));
        (*fp).mxcsr |= 0x1f80;
    }
}

fn install_sigfpe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: installs a handler that only touches a thread-local cell and the signal
        // context; the sigaction struct is fully initialized.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigfpe as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigaction(libc::SIGFPE, &sa, std::ptr::null_mut());
        }
    });
}

/// The native run of `insn` from `s`: Err(MXCSR at the trap) if it raised an unmasked SIMD
/// exception.
fn native_trapping(native: &Native, s: &State) -> Result<State, u32> {
    TRAPPED.with(|t| t.set(None));
    let out = native.run(s);
    match TRAPPED.with(|t| t.get()) {
        Some(mxcsr) => Err(mxcsr),
        None => Ok(out),
    }
}

#[test]
fn unmasked_exceptions_match_the_host() {
    install_sigfpe();
    let list: Vec<(&str, Vec<u8>)> = vec![
        ("addps", assemble(|a| a.addps(xmm1, xmm2))),
        ("subpd", assemble(|a| a.subpd(xmm1, xmm2))),
        ("mulps", assemble(|a| a.mulps(xmm1, xmm2))),
        ("mulpd", assemble(|a| a.mulpd(xmm1, xmm2))),
        ("divps", assemble(|a| a.divps(xmm1, xmm2))),
        ("divsd", assemble(|a| a.divsd(xmm1, xmm2))),
        ("mulss", assemble(|a| a.mulss(xmm1, xmm2))),
        ("addsd", assemble(|a| a.addsd(xmm1, xmm2))),
        ("sqrtps", assemble(|a| a.sqrtps(xmm1, xmm2))),
        ("minps", assemble(|a| a.minps(xmm1, xmm2))),
        ("cmpps", assemble(|a| a.cmpps(xmm1, xmm2, 1))),
        ("cvtpd2ps", assemble(|a| a.cvtpd2ps(xmm1, xmm2))),
        ("cvtsd2ss", assemble(|a| a.cvtsd2ss(xmm1, xmm2))),
        ("cvtps2dq", assemble(|a| a.cvtps2dq(xmm1, xmm2))),
        ("cvtsi2ss", assemble(|a| a.cvtsi2ss(xmm1, rax))),
        ("cvttsd2si", assemble(|a| a.cvttsd2si(rax, xmm1))),
        ("comiss", assemble(|a| a.comiss(xmm1, xmm2))),
        ("ucomisd", assemble(|a| a.ucomisd(xmm1, xmm2))),
    ];
    let mut rng = Rng::new(0xfeed);
    let mut traps = 0;
    for (name, insn) in &list {
        let native = Native::new(insn);
        for case in 0..400 {
            let mut s = rng.state();
            // Unmask a random set of exceptions; tiny and huge operands make over- and
            // underflow likely.
            s.mxcsr &= !((rng.next() as u32 & 0x3f) << 7);
            if rng.below(3) == 0 {
                let scale = [
                    0x0010_0000_0000_0000u128,
                    0x7fe0_0000_0000_0000,
                    0x0080_0000,
                ];
                s.xmm[2] ^= scale[rng.below(3) as usize] << (64 * rng.below(2));
            }
            let (vector, _, got) = fault_of(insn, &s, |_| {});
            match native_trapping(&native, &s) {
                Ok(want) => {
                    assert_eq!(
                        vector, None,
                        "{name} case {case}: host did not trap\n{s:x?}"
                    );
                    assert_eq!(got, want, "{name} case {case}\n{s:x?}");
                }
                Err(mxcsr) => {
                    traps += 1;
                    assert_eq!(vector, Some(19), "{name} case {case}: host trapped\n{s:x?}");
                    assert_eq!(got, with_mxcsr(&s, mxcsr), "{name} case {case}\n{s:x?}");
                }
            }
        }
    }
    assert!(
        traps > 100,
        "only {traps} traps: the test exercises too little"
    );
}

/// 0 * inf in lane 0 with invalid unmasked.
fn invalid_state() -> State {
    let mut s = State::default();
    s.xmm[1] = 0x3f80_0000_3f80_0000_3f80_0000_0000_0000;
    s.xmm[2] = 0x3f80_0000_3f80_0000_3f80_0000_7f80_0000;
    s.mxcsr = 0x1f80 & !(1 << 7);
    s
}

#[test]
fn unmasked_exception_raises_xm_and_keeps_the_destination() {
    let s = invalid_state();
    let (vector, _, got) = fault_of(&assemble(|a| a.mulps(xmm1, xmm2)), &s, |_| {});
    assert_eq!(vector, Some(19));
    assert_eq!(got, with_mxcsr(&s, s.mxcsr | 1));
}

#[test]
fn unmasked_exception_without_osxmmexcpt_raises_ud() {
    let s = invalid_state();
    let (vector, _, got) = fault_of(&assemble(|a| a.mulps(xmm1, xmm2)), &s, |m| {
        m.regs().cr4 &= !CR4_OSXMMEXCPT;
    });
    assert_eq!(vector, Some(6));
    assert_eq!(got, with_mxcsr(&s, s.mxcsr | 1));
}

#[test]
fn misaligned_16_byte_operands_raise_gp() {
    let s = State::default();
    for insn in [
        assemble(|a| a.movaps(xmm1, xmmword_ptr(rbx + 8))),
        assemble(|a| a.movaps(xmmword_ptr(rbx + 4), xmm1)),
        assemble(|a| a.addps(xmm1, xmmword_ptr(rbx + 1))),
        assemble(|a| a.paddb(xmm1, xmmword_ptr(rbx + 8))),
        assemble(|a| a.movntdq(xmmword_ptr(rbx + 8), xmm1)),
        assemble(|a| a.fxsave(ptr(rbx + 8))),
        assemble(|a| a.fxrstor64(ptr(rbx + 4))),
    ] {
        let (vector, error, got) = fault_of(&insn, &s, |_| {});
        assert_eq!((vector, error), (Some(13), 0), "{insn:x?}");
        assert_eq!(got, s);
    }
    // The unaligned forms and 8-byte operands do not care.
    for insn in [
        assemble(|a| a.movups(xmm1, xmmword_ptr(rbx + 8))),
        assemble(|a| a.movdqu(xmmword_ptr(rbx + 3), xmm1)),
        assemble(|a| a.addsd(xmm1, qword_ptr(rbx + 1))),
        assemble(|a| a.paddb(mm1, qword_ptr(rbx + 1))),
    ] {
        assert_eq!(fault_of(&insn, &s, |_| {}).0, None, "{insn:x?}");
    }
}

#[test]
fn cr0_ts_raises_nm() {
    let s = State::default();
    for insn in [
        assemble(|a| a.addps(xmm1, xmm2)),
        assemble(|a| a.paddb(mm1, mm2)),
        assemble(|a| a.emms()),
        assemble(|a| a.fxsave(ptr(rbx))),
        assemble(|a| a.ldmxcsr(dword_ptr(rbx))),
    ] {
        let (vector, _, got) = fault_of(&insn, &s, |m| m.regs().cr0 |= bits::CR0_TS);
        assert_eq!(vector, Some(7), "{insn:x?}");
        assert_eq!(got, s);
    }
}

#[test]
fn cr0_em_and_cr4_osfxsr() {
    let s = State::default();
    let sse = assemble(|a| a.addps(xmm1, xmm2));
    let mmx = assemble(|a| a.paddb(mm1, mm2));
    let fx = assemble(|a| a.fxsave(ptr(rbx)));
    let em = |m: &mut TestMachine| m.regs().cr0 |= bits::CR0_EM;
    assert_eq!(fault_of(&sse, &s, em).0, Some(6));
    assert_eq!(fault_of(&mmx, &s, em).0, Some(6));
    assert_eq!(fault_of(&fx, &s, em).0, Some(7));
    let no_fxsr = |m: &mut TestMachine| m.regs().cr4 &= !CR4_OSFXSR;
    assert_eq!(fault_of(&sse, &s, no_fxsr).0, Some(6));
    assert_eq!(fault_of(&mmx, &s, no_fxsr).0, None);
}

#[test]
fn pending_x87_exception_raises_mf_for_mmx() {
    let s = State {
        fcw: 0x037e,
        fsw: 0x8081,
        ..State::default()
    };
    let (vector, _, got) = fault_of(&assemble(|a| a.paddb(mm1, mm2)), &s, |_| {});
    assert_eq!(vector, Some(16));
    assert_eq!(got, s);
    assert_eq!(
        fault_of(&assemble(|a| a.addps(xmm1, xmm2)), &s, |_| {}).0,
        None
    );
}

#[test]
fn reserved_mxcsr_bits_raise_gp() {
    let mut s = State::default();
    s.data[..4].copy_from_slice(&0x1_1f80u32.to_le_bytes());
    let (vector, error, got) = fault_of(&assemble(|a| a.ldmxcsr(dword_ptr(rbx))), &s, |_| {});
    assert_eq!((vector, error), (Some(13), 0));
    assert_eq!(got, s);
    // A valid value loads (DAZ included: MXCSR_MASK is 0xffff).
    s.data[..4].copy_from_slice(&0xffc0u32.to_le_bytes());
    let (vector, _, got) = fault_of(&assemble(|a| a.ldmxcsr(dword_ptr(rbx))), &s, |_| {});
    assert_eq!((vector, got.mxcsr), (None, 0xffc0));
}

#[test]
fn faulting_store_writes_nothing() {
    // Unmap the 2 MiB page at 6 MiB; a 16-byte store straddling into it must not write the
    // half that is mapped.
    let s = State {
        xmm: [u128::MAX; 16],
        ..State::default()
    };
    let insn = assemble(|a| a.movdqu(xmmword_ptr(rbx), xmm1));
    let (vector, _, _) = fault_of(&insn, &s, |m| {
        m.write_u64(0x3000 + 3 * 8, 0);
        m.regs().gpr[3] = 0x5f_fff8;
    });
    assert_eq!(vector, Some(14));
    let mut m = machine(&insn);
    m.write_u64(0x3000 + 3 * 8, 0);
    load(&mut m, &s);
    m.regs().gpr[3] = 0x5f_fff8;
    assert_eq!(m.run(), End::Halt);
    assert_eq!(m.read_u64(0x5f_fff8), 0);
}

#[test]
fn levels_gate_extensions() {
    use crate::cpuid::{supported, Isa, Level};
    // VEX forms are in no level the engine offers.
    let s = State::default();
    let vex = assemble(|a| a.vaddps(xmm1, xmm2, xmm3));
    let (vector, _, got) = fault_of(&vex, &s, |_| {});
    assert_eq!(vector, Some(6));
    assert_eq!(got, s);
    // SSE3, SSSE3 and SSE4.1 forms are #UD at v1 and run at v2.
    let v1 = Isa::from_cpuid(&supported(1_000_000_000, Level::V1));
    let v2 = Isa::from_cpuid(&supported(1_000_000_000, Level::V2));
    for insn in [
        assemble(|a| a.haddps(xmm1, xmm2)),
        assemble(|a| a.pshufb(xmm1, xmm2)),
        assemble(|a| a.pextrw(word_ptr(rbx), xmm1, 1)),
    ] {
        let i = iced_x86::Decoder::new(64, &insn, iced_x86::DecoderOptions::NONE).decode();
        assert!(!crate::decode::lower(&i, 64, v1).implemented, "{insn:x?}");
        assert!(crate::decode::lower(&i, 64, v2).implemented, "{insn:x?}");
    }
}
