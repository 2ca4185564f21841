//! AVX2 gathers (which the differential suite leaves out: their addresses come from vector
//! registers): which elements are loaded, the mask, the upper halves, and resuming after a
//! fault.

use crate::testing::{End, TestMachine, DATA};

/// A machine at `--cpu v3` with the AVX state enabled, `code` then HLT.
fn machine(code: &[u8]) -> TestMachine {
    let mut c = code.to_vec();
    c.push(0xf4);
    let mut m = TestMachine::long_mode(&c);
    m.enable_avx();
    for i in 0..64u64 {
        m.write_u64(DATA + 8 * i, 0x1000_0000_0000_0000 | i);
    }
    m
}

fn dwords(v: [u32; 4]) -> u128 {
    v.iter()
        .enumerate()
        .fold(0, |a, (k, d)| a | (*d as u128) << (32 * k))
}

#[test]
fn vpgatherdd_loads_selected_elements_and_clears_the_mask() {
    // vpgatherdd xmm0, [rbx+xmm1*4], xmm2
    let mut m = machine(&[0xc4, 0xe2, 0x69, 0x90, 0x04, 0x8b]);
    let r = m.regs();
    r.gpr[3] = DATA;
    r.fpu.xmm[0] = dwords([0xaaaa_aaaa; 4]);
    r.fpu.ymm_hi[0] = u128::MAX;
    // Dword indexes 6, 0, 9, 2 (the low halves of qwords 3, 0, 4, 1).
    r.fpu.xmm[1] = dwords([6, 0, 9, 2]);
    r.fpu.xmm[2] = dwords([0x8000_0000, 0xffff_ffff, 0x7fff_ffff, 0x8000_0000]);
    r.fpu.ymm_hi[2] = u128::MAX;
    assert_eq!(m.run(), End::Halt);
    let f = &m.regs().fpu;
    assert_eq!(f.xmm[0], dwords([3, 0, 0xaaaa_aaaa, 1]));
    assert_eq!(f.xmm[2], 0, "mask cleared");
    assert_eq!(
        (f.ymm_hi[0], f.ymm_hi[2]),
        (0, 0),
        "VEX.128 clears the upper halves"
    );
}

#[test]
fn vpgatherqq_256_and_a_fault_leaves_the_done_elements_done() {
    // vpgatherqq ymm0, [rbx+ymm1*8], ymm2
    let mut m = machine(&[0xc4, 0xe2, 0xed, 0x91, 0x04, 0xcb]);
    let r = m.regs();
    r.gpr[3] = DATA;
    // Element 2's index makes a non-canonical address: #GP after elements 0 and 1.
    r.fpu.xmm[1] = 5 | (7u128 << 64);
    r.fpu.ymm_hi[1] = (1u128 << 60) | (2u128 << 64);
    r.fpu.xmm[2] = u128::MAX;
    r.fpu.ymm_hi[2] = u128::MAX;
    m.run();
    let f = &m.regs().fpu;
    let q = 0x1000_0000_0000_0000u128;
    assert_eq!(
        f.xmm[0],
        (q | 5) | ((q | 7) << 64),
        "elements 0 and 1 loaded"
    );
    assert_eq!(f.xmm[2], 0, "their mask elements cleared");
    assert_eq!(f.ymm_hi[2], u128::MAX, "the rest still selected, to resume");
}

#[test]
fn a_gather_naming_one_register_twice_is_ud() {
    // vpgatherdd xmm1, [rbx+xmm1*4], xmm2: destination = index.
    let mut m = machine(&[0xc4, 0xe2, 0x69, 0x90, 0x0c, 0x8b]);
    m.regs().gpr[3] = DATA;
    m.regs().fpu.xmm[2] = u128::MAX;
    m.run();
    assert_eq!(m.regs().fpu.xmm[2], u128::MAX, "nothing done");
}
