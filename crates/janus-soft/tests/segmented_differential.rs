//! The translator against the interpreter in every code size: random instruction sequences
//! of 16-bit code (real mode and protected mode) and 32-bit code (flat, and with based,
//! limited segments) run translated from their first instruction and interpreted, and must
//! leave the same state: registers, flags, RIP, the x87/SSE state (FOP, FIP and FDP
//! included), memory, and the exception taken.
//!
//! The host-CPU differential suite (`differential.rs`) checks each instruction form's
//! semantics in 64-bit code against the host; what changes with the code size (address
//! size and wrap, segment bases and limits, operand-size defaults, stack width, 16-bit
//! register merges) is translated by the templates checked here against the interpreter,
//! which the mode tests (`modes.rs`, `faults.rs`) check against the architecture.
//!
//! Programs are straight-line code (no branches, segment loads, port I/O, privileged
//! state changes, time reads, or instructions that leave flags undefined), decoded from random bytes biased towards prefixes and the
//! two-byte map; each exception vector has a HLT handler of its own, so a fault ends the run
//! where it happened. Deterministic: `JANUS_SEG_DIFF_SEED` and `JANUS_SEG_DIFF_RUNS` change
//! the seed and the count per mode.

mod common;
use common::Rng;
use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register};
use janus_engine::{CpuState, ExecStats, Vcpu};
use janus_soft::cpu::{Seg, CS, DS, ES, FS, GS, SS};
use janus_soft::testing::{End, TestMachine, DATA};
use janus_soft::vcpu::JitMode;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Real mode, 16-bit code and stack, segments at different bases.
    Real,
    /// 16-bit protected-mode code: segments with bases and 64 KiB limits, a 16-bit stack.
    Pm16,
    /// 32-bit protected-mode code with based segments limited to 1 MiB.
    Pm32,
    /// 32-bit code with flat CS/DS/ES/SS (FS and GS based and limited).
    Flat32,
}

impl Mode {
    fn bits(self) -> u32 {
        match self {
            Mode::Real | Mode::Pm16 => 16,
            _ => 32,
        }
    }
}

/// Segment bases (16-bit and based modes): code, then DS, ES, SS, FS, GS, 64 KiB apart.
const CODE_BASE: u64 = 0x1_0000;
const BASES: [(usize, u64); 5] = [
    (DS, 0x2_0000),
    (ES, 0x3_0000),
    (SS, 0x4_0000),
    (FS, 0x5_0000),
    (GS, 0x6_0000),
];
/// Where the program starts: an offset in CS, or in flat code an address far from the data.
const START: u64 = 0x100;
const FLAT_CODE: u64 = DATA + 0x100_0000;
/// Exception handlers: vector v's is a HLT at HANDLERS + v.
const HANDLERS: u64 = 0x600;
const IDT: u64 = 0x9000;
/// The memory compared: the segments' 64 KiB (1 MiB for `Pm32`), and flat code's data.
const COMPARED: [(u64, usize); 2] = [(0x2_0000, 0x5_0000), (DATA, 0x2_0000)];

/// An instruction the programs may contain: straight-line, deterministic, and leaving the
/// segments, the mode and the descriptor tables alone (so every run ends).
fn allowed(i: &Instruction) -> bool {
    use Mnemonic::*;
    if i.flow_control() != FlowControl::Next {
        return false;
    }
    let has_mem = (0..i.op_count()).any(|k| i.op_kind(k) == OpKind::Memory);
    let system_reg = (0..i.op_count()).any(|k| {
        i.op_kind(k) == OpKind::Register && {
            let r = i.op_register(k);
            r.is_cr() || r.is_dr() || r.is_tr() || (r.is_segment_register() && k == 0)
        }
    });
    // A write through CS could change the program itself.
    let cs_mem = has_mem && i.segment_prefix() == Register::CS;
    // Flags the architecture leaves undefined come out of the host as the host leaves them
    // and out of the interpreter as it computes them: both are right, and a later reader
    // (PUSHF, LAHF, a branch) would tell them apart.
    // (So do shifts and rotates by more than one, which iced-x86 cannot tell apart.)
    let count = match i.mnemonic() {
        Shl | Shr | Sar | Sal | Rol | Ror | Rcl | Rcr => Some(i.op_kind(1)),
        Shld | Shrd => Some(i.op_kind(2)),
        _ => None,
    };
    let multi_bit = count.is_some_and(|k| k != OpKind::Immediate8 || i.immediate8() != 1);
    let undefined_flags = i.rflags_undefined() != 0 || multi_bit;
    !undefined_flags
        && (!system_reg
        && !cs_mem
        && !matches!(
            i.mnemonic(),
            In | Out
                | Insb
                | Insw
                | Insd
                | Outsb
                | Outsw
                | Outsd
                | Hlt
                | Rdtsc
                | Rdtscp
                | Rdrand
                | Rdseed
                | Rdpmc
                | Lgdt
                | Lidt
                | Lldt
                | Ltr
                | Lmsw
                | Clts
                | Invd
                | Wbinvd
                | Invlpg
                | Wrmsr
                | Rdmsr
                | Xsetbv
                | Pop
                | Lds
                | Les
                | Lfs
                | Lgs
                | Lss
                | Monitor
                | Mwait
                | Xrstor
                | Xrstors
                | Fxrstor
                | Rsm
        )
        // POP is allowed except into a segment register (POP SS, DS, ...).
        || i.mnemonic() == Pop && !i.op0_register().is_segment_register() && !cs_mem)
}

/// `n` random instructions of `bits`-bit code, then HLT.
fn program(rng: &mut Rng, bits: u32, n: usize) -> Vec<u8> {
    let mut code = Vec::new();
    let mut count = 0;
    while count < n {
        let mut b = Vec::with_capacity(16);
        for _ in 0..rng.below(3) {
            b.push([0x66, 0x67, 0x26, 0x36, 0x3e, 0x64, 0x65, 0xf2, 0xf3][rng.below(9) as usize]);
        }
        if rng.chance(35) {
            b.push(0x0f);
        }
        while b.len() < 15 {
            b.push(rng.next() as u8);
        }
        let mut d = Decoder::with_ip(bits, &b, 0, DecoderOptions::NONE);
        let i = d.decode();
        if i.is_invalid() || !allowed(&i) {
            continue;
        }
        code.extend_from_slice(&b[..i.len()]);
        count += 1;
    }
    code.push(0xf4);
    code
}

fn data_seg(base: u64, limit: u32, big: bool) -> Seg {
    Seg {
        selector: 0x10,
        base,
        limit,
        // Read/write data, accessed; S, P; D/B.
        attr: 0x93 | if big { 1 << 14 } else { 0 },
        unusable: false,
    }
}

/// A machine in `mode` with `code` at the start, random registers, SSE enabled, and a HLT
/// handler for every exception.
fn machine(mode: Mode, code: &[u8], rng: &mut Rng) -> TestMachine {
    let mut m = if mode == Mode::Real {
        let mut state = CpuState::power_on();
        state.cs.selector = (CODE_BASE >> 4) as u16;
        state.cs.base = CODE_BASE;
        state.cr0 |= janus_engine::cpu::bits::CR0_NE | janus_engine::cpu::bits::CR0_MP;
        state.cr4 |= janus_engine::cpu::bits::CR4_OSFXSR | janus_engine::cpu::bits::CR4_OSXMMEXCPT;
        let m = TestMachine::new(&state, 4 << 20);
        for v in 0..32u64 {
            // IVT entry v: 0000:HANDLERS+v.
            m.write(4 * v, &((HANDLERS + v) as u32).to_le_bytes());
        }
        m
    } else {
        let m = TestMachine::protected_mode(&[]);
        for v in 0..32u64 {
            // 32-bit interrupt gate to 0x08:HANDLERS+v.
            let h = HANDLERS + v;
            let gate = (h & 0xffff) | (0x08 << 16) | (0x8e << 40) | ((h >> 16) << 48);
            m.write_u64(IDT + 8 * v, gate);
        }
        m
    };
    m.write(HANDLERS, &[0xf4; 32]);
    let r = m.regs();
    match mode {
        Mode::Real => {
            for (s, base) in BASES {
                r.seg[s] = Seg::real((base >> 4) as u16, false);
            }
        }
        Mode::Pm16 | Mode::Pm32 => {
            let big = mode == Mode::Pm32;
            let limit = if big { 0xf_ffff } else { 0xffff };
            for (s, base) in BASES {
                r.seg[s] = data_seg(base, limit, big);
            }
            r.seg[CS].base = CODE_BASE;
            // (Translated code needs CS to cover every IP of its size.)
            r.seg[CS].limit = if big { u32::MAX } else { 0xffff };
            if !big {
                r.seg[CS].attr &= !(1 << 14);
            }
        }
        Mode::Flat32 => {
            r.seg[FS] = data_seg(0x5_0000, 0xffff, true);
            r.seg[GS] = data_seg(0x6_0000, 0xf_ffff, true);
        }
    }
    if mode != Mode::Real {
        r.idtr.base = IDT;
        r.idtr.limit = 32 * 8 - 1;
    }
    for (k, g) in r.gpr.iter_mut().enumerate() {
        let v = rng.next();
        *g = match mode {
            // Upper halves random too: 16-bit writes must keep them.
            Mode::Real | Mode::Pm16 => v,
            Mode::Pm32 => {
                v & if rng.chance(80) {
                    0xf_ffff
                } else {
                    u32::MAX as u64
                }
            }
            Mode::Flat32 if k == 4 => DATA + 0x1_0000 + (v & 0xfffc),
            Mode::Flat32 => DATA + (v & 0xffff),
        };
    }
    if mode != Mode::Flat32 && rng.chance(80) {
        // A stack pointer with room below it, most of the time.
        r.gpr[4] = (r.gpr[4] & !0xffff) | 0x8000 | (rng.next() & 0x7ffe);
    }
    r.flags.load((rng.next() & 0x8d5) | 2);
    for x in r.fpu.xmm.iter_mut() {
        *x = (rng.next() as u128) << 64 | rng.next() as u128;
    }
    r.rip = if mode == Mode::Flat32 {
        FLAT_CODE
    } else {
        START
    };
    let at = if mode == Mode::Flat32 {
        FLAT_CODE
    } else {
        CODE_BASE + START
    };
    m.write(at, code);
    m
}

#[derive(Debug, PartialEq)]
struct Outcome {
    end: End,
    gpr: [u64; 16],
    rflags: u64,
    rip: u64,
    x87: (u16, u16, u8, u16, u64, u64, [[u8; 16]; 8]),
    sse: (u32, [u128; 16]),
}

fn run(mode: Mode, code: &[u8], seed: u64, jit: bool) -> (Outcome, Vec<u8>, ExecStats) {
    let mut rng = Rng::new(seed);
    let mut m = machine(mode, code, &mut rng);
    for (at, len) in COMPARED {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        m.write(at, &bytes);
    }
    m.vcpu
        .set_jit(if jit { JitMode::After(0) } else { JitMode::Off });
    let end = m.run_with(10_000, |_| 0xffff_ffff);
    let r = m.regs().clone();
    let f = &r.fpu;
    let out = Outcome {
        end,
        gpr: r.gpr,
        rflags: r.flags.get(),
        rip: r.rip,
        x87: (f.fcw, f.fsw, f.ftw, f.fop, f.fip, f.fdp, f.st),
        sse: (f.mxcsr, f.xmm),
    };
    let mut mem = Vec::new();
    for (at, len) in COMPARED {
        mem.extend(m.read(at, len));
    }
    (out, mem, m.vcpu.exec_stats().expect("stats"))
}

/// What differs between the interpreted run (`a`) and the translated one (`b`).
fn differences(a: &Outcome, b: &Outcome, mem_a: &[u8], mem_b: &[u8]) -> String {
    let mut d = Vec::new();
    if a.end != b.end {
        d.push(format!("end {:?} / {:?}", a.end, b.end));
    }
    for k in 0..16 {
        if a.gpr[k] != b.gpr[k] {
            d.push(format!("gpr{k} {:#x} / {:#x}", a.gpr[k], b.gpr[k]));
        }
    }
    if a.rflags != b.rflags {
        d.push(format!("rflags {:#x} / {:#x}", a.rflags, b.rflags));
    }
    if a.rip != b.rip {
        d.push(format!("rip {:#x} / {:#x}", a.rip, b.rip));
    }
    if a.x87 != b.x87 {
        let (x, y) = (&a.x87, &b.x87);
        d.push(format!(
            "x87 fcw/fsw/ftw/fop/fip/fdp {:x?} / {:x?}",
            (x.0, x.1, x.2, x.3, x.4, x.5),
            (y.0, y.1, y.2, y.3, y.4, y.5)
        ));
    }
    if a.sse != b.sse {
        d.push("sse state".into());
    }
    if let Some(k) = (0..mem_a.len()).find(|&k| mem_a[k] != mem_b[k]) {
        let region = if k < COMPARED[0].1 {
            COMPARED[0].0 + k as u64
        } else {
            COMPARED[1].0 + (k - COMPARED[0].1) as u64
        };
        d.push(format!(
            "memory from {region:#x}: {:02x?} / {:02x?}",
            &mem_a[k..(k + 8).min(mem_a.len())],
            &mem_b[k..(k + 8).min(mem_b.len())]
        ));
    }
    format!(
        "interpreted / translated (ended at {:#x}): {}",
        a.rip,
        d.join("; ")
    )
}

fn disassemble(code: &[u8], bits: u32) -> String {
    use iced_x86::{Formatter, IntelFormatter};
    let mut f = IntelFormatter::new();
    let mut out = String::new();
    for i in Decoder::with_ip(bits, code, START, DecoderOptions::NONE) {
        let mut s = String::new();
        f.format(&i, &mut s);
        out.push_str(&format!("  {:04x}: {s}\n", i.ip()));
    }
    out
}

#[test]
fn every_code_size_translates_as_it_interprets() {
    let seed = std::env::var("JANUS_SEG_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5365_6744_6966u64);
    let runs: u64 = std::env::var("JANUS_SEG_DIFF_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 40 } else { 300 });
    let mut rng = Rng::new(seed);
    let mut failures = Vec::new();
    for mode in [Mode::Real, Mode::Pm16, Mode::Pm32, Mode::Flat32] {
        let (mut native, mut fallback, mut faults) = (0u64, 0u64, 0u64);
        for _ in 0..runs {
            let code = program(&mut rng, mode.bits(), 24);
            let state_seed = rng.next();
            let (a, mem_a, _) = run(mode, &code, state_seed, false);
            let (b, mem_b, x) = run(mode, &code, state_seed, true);
            let fell_back: u64 = x.fallbacks.iter().map(|(_, n)| n).sum();
            fallback += fell_back;
            native += x.translated_blocks;
            if a.rip < HANDLERS + 32 && a.rip > HANDLERS {
                faults += 1;
            }
            if a != b || mem_a != mem_b {
                failures.push(format!(
                    "{mode:?}: {}\n{}",
                    differences(&a, &b, &mem_a, &mem_b),
                    disassemble(&code, mode.bits())
                ));
            }
        }
        eprintln!(
            "segmented differential [{mode:?}]: {runs} programs, {native} blocks translated, \
             {fallback} instructions left to the interpreter, {faults} ended in an exception"
        );
        assert!(
            native >= runs,
            "{mode:?}: the translator translated too little"
        );
    }
    assert!(
        failures.is_empty(),
        "{} programs differ:\n{}",
        failures.len(),
        failures
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
