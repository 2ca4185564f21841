//! The translator against the interpreter on whole programs: the same final state, and the
//! translated code really runs.

use janus_soft::testing::{Access, End, TestMachine};
use janus_soft::vcpu::JitMode;

/// Runs `code` (ending in HLT) with the translator in `mode`; returns RAX..R15 and RFLAGS.
fn run(code: &[u8], mode: JitMode) -> ([u64; 16], u64, janus_soft::jit::JitStats) {
    let mut m = TestMachine::long_mode(code);
    m.vcpu.set_jit(mode);
    assert_eq!(m.run(), End::Halt);
    let r = m.regs().clone();
    (r.gpr, r.flags.get(), m.vcpu.jit_stats())
}

#[test]
fn a_counted_loop_translates_and_agrees() {
    // mov ecx, 1000; xor eax, eax; l: add rax, rcx; imul rdx, rax, 3; dec ecx; jnz l; hlt
    let code = [
        0xb9, 0xe8, 0x03, 0x00, 0x00, 0x31, 0xc0, 0x48, 0x01, 0xc8, 0x48, 0x6b, 0xd0, 0x03, 0xff,
        0xc9, 0x75, 0xf5, 0xf4,
    ];
    let (g0, f0, s0) = run(&code, JitMode::Off);
    let (g1, f1, s1) = run(&code, JitMode::After(2));
    assert_eq!(s0.blocks, 0);
    assert!(s1.blocks >= 1, "{s1:?}");
    assert_eq!(g0, g1);
    assert_eq!(f0, f1);
    assert_eq!(g1[0], 500_500);
}

#[test]
fn self_modifying_code_is_seen_by_translated_code() {
    // mov ecx, 100; xor eax, eax
    // l: add eax, 1 ; inc byte [rip - 7] (the ADD's immediate) ; dec ecx ; jnz l ; hlt
    let code = [
        0xb9, 0x64, 0x00, 0x00, 0x00, 0x31, 0xc0, 0x83, 0xc0, 0x01, 0xfe, 0x05, 0xf9, 0xff, 0xff,
        0xff, 0xff, 0xc9, 0x75, 0xf3, 0xf4,
    ];
    for mode in [JitMode::Off, JitMode::After(0), JitMode::After(2)] {
        let (g, _, _) = run(&code, mode);
        assert_eq!(g[0], 5050, "{mode:?}");
    }
}

#[test]
fn mmio_from_translated_code_exits_and_resumes() {
    // mov ecx, 10; mov rbx, 0x1000_0000 (not RAM)
    // l: mov eax, [rbx] ; add edx, eax ; dec ecx ; jnz l ; hlt
    let code = [
        0xb9, 0x0a, 0x00, 0x00, 0x00, 0x48, 0xbb, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00,
        0x8b, 0x03, 0x01, 0xc2, 0xff, 0xc9, 0x75, 0xf8, 0xf4,
    ];
    for mode in [JitMode::Off, JitMode::After(0), JitMode::After(2)] {
        let mut m = TestMachine::long_mode(&code);
        m.vcpu.set_jit(mode);
        let mut reads = 0u64;
        let end = m.run_with(100, |a| match a {
            Access::MmioRead { addr, size } => {
                assert_eq!((addr, size), (0x1000_0000, 4));
                reads += 1;
                reads
            }
            other => panic!("unexpected {other:?}"),
        });
        assert_eq!(end, End::Halt, "{mode:?}");
        assert_eq!(reads, 10, "{mode:?}");
        assert_eq!(m.regs().gpr[2], 55, "{mode:?}");
    }
}

#[test]
fn a_page_fault_in_translated_code_is_precise() {
    // mov ecx, 3 ; l: mov rax, [rbx] ; add rbx, 0x1000 ; dec ecx ; jnz l ; hlt
    // RBX walks into a 2 MiB page that is not present.
    let code = [
        0xb9, 0x03, 0x00, 0x00, 0x00, 0x48, 0x8b, 0x03, 0x48, 0x81, 0xc3, 0x00, 0x10, 0x00, 0x00,
        0xff, 0xc9, 0x75, 0xf2, 0xf4,
    ];
    for mode in [JitMode::Off, JitMode::After(0)] {
        let mut m = TestMachine::long_mode(&code);
        m.vcpu.set_jit(mode);
        m.unmap_large_page(0x40_0000);
        m.regs().gpr[3] = 0x40_0000 - 0x2000;
        // #PF's handler is a HLT; the exception frame shows where the fault happened.
        const IDT: u64 = 0x6000;
        const HANDLER: u64 = 0x30_0000;
        m.write(HANDLER, &[0xf4]);
        let gate = (HANDLER & 0xffff) | (0x08 << 16) | (0x8e << 40) | ((HANDLER >> 16) << 48);
        m.write_u64(IDT + 14 * 16, gate);
        m.write_u64(IDT + 14 * 16 + 8, 0);
        m.regs().idtr.base = IDT;
        m.regs().idtr.limit = 0xfff;
        assert_eq!(m.run_with(100, |a| panic!("unexpected {a:?}")), End::Halt);
        let r = m.regs().clone();
        let frame_rip = m.read_u64(r.gpr[4] + 8);
        assert_eq!(r.cr2, 0x40_0000, "{mode:?}");
        assert_eq!(frame_rip, janus_soft::testing::CODE + 5, "{mode:?}");
        assert_eq!(r.gpr[1], 1, "{mode:?}: two iterations retired");
    }
}

#[test]
fn flags_survive_partial_writers_and_cached_registers() {
    // mov ecx, 50 ; xor eax, eax ; xor ebx, ebx ; mov esi, 0x12345678
    // l: add eax, 0x7fffffff (CF now and then) ; inc edx (keeps CF, which is live)
    //    adc ebx, 0 (reads it) ; rol esi, 5 (writes CF and OF, both dead)
    //    add edi, esi ; dec ecx (keeps CF from the ADD) ; jnz l ; hlt
    let code = [
        0xb9, 0x32, 0x00, 0x00, 0x00, 0x31, 0xc0, 0x31, 0xdb, 0xbe, 0x78, 0x56, 0x34, 0x12, 0x05,
        0xff, 0xff, 0xff, 0x7f, 0xff, 0xc2, 0x83, 0xd3, 0x00, 0xc1, 0xc6, 0x05, 0x01, 0xf7, 0xff,
        0xc9, 0x75, 0xed, 0xf4,
    ];
    let (g0, f0, _) = run(&code, JitMode::Off);
    for mode in [JitMode::After(0), JitMode::After(2)] {
        let (g1, f1, s1) = run(&code, mode);
        assert!(s1.blocks >= 1, "{s1:?}");
        assert_eq!(g0, g1, "{mode:?}");
        assert_eq!(f0, f1, "{mode:?}");
    }
    assert_eq!(g0[2], 50, "EDX counted the iterations");
    assert!(g0[3] > 0, "ADC saw carries");
}

mod common;

use iced_x86::code_asm::*;
use janus_soft::testing::{CODE, DATA};

/// Runs `code` with the translator in `mode` and returns the final XMM registers, MXCSR and
/// GPRs, and the translator's counters.
fn run_sse(code: &[u8], mode: JitMode, data: &[u8]) -> ([u128; 16], u32, [u64; 16], ExecStats) {
    let mut m = TestMachine::long_mode(code);
    m.vcpu.set_jit(mode);
    m.write(DATA, data);
    assert_eq!(m.run_with(1000, |a| panic!("unexpected {a:?}")), End::Halt);
    let r = m.regs().clone();
    let x = m
        .vcpu
        .exec_stats()
        .expect("the soft engine reports how it ran");
    (r.fpu.xmm, r.fpu.mxcsr, r.gpr, x)
}

use janus_engine::{ExecStats, Vcpu};

/// Doubles 1.0, 1.5, 2.0, ... and a 0-terminated string after them.
fn sse_data() -> Vec<u8> {
    let mut d = Vec::new();
    for k in 0..64 {
        d.extend_from_slice(&(1.0f64 + k as f64 * 0.5).to_le_bytes());
    }
    d.extend_from_slice(&[b'j'; 77]);
    d.push(0);
    d.resize(d.len() + 64, 0);
    d
}

#[test]
fn sse_loops_run_translated_and_agree_with_the_interpreter() {
    let code = common::asm(64, CODE, |a| {
        // Scalar: xmm0 = sum of x[k] * x[k] / 3.0 (inexact, so MXCSR.PE becomes set).
        let mut sum = a.create_label();
        a.mov(rbx, DATA)?;
        a.mov(ecx, 64u32)?;
        a.pxor(xmm0, xmm0)?;
        a.mov(rax, 3.0f64.to_bits())?;
        a.movq(xmm3, rax)?;
        a.set_label(&mut sum)?;
        a.movsd_2(xmm1, qword_ptr(rbx))?;
        a.mulsd(xmm1, xmm1)?;
        a.divsd(xmm1, xmm3)?;
        a.addsd(xmm0, xmm1)?;
        a.add(rbx, 8i32)?;
        a.dec(ecx)?;
        a.jnz(sum)?;
        a.cvttsd2si(rdx, xmm0)?;
        // Packed: xmm4 = sum of pairs, with an aligned 16-byte load.
        let mut packed = a.create_label();
        a.mov(rbx, DATA)?;
        a.mov(ecx, 32u32)?;
        a.xorpd(xmm4, xmm4)?;
        a.set_label(&mut packed)?;
        a.addpd(xmm4, xmmword_ptr(rbx))?;
        a.add(rbx, 16i32)?;
        a.dec(ecx)?;
        a.jnz(packed)?;
        // Integer SIMD: the string's length, 16 bytes at a time, as glibc's strlen does.
        let mut scan = a.create_label();
        let mut found = a.create_label();
        a.mov(rdi, DATA + 512)?;
        a.pxor(xmm5, xmm5)?;
        a.set_label(&mut scan)?;
        a.movdqu(xmm6, xmmword_ptr(rdi))?;
        a.pcmpeqb(xmm6, xmm5)?;
        a.pmovmskb(eax, xmm6)?;
        a.test(eax, eax)?;
        a.jnz(found)?;
        a.add(rdi, 16i32)?;
        a.jmp(scan)?;
        a.set_label(&mut found)?;
        a.bsf(eax, eax)?;
        a.add(rax, rdi)?;
        a.mov(rsi, DATA + 512)?;
        a.sub(rax, rsi)?;
        a.comisd(xmm0, xmm3)?;
        a.seta(r8b)?;
        a.hlt()
    });
    let data = sse_data();
    let (x0, csr0, g0, s0) = run_sse(&code, JitMode::Off, &data);
    let (x1, csr1, g1, s1) = run_sse(&code, JitMode::After(0), &data);
    assert_eq!(s0.translated_blocks, 0);
    assert!(s1.translated_blocks >= 3, "{s1:?}");
    // HLT is the only instruction left to the interpreter.
    assert_eq!(s1.fallbacks, vec![("hlt".to_string(), 1)], "{s1:?}");
    assert_eq!(x0, x1);
    assert_eq!(csr0, csr1);
    assert_eq!(g0, g1);
    assert_eq!(g1[0], 77, "strlen");
    assert_eq!(g1[8], 1, "comisd: the sum is above 3.0");
    assert_ne!(csr1 & 0x20, 0, "the inexact division set MXCSR.PE");
    let expect: f64 = (0..64).map(|k| (1.0 + k as f64 * 0.5).powi(2) / 3.0).sum();
    assert_eq!(f64::from_bits(x1[0] as u64), expect);
}

#[test]
fn translated_sse_honours_the_guests_mxcsr_and_faults() {
    // Rounding up (MXCSR.RC = 2) changes 1/3's last bit; an unmasked invalid
    // exception makes the same sqrt of -1 raise #XM (vector 19) instead of giving a NaN.
    let code = common::asm(64, CODE, |a| {
        a.mov(rbx, DATA)?;
        a.ldmxcsr(dword_ptr(rbx))?;
        a.mov(rax, 1.0f64.to_bits())?;
        a.movq(xmm0, rax)?;
        a.mov(rax, 3.0f64.to_bits())?;
        a.movq(xmm1, rax)?;
        a.divsd(xmm0, xmm1)?;
        a.mov(rax, (-1.0f64).to_bits())?;
        a.movq(xmm2, rax)?;
        a.ldmxcsr(dword_ptr(rbx + 4))?;
        a.sqrtsd(xmm2, xmm2)?;
        a.mov(ecx, 1u32)?;
        a.hlt()
    });
    let mut data = Vec::new();
    data.extend_from_slice(&0x5f80u32.to_le_bytes());
    data.extend_from_slice(&(0x1f80u32 & !0x80).to_le_bytes());
    for mode in [JitMode::Off, JitMode::After(0)] {
        let mut m = TestMachine::long_mode(&code);
        m.vcpu.set_jit(mode);
        m.write(DATA, &data);
        const IDT: u64 = 0x6000;
        const HANDLER: u64 = 0x30_0000;
        m.write(HANDLER, &[0xf4]);
        let gate = (HANDLER & 0xffff) | (0x08 << 16) | (0x8e << 40) | ((HANDLER >> 16) << 48);
        m.write_u64(IDT + 19 * 16, gate);
        m.write_u64(IDT + 19 * 16 + 8, 0);
        m.regs().idtr.base = IDT;
        m.regs().idtr.limit = 0xfff;
        assert_eq!(m.run_with(100, |a| panic!("unexpected {a:?}")), End::Halt);
        let r = m.regs().clone();
        let third = f64::from_bits(r.fpu.xmm[0] as u64);
        assert_eq!(
            third.to_bits(),
            (1.0f64 / 3.0).to_bits() + 1,
            "{mode:?}: rounded up"
        );
        assert_eq!(r.rip, HANDLER + 1, "{mode:?}: #XM delivered");
        assert_eq!(r.gpr[1], 0, "{mode:?}: nothing after the sqrt ran");
        assert_eq!(
            r.fpu.xmm[2] as u64,
            (-1.0f64).to_bits(),
            "{mode:?}: no result written"
        );
        assert_ne!(r.fpu.mxcsr & 1, 0, "{mode:?}: IE set");
    }
}

#[test]
fn translated_sse_raises_nm_when_cr0_ts_is_set() {
    let code = common::asm(64, CODE, |a| {
        a.movaps(xmm1, xmm0)?;
        a.mov(rax, cr0)?;
        a.or(rax, 8i32)?;
        a.mov(cr0, rax)?;
        a.movaps(xmm2, xmm1)?;
        a.mov(ecx, 1u32)?;
        a.hlt()
    });
    for mode in [JitMode::Off, JitMode::After(0)] {
        let mut m = TestMachine::long_mode(&code);
        m.vcpu.set_jit(mode);
        const IDT: u64 = 0x6000;
        const HANDLER: u64 = 0x30_0000;
        m.write(HANDLER, &[0xf4]);
        let gate = (HANDLER & 0xffff) | (0x08 << 16) | (0x8e << 40) | ((HANDLER >> 16) << 48);
        m.write_u64(IDT + 7 * 16, gate);
        m.write_u64(IDT + 7 * 16 + 8, 0);
        m.regs().idtr.base = IDT;
        m.regs().idtr.limit = 0xfff;
        m.regs().fpu.xmm[0] = 0x1234;
        assert_eq!(m.run_with(100, |a| panic!("unexpected {a:?}")), End::Halt);
        let r = m.regs().clone();
        assert_eq!(r.rip, HANDLER + 1, "{mode:?}: #NM delivered");
        assert_eq!(r.fpu.xmm[1], 0x1234, "{mode:?}");
        assert_eq!(
            r.fpu.xmm[2], 0,
            "{mode:?}: the MOVAPS after CR0.TS did not run"
        );
        assert_eq!(r.gpr[1], 0, "{mode:?}");
    }
}

/// A 32-bit program with stack frames, calls (direct, through a register and through
/// memory), RET imm16, pushes of registers, immediates and memory, one-byte INC/DEC, memory
/// offset moves, scaled addressing, ESP as an operand, and SSE.
fn program32() -> Vec<u8> {
    let table = DATA + 0x800;
    common::asm(32, CODE, |a| {
        let mut func = a.create_label();
        let mut func2 = a.create_label();
        let mut top = a.create_label();
        let mut done = a.create_label();
        a.mov(ebx, DATA as u32)?;
        a.mov(ecx, 200u32)?;
        a.xor(eax, eax)?;
        a.xor(edx, edx)?;
        a.set_label(&mut top)?;
        a.push(ecx)?;
        a.push(ebx)?;
        a.call(func)?;
        a.add(esp, 8)?;
        a.add(edx, eax)?;
        a.inc(dword_ptr(ebx + 4))?;
        a.mov(dword_ptr(DATA as u32 + 8), eax)?;
        a.lea(esi, dword_ptr(ebx + ecx * 4 + 16))?;
        a.mov(dword_ptr(esi), ecx)?;
        a.movzx(edi, byte_ptr(ebx + ecx))?;
        a.imul_3(edi, edi, 3)?;
        a.xor(edx, edi)?;
        a.push(0x12i32)?;
        a.push(0x1234_5678i32)?;
        a.push(dword_ptr(ebx + 4))?;
        a.pop(eax)?;
        a.add(edx, eax)?;
        a.pop(eax)?;
        a.pop(eax)?;
        a.mov(eax, esp)?;
        a.sub(eax, 4)?;
        a.push(edx)?;
        a.call(func2)?;
        a.add(edx, eax)?;
        a.dec(ecx)?;
        a.test(ecx, ecx)?;
        a.jnz(top)?;
        // Calls through a register and through memory.
        a.mov(eax, dword_ptr(table as u32))?;
        a.call(eax)?;
        a.call(dword_ptr(table as u32 + 4))?;
        a.movd(xmm0, edx)?;
        a.paddd(xmm0, xmm0)?;
        a.movd(edi, xmm0)?;
        a.jmp(done)?;
        // func(p, n): p[1] + n + 3, with a frame and a local.
        a.set_label(&mut func)?;
        a.push(ebp)?;
        a.mov(ebp, esp)?;
        a.sub(esp, 16)?;
        a.mov(eax, dword_ptr(ebp + 8))?;
        a.mov(eax, dword_ptr(eax + 4))?;
        a.add(eax, dword_ptr(ebp + 12))?;
        a.mov(dword_ptr(esp + 4), eax)?;
        a.mov(eax, dword_ptr(esp + 4))?;
        a.add(eax, 3)?;
        a.leave()?;
        a.ret()?;
        // func2(x): x rotated, popping its argument.
        a.set_label(&mut func2)?;
        a.mov(eax, dword_ptr(esp + 4))?;
        a.rol(eax, 5)?;
        a.ret_1(4)?;
        a.set_label(&mut done)?;
        a.hlt()
    })
}

#[test]
fn thirty_two_bit_code_translates_and_agrees() {
    let code = program32();
    // The table of call targets: both entries point at a RET placed in the data area.
    let ret_at = DATA as u32 + 0x900;
    let mut results = Vec::new();
    for mode in [JitMode::Off, JitMode::After(0), JitMode::After(2)] {
        let mut m = TestMachine::protected_mode(&code);
        m.vcpu.set_jit(mode);
        m.write(DATA + 0x900, &[0xc3]);
        m.write(DATA + 0x800, &ret_at.to_le_bytes());
        m.write(DATA + 0x804, &ret_at.to_le_bytes());
        assert_eq!(
            m.run_with(1000, |a| panic!("unexpected {a:?}")),
            End::Halt,
            "{mode:?}"
        );
        let r = m.regs().clone();
        let x = m.vcpu.exec_stats().expect("stats");
        results.push((r.gpr, r.flags.get(), m.read(DATA, 0x400), x));
    }
    let (g0, f0, d0, x0) = &results[0];
    assert_eq!(x0.translated_blocks, 0);
    for (g, f, d, x) in &results[1..] {
        assert!(x.translated_blocks >= 4, "{x:?}");
        assert_eq!(g, g0);
        assert_eq!(f, f0);
        assert_eq!(d, d0);
    }
    // With the translator on from the start, the 32-bit code ran translated: only HLT (and
    // nothing else) was left to the interpreter.
    let (_, _, _, x) = &results[1];
    assert_eq!(x.fallbacks, vec![("hlt".to_string(), 1)], "{x:?}");
    assert_eq!(g0[4], janus_soft::testing::STACK_TOP, "ESP balanced");
}

#[test]
fn translated_rdtsc_reads_the_guests_tsc() {
    // WRMSR sets the guest TSC to 0x1234_5678 << 32; RDTSC and RDTSCP read it back a little
    // later, split into EDX:EAX (upper halves clear), with TSC_AUX in ECX.
    let code = common::asm(64, CODE, |a| {
        a.mov(ecx, 0x10u32)?;
        a.mov(edx, 0x1234_5678u32)?;
        a.xor(eax, eax)?;
        a.wrmsr()?;
        a.mov(ecx, 0xc000_0103u32)?;
        a.mov(eax, 7u32)?;
        a.xor(edx, edx)?;
        a.wrmsr()?;
        a.mov(rax, -1i64)?;
        a.mov(rdx, -1i64)?;
        a.rdtsc()?;
        a.mov(r8, rax)?;
        a.mov(r9, rdx)?;
        a.rdtscp()?;
        a.hlt()
    });
    for mode in [JitMode::Off, JitMode::After(0)] {
        let mut m = TestMachine::long_mode(&code);
        m.vcpu.set_jit(mode);
        assert_eq!(m.run_with(100, |a| panic!("unexpected {a:?}")), End::Halt);
        let g = m.regs().gpr;
        let first = g[9] << 32 | g[8];
        let second = g[2] << 32 | g[0];
        assert_eq!(g[9] >> 32, 0, "{mode:?}");
        assert_eq!(
            g[2], 0x1234_5678,
            "{mode:?}: EDX, no more than a second later"
        );
        assert!(first >= 0x1234_5678 << 32 && second >= first, "{mode:?}");
        assert!(second - (0x1234_5678 << 32) < 1 << 32, "{mode:?}");
        assert_eq!(g[1], 7, "{mode:?}: TSC_AUX");
    }
    let mut m = TestMachine::long_mode(&code);
    m.vcpu.set_jit(JitMode::After(0));
    m.run_with(100, |a| panic!("unexpected {a:?}"));
    let x = m.vcpu.exec_stats().expect("stats");
    assert!(
        !x.fallbacks.iter().any(|(n, _)| n.starts_with("rdtsc")),
        "RDTSC ran translated: {x:?}"
    );
}

#[test]
fn bit_tests_with_a_register_offset_reach_the_right_word() {
    // BTS/BTR/BTC/BT on memory with the bit offset in a register address the operand the
    // offset lands in, forwards and backwards from the base (the offset is signed).
    let code = common::asm(64, CODE, |a| {
        let mut top = a.create_label();
        a.mov(rbx, DATA + 0x800)?;
        a.mov(rcx, -700i64)?;
        a.xor(edx, edx)?;
        a.set_label(&mut top)?;
        a.bts(qword_ptr(rbx), rcx)?;
        a.adc(edx, 0)?;
        a.btc(dword_ptr(rbx + 8), ecx)?;
        a.adc(edx, 0)?;
        a.bt(word_ptr(rbx), cx)?;
        a.adc(edx, 0)?;
        a.btr(qword_ptr(rbx + 16), rcx)?;
        a.adc(edx, 0)?;
        a.add(rcx, 37)?;
        a.cmp(rcx, 900)?;
        a.jl(top)?;
        a.hlt()
    });
    let mut results = Vec::new();
    for mode in [JitMode::Off, JitMode::After(0)] {
        let mut m = TestMachine::long_mode(&code);
        m.vcpu.set_jit(mode);
        m.write(DATA, &[0x5a; 0x1000]);
        assert_eq!(m.run_with(100, |a| panic!("unexpected {a:?}")), End::Halt);
        let x = m.vcpu.exec_stats().expect("stats");
        results.push((m.regs().gpr, m.read(DATA, 0x1000), x));
    }
    assert_eq!(results[0].0, results[1].0);
    assert_eq!(results[0].1, results[1].1);
    assert_eq!(
        results[1].2.fallbacks,
        vec![("hlt".to_string(), 1)],
        "{:?}",
        results[1].2
    );
}

/// x87 and MMX code in a loop runs translated (nothing left to the interpreter but HLT) and
/// leaves the same registers, x87 state and memory as the interpreter.
#[test]
fn x87_and_mmx_run_translated_and_agree() {
    use iced_x86::code_asm::*;
    let data = janus_soft::testing::DATA;
    let mut a = CodeAssembler::new(64).unwrap();
    let mut l = a.create_label();
    a.mov(rbx, data).unwrap();
    a.mov(ecx, 200).unwrap();
    a.fld1().unwrap();
    a.fldz().unwrap();
    a.set_label(&mut l).unwrap();
    // st0 += st1; st1 *= 1.5 (from memory).
    a.fadd_2(st0, st1).unwrap();
    a.fxch(st0, st1).unwrap();
    a.fmul(qword_ptr(rbx)).unwrap();
    a.fxch(st0, st1).unwrap();
    a.fst(qword_ptr(rbx + 8)).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(l).unwrap();
    // Then MMX (which takes over the x87 registers), in a loop of its own.
    let mut m2 = a.create_label();
    a.fstp(st0).unwrap();
    a.fstp(st0).unwrap();
    a.pxor(mm0, mm0).unwrap();
    a.mov(eax, 3).unwrap();
    a.movd(mm1, eax).unwrap();
    a.mov(ecx, 200).unwrap();
    a.set_label(&mut m2).unwrap();
    a.paddd(mm0, mm1).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(m2).unwrap();
    a.movq(qword_ptr(rbx + 16), mm0).unwrap();
    a.emms().unwrap();
    a.fnstsw(ax).unwrap();
    a.hlt().unwrap();
    let code = a.assemble(janus_soft::testing::CODE).unwrap();
    let mut results = Vec::new();
    for mode in [JitMode::Off, JitMode::After(1)] {
        let mut m = TestMachine::long_mode(&code);
        m.write(data, &1.5f64.to_le_bytes());
        m.vcpu.set_jit(mode);
        assert_eq!(m.run(), End::Halt, "{mode:?}");
        let r = m.regs().clone();
        let x = m.vcpu.exec_stats().expect("stats");
        results.push((
            r.gpr[0],
            r.fpu.st,
            r.fpu.fsw,
            r.fpu.ftw,
            m.read(data, 24),
            x,
        ));
    }
    let (a0, regs0, sw0, tw0, d0, _) = &results[0];
    let (a1, regs1, sw1, tw1, d1, x1) = &results[1];
    assert_eq!((a0, regs0, sw0, tw0, d0), (a1, regs1, sw1, tw1, d1));
    assert_eq!(
        u64::from_le_bytes(d1[16..24].try_into().unwrap()),
        600,
        "mm0 = 200 * 3"
    );
    assert_eq!(x1.fallbacks, vec![("hlt".to_string(), 1)], "{x1:?}");
}
