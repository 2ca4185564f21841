//! XSAVE/XRSTOR in the standard format, XSETBV's rules, and VZEROUPPER (`--cpu v3`).

use crate::testing::{End, TestMachine, DATA};

fn machine(code: &[u8]) -> TestMachine {
    let mut c = code.to_vec();
    c.push(0xf4);
    let mut m = TestMachine::long_mode(&c);
    m.enable_avx();
    let r = m.regs();
    r.gpr[3] = DATA;
    r.gpr[0] = 7;
    r.gpr[2] = 0;
    m
}

// xsave64 [rbx]; xrstor64 [rbx]
const XSAVE64: [u8; 4] = [0x48, 0x0f, 0xae, 0x23];
const XRSTOR64: [u8; 4] = [0x48, 0x0f, 0xae, 0x2b];

#[test]
fn xsave_then_xrstor_round_trips_the_avx_state() {
    let mut code = XSAVE64.to_vec();
    // vzeroall: everything the area holds is gone...
    code.extend([0xc5, 0xfc, 0x77]);
    // ...until XRSTOR brings it back.
    code.extend(XRSTOR64);
    let mut m = machine(&code);
    for n in 0..16 {
        m.regs().fpu.xmm[n] = 0x1111 * (n as u128 + 1);
        m.regs().fpu.ymm_hi[n] = 0x2222 * (n as u128 + 1);
    }
    m.regs().fpu.mxcsr = 0x1f80 | (1 << 13);
    assert_eq!(m.run(), End::Halt);
    let f = &m.regs().fpu;
    for n in 0..16 {
        assert_eq!(f.xmm[n], 0x1111 * (n as u128 + 1));
        assert_eq!(f.ymm_hi[n], 0x2222 * (n as u128 + 1));
    }
    assert_eq!(f.mxcsr, 0x1f80 | (1 << 13));
    // XSTATE_BV says x87, SSE and AVX are in the area; the upper halves are at 576.
    assert_eq!(m.read_u64(DATA + 512), 7);
    assert_eq!(m.read_u64(DATA + 576 + 16), 0x2222 * 2);
}

#[test]
fn xrstor_of_components_not_in_the_area_initializes_them() {
    let mut m = machine(&XRSTOR64);
    // An all-zero area: XSTATE_BV = 0, MXCSR 0x1f80 (loaded whatever XSTATE_BV says).
    m.write_u64(DATA + 24, 0x1f80);
    m.regs().fpu.xmm[3] = 5;
    m.regs().fpu.ymm_hi[3] = 6;
    m.regs().fpu.fcw = 0x27f;
    assert_eq!(m.run(), End::Halt);
    let f = &m.regs().fpu;
    assert_eq!((f.xmm[3], f.ymm_hi[3], f.fcw), (0, 0, 0x37f));
}

#[test]
fn xrstor_refuses_a_bad_header_and_xsetbv_bad_values() {
    // XSTATE_BV with a bit XCR0 does not enable: #GP, nothing loaded.
    let mut m = machine(&XRSTOR64);
    m.write_u64(DATA + 512, 1 << 9);
    m.regs().fpu.xmm[1] = 9;
    m.run();
    assert_eq!(m.regs().fpu.xmm[1], 9);
    // xsetbv with AVX but not SSE: #GP, XCR0 unchanged.
    let mut m = machine(&[0x0f, 0x01, 0xd1]);
    let r = m.regs();
    (r.gpr[0], r.gpr[1], r.gpr[2]) = (0b101, 0, 0);
    m.run();
    assert_eq!(m.regs().xcr0, crate::cpuid::XCR0_V3);
    // A good value takes.
    let mut m = machine(&[0x0f, 0x01, 0xd1]);
    let r = m.regs();
    (r.gpr[0], r.gpr[1], r.gpr[2]) = (0b011, 0, 0);
    assert_eq!(m.run(), End::Halt);
    assert_eq!(m.regs().xcr0, 0b011);
}

#[test]
fn vex_forms_need_osxsave_and_the_avx_state() {
    // vpxor ymm0, ymm0, ymm0 with XCR0 lacking AVX: #UD, nothing written.
    let mut m = machine(&[0xc5, 0xfd, 0xef, 0xc0]);
    m.regs().xcr0 = 0b011;
    m.regs().fpu.xmm[0] = 1;
    m.run();
    assert_eq!(m.regs().fpu.xmm[0], 1);
    let mut m = machine(&[0xc5, 0xfd, 0xef, 0xc0]);
    m.regs().fpu.xmm[0] = 1;
    m.regs().fpu.ymm_hi[0] = 1;
    assert_eq!(m.run(), End::Halt);
    assert_eq!((m.regs().fpu.xmm[0], m.regs().fpu.ymm_hi[0]), (0, 0));
}
