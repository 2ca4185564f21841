//! FXSAVE/FXRSTOR against the host, and their round trip through [`Fpu`].

use super::harness::{assemble, Rng};
use crate::fpu::Fpu;
use crate::testing::{End, TestMachine, DATA};
use iced_x86::code_asm::*;
use std::arch::asm;

#[repr(C, align(16))]
struct Area([u8; 512]);

/// An FXSAVE64 image of `f`, written independently of the code under test.
fn image64(f: &Fpu) -> Area {
    let mut b = [0u8; 512];
    b[0..2].copy_from_slice(&f.fcw.to_le_bytes());
    b[2..4].copy_from_slice(&f.fsw.to_le_bytes());
    b[4] = f.ftw;
    b[6..8].copy_from_slice(&f.fop.to_le_bytes());
    b[8..16].copy_from_slice(&f.fip.to_le_bytes());
    b[16..24].copy_from_slice(&f.fdp.to_le_bytes());
    b[24..28].copy_from_slice(&f.mxcsr.to_le_bytes());
    for i in 0..8 {
        b[32 + 16 * i..42 + 16 * i].copy_from_slice(&f.st[(f.top() + i) & 7][..10]);
    }
    for i in 0..16 {
        b[160 + 16 * i..176 + 16 * i].copy_from_slice(&f.xmm[i].to_le_bytes());
    }
    Area(b)
}

/// Loads `image` into the host with FXRSTOR64, then returns what FXSAVE and FXSAVE64 store
/// (into areas pre-filled with 0xAA, to see which bytes they leave alone).
fn host_fxsave(image: &Area) -> (Area, Area) {
    let mut host = Area([0; 512]);
    let mut legacy = Area([0xaa; 512]);
    let mut wide = Area([0xaa; 512]);
    // SAFETY: all four areas are live, 16-byte aligned, 512 bytes; the host's own x87/SSE
    // state is saved first and restored last, so the block leaves it as it found it (the
    // loaded image's pending x87 exception is never acted on: no x87 instruction runs).
    unsafe {
        asm!(
            "fxsave64 [{host}]",
            "fxrstor64 [{img}]",
            "fxsave [{legacy}]",
            "fxsave64 [{wide}]",
            "fxrstor64 [{host}]",
            host = in(reg) host.0.as_mut_ptr(),
            img = in(reg) image.0.as_ptr(),
            legacy = in(reg) legacy.0.as_mut_ptr(),
            wide = in(reg) wide.0.as_mut_ptr(),
            options(nostack),
        );
    }
    (legacy, wide)
}

/// A random register file. FSW reports a pending invalid-operation exception that FCW
/// unmasks (ES and B set) because AMD hosts store FIP/FDP/FOP only then; FIP/FDP are 32-bit so
/// the legacy format (which on the host has no selector for them) matches.
fn random_fpu(rng: &mut Rng) -> Fpu {
    let mut f = Fpu {
        fcw: 0x037e | (rng.below(4) as u16) << 10,
        fsw: 0x8081 | (rng.below(8) as u16) << 11 | (rng.next() as u16 & 0x4700),
        ftw: rng.next() as u8,
        fop: rng.next() as u16 & 0x7ff,
        fip: rng.next() & 0xffff_ffff,
        fdp: rng.next() & 0xffff_ffff,
        mxcsr: rng.next() as u32 & 0xffff,
        ..Fpu::default()
    };
    for r in f.st.iter_mut() {
        r[..8].copy_from_slice(&rng.next().to_le_bytes());
        r[8..10].copy_from_slice(&(rng.next() as u16).to_le_bytes());
    }
    for x in f.xmm.iter_mut() {
        *x = rng.vec();
    }
    f
}

/// Runs `insn` (addressing DATA through RBX) then HLT with `fpu` loaded and DATA filled with
/// `fill`; returns the machine.
fn run(insn: &[u8], fpu: &Fpu, fill: &[u8; 512]) -> TestMachine {
    let mut code = insn.to_vec();
    code.push(0xf4);
    let mut m = TestMachine::long_mode(&code);
    m.write(DATA, fill);
    m.regs().gpr[3] = DATA;
    m.regs().fpu = fpu.clone();
    assert_eq!(m.run(), End::Halt);
    m
}

/// The bytes that must match: all but MXCSR_MASK (the host's may have more bits).
fn comparable(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    v[28..32].fill(0);
    v
}

#[test]
fn fxsave_matches_the_host() {
    let mut rng = Rng::new(0xf5);
    for case in 0..64 {
        let f = random_fpu(&mut rng);
        let (legacy, wide) = host_fxsave(&image64(&f));
        for (insn, want) in [
            (assemble(|a| a.fxsave(ptr(rbx))), &legacy),
            (assemble(|a| a.fxsave64(ptr(rbx))), &wide),
        ] {
            let m = run(&insn, &f, &[0xaa; 512]);
            let got = m.read(DATA, 512);
            assert_eq!(
                comparable(&got),
                comparable(&want.0),
                "case {case} {insn:x?}"
            );
        }
    }
}

#[test]
fn fxrstor_of_a_host_image_round_trips() {
    let mut rng = Rng::new(0xf6);
    for case in 0..64 {
        let f = random_fpu(&mut rng);
        let (legacy, wide) = host_fxsave(&image64(&f));
        for (insn, image) in [
            (assemble(|a| a.fxrstor(ptr(rbx))), &legacy),
            (assemble(|a| a.fxrstor64(ptr(rbx))), &wide),
        ] {
            let mut m = run(&insn, &Fpu::default(), &image.0);
            let got = m.regs().fpu.clone();
            assert_eq!(
                format!("{got:?}"),
                format!("{f:?}"),
                "case {case} {insn:x?}"
            );
        }
    }
}

#[test]
fn fxsave_fxrstor_round_trip_in_both_formats() {
    let mut rng = Rng::new(0xf7);
    for _ in 0..32 {
        let mut f = random_fpu(&mut rng);
        // 64-bit pointers survive the 64-bit format, pointer + selector the legacy one.
        f.fip = rng.next() & 0xffff_ffff_ffff;
        f.fdp = rng.next() & 0xffff_ffff_ffff;
        for (save, restore) in [
            (
                assemble(|a| a.fxsave(ptr(rbx))),
                assemble(|a| a.fxrstor(ptr(rbx))),
            ),
            (
                assemble(|a| a.fxsave64(ptr(rbx))),
                assemble(|a| a.fxrstor64(ptr(rbx))),
            ),
        ] {
            let image: [u8; 512] = run(&save, &f, &[0; 512])
                .read(DATA, 512)
                .try_into()
                .unwrap();
            let mut m = run(&restore, &Fpu::default(), &image);
            assert_eq!(format!("{:?}", m.regs().fpu), format!("{f:?}"), "{save:x?}");
        }
    }
}

#[test]
fn fxrstor_with_reserved_mxcsr_bits_faults_without_loading() {
    let f = Fpu {
        mxcsr: 0x1_0000,
        fcw: 0x0040,
        ..Fpu::default()
    };
    let image = image64(&f);
    let insn = assemble(|a| a.fxrstor64(ptr(rbx)));
    let mut code = insn.clone();
    code.push(0xf4);
    let mut m = TestMachine::long_mode(&code);
    m.write(DATA, &image.0);
    m.regs().gpr[3] = DATA;
    // No IDT: the #GP becomes a triple fault, and the state is the one before the instruction.
    assert_eq!(m.run(), End::Shutdown);
    assert_eq!(m.regs().fpu.fcw, 0x037f);
    assert_eq!(m.regs().fpu.mxcsr, 0x1f80);
}
