//! Segmented code in the translator: real-mode and 16-bit code, and 32-bit code whose
//! segments have bases and limits, run translated and leave the same state as the
//! interpreter, faults included.

mod common;
use iced_x86::code_asm::*;
use janus_engine::{CpuState, ExecStats, Vcpu};
use janus_soft::cpu::{DS, ES};
use janus_soft::testing::{End, TestMachine, CODE, DATA};
use janus_soft::vcpu::JitMode;

const MODES: [JitMode; 3] = [JitMode::Off, JitMode::After(0), JitMode::After(2)];

/// What a run left: the end, RAX..R15, RFLAGS, RIP, and the statistics.
type Outcome = (End, [u64; 16], u64, u64, ExecStats);

fn outcome(m: &mut TestMachine, end: End) -> Outcome {
    let r = m.regs().clone();
    let x = m.vcpu.exec_stats().expect("stats");
    (end, r.gpr, r.flags.get(), r.rip, x)
}

/// Asserts every translated run agrees with the interpreted one (the first), and that the
/// run translating from the start (the second) translated something; returns the
/// interpreted outcome.
fn agree(runs: &[(Outcome, Vec<u8>)]) -> &Outcome {
    let ((e0, g0, f0, ip0, x0), mem0) = &runs[0];
    assert_eq!(x0.translated_blocks, 0);
    assert!(runs[1].0 .4.translated_blocks > 0, "{:?}", runs[1].0 .4);
    for ((e, g, f, ip, x), mem) in &runs[1..] {
        assert_eq!((e, g, f, ip), (e0, g0, f0, ip0), "{x:?}");
        assert!(mem == mem0, "memory differs");
    }
    &runs[0].0
}

const CS16: u16 = 0x0700;
const DS16: u16 = 0x2000;
const SS16: u16 = 0x3000;
const ES16: u16 = 0x4000;

/// A real-mode program at CS16:0C00 (linear 0x7c00): calls (direct, through a register and
/// through memory), RET imm16, a frame with LEAVE, pushes of registers, immediates, memory and
/// FLAGS, 16-bit addressing ([BX+SI+disp], [BP+disp], an absolute offset), segment overrides
/// (ES, CS), 32-bit operands in 16-bit code, and a stack that wraps below SP = 0.
fn real_mode_program() -> Vec<u8> {
    common::asm(16, 0x0c00, |a| {
        let mut func = a.create_label();
        let mut func2 = a.create_label();
        let mut top = a.create_label();
        let mut ret = a.create_label();
        a.mov(cx, 150u32)?;
        a.xor(ax, ax)?;
        a.xor(dx, dx)?;
        a.mov(bx, 0x100u32)?;
        a.xor(si, si)?;
        a.xor(di, di)?;
        a.set_label(&mut top)?;
        a.push(cx)?;
        a.push(bx)?;
        a.call(func)?;
        a.add(sp, 4)?;
        a.add(dx, ax)?;
        a.inc(word_ptr(bx + 2))?;
        a.mov(word_ptr(0x10), ax)?;
        a.lea(si, ptr(bx + si + 0x10))?;
        a.and(si, 0x3fe)?;
        a.mov(word_ptr(si), cx)?;
        a.movzx(di, byte_ptr(bx + di))?;
        a.imul_3(di, di, 3)?;
        a.xor(dx, di)?;
        a.push(0x12)?;
        a.push(0x1234)?;
        a.push(word_ptr(bx + 2))?;
        a.pop(ax)?;
        a.add(dx, ax)?;
        a.pop(ax)?;
        a.pop(ax)?;
        a.mov(ax, word_ptr(0x20).es())?;
        a.add(ax, word_ptr(0x0c00).cs())?;
        a.mov(word_ptr(0x22).es(), dx)?;
        a.add(dx, ax)?;
        a.push(dx)?;
        a.call(func2)?;
        a.add(dx, ax)?;
        a.mov(eax, dword_ptr(bx + 4))?;
        a.add(eax, 0x12345)?;
        a.mov(dword_ptr(bx + 4), eax)?;
        a.pushf()?;
        a.pop(ax)?;
        a.xor(dx, ax)?;
        a.dec(cx)?;
        a.jnz(top)?;
        // Calls through a register and through memory (a table of two pointers at DS:0x40).
        a.mov(ax, word_ptr(0x40))?;
        a.call(ax)?;
        a.call(word_ptr(0x42))?;
        a.hlt()?;
        // func(p, n): p[1] + n + 3, with a frame and a local.
        a.set_label(&mut func)?;
        a.push(bp)?;
        a.mov(bp, sp)?;
        a.sub(sp, 8)?;
        a.mov(si, word_ptr(bp + 4))?;
        a.mov(ax, word_ptr(si + 2))?;
        a.add(ax, word_ptr(bp + 6))?;
        a.mov(word_ptr(bp - 2), ax)?;
        a.mov(ax, word_ptr(bp - 2))?;
        a.add(ax, 3)?;
        a.leave()?;
        a.ret()?;
        // func2(x): x rotated, popping its argument.
        a.set_label(&mut func2)?;
        a.mov(bp, sp)?;
        a.mov(ax, word_ptr(bp + 2))?;
        a.rol(ax, 5)?;
        a.ret_1(2)?;
        a.set_label(&mut ret)?;
        a.inc(dx)?;
        a.ret()
    })
}

fn real_mode_machine(code: &[u8]) -> TestMachine {
    let mut state = CpuState::power_on();
    for (s, sel) in [
        (&mut state.cs, CS16),
        (&mut state.ds, DS16),
        (&mut state.ss, SS16),
        (&mut state.es, ES16),
    ] {
        s.selector = sel;
        s.base = (sel as u64) << 4;
    }
    state.rip = 0x0c00;
    // SP wraps below 0 after two pushes; ESP's upper half stays as it is.
    state.gprs[4] = 0x1234_0004;
    let m = TestMachine::new(&state, 4 << 20);
    m.write(0x7c00, code);
    m
}

#[test]
fn real_mode_code_translates_and_agrees() {
    let code = real_mode_program();
    // The offset of the final `inc dx; ret` (the call table's target).
    let ret_at = 0x0c00 + code.len() as u16 - 2;
    let mut runs = Vec::new();
    for mode in MODES {
        let mut m = real_mode_machine(&code);
        m.vcpu.set_jit(mode);
        let data = (DS16 as u64) << 4;
        m.write(data + 0x40, &ret_at.to_le_bytes());
        m.write(data + 0x42, &ret_at.to_le_bytes());
        m.write(((ES16 as u64) << 4) + 0x20, &0x5a5au16.to_le_bytes());
        let end = m.run_with(1000, |a| panic!("unexpected {a:?}"));
        let mut mem = m.read((DS16 as u64) << 4, 0x800);
        mem.extend(m.read(((SS16 as u64) << 4) + 0xff00, 0x100));
        mem.extend(m.read((SS16 as u64) << 4, 0x10));
        mem.extend(m.read(((ES16 as u64) << 4) + 0x20, 4));
        runs.push((outcome(&mut m, end), mem));
    }
    let (end, gpr, ..) = agree(&runs);
    assert_eq!(*end, End::Halt);
    assert_eq!(gpr[4], 0x1234_0004, "SP balanced, ESP's upper half kept");
    // Translated from the start, nothing but HLT was left to the interpreter.
    let x = &runs[1].0 .4;
    assert_eq!(x.fallbacks, vec![("hlt".to_string(), 1)], "{x:?}");
}

/// A loop that crosses the end of its 64 KiB code segment both ways: a short jump forward
/// from CS:FFF3 wraps IP to 0013, a near jump back from 001C wraps it to FFF0. CS's base is
/// not page-aligned, so each jump's target would be on the block's own page if IP did not
/// wrap (a chaining candidate); translated exits must follow IP.
#[test]
fn branches_that_wrap_ip_go_where_ip_says() {
    const CS_BASE: u64 = 0x10080;
    let mut runs = Vec::new();
    for mode in MODES {
        let mut state = CpuState::power_on();
        state.cs.selector = (CS_BASE >> 4) as u16;
        state.cs.base = CS_BASE;
        state.rip = 0xfff0;
        let mut m = TestMachine::new(&state, 4 << 20);
        m.vcpu.set_jit(mode);
        // FFF0: inc ax; jmp short +0x20 (FFF3 + 20 = 0013).
        m.write(CS_BASE + 0xfff0, &[0x40, 0xeb, 0x20]);
        // 0013: inc bx; cmp bx, 50; jae +3; jmp near -0x2c (001C - 2C = FFF0); 001C: hlt.
        m.write(
            CS_BASE + 0x13,
            &[0x43, 0x83, 0xfb, 0x32, 0x73, 0x03, 0xe9, 0xd4, 0xff, 0xf4],
        );
        // Where the jumps would land without the wrap: code that leaves a mark.
        m.write(CS_BASE + 0x10013, &[0xbf, 0xad, 0xde, 0xf4]); // mov di, 0xdead; hlt
        m.write(CS_BASE - 0x10, &[0xbf, 0xef, 0xbe, 0xf4]); // mov di, 0xbeef; hlt
        let end = m.run_with(1000, |a| panic!("unexpected {a:?}"));
        runs.push((outcome(&mut m, end), Vec::new()));
    }
    let (end, gpr, _, ip, _) = agree(&runs);
    assert_eq!(*end, End::Halt);
    assert_eq!((gpr[0] & 0xffff, gpr[3] & 0xffff, gpr[7]), (50, 50, 0));
    assert_eq!(*ip, 0x1d);
}

/// 32-bit protected-mode code with DS based at 0x1000: translated, and every access sees
/// the base.
#[test]
fn thirty_two_bit_code_with_a_based_segment_translates_and_agrees() {
    let code = common::asm(32, CODE, |a| {
        let mut top = a.create_label();
        a.mov(ecx, 10u32)?;
        a.set_label(&mut top)?;
        a.add(eax, dword_ptr(DATA as u32))?;
        a.add(dword_ptr(DATA as u32 + 4), ecx)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.hlt()
    });
    let mut runs = Vec::new();
    for mode in MODES {
        let mut m = TestMachine::protected_mode(&code);
        m.vcpu.set_jit(mode);
        m.write(DATA, &1u32.to_le_bytes());
        m.write(DATA + 0x1000, &7u32.to_le_bytes());
        m.regs().seg[DS].base = 0x1000;
        let end = m.run_with(100, |a| panic!("unexpected {a:?}"));
        let mem = m.read(DATA, 0x1010);
        runs.push((outcome(&mut m, end), mem));
    }
    let (end, gpr, ..) = agree(&runs);
    assert_eq!(*end, End::Halt);
    assert_eq!(gpr[0], 70);
    let at = |o: usize| u32::from_le_bytes(runs[0].1[o..o + 4].try_into().unwrap());
    assert_eq!(at(0x1004), 55);
}

/// Reads past a data segment's limit, and a write to a read-only segment, fault (#GP) at the
/// same instruction translated as interpreted, after the same accesses succeeded.
#[test]
fn segment_limits_and_rights_fault_in_translated_code() {
    for read_only in [false, true] {
        let code = common::asm(32, CODE, |a| {
            let mut top = a.create_label();
            a.mov(esi, 0xfe0u32)?;
            a.set_label(&mut top)?;
            a.add(eax, dword_ptr(esi))?;
            if read_only {
                a.mov(dword_ptr(esi).es(), eax)?;
            }
            a.add(esi, 4)?;
            a.cmp(esi, 0x2000)?;
            a.jb(top)?;
            a.hlt()
        });
        let mut runs = Vec::new();
        for mode in MODES {
            let mut m = TestMachine::protected_mode(&code);
            m.vcpu.set_jit(mode);
            for k in 0..0x400u32 {
                m.write(DATA + 4 * k as u64, &k.to_le_bytes());
            }
            let r = m.regs();
            r.seg[DS].base = DATA;
            r.seg[DS].limit = 0xfff;
            r.seg[ES].base = DATA;
            if read_only {
                // Type 1: read-only data, accessed.
                r.seg[ES].attr &= !0xf;
                r.seg[ES].attr |= 0x1;
            }
            // No IDT: the #GP becomes a triple fault, which stops the run where it hit.
            r.idtr.limit = 0;
            let end = m.run_with(100, |a| panic!("unexpected {a:?}"));
            let mem = m.read(DATA, 0x1000);
            runs.push((outcome(&mut m, end), mem));
        }
        let (end, gpr, _, ip, _) = agree(&runs);
        assert_eq!(*end, End::Shutdown, "read_only {read_only}");
        // mov esi, imm32 (5 bytes); add eax, [esi] (2); mov es:[esi], eax.
        let fault_ip = if read_only { CODE + 7 } else { CODE + 5 };
        assert_eq!(*ip, fault_ip, "read_only {read_only}");
        let at = if read_only { 0xfe0 } else { 0x1000 };
        assert_eq!(gpr[6], at, "read_only {read_only}");
    }
}

/// 16-bit code with 32-bit operands on the stack, as gcc -m16 (SeaBIOS) emits it: CALLL,
/// RETL, PUSHL and POPL, PUSHFD, translated like their 16-bit forms.
#[test]
fn thirty_two_bit_stack_operands_in_sixteen_bit_code() {
    let mut code = vec![
        0x66, 0xb9, 0x20, 0, 0, 0, // mov ecx, 32
        0x66, 0xe8, 0x03, 0, 0, 0, // top: calll func (3 bytes past the HLT)
        0xe2, 0xf8, // loop top
        0xf4, // hlt
    ];
    let func = [
        0x66, 0x50, // push eax
        0x66, 0x9c, // pushfd
        0x66, 0x5b, // pop ebx
        0x66, 0x58, // pop eax
        0x66, 0x05, 0x01, 0x00, 0x01, 0x00, // add eax, 0x10001
        0x66, 0x6a, 0x07, // push dword 7
        0x66, 0x5a, // pop edx
        0x66, 0xc3, // retl
    ];
    code.extend_from_slice(&func);
    let mut runs = Vec::new();
    for mode in MODES {
        let mut m = real_mode_machine(&code);
        m.vcpu.set_jit(mode);
        let end = m.run_with(100, |a| panic!("unexpected {a:?}"));
        let mem = m.read(((SS16 as u64) << 4) + 0xfff0, 0x10);
        runs.push((outcome(&mut m, end), mem));
    }
    let (end, gpr, ..) = agree(&runs);
    assert_eq!(*end, End::Halt);
    assert_eq!(gpr[0] & 0xffff_ffff, 32 * 0x10001);
    assert_eq!(gpr[4], 0x1234_0004, "SP balanced");
    let x = &runs[1].0 .4;
    // LOOP and HLT are left to the interpreter; every stack operation ran translated.
    assert!(
        x.fallbacks.iter().all(|(m, _)| m == "hlt" || m == "loop"),
        "{x:?}"
    );
}
