//! One test case: an instance of a form (random registers, memory operand, immediates), the
//! body around it, a random state that suits it, and what to compare.

use crate::catalog::{native_substitute, reg, Family, Form};
use crate::layout::{Layout, CMP_LEN, DATA_LEN};
use crate::native::{abs, assemble};
use crate::rng::Rng;
use crate::state::*;
use iced_x86::{
    Code, Decoder, DecoderOptions, Encoder, Instruction, MemorySize, Mnemonic, OpKind, Register,
    RflagsBits,
};

/// How closely floating-point results must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approx {
    Exact,
    /// x87 transcendentals: ST values within 2^13 units in the last place.
    X87Transcendental,
    /// RCP/RSQRT estimates: float lanes within 2^12 units in the last place.
    F32Estimate,
}

pub struct Case {
    /// The instruction under test as decoded from the body.
    pub instr: Instruction,
    pub body: Vec<u8>,
    /// Where the body starts (usually `Layout::body`).
    pub at: u64,
    /// What runs natively instead, where the host's encoding differs (see
    /// `native_substitute`).
    pub native_body: Option<Vec<u8>>,
    pub state: State,
    /// RFLAGS bits compared.
    pub flags_mask: u64,
    /// GPRs not compared (bit per register).
    pub ignore_gpr: u16,
    /// Memory ranges not compared: (address, length).
    pub ignore_mem: Vec<(u64, u64)>,
    /// FSW bits compared.
    pub fsw_mask: u16,
    pub approx: Approx,
    /// The memory operand's effective address.
    pub ea: Option<u64>,
}

const RSP: usize = 4;

/// Full-register index (0..16) of a GPR of any size (AH..BH count as their full register).
pub fn gpr_index(r: Register) -> Option<usize> {
    if !r.is_gpr() {
        return None;
    }
    Some(r.full_register() as usize - Register::RAX as usize)
}

fn is_high8(r: Register) -> bool {
    matches!(r, Register::AH | Register::CH | Register::DH | Register::BH)
}

/// Reads register `r` (any GPR size) from `gpr`.
pub fn get_reg(gpr: &[u64; 16], r: Register) -> u64 {
    let Some(n) = gpr_index(r) else { return 0 };
    if is_high8(r) {
        return (gpr[n] >> 8) & 0xff;
    }
    let bits = r.size() * 8;
    if bits == 64 {
        gpr[n]
    } else {
        gpr[n] & ((1u64 << bits) - 1)
    }
}

/// Writes register `r` into `gpr` as a merge (the rest of the full register is kept).
pub fn set_reg(gpr: &mut [u64; 16], r: Register, v: u64) {
    let Some(n) = gpr_index(r) else { return };
    if is_high8(r) {
        gpr[n] = (gpr[n] & !0xff00) | ((v & 0xff) << 8);
        return;
    }
    let bits = r.size() * 8;
    gpr[n] = if bits == 64 {
        v
    } else {
        let m = (1u64 << bits) - 1;
        (gpr[n] & !m) | (v & m)
    };
}

/// A random register of the same kind as `r` (not one in `avoid`; rSP now and then: PUSH
/// RSP, POP RSP, MOV RSP, ... are safe, the harness saves RSP before it uses a stack).
fn random_like(r: Register, rng: &mut Rng, avoid: u16) -> Register {
    let gpr = |rng: &mut Rng| loop {
        let n = rng.below(16) as usize;
        if (n != RSP || rng.chance(25)) && avoid & (1 << n) == 0 {
            return n;
        }
    };
    if r.is_gpr8() {
        if rng.chance(20) {
            let n = rng.below(4) as usize;
            if avoid & (1 << n) == 0 {
                return reg(Register::AH as usize + n);
            }
        }
        let n = gpr(rng);
        return reg(Register::AL as usize + if n < 4 { n } else { n + 4 });
    }
    for base in [Register::AX, Register::EAX, Register::RAX] {
        if r.size() == base.size() && r.is_gpr() {
            return reg(base as usize + gpr(rng));
        }
    }
    if r.is_xmm() {
        return reg(Register::XMM0 as usize + rng.below(16) as usize);
    }
    if r.is_ymm() {
        return reg(Register::YMM0 as usize + rng.below(16) as usize);
    }
    if r.is_mm() {
        return reg(Register::MM0 as usize + rng.below(8) as usize);
    }
    if r.is_st() {
        return reg(Register::ST0 as usize + rng.below(8) as usize);
    }
    r
}

/// A shift or rotate count for an operand of `width` bits.
fn count(rng: &mut Rng, width: u64) -> u64 {
    match rng.below(10) {
        0..=4 => rng.below(width + 2),
        5 | 6 => rng.pick(&[0, 1, width - 1, width, width + 1, 31, 32, 33, 63, 64]),
        _ => rng.below(256),
    }
}

fn mem_operand_index(i: &Instruction) -> Option<u32> {
    (0..i.op_count()).find(|&k| i.op_kind(k) == OpKind::Memory)
}

fn is_shift(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(m, Shl | Sal | Shr | Sar | Rol | Ror | Rcl | Rcr)
}

/// SHL/SHLD/... with the count in CL.
fn shift_by_cl(i: &Instruction) -> bool {
    (is_shift(i.mnemonic()) || matches!(i.mnemonic(), Mnemonic::Shld | Mnemonic::Shrd))
        && (1..i.op_count())
            .any(|k| i.op_kind(k) == OpKind::Register && i.op_register(k) == Register::CL)
}

fn is_bit_test(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Bt | Mnemonic::Bts | Mnemonic::Btr | Mnemonic::Btc
    )
}

fn is_bit_scan(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Bsf | Mnemonic::Bsr | Mnemonic::Tzcnt | Mnemonic::Lzcnt | Mnemonic::Popcnt
    )
}

/// Registers whose values the fixups set (so they cannot double as address registers).
fn fixup_regs(i: &Instruction) -> u16 {
    use Mnemonic::*;
    let bit = |n: usize| 1u16 << n;
    let opreg = |k: u32| -> u16 {
        if k < i.op_count() && i.op_kind(k) == OpKind::Register {
            gpr_index(i.op_register(k)).map_or(0, bit)
        } else {
            0
        }
    };
    let mut m = bit(RSP);
    if shift_by_cl(i) {
        m |= bit(1);
    }
    match i.mnemonic() {
        Div | Idiv => m |= bit(0) | bit(2) | opreg(0),
        Cmpxchg => m |= bit(0) | opreg(0),
        Cmpxchg8b | Cmpxchg16b => m |= bit(0) | bit(2),
        Xlatb => m |= bit(0) | bit(3),
        Enter | Leave => m |= bit(5),
        Maskmovq | Maskmovdqu | Vmaskmovdqu => m |= bit(7),
        x if is_bit_test(x) => m |= opreg(1),
        x if is_bit_scan(x) => m |= opreg(1),
        _ => {}
    }
    if i.is_jmp_near_indirect() || i.is_call_near_indirect() {
        m |= opreg(0);
    }
    m
}

/// Register values an addressing choice needs, applied after the other fixups.
struct AddrRegs {
    sets: Vec<(Register, u64)>,
}

/// Chooses a memory operand for `i` that addresses `a`, returning the registers to set
/// (`None`: the encoding fixes the operand, as XLAT's `[rbx+al]`; the fixups place it).
fn choose_memory(i: &mut Instruction, a: u64, rng: &mut Rng, avoid: u16) -> Option<AddrRegs> {
    let t_base = i.memory_base();
    let t_index = i.memory_index();
    let mut sets = Vec::new();
    // Forms whose memory operand is fixed by the encoding: MOV moffs, XLAT.
    if t_base == Register::None && t_index == Register::None && i.memory_displ_size() == 8 {
        i.set_memory_displacement64(a);
        return Some(AddrRegs { sets });
    }
    if t_index == Register::AL {
        return None;
    }
    let pick = |rng: &mut Rng, avoid: u16| loop {
        let n = rng.below(16) as usize;
        if n != RSP && avoid & (1 << n) == 0 {
            return n;
        }
    };
    let a32 = rng.chance(10);
    let r_of = |n: usize| reg(if a32 { Register::EAX } else { Register::RAX } as usize + n);
    let wrap = |v: u64| if a32 { v & 0xffff_ffff } else { v };
    let high = |rng: &mut Rng| if a32 { rng.next() << 32 } else { 0 };
    let scale = rng.pick(&[1u64, 2, 4, 8]);
    i.set_memory_index_scale(1);
    i.set_memory_index(Register::None);
    i.set_memory_base(Register::None);
    i.set_segment_prefix(Register::None);
    match rng.below(20) {
        0..=10 => {
            // [rsp+disp] now and then: RSP itself then points into the data area (not when
            // RSP is also a register operand: its value would have to be two things).
            let rsp_operand = (0..i.op_count()).any(|k| {
                i.op_kind(k) == OpKind::Register && gpr_index(i.op_register(k)) == Some(RSP)
            });
            let b = if !a32 && !rsp_operand && rng.chance(6) {
                RSP
            } else {
                pick(rng, avoid)
            };
            let (disp, size) = match rng.below(10) {
                0..=2 => (0i64, 0),
                3..=6 => (rng.below(256) as i64 - 128, 1),
                _ => (rng.below(0x2_0000) as i64 - 0x1_0000, 4),
            };
            i.set_memory_base(r_of(b));
            i.set_memory_displacement64(disp as u64);
            i.set_memory_displ_size(size);
            sets.push((
                reg(Register::RAX as usize + b),
                wrap(a.wrapping_sub(disp as u64)) | high(rng),
            ));
        }
        11..=14 => {
            let b = pick(rng, avoid);
            let x = pick(rng, avoid | 1 << b);
            let xv = rng.below(64);
            let disp = rng.below(256) as i64 - 128;
            i.set_memory_base(r_of(b));
            i.set_memory_index(r_of(x));
            i.set_memory_index_scale(scale as u32);
            i.set_memory_displacement64(disp as u64);
            i.set_memory_displ_size(1);
            let bv = a.wrapping_sub(disp as u64).wrapping_sub(xv * scale);
            sets.push((reg(Register::RAX as usize + b), wrap(bv) | high(rng)));
            sets.push((reg(Register::RAX as usize + x), xv | high(rng)));
        }
        15 | 16 => {
            let x = pick(rng, avoid);
            let xv = rng.below(64);
            i.set_memory_index(r_of(x));
            i.set_memory_index_scale(scale as u32);
            i.set_memory_displacement64(a.wrapping_sub(xv * scale));
            i.set_memory_displ_size(4);
            sets.push((reg(Register::RAX as usize + x), xv | high(rng)));
        }
        17 => {
            // [disp32]: 64-bit addressing, or 32-bit (67 prefix) now and then.
            i.set_memory_displacement64(a);
            i.set_memory_displ_size(if a32 { 4 } else { 8 });
        }
        _ => {
            i.set_memory_base(Register::RIP);
            i.set_memory_displacement64(a);
            i.set_memory_displ_size(8);
        }
    }
    Some(AddrRegs { sets })
}

/// The memory operand's effective address from the decoded instruction and registers.
pub fn effective_address(i: &Instruction, gpr: &[u64; 16]) -> u64 {
    let mut a = i.memory_displacement64();
    if i.memory_base() == Register::RIP {
        return a;
    }
    if let Some(n) = gpr_index(i.memory_base()) {
        a = a.wrapping_add(gpr[n]);
    }
    if let Some(n) = gpr_index(i.memory_index()) {
        let x = if i.memory_index() == Register::AL {
            gpr[0] & 0xff
        } else {
            gpr[n]
        };
        a = a.wrapping_add(x.wrapping_mul(i.memory_index_scale() as u64));
    }
    let a32 = i.memory_base().is_gpr32() || i.memory_index().is_gpr32();
    if a32 {
        a & 0xffff_ffff
    } else {
        a
    }
}

/// Random immediates for `i` (shift counts and the like biased towards edge cases).
fn random_immediates(i: &mut Instruction, rng: &mut Rng) {
    let width = (0..i.op_count())
        .find_map(|k| match i.op_kind(k) {
            OpKind::Register => Some(i.op_register(k).size() as u64 * 8),
            OpKind::Memory => Some(i.memory_size().size() as u64 * 8),
            _ => None,
        })
        .unwrap_or(32)
        .max(8);
    let m = i.mnemonic();
    for k in 0..i.op_count() {
        let v: u64 = match i.op_kind(k) {
            OpKind::Immediate8 => {
                if is_shift(m) || is_bit_test(m) {
                    count(rng, width)
                } else if matches!(m, Mnemonic::Shld | Mnemonic::Shrd) {
                    if width == 16 {
                        rng.below(17) | (rng.below(8) << 5)
                    } else {
                        count(rng, width)
                    }
                } else if ["Psll", "Psrl", "Psra"]
                    .iter()
                    .any(|p| format!("{m:?}").starts_with(p))
                {
                    // MMX/SSE shifts by immediate.
                    count(rng, 64)
                } else {
                    rng.value()
                }
            }
            OpKind::Immediate8_2nd => {
                if rng.chance(80) {
                    rng.below(6)
                } else {
                    rng.below(256)
                }
            }
            OpKind::Immediate16 => match m {
                Mnemonic::Ret => {
                    rng.pick(&[0, 8, 16, 24, 2, 0x100]) + rng.below(2) * rng.below(0x1_0000)
                }
                // Below 0x1000: the CPU probes the new stack top, which must stay mapped
                // natively (see PER_STATE_RULES).
                Mnemonic::Enter => {
                    rng.pick(&[0, 8, 16, 0x100, 0xff8]) + rng.below(2) * rng.below(0x100)
                }
                _ => rng.value(),
            },
            OpKind::Immediate8to16 | OpKind::Immediate8to32 | OpKind::Immediate8to64 => {
                rng.value() as i8 as i64 as u64
            }
            OpKind::Immediate32 | OpKind::Immediate32to64 => rng.value() as i32 as i64 as u64,
            OpKind::Immediate64 => rng.value(),
            _ => continue,
        };
        let _ = i.try_set_immediate_u64(k, v);
    }
}

fn encode_at(i: &Instruction, ip: u64) -> Option<Vec<u8>> {
    let mut e = Encoder::new(64);
    e.encode(i, ip).ok()?;
    Some(e.take_buffer())
}

fn decode_at(bytes: &[u8], ip: u64) -> Instruction {
    Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE).decode()
}

fn mark(lay: &Layout, v: u32) -> Instruction {
    Instruction::with2(Code::Mov_rm8_imm8, abs(lay.mark()), v).expect("mov byte [mark], imm8")
}

enum Shape {
    /// Just the instruction.
    Plain,
    /// A branch to `taken`: each path writes its own mark byte.
    Branch,
    /// RET: a CALL sets up the return address, the RET under test comes back.
    Ret,
}

fn shape(i: &Instruction) -> Shape {
    if i.mnemonic() == Mnemonic::Ret {
        Shape::Ret
    } else if i.is_jcc_short_or_near()
        || i.is_jmp_short_or_near()
        || i.is_call_near()
        || i.is_loop()
        || i.is_loopcc()
        || i.is_jcx_short()
        || i.is_jmp_near_indirect()
        || i.is_call_near_indirect()
    {
        Shape::Branch
    } else {
        Shape::Plain
    }
}

/// A flag-setting instruction to run before the one under test, so that it consumes flags
/// the engine still holds lazily (ADD, SUB, ADC, SBB, CMP, INC, DEC, NEG: all define every
/// arithmetic flag). Its destination is a register the instruction under test does not use.
fn flag_setter(i: &Instruction, rng: &mut Rng) -> Option<Instruction> {
    let mut f = iced_x86::InstructionInfoFactory::new();
    let mut used = 1u16 << RSP;
    for u in f.info(i).used_registers() {
        if let Some(n) = gpr_index(u.register()) {
            used |= 1 << n;
        }
    }
    let free: Vec<usize> = (0..16).filter(|n| used & (1 << n) == 0).collect();
    if free.is_empty() {
        return None;
    }
    let size = rng.pick(&[0usize, 1, 2, 3]);
    let base = [Register::AL, Register::AX, Register::EAX, Register::RAX][size];
    let low8 = |n: usize| if n < 4 { n } else { n + 4 };
    let r = |n: usize| reg(base as usize + if size == 0 { low8(n) } else { n });
    let dst = r(rng.pick(&free));
    let src = r(rng.below(16) as usize);
    use Code::*;
    let rr: [[Code; 4]; 5] = [
        [Add_rm8_r8, Add_rm16_r16, Add_rm32_r32, Add_rm64_r64],
        [Sub_rm8_r8, Sub_rm16_r16, Sub_rm32_r32, Sub_rm64_r64],
        [Adc_rm8_r8, Adc_rm16_r16, Adc_rm32_r32, Adc_rm64_r64],
        [Sbb_rm8_r8, Sbb_rm16_r16, Sbb_rm32_r32, Sbb_rm64_r64],
        [Cmp_rm8_r8, Cmp_rm16_r16, Cmp_rm32_r32, Cmp_rm64_r64],
    ];
    let unary: [[Code; 4]; 3] = [
        [Inc_rm8, Inc_rm16, Inc_rm32, Inc_rm64],
        [Dec_rm8, Dec_rm16, Dec_rm32, Dec_rm64],
        [Neg_rm8, Neg_rm16, Neg_rm32, Neg_rm64],
    ];
    let k = rng.below(8) as usize;
    if k < 5 {
        Instruction::with2(rr[k][size], dst, src).ok()
    } else {
        Instruction::with1(unary[k - 5][size], dst).ok()
    }
}

/// Body bytes, the decoded instruction under test, and the branch target for indirect
/// branches. `None` if the instance does not encode. `pre` runs first (it is part of the
/// body; the instruction under test follows it).
fn build_body(
    i: &Instruction,
    lay: &Layout,
    at: u64,
    pre: &[u8],
) -> Option<(Vec<u8>, Instruction, u64)> {
    let p0 = at + pre.len() as u64;
    let (mut body, d, taken) = build_body_at(i, lay, p0)?;
    let mut b = pre.to_vec();
    b.append(&mut body);
    Some((b, d, taken))
}

fn build_body_at(i: &Instruction, lay: &Layout, p0: u64) -> Option<(Vec<u8>, Instruction, u64)> {
    match shape(i) {
        Shape::Plain => {
            let b = encode_at(i, p0)?;
            let d = decode_at(&b, p0);
            Some((b, d, 0))
        }
        Shape::Branch => {
            let mut probe = *i;
            if probe.op0_kind() == OpKind::NearBranch64 {
                probe.set_near_branch64(p0);
            }
            let len = encode_at(&probe, p0)?.len() as u64;
            let m1 = assemble(0, &[mark(lay, 1)]).len() as u64;
            let m2 = assemble(0, &[mark(lay, 2)]).len() as u64;
            let taken = p0 + len + m1 + 2;
            let end = taken + m2;
            let mut j = *i;
            if j.op0_kind() == OpKind::NearBranch64 {
                j.set_near_branch64(taken);
            }
            let seq = [
                j,
                mark(lay, 1),
                Instruction::with_branch(Code::Jmp_rel8_64, end).ok()?,
                mark(lay, 2),
            ];
            let mut e = Encoder::new(64);
            let mut ip = p0;
            for s in &seq {
                ip += e.encode(s, ip).ok()? as u64;
            }
            let b = e.take_buffer();
            assert_eq!(p0 + b.len() as u64, end, "branch body layout");
            let d = decode_at(&b, p0);
            Some((b, d, taken))
        }
        Shape::Ret => {
            let s = p0 + 5 + 2;
            let r = encode_at(i, s)?;
            let end = s + r.len() as u64;
            let mut b = assemble(
                p0,
                &[
                    Instruction::with_branch(Code::Call_rel32_64, s).ok()?,
                    Instruction::with_branch(Code::Jmp_rel8_64, end).ok()?,
                ],
            );
            b.extend_from_slice(&r);
            let d = decode_at(&r, s);
            Some((b, d, 0))
        }
    }
}

fn rflags_bits(r: u32) -> u64 {
    let mut f = 0;
    for (ice, x86) in [
        (RflagsBits::OF, OF),
        (RflagsBits::SF, SF),
        (RflagsBits::ZF, ZF),
        (RflagsBits::AF, AF),
        (RflagsBits::CF, CF),
        (RflagsBits::PF, PF),
        (RflagsBits::DF, DF),
    ] {
        if r & ice != 0 {
            f |= x86;
        }
    }
    f
}

/// Operand width in bits of the instruction's destination.
fn dest_width(i: &Instruction) -> u64 {
    match i.op0_kind() {
        OpKind::Register => i.op0_register().size() as u64 * 8,
        _ => i.memory_size().size() as u64 * 8,
    }
}

/// The undefined-flag mask for this state (shift counts decide it for shifts and rotates).
fn undefined_flags(i: &Instruction, st: &State) -> u64 {
    use Mnemonic::*;
    let m = i.mnemonic();
    let shifts = is_shift(m) || matches!(m, Shld | Shrd);
    if !shifts {
        return rflags_bits(i.rflags_undefined());
    }
    let w = dest_width(i);
    let last = i.op_count() - 1;
    let raw = match i.op_kind(last) {
        OpKind::Immediate8 => i.immediate8() as u64,
        OpKind::Register if i.op_register(last) == Register::CL => st.gpr[1] & 0xff,
        _ => 1, // the _1 forms
    };
    let masked = raw & if w == 64 { 0x3f } else { 0x1f };
    if masked == 0 {
        return 0;
    }
    let mut u = 0;
    if masked != 1 {
        u |= OF;
    }
    match m {
        Shl | Sal | Shr | Sar | Shld | Shrd => {
            u |= AF;
            if matches!(m, Shl | Sal | Shr) && w < 32 && masked >= w {
                u |= CF;
            }
        }
        _ => {}
    }
    u
}

/// FSW bits compared for an instruction (the SDM leaves C0-C3 undefined for most x87
/// instructions).
fn fsw_mask(i: &Instruction, approx: Approx) -> u16 {
    use Mnemonic::*;
    const C0: u16 = 1 << 8;
    const C1: u16 = 1 << 9;
    const C2: u16 = 1 << 10;
    const C3: u16 = 1 << 14;
    const PE: u16 = 1 << 5;
    let name = format!("{:?}", i.mnemonic());
    let x87 = (name.starts_with('F') && !name.starts_with("Fx") && name != "Femms")
        || i.mnemonic() == Wait;
    if !x87 {
        return 0xffff;
    }
    let mut m = match i.mnemonic() {
        Fcom | Fcomp | Fcompp | Fucom | Fucomp | Fucompp | Ficom | Ficomp | Ftst | Fxam | Fprem
        | Fprem1 | Fcomi | Fcomip | Fucomi | Fucomip | Fninit | Fldenv | Frstor | Fnsave => 0xffff,
        Fptan | Fsin | Fcos | Fsincos => !(C0 | C3),
        Fnop | Fldcw | Fnstcw | Fnstsw | Fnstenv | Fnclex | Ffree | Ffreep | Wait | Fneni
        | Fndisi | Fnsetpm => !(C0 | C1 | C2 | C3),
        _ => !(C0 | C2 | C3),
    };
    if approx == Approx::X87Transcendental {
        m &= !(C1 | PE);
    }
    m
}

fn approx_for(m: Mnemonic) -> Approx {
    use Mnemonic::*;
    match m {
        F2xm1 | Fyl2x | Fyl2xp1 | Fptan | Fpatan | Fsin | Fcos | Fsincos => {
            Approx::X87Transcendental
        }
        Rcpps | Rcpss | Rsqrtps | Rsqrtss => Approx::F32Estimate,
        _ => Approx::Exact,
    }
}

// ---------------------------------------------------------------- states

fn x87_state(fx: &mut Fx, rng: &mut Rng, pending: u64) {
    let fcw: u16 = if rng.chance(60) {
        0x037f
    } else {
        let masks = if rng.chance(80) {
            0x3f
        } else {
            rng.next() & 0x3f
        };
        (0x40 | masks | rng.below(4) << 8 | rng.below(4) << 10) as u16
    };
    let top = rng.below(8) as u16;
    let cc = (rng.next() as u16) & 0x4700;
    let mut exc = if rng.chance(30) {
        rng.next() as u16 & 0x3f
    } else {
        0
    };
    if !rng.chance(pending) {
        exc &= fcw & 0x3f;
    }
    if exc & 1 != 0 && rng.chance(50) {
        exc |= 0x40; // stack fault
    }
    let es = if exc & !fcw & 0x3f != 0 { 0x8080 } else { 0 };
    fx.set_fcw(fcw);
    fx.set_fsw(exc | es | cc | top << 11);
    fx.set_ftw(match rng.below(4) {
        0 => 0xff,
        1 => 0,
        _ => rng.next() as u8,
    });
    for k in 0..8 {
        let v = if rng.chance(15) {
            // An MMX-style value.
            let mut b = [0xffu8; 10];
            b[..8].copy_from_slice(&rng.value().to_le_bytes());
            b
        } else {
            f80_bits(rng)
        };
        fx.set_st(k, v);
    }
}

fn mxcsr(rng: &mut Rng) -> u32 {
    let flags = if rng.chance(30) {
        rng.next() as u32 & 0x3f
    } else {
        0
    };
    if rng.chance(50) {
        return 0x1f80 | flags;
    }
    let masks = if rng.chance(85) {
        0x1f80
    } else {
        (rng.next() as u32 & 0x3f) << 7
    };
    let rc = (rng.below(4) as u32) << 13;
    let fz = if rng.chance(30) { 1 << 15 } else { 0 };
    let daz = if rng.chance(30) { 1 << 6 } else { 0 };
    masks | rc | fz | daz | flags
}

/// A valid FXSAVE image with random contents (for FXRSTOR).
fn fx_image(rng: &mut Rng) -> Fx {
    let mut fx = Fx::init();
    x87_state(&mut fx, rng, 5);
    fx.set_mxcsr(mxcsr(rng));
    for k in 0..16 {
        fx.set_xmm(k, xmm_value(rng));
    }
    fx
}

fn base_state(family: Family, rng: &mut Rng, lay: &Layout) -> State {
    let mut gpr = [0u64; 16];
    for g in gpr.iter_mut() {
        *g = rng.value();
    }
    for k in 0..16 {
        if rng.chance(12) {
            gpr[k] = gpr[rng.below(16) as usize];
        }
    }
    gpr[RSP] = lay.stack_top() - 8 * rng.below(16);
    if rng.chance(3) {
        // Pops straddle the unmapped page.
        gpr[RSP] = lay.hole() - rng.below(12);
    } else if rng.chance(1) {
        // Pushes and pops at a non-canonical stack: #SS.
        gpr[RSP] = rng.pick(&[
            0x0000_8000_0000_0008,
            0xffff_8000_0000_0004,
            0x0000_8000_0000_0010,
        ]);
    }
    let mut rflags = rng.next() & ARITH;
    if rng.chance(30) {
        rflags |= DF;
    }
    let mut mem = vec![0u8; CMP_LEN];
    rng.bytes(&mut mem);
    match rng.below(10) {
        0..=5 => {}
        6 | 7 => {
            // Bytes from {0, 1, 0x7f, 0x80, 0xff}: equal elements and carries are common.
            for c in mem.chunks_mut(8) {
                let r = rng.next();
                for (k, b) in c.iter_mut().enumerate() {
                    *b = [0, 1, 0x7f, 0x80, 0xff, 0, 1, 0xff][(r >> (3 * k)) as usize & 7];
                }
            }
        }
        _ => {
            for _ in 0..128 {
                let off = rng.below((CMP_LEN / 8) as u64) as usize * 8;
                mem[off..off + 8].copy_from_slice(&rng.value().to_le_bytes());
            }
        }
    }
    let mut fx = Fx::init();
    match family {
        Family::X87 => {
            x87_state(&mut fx, rng, 6);
            if rng.chance(20) {
                fx.set_mxcsr(mxcsr(rng));
            }
        }
        Family::Sse | Family::Avx => {
            x87_state(&mut fx, rng, 2);
            fx.set_mxcsr(mxcsr(rng));
        }
        // Integer instructions leave this state alone; a random one checks that the engine
        // side loads and reads back the FPU registers as FXRSTOR/FXSAVE do.
        _ => {
            x87_state(&mut fx, rng, 0);
            fx.set_mxcsr(mxcsr(rng));
        }
    }
    for k in 0..16 {
        fx.set_xmm(k, xmm_value(rng));
    }
    // Upper halves for every family: legacy SSE forms must leave them alone.
    let ymmh = if crate::native::host_avx() {
        std::array::from_fn(|_| xmm_value(rng))
    } else {
        [0; 16]
    };
    State {
        gpr,
        rflags,
        fx,
        ymmh,
        mem,
    }
}

/// Writes `bytes` into the compared area at guest address `a` (clipped to it).
fn poke(st: &mut State, lay: &Layout, a: u64, bytes: &[u8]) {
    for (k, b) in bytes.iter().enumerate() {
        let off = a.wrapping_add(k as u64).wrapping_sub(lay.data());
        if off < CMP_LEN as u64 {
            st.mem[off as usize] = *b;
        }
    }
}

fn peek(st: &State, lay: &Layout, a: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| {
            let off = a.wrapping_add(k as u64).wrapping_sub(lay.data());
            st.mem.get(off as usize).copied().unwrap_or(0)
        })
        .collect()
}

fn le(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    let n = b.len().min(8);
    v[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(v)
}

/// Typed floating-point (or BCD) contents for a memory operand.
fn typed_memory(ms: MemorySize, rng: &mut Rng) -> Option<Vec<u8>> {
    let et = ms.element_type();
    let n = ms.size() / ms.element_size().max(1);
    let mut out = Vec::new();
    match et {
        MemorySize::Float32 => {
            for _ in 0..n {
                out.extend_from_slice(&f32_bits(rng).to_le_bytes());
            }
        }
        MemorySize::Float64 => {
            for _ in 0..n {
                out.extend_from_slice(&f64_bits(rng).to_le_bytes());
            }
        }
        MemorySize::Float80 => out.extend_from_slice(&f80_bits(rng)),
        MemorySize::Bcd => {
            for _ in 0..9 {
                out.push((rng.below(10) as u8) << 4 | rng.below(10) as u8);
            }
            out.push(if rng.chance(50) { 0x80 } else { 0 });
        }
        _ => return None,
    }
    Some(out)
}

/// Sets the registers and memory an instance needs to do something meaningful.
fn fixups(
    i: &Instruction,
    st: &mut State,
    rng: &mut Rng,
    lay: &Layout,
    a: Option<u64>,
    taken: u64,
) {
    use Mnemonic::*;
    let m = i.mnemonic();
    let w = dest_width(i);
    let op_reg = |k: u32| -> Option<Register> {
        (k < i.op_count() && i.op_kind(k) == OpKind::Register).then(|| i.op_register(k))
    };
    // Shift counts in CL.
    if shift_by_cl(i) {
        let c = if matches!(m, Shld | Shrd) && w == 16 {
            rng.below(17) | (rng.below(8) << 5)
        } else {
            count(rng, w)
        };
        set_reg(&mut st.gpr, Register::CL, c);
    }
    let mem_size = i.memory_size().size();
    match m {
        Div | Idiv if rng.chance(75) => {
            let divisor = match (op_reg(0), a) {
                (Some(r), _) => get_reg(&st.gpr, r),
                (None, Some(a)) => le(&peek(st, lay, a, mem_size)),
                _ => 0,
            };
            let (lo, hi) = match w {
                8 => (Register::AL, Register::AH),
                16 => (Register::AX, Register::DX),
                32 => (Register::EAX, Register::EDX),
                _ => (Register::RAX, Register::RDX),
            };
            let overlap = op_reg(0).is_some_and(|r| gpr_index(r) == gpr_index(hi) || r == lo);
            let h = if m == Div {
                if divisor == 0 {
                    0
                } else {
                    rng.next() % divisor
                }
            } else {
                let low = get_reg(&st.gpr, lo);
                let neg = low >> (w - 1) & 1 != 0;
                if neg {
                    u64::MAX
                } else {
                    0
                }
            };
            if !overlap {
                set_reg(&mut st.gpr, hi, h);
            }
        }
        Cmpxchg if rng.chance(40) => {
            let acc = match w {
                8 => Register::AL,
                16 => Register::AX,
                32 => Register::EAX,
                _ => Register::RAX,
            };
            let v = match (op_reg(0), a) {
                (Some(r), _) => get_reg(&st.gpr, r),
                (None, Some(a)) => le(&peek(st, lay, a, mem_size)),
                _ => 0,
            };
            set_reg(&mut st.gpr, acc, v);
        }
        Cmpxchg8b | Cmpxchg16b if rng.chance(40) => {
            if let Some(a) = a {
                let half = mem_size / 2;
                let lo = le(&peek(st, lay, a, half));
                let hi = le(&peek(st, lay, a + half as u64, half));
                let (rl, rh) = if half == 4 {
                    (Register::EAX, Register::EDX)
                } else {
                    (Register::RAX, Register::RDX)
                };
                set_reg(&mut st.gpr, rl, lo);
                set_reg(&mut st.gpr, rh, hi);
            }
        }
        Xlatb => st.gpr[3] = lay.data() + rng.below(0xe00),
        Enter | Leave => st.gpr[5] = lay.stack_top() + 8 * rng.below(96),
        Popf | Popfq => {
            let v = (rng.next() & ARITH) | if rng.chance(30) { DF } else { 0 } | 0x202;
            let sp = st.gpr[RSP];
            poke(
                st,
                lay,
                sp,
                &v.to_le_bytes()[..if m == Popf { 2 } else { 8 }],
            );
        }
        Maskmovq | Maskmovdqu | Vmaskmovdqu => st.gpr[7] = lay.data() + rng.range(0x100, 0xe00),
        x if is_bit_test(x) => {
            if let (Some(r), true) = (op_reg(1), a.is_some()) {
                set_reg(&mut st.gpr, r, (rng.below(512) as i64 - 256) as u64);
            }
        }
        x if is_bit_scan(x) && rng.chance(15) => match (op_reg(1), a) {
            (Some(r), _) => set_reg(&mut st.gpr, r, 0),
            (None, Some(a)) => poke(st, lay, a, &vec![0; mem_size]),
            _ => {}
        },
        // Arguments outside the range where the result is defined (|x| <= 1 for F2XM1,
        // |x| < 1 - sqrt(2)/2 for FYL2XP1) are not generated.
        F2xm1 | Fyl2xp1 => {
            let limit = if m == F2xm1 { 1.0 } else { 0.29 };
            let x = (rng.below(1 << 20) as f64 / (1 << 20) as f64 * 2.0 - 1.0) * limit;
            st.fx.set_st(0, f64_to_f80(x.to_bits()));
            let top = st.fx.top();
            let ftw = st.fx.ftw() | 1 << top;
            st.fx.set_ftw(ftw);
        }
        Fxrstor | Fxrstor64 if rng.chance(85) => {
            if let Some(a) = a {
                let mut img = fx_image(rng);
                if rng.chance(30) {
                    // Any FCW/FSW bits, reserved ones and inconsistent ES/B included.
                    img.set_fcw(rng.next() as u16);
                    img.set_fsw(rng.next() as u16);
                }
                poke(st, lay, a, &img.0[..416]);
            }
        }
        Ldmxcsr if rng.chance(75) => {
            if let Some(a) = a {
                poke(st, lay, a, &mxcsr(rng).to_le_bytes());
            }
        }
        _ => {}
    }
    if i.is_loop() || i.is_loopcc() || i.is_jcx_short() {
        let c = match rng.below(10) {
            0..=2 => 0,
            3 | 4 => 1,
            5 => 2,
            6 => 0x1_0000_0001,
            7 => 0xffff_ffff_0000_0000 | rng.below(3),
            _ => rng.value(),
        };
        st.gpr[1] = c;
    }
    if i.is_jmp_near_indirect() || i.is_call_near_indirect() {
        match (op_reg(0), a) {
            (Some(r), _) => set_reg(&mut st.gpr, r, taken),
            (None, Some(a)) => poke(st, lay, a, &taken.to_le_bytes()[..mem_size]),
            _ => {}
        }
    }
    if let Some(a) = a {
        // Typed floating-point contents.
        if rng.chance(if m == Fbld { 100 } else { 60 }) {
            if let Some(bytes) = typed_memory(i.memory_size(), rng) {
                poke(st, lay, a, &bytes);
            }
        }
        // Memory equal to a register operand now and then (compares, CMPXCHG, ...).
        if rng.chance(15) {
            if let Some(r) = (0..i.op_count())
                .find_map(|k| op_reg(k).filter(|r| r.is_gpr() && r.size() == mem_size))
            {
                let v = get_reg(&st.gpr, r);
                poke(st, lay, a, &v.to_le_bytes()[..mem_size]);
            }
        }
    }
}

/// String instructions: REP prefixes, address size, rSI/rDI/rCX into the buffer, and
/// buffers that match often enough for REPE/REPNE to run.
fn string_setup(i: &mut Instruction, st: &mut State, rng: &mut Rng, lay: &Layout) {
    use Mnemonic::*;
    let m = i.mnemonic();
    let conditional = matches!(
        m,
        Cmpsb | Cmpsw | Cmpsd | Cmpsq | Scasb | Scasw | Scasd | Scasq
    );
    i.set_has_rep_prefix(false);
    i.set_has_repe_prefix(false);
    i.set_has_repne_prefix(false);
    let rep = match rng.below(10) {
        0..=2 => 0,
        3..=6 => 1,
        _ if conditional => 2,
        _ => 1,
    };
    match rep {
        1 => i.set_has_rep_prefix(true),
        2 => i.set_has_repne_prefix(true),
        _ => {}
    }
    let a32 = rng.chance(25);
    if a32 {
        for k in 0..i.op_count() {
            let nk = match i.op_kind(k) {
                OpKind::MemorySegRSI => OpKind::MemorySegESI,
                OpKind::MemorySegRDI => OpKind::MemorySegEDI,
                OpKind::MemoryESRDI => OpKind::MemoryESEDI,
                other => other,
            };
            i.set_op_kind(k, nk);
        }
    }
    let size = match m {
        Movsb | Stosb | Lodsb | Cmpsb | Scasb => 1u64,
        Movsw | Stosw | Lodsw | Cmpsw | Scasw => 2,
        Movsd | Stosd | Lodsd | Cmpsd | Scasd => 4,
        _ => 8,
    };
    let n = match rng.below(10) {
        0 => 0,
        1 => 1,
        2..=7 => rng.below(20),
        _ => rng.below(64),
    };
    let df = st.rflags & DF != 0;
    let pick = |rng: &mut Rng| {
        (lay.data() + rng.range(0x200, 0x1e00)) & !(if rng.chance(70) { size - 1 } else { 0 })
    };
    let mut rsi = pick(rng);
    let mut rdi = if rng.chance(25) {
        // Overlapping source and destination.
        rsi.wrapping_add(rng.below(33)).wrapping_sub(16)
    } else {
        pick(rng)
    };
    if rng.chance(8) {
        // Run into the unmapped page after some elements: #PF with partial progress.
        let p =
            lay.hole() - size * rng.below(n + 1) - if rng.chance(20) { rng.below(size) } else { 0 };
        if rng.chance(50) {
            rsi = p;
        } else {
            rdi = p;
        }
    }
    let hi = |rng: &mut Rng| if a32 { rng.next() << 32 } else { 0 };
    st.gpr[6] = rsi | hi(rng);
    st.gpr[7] = rdi | hi(rng);
    st.gpr[1] = if rep != 0 { n | hi(rng) } else { rng.value() };
    // Make REPE/REPNE comparisons run for a while.
    if conditional && rng.chance(50) {
        let len = (n.max(1) * size) as usize;
        let start = |p: u64| if df { p + size - len as u64 } else { p };
        let (src, dst) = (start(rsi), start(rdi));
        let bytes: Vec<u8> = if matches!(m, Scasb | Scasw | Scasd | Scasq) {
            let acc = st.gpr[0].to_le_bytes();
            (0..len).map(|k| acc[k % size as usize]).collect()
        } else {
            peek(st, lay, src, len)
        };
        poke(st, lay, dst, &bytes);
        if rng.chance(60) {
            let k = rng.below(len as u64);
            poke(st, lay, dst + k, &[rng.next() as u8]);
        }
    }
}

/// Builds a case for `form`, or `None` if this attempt did not encode.
pub fn make(form: &Form, rng: &mut Rng, lay: &Layout) -> Option<Case> {
    let t = &form.template;
    let mut st = base_state(form.family, rng, lay);
    let mut i = *t;
    let string = i.is_string_instruction();
    if !string {
        i.set_has_rep_prefix(false);
        i.set_has_repe_prefix(false);
        i.set_has_repne_prefix(false);
    }
    i.set_has_lock_prefix(false);
    // Registers.
    for k in 0..i.op_count().min(5) {
        if i.op_kind(k) == OpKind::Register && !form.fixed[k as usize] {
            let r = random_like(i.op_register(k), rng, 0);
            i.set_op_register(k, r);
        }
    }
    random_immediates(&mut i, rng);
    if string {
        string_setup(&mut i, &mut st, rng, lay);
    }
    // Memory operand.
    let mem_k = mem_operand_index(&i);
    let mut a = None;
    let mut fixed_mem = false;
    let mut addr_regs = AddrRegs { sets: Vec::new() };
    if mem_k.is_some() {
        let size = (i.memory_size().size() as u64).max(1);
        let align = if size >= 16 {
            16
        } else {
            size.next_power_of_two()
        };
        let mut ea = rng.range(lay.data() + 0x100, lay.data() + DATA_LEN - 0x100 - size);
        if rng.chance(85) {
            ea &= !(align - 1);
        }
        // (Not for the 16-bit MOVSXD: AMD reads 32 bits there, Intel and the engine 16.)
        // Large areas (FXSAVE, FNSAVE, ...) more often: which of their bytes an implementation
        // touches first matters there.
        let near_hole = if size >= 64 { 15 } else { 4 };
        if rng.chance(near_hole) && form.code != Code::Movsxd_r16_rm16 {
            // Up against the unmapped page: a straddling access faults (#PF) on both sides,
            // and must not have written anything.
            ea = lay.hole() - rng.below(size + 1);
            if rng.chance(85) {
                ea &= !(align - 1);
            }
        } else if rng.chance(2) {
            // Non-canonical, or straddling the canonical boundary: #GP (#SS with an SS
            // override). The canonical neighbours are unmapped on both sides.
            ea = match rng.below(4) {
                0 => 0x0000_8000_0000_0000 - rng.below(size + 1),
                1 => 0x0000_8000_0000_0000 + rng.below(0x1000),
                2 => 0xffff_7fff_ffff_f000 + rng.below(0x1000),
                _ => 0xffff_8000_0000_0000 - rng.below(size + 1),
            };
        }
        let avoid = fixup_regs(&i);
        match choose_memory(&mut i, ea, rng, avoid) {
            Some(r) => {
                addr_regs = r;
                a = Some(ea);
            }
            None => fixed_mem = true,
        }
        if rng.chance(5) {
            // Segment overrides other than FS/GS change nothing in 64-bit mode, except that
            // SS makes a non-canonical address #SS.
            i.set_segment_prefix(rng.pick(&[
                Register::ES,
                Register::CS,
                Register::SS,
                Register::DS,
            ]));
        }
        if i.mnemonic() == Mnemonic::Lea && rng.chance(50) {
            // LEA does not access memory: random address registers test the arithmetic
            // (wrap-around, 32-bit addresses, 16-bit destinations).
            addr_regs.sets.clear();
            a = None;
        }
        // LOCK on read-modify-write forms (and now and then where it is invalid).
        let lockable = matches!(
            i.mnemonic(),
            Mnemonic::Add
                | Mnemonic::Adc
                | Mnemonic::And
                | Mnemonic::Btc
                | Mnemonic::Btr
                | Mnemonic::Bts
                | Mnemonic::Cmpxchg
                | Mnemonic::Cmpxchg8b
                | Mnemonic::Cmpxchg16b
                | Mnemonic::Dec
                | Mnemonic::Inc
                | Mnemonic::Neg
                | Mnemonic::Not
                | Mnemonic::Or
                | Mnemonic::Sbb
                | Mnemonic::Sub
                | Mnemonic::Xor
                | Mnemonic::Xadd
                | Mnemonic::Xchg
        ) && mem_k == Some(0);
        if form.family == Family::Integer && rng.chance(if lockable { 20 } else { 2 }) {
            i.set_has_lock_prefix(true);
        }
    }
    let mut at = lay.body();
    // (Not UD0/UD1: AMD raises #UD from their opcode before fetching the rest; not the forms
    // run natively under another encoding, whose length differs.)
    let crossable = !matches!(i.mnemonic(), Mnemonic::Ud0 | Mnemonic::Ud1)
        && native_substitute(form.code).is_none();
    if matches!(shape(&i), Shape::Plain) && crossable && rng.chance(1) {
        // Across the end of the code page: the fetch faults (#PF) on both sides.
        let len = encode_at(&i, at)?.len() as u64;
        if len > 1 {
            at = lay.code_end() - rng.range(1, len);
        }
    }
    // A lazily-flagged instruction before the one under test, a quarter of the time (not
    // across the page end: the fetch fault is the point there).
    let pre = match (at == lay.body() && rng.chance(25), flag_setter(&i, rng)) {
        (true, Some(p)) => encode_at(&p, at)?,
        _ => Vec::new(),
    };
    let (body, decoded, taken) = build_body(&i, lay, at, &pre)?;
    // The round trip must give the same form (or, with a LOCK that is invalid, #UD).
    if decoded.code() != form.code && !(i.has_lock_prefix() && decoded.is_invalid()) {
        return None;
    }
    fixups(&decoded, &mut st, rng, lay, a, taken);
    for (r, v) in &addr_regs.sets {
        set_reg(&mut st.gpr, *r, *v);
    }
    if fixed_mem {
        a = Some(effective_address(&decoded, &st.gpr));
    }
    if let (Some(a), Some(_)) = (a, mem_k) {
        if !decoded.is_invalid() && effective_address(&decoded, &st.gpr) != a {
            return None;
        }
    }
    let native_body = native_substitute(form.code).and_then(|c| {
        let mut n = decoded;
        n.set_code(c);
        let mut b = pre.clone();
        b.extend(encode_at(&n, at + pre.len() as u64)?);
        Some(b)
    });
    let m = decoded.mnemonic();
    let mut ignore_gpr = 0u16;
    let scans_as_bsf = matches!(m, Mnemonic::Bsf | Mnemonic::Bsr) || native_body.is_some();
    if is_bit_scan(m) && m != Mnemonic::Popcnt && scans_as_bsf {
        let src = match decoded.op1_kind() {
            OpKind::Register => get_reg(&st.gpr, decoded.op1_register()),
            _ => a.map_or(1, |a| le(&peek(&st, lay, a, decoded.memory_size().size()))),
        };
        if src == 0 {
            ignore_gpr |= gpr_index(decoded.op0_register()).map_or(0, |n| 1 << n);
        }
    }
    let mut ignore_mem = Vec::new();
    if let Some(a) = a {
        match decoded.memory_size() {
            MemorySize::FpuEnv14 | MemorySize::FpuState94 => ignore_mem.push((a + 6, 8)),
            MemorySize::FpuEnv28 | MemorySize::FpuState108 => {
                // Pointers, opcode, selectors, and the reserved upper halves of the
                // control/status/tag dwords.
                ignore_mem.push((a + 12, 16));
                for r in [2, 6, 10] {
                    ignore_mem.push((a + r, 2));
                }
            }
            MemorySize::Fxsave_512Byte | MemorySize::Fxsave64_512Byte => {
                // Reserved byte 5, FOP/FIP/FDP, MXCSR_MASK (a CPU model property), the
                // reserved bytes of each ST slot, and the reserved/available tail.
                ignore_mem.push((a + 5, 19));
                ignore_mem.push((a + 28, 4));
                for k in 0..8 {
                    ignore_mem.push((a + 32 + 16 * k + 10, 6));
                }
                ignore_mem.push((a + 416, 96));
            }
            _ => {}
        }
    }
    let approx = approx_for(m);
    Some(Case {
        flags_mask: TESTED_FLAGS & !undefined_flags(&decoded, &st),
        fsw_mask: fsw_mask(&decoded, approx),
        instr: decoded,
        body,
        at,
        native_body,
        state: st,
        ignore_gpr,
        ignore_mem,
        approx,
        ea: a,
    })
}
