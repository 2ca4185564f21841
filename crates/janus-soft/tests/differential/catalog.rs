//! Which instruction forms (iced `Code`s) the suite runs, and why the others are left out.
//!
//! Every legacy-encoded `Code` valid in 64-bit mode is found by decoding every opcode of the
//! one-, two- and three-byte maps with every ModRM byte under every combination of the
//! 66/67/F2/F3/REX.W prefixes; the first decoding gives the form's template instruction.

use iced_x86::{Code, CpuidFeature, Decoder, DecoderOptions, EncodingKind, Instruction, Mnemonic};
use iced_x86::{Encoder, OpKind, Register};
use std::collections::BTreeMap;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    Integer,
    String,
    X87,
    Sse,
    /// VEX forms on vector registers (AVX, AVX2, FMA, F16C).
    Avx,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Integer => "integer",
            Family::String => "string",
            Family::X87 => "x87",
            Family::Sse => "SSE/SSE2/MMX",
            Family::Avx => "AVX/AVX2/FMA/F16C",
        }
    }
}

pub struct Form {
    pub code: Code,
    pub template: Instruction,
    pub family: Family,
    /// The engine implements it (`decode::lower(..).implemented`).
    pub implemented: bool,
    /// Left out of the comparison, and why.
    pub excluded: Option<&'static str>,
    /// The host CPU has every CPUID feature the form needs.
    pub host_ok: bool,
    /// Register operands fixed by the encoding (AL in `add al, imm8`, ST0 in `fadd st0, sti`).
    pub fixed: [bool; 5],
}

/// An implemented form the suite does not run, with the reason.
pub struct Exclusion {
    pub mnemonics: &'static [Mnemonic],
    pub codes: &'static [Code],
    pub why: &'static str,
}

/// Instruction forms left out of the comparison (whole forms). Conditions the suite handles
/// per state (undefined flags, undefined results for some inputs) are in [`PER_STATE_RULES`].
pub const EXCLUSIONS: &[Exclusion] = &[
    Exclusion {
        mnemonics: &[
            Mnemonic::In,
            Mnemonic::Out,
            Mnemonic::Insb,
            Mnemonic::Insw,
            Mnemonic::Insd,
            Mnemonic::Outsb,
            Mnemonic::Outsw,
            Mnemonic::Outsd,
        ],
        codes: &[],
        why: "port I/O: #GP at CPL 3 natively (IOPL 0); the guest runs at CPL 0 with no devices",
    },
    Exclusion {
        mnemonics: &[Mnemonic::Hlt, Mnemonic::Cli, Mnemonic::Sti],
        codes: &[],
        why: "privileged or IOPL-sensitive: #GP at CPL 3 natively, allowed at the guest's CPL 0",
    },
    Exclusion {
        mnemonics: &[Mnemonic::Int, Mnemonic::Into],
        codes: &[],
        why: "INT n: the host kernel's IDT gates (DPL 0: #GP at CPL 3) differ from the test IDT",
    },
    Exclusion {
        mnemonics: &[Mnemonic::Int1],
        codes: &[],
        why: "INT1 (ICEBP) is a trap (#DB after the instruction) but this host (a VM) reports it at the INT1; hypervisors differ",
    },
    Exclusion {
        mnemonics: &[
            Mnemonic::Iret,
            Mnemonic::Iretd,
            Mnemonic::Iretq,
            Mnemonic::Retf,
        ],
        codes: &[
            Code::Jmp_m1616,
            Code::Jmp_m1632,
            Code::Jmp_m1664,
            Code::Call_m1616,
            Code::Call_m1632,
            Code::Call_m1664,
        ],
        why: "far transfers load CS/SS from selectors, which differ (host 0x33/0x2b at CPL 3, guest 0x08/0x10 at CPL 0)",
    },
    Exclusion {
        mnemonics: &[
            Mnemonic::Syscall,
            Mnemonic::Sysret,
            Mnemonic::Sysretq,
            Mnemonic::Sysenter,
            Mnemonic::Sysexit,
            Mnemonic::Sysexitq,
        ],
        codes: &[],
        why: "system calls enter the host kernel",
    },
    Exclusion {
        mnemonics: &[
            Mnemonic::Lgdt,
            Mnemonic::Lidt,
            Mnemonic::Lldt,
            Mnemonic::Ltr,
            Mnemonic::Lmsw,
            Mnemonic::Clts,
            Mnemonic::Invlpg,
            Mnemonic::Invd,
            Mnemonic::Wbinvd,
            Mnemonic::Swapgs,
            Mnemonic::Rdmsr,
            Mnemonic::Wrmsr,
            Mnemonic::Rdpmc,
        ],
        codes: &[
            Code::Mov_r64_cr,
            Code::Mov_cr_r64,
            Code::Mov_r64_dr,
            Code::Mov_dr_r64,
        ],
        why: "CPL 0 only (#GP natively)",
    },
    Exclusion {
        mnemonics: &[
            Mnemonic::Sgdt,
            Mnemonic::Sidt,
            Mnemonic::Sldt,
            Mnemonic::Str,
            Mnemonic::Smsw,
        ],
        codes: &[],
        why: "system-register reads: UMIP makes them #GP on the host, and the values differ anyway",
    },
    Exclusion {
        mnemonics: &[
            Mnemonic::Lar,
            Mnemonic::Lsl,
            Mnemonic::Verr,
            Mnemonic::Verw,
        ],
        codes: &[],
        why: "descriptor queries read the host's GDT/LDT natively and the test GDT in the guest",
    },
    Exclusion {
        mnemonics: &[Mnemonic::Cpuid],
        codes: &[],
        why: "the engine reports its own CPUID model, not the host's",
    },
    Exclusion {
        mnemonics: &[Mnemonic::Rdtsc, Mnemonic::Rdtscp, Mnemonic::Rdpid],
        codes: &[],
        why: "time-stamp counter and TSC_AUX differ by design",
    },
    Exclusion {
        mnemonics: &[
            Mnemonic::Lss,
            Mnemonic::Lfs,
            Mnemonic::Lgs,
            Mnemonic::Lds,
            Mnemonic::Les,
        ],
        codes: &[
            Code::Mov_rm16_Sreg,
            Code::Mov_r32m16_Sreg,
            Code::Mov_r64m16_Sreg,
            Code::Mov_Sreg_rm16,
            Code::Mov_Sreg_r32m16,
            Code::Mov_Sreg_r64m16,
            Code::Pushw_FS,
            Code::Pushq_FS,
            Code::Popw_FS,
            Code::Popq_FS,
            Code::Pushw_GS,
            Code::Pushq_GS,
            Code::Popw_GS,
            Code::Popq_GS,
        ],
        why: "segment registers hold different selectors (and FS/GS bases) natively and in the guest",
    },
    Exclusion {
        mnemonics: &[],
        codes: &[Code::Bswap_r16],
        why: "BSWAP with a 16-bit operand: result undefined",
    },
    Exclusion {
        mnemonics: &[
            Mnemonic::Vpgatherdd,
            Mnemonic::Vpgatherdq,
            Mnemonic::Vpgatherqd,
            Mnemonic::Vpgatherqq,
            Mnemonic::Vgatherdps,
            Mnemonic::Vgatherdpd,
            Mnemonic::Vgatherqps,
            Mnemonic::Vgatherqpd,
        ],
        codes: &[],
        why: "gathers: their addresses come from vector registers, which the suite does not aim at the test area (unit tests in exec/sse/masked.rs)",
    },
    Exclusion {
        mnemonics: &[Mnemonic::Rdrand, Mnemonic::Rdseed],
        codes: &[],
        why: "random numbers",
    },
    Exclusion {
        mnemonics: &[
            Mnemonic::Rdfsbase,
            Mnemonic::Rdgsbase,
            Mnemonic::Wrfsbase,
            Mnemonic::Wrgsbase,
        ],
        codes: &[],
        why: "FS/GS bases differ (the host's TLS)",
    },
    Exclusion {
        mnemonics: &[
            Mnemonic::Xgetbv,
            Mnemonic::Xsetbv,
            Mnemonic::Xsave,
            Mnemonic::Xsave64,
            Mnemonic::Xsaveopt,
            Mnemonic::Xsaveopt64,
            Mnemonic::Xsavec,
            Mnemonic::Xsavec64,
            Mnemonic::Xsaves,
            Mnemonic::Xsaves64,
            Mnemonic::Xrstor,
            Mnemonic::Xrstor64,
            Mnemonic::Xrstors,
            Mnemonic::Xrstors64,
        ],
        codes: &[],
        why: "XSAVE layouts depend on XCR0, which differs between host and guest",
    },
    Exclusion {
        mnemonics: &[
            Mnemonic::Monitor,
            Mnemonic::Mwait,
            Mnemonic::Monitorx,
            Mnemonic::Mwaitx,
            Mnemonic::Umonitor,
            Mnemonic::Umwait,
            Mnemonic::Tpause,
            Mnemonic::Xbegin,
            Mnemonic::Xend,
            Mnemonic::Xabort,
            Mnemonic::Xtest,
        ],
        codes: &[],
        why: "waiting and transactional-memory instructions: timing- and host-dependent",
    },
];

/// What the suite does per state instead of leaving whole forms out.
pub const PER_STATE_RULES: &[(&str, &str)] = &[
    ("RFLAGS", "compared under the mask of iced's rflags_undefined() for the form; CF/PF/AF/ZF/SF/OF and DF only"),
    ("SHL/SHR/SAL/SAR count", "count 0 (masked): all flags compared (unchanged); count 1: AF undefined; count > 1: AF and OF undefined; SHL/SHR with an 8/16-bit operand and count >= width: CF undefined too"),
    ("ROL/ROR/RCL/RCR count", "OF undefined unless the masked count is 1; count 0: flags unchanged"),
    ("SHLD/SHRD", "count 0: flags unchanged; else AF undefined, OF undefined unless count 1; 16-bit forms get counts <= 16 only (result undefined above)"),
    ("BSF/BSR source 0", "destination undefined (not compared); TZCNT/LZCNT likewise where the engine's level runs them as BSF/BSR (below v3, see native_substitute)"),
    ("REPNE MOVS/STOS/LODS", "not generated (F2 with these is reserved)"),
    ("x87 C0/C2/C3", "not compared where the SDM leaves them undefined (all but compares, FXAM, FPREM*, FINIT/FLDENV/FRSTOR/FXRSTOR/FSAVE; C2 for FSIN/FCOS/FSINCOS/FPTAN); C1 also for FNOP, FLDCW, FNSTCW, FNSTSW, FNSTENV, FNCLEX, FFREE, FWAIT"),
    ("x87 transcendentals", "F2XM1, FYL2X(P1), FPTAN, FPATAN, FSIN, FCOS, FSINCOS: results within 2^13 units of the last place; C1 and PE not compared (Intel and AMD differ in the last bits)"),
    ("F2XM1/FYL2XP1", "ST0 is set within the range where the result is defined (|x| <= 1; |x| < 1 - sqrt(2)/2)"),
    ("RCPPS/RCPSS/RSQRTPS/RSQRTSS", "approximations: lanes within 2^12 float units of the last place (vendors use different tables)"),
    ("FNSTENV/FNSAVE/FXSAVE images", "instruction/data pointers, opcode, FCS/FDS, reserved fields, MXCSR_MASK (a CPU model property) and FXSAVE's reserved/available tail not compared"),
    ("MOVSXD r16, m16", "not placed against the unmapped page: AMD hosts read 32 bits, Intel (and the engine) 16"),
    ("instruction fetch across the code page's end", "1% of plain instructions are placed so they end in an unmapped page (#PF on fetch); not UD0/UD1 (AMD raises #UD from the opcode alone) nor TZCNT/LZCNT (run natively under a shorter encoding)"),
    ("ENTER", "frame sizes below 0x1000: the CPU probes the new stack top, and natively only the test region is mapped"),
    ("POPF", "the popped value has only arithmetic flags, DF and IF (so TF/AC/IOPL stay as they are on both sides)"),
];

/// Forms the host runs under a different encoding: below `--cpu v3` the engine's CPUID has
/// neither BMI1 nor LZCNT, so it executes F3 0F BC/BD as BSF/BSR, as a CPU without those
/// features does; the host has both, so natively the suite runs BSF/BSR instead. (The suite's
/// engine runs at the highest level the host runs, where TZCNT/LZCNT are themselves.)
pub fn native_substitute(code: Code) -> Option<Code> {
    if janus_soft::cpuid::Level::host_max() >= janus_soft::cpuid::Level::V3 {
        return None;
    }
    Some(match code {
        Code::Tzcnt_r16_rm16 => Code::Bsf_r16_rm16,
        Code::Tzcnt_r32_rm32 => Code::Bsf_r32_rm32,
        Code::Tzcnt_r64_rm64 => Code::Bsf_r64_rm64,
        Code::Lzcnt_r16_rm16 => Code::Bsr_r16_rm16,
        Code::Lzcnt_r32_rm32 => Code::Bsr_r32_rm32,
        Code::Lzcnt_r64_rm64 => Code::Bsr_r64_rm64,
        _ => return None,
    })
}

pub fn exclusion(i: &Instruction) -> Option<&'static str> {
    let (m, c) = (i.mnemonic(), i.code());
    EXCLUSIONS
        .iter()
        .find(|e| e.mnemonics.contains(&m) || e.codes.contains(&c))
        .map(|e| e.why)
}

pub fn family(i: &Instruction) -> Family {
    if i.is_string_instruction() {
        return Family::String;
    }
    if i.code().encoding() == EncodingKind::VEX {
        // BMI's VEX forms work on general-purpose registers.
        let vector = format!("{:?}", i.code())
            .split('_')
            .any(|t| t.starts_with("xmm") || t.starts_with("ymm"));
        return if vector { Family::Avx } else { Family::Integer };
    }
    let regs = (0..i.op_count()).filter(|&k| i.op_kind(k) == OpKind::Register);
    let mut any_st = false;
    let mut any_vec = false;
    for k in regs {
        let r = i.op_register(k);
        any_st |= r.is_st();
        any_vec |= r.is_xmm() || r.is_mm();
    }
    let name = format!("{:?}", i.mnemonic());
    let fx = matches!(
        i.mnemonic(),
        Mnemonic::Fxsave | Mnemonic::Fxsave64 | Mnemonic::Fxrstor | Mnemonic::Fxrstor64
    );
    if any_st
        || (name.starts_with('F') && !fx && i.mnemonic() != Mnemonic::Femms)
        || i.mnemonic() == Mnemonic::Wait
    {
        return Family::X87;
    }
    // The Code's name lists its operands (`Cvttss2si_r32_xmmm32`, `Movq_rm64_mm`): the
    // template may use the memory form, which names no vector register.
    let code_name = format!("{:?}", i.code());
    let named_vector = code_name
        .split('_')
        .any(|t| t.starts_with("xmm") || t.starts_with("mm"));
    let packed = i.op_count() > 0
        && (0..i.op_count()).any(|k| i.op_kind(k) == OpKind::Memory)
        && i.memory_size().is_packed();
    if any_vec
        || named_vector
        || packed
        || fx
        || matches!(
            i.mnemonic(),
            Mnemonic::Ldmxcsr | Mnemonic::Stmxcsr | Mnemonic::Emms | Mnemonic::Femms
        )
    {
        return Family::Sse;
    }
    Family::Integer
}

/// The host CPU has `f` (features the suite cannot check count as absent).
pub fn host_has(f: CpuidFeature) -> bool {
    use std::arch::x86_64::__cpuid_count;
    let l1 = __cpuid_count(1, 0);
    let l7 = __cpuid_count(7, 0);
    let x1 = __cpuid_count(0x8000_0001, 0);
    let b = |r: u32, n: u32| r & (1 << n) != 0;
    use CpuidFeature as F;
    match f {
        F::INTEL8086
        | F::INTEL186
        | F::INTEL286
        | F::INTEL386
        | F::INTEL486
        | F::X64
        | F::CPUID
        | F::FPU
        | F::FPU287
        | F::FPU387
        | F::CMOV
        | F::CX8
        | F::MMX
        | F::SSE
        | F::SSE2
        | F::FXSR
        | F::TSC
        | F::MSR
        | F::SEP
        | F::SYSCALL
        | F::PAUSE
        | F::MULTIBYTENOP
        | F::RDPMC
        | F::SMM => true,
        // ENDBR32/64 are NOPs on CPUs without CET.
        F::CET_IBT => true,
        F::CLFSH => b(l1.edx, 19),
        F::SSE3 => b(l1.ecx, 0),
        F::PCLMULQDQ => b(l1.ecx, 1),
        F::MONITOR => b(l1.ecx, 3),
        F::SSSE3 => b(l1.ecx, 9),
        F::CMPXCHG16B => b(l1.ecx, 13),
        F::SSE4_1 => b(l1.ecx, 19),
        F::SSE4_2 => b(l1.ecx, 20),
        F::MOVBE => b(l1.ecx, 22),
        F::POPCNT => b(l1.ecx, 23),
        F::AES => b(l1.ecx, 25),
        F::XSAVE => b(l1.ecx, 26),
        F::FMA => b(l1.ecx, 12),
        F::AVX => b(l1.ecx, 28),
        F::F16C => b(l1.ecx, 29),
        F::AVX2 => b(l7.ebx, 5),
        F::RDRAND => b(l1.ecx, 30),
        F::FSGSBASE => b(l7.ebx, 0),
        F::BMI1 => b(l7.ebx, 3),
        F::BMI2 => b(l7.ebx, 8),
        F::RDSEED => b(l7.ebx, 18),
        F::ADX => b(l7.ebx, 19),
        F::CLFLUSHOPT => b(l7.ebx, 23),
        F::CLWB => b(l7.ebx, 24),
        F::SHA => b(l7.ebx, 29),
        F::GFNI => b(l7.ecx, 8),
        F::RDPID => b(l7.ecx, 22),
        F::MOVDIRI => b(l7.ecx, 27),
        F::MOVDIR64B => b(l7.ecx, 28),
        F::SERIALIZE => b(l7.edx, 14),
        F::LZCNT => b(x1.ecx, 5),
        F::SSE4A => b(x1.ecx, 6),
        F::PREFETCHW => b(x1.ecx, 8),
        F::RDTSCP => b(x1.edx, 27),
        _ => false,
    }
}

/// Every iced register, indexable by `Register as usize`.
pub fn register_table() -> &'static [Register] {
    static T: OnceLock<Vec<Register>> = OnceLock::new();
    T.get_or_init(|| Register::values().collect())
}

pub fn reg(n: usize) -> Register {
    register_table()[n]
}

/// Another register of the same kind as `r`, if it has a kind the suite varies.
pub fn other_register(r: Register) -> Option<Register> {
    let base = if r.is_gpr8() {
        Register::AL
    } else if r.is_gpr16() {
        Register::AX
    } else if r.is_gpr32() {
        Register::EAX
    } else if r.is_gpr64() {
        Register::RAX
    } else if r.is_xmm() {
        Register::XMM0
    } else if r.is_ymm() {
        Register::YMM0
    } else if r.is_mm() {
        Register::MM0
    } else if r.is_st() {
        Register::ST0
    } else {
        return None;
    };
    let n = r as usize - base as usize;
    Some(reg(base as usize + if n == 1 { 2 } else { 1 }))
}

fn register_fixed(t: &Instruction, k: u32) -> bool {
    let Some(alt) = other_register(t.op_register(k)) else {
        return true;
    };
    let mut i = *t;
    i.set_op_register(k, alt);
    let mut e = Encoder::new(64);
    if e.encode(&i, 0x10_0000).is_err() {
        return true;
    }
    let bytes = e.take_buffer();
    let d = Decoder::with_ip(64, &bytes, 0x10_0000, DecoderOptions::NONE).decode();
    !(d.code() == t.code() && d.op_register(k) == alt)
}

fn enumerate() -> BTreeMap<u32, Instruction> {
    let mut prefixes: Vec<Vec<u8>> = Vec::new();
    for rex in [None, Some(0x48u8)] {
        for rep in [None, Some(0xf3u8), Some(0xf2)] {
            for osz in [false, true] {
                for asz in [false, true] {
                    let mut p = Vec::new();
                    if osz {
                        p.push(0x66);
                    }
                    if let Some(r) = rep {
                        p.push(r);
                    }
                    if asz {
                        p.push(0x67);
                    }
                    if let Some(r) = rex {
                        p.push(r);
                    }
                    prefixes.push(p);
                }
            }
        }
    }
    prefixes.sort_by_key(|p| p.len());
    let maps: [&[u8]; 4] = [&[], &[0x0f], &[0x0f, 0x38], &[0x0f, 0x3a]];
    let mut found = BTreeMap::new();
    let mut buf = Vec::with_capacity(32);
    for p in &prefixes {
        for m in maps {
            for op in 0..=255u8 {
                // Prefix bytes are not opcodes.
                let prefix = matches!(op, 0x26 | 0x2e | 0x36 | 0x3e | 0x40..=0x4f | 0x64..=0x67)
                    || matches!(op, 0xf0 | 0xf2 | 0xf3);
                if m.is_empty() && prefix {
                    continue;
                }
                for modrm in 0..=255u8 {
                    buf.clear();
                    buf.extend_from_slice(p);
                    buf.extend_from_slice(m);
                    buf.push(op);
                    buf.push(modrm);
                    buf.extend_from_slice(&[0; 12]);
                    let i = Decoder::with_ip(64, &buf, 0x10_0000, DecoderOptions::NONE).decode();
                    if !i.is_invalid() && i.segment_prefix() == iced_x86::Register::None {
                        found.entry(i.code() as u32).or_insert(i);
                    }
                }
            }
        }
    }
    // VEX: the three-byte form (C4) reaches every map; R/X/B clear (no extension), vvvv
    // 1111 (xmm0/ymm0 where it names a register, and required where it does not).
    for map in 1..=3u8 {
        for w in [0u8, 1] {
            for l in [0u8, 1] {
                for pp in 0..4u8 {
                    let byte1 = 0xe0 | map;
                    let byte2 = (w << 7) | (0xf << 3) | (l << 2) | pp;
                    for op in 0..=255u8 {
                        for modrm in 0..=255u8 {
                            buf.clear();
                            buf.extend_from_slice(&[0xc4, byte1, byte2, op, modrm]);
                            buf.extend_from_slice(&[0; 12]);
                            let i = Decoder::with_ip(64, &buf, 0x10_0000, DecoderOptions::NONE)
                                .decode();
                            if !i.is_invalid() && i.code().encoding() == EncodingKind::VEX {
                                found.entry(i.code() as u32).or_insert(i);
                            }
                        }
                    }
                }
            }
        }
    }
    found
}

/// Every legacy-encoded form valid in 64-bit mode.
pub fn catalog() -> &'static [Form] {
    static C: OnceLock<Vec<Form>> = OnceLock::new();
    C.get_or_init(|| {
        let mut forms = Vec::new();
        for (_, t) in enumerate() {
            let code = t.code();
            if !matches!(code.encoding(), EncodingKind::Legacy | EncodingKind::VEX) {
                continue;
            }
            let mut fixed = [true; 5];
            for k in 0..t.op_count().min(5) {
                if t.op_kind(k) == OpKind::Register {
                    fixed[k as usize] = register_fixed(&t, k);
                }
            }
            forms.push(Form {
                code,
                template: t,
                family: family(&t),
                implemented: janus_soft::decode::lower(&t, 64, janus_soft::cpuid::Isa::ALL)
                    .implemented,
                excluded: exclusion(&t),
                host_ok: code.cpuid_features().iter().all(|f| host_has(*f)),
                fixed,
            });
        }
        forms
    })
}
