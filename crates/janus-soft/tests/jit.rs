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
