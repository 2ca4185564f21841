//! SSE, SSE2 and MMX instructions, LDMXCSR/STMXCSR, FXSAVE/FXRSTOR.
//!
//! Floating point runs on the host's SSE unit (`host`), so results and exception flags are
//! bit-exact with hardware; `float` applies the guest's MXCSR around it. Integer SIMD, moves
//! and shuffles are plain Rust (`int`, `moves`). MMX registers live in the x87 register file
//! (`operand::mm_get`/`mm_put`). SSE3 to SSE4.2 and the `v3` level's AVX, AVX2, FMA, F16C and
//! bit-manipulation instructions run as themselves on the host (`stub`), gathers and masked
//! moves element by element (`masked`); the AVX state is in `xsave`.

mod float;
mod host;
mod int;
mod masked;
mod moves;
mod operand;
mod state;
mod stub;
#[cfg(test)]
mod tests;
mod xsave;

use super::{data, Handler, Insn};
use iced_x86::{Mnemonic, OpKind};
use int::{int2, op};
use moves::{kind, mov};
use operand::uses;

/// Both operands are registers.
fn reg_reg(insn: &Insn) -> bool {
    insn.i.op0_kind() == OpKind::Register && insn.i.op1_kind() == OpKind::Register
}

/// The handler for `insn` if it belongs to this group.
pub fn handler(insn: &mut Insn) -> Option<Handler> {
    move_handler(insn)
        .or_else(|| float_handler(insn))
        .or_else(|| int_handler(insn))
        .or_else(|| state_handler(insn))
        .or_else(|| masked::handler(insn))
        .or_else(|| stub::handler(insn))
}

pub use operand::must_align;
pub use stub::general_purpose as runs_on_host_as_integer;
pub use stub::prepare as prepare_host_stubs;
pub use stub::{is_vex_vector, vex_alignment};
pub use xsave::xsave_size;

/// Whether the translator may run `insn` as itself on the host, with the guest's XMM
/// registers in the host's: `Some(true)` for floating point, which must run under the guest's
/// MXCSR, `Some(false)` for moves, logic and integer SIMD, `None` for what only this module
/// runs (MMX registers, which live in the x87 file; MXCSR and FXSAVE state; the masked stores,
/// whose implicit operand the translator's probe does not cover).
pub fn host_kind(insn: &Insn) -> Option<bool> {
    use Mnemonic::*;
    if !insn.implemented || uses(insn).mm {
        return None;
    }
    match insn.i.mnemonic() {
        Maskmovq | Maskmovdqu | Vmaskmovdqu | Movnti | Movq2dq | Movdq2q => None,
        _ if float_handler(insn).is_some() => Some(true),
        _ if move_handler(insn).is_some() || int_handler(insn).is_some() => Some(false),
        _ if stub::covers(&insn.i) => Some(stub::is_float(&insn.i)),
        _ => None,
    }
}

fn move_handler(insn: &Insn) -> Option<Handler> {
    use Mnemonic::*;
    Some(match insn.i.mnemonic() {
        Movaps | Movapd | Movups | Movupd | Movdqa | Movdqu | Movntps | Movntpd | Movntdq
        | Movntq | Movd | Movq | Movq2dq | Movdq2q => mov::<{ kind::COPY }>,
        Movss | Movsd if reg_reg(insn) => mov::<{ kind::MERGE }>,
        Movss | Movsd => mov::<{ kind::COPY }>,
        Movlps | Movlpd if insn.i.op0_kind() == OpKind::Memory => mov::<{ kind::COPY }>,
        Movlps | Movlpd => mov::<{ kind::MERGE }>,
        Movhps | Movhpd if insn.i.op0_kind() == OpKind::Memory => mov::<{ kind::HIGH_STORE }>,
        Movhps | Movhpd | Movlhps => mov::<{ kind::HIGH_LOAD }>,
        Movhlps => mov::<{ kind::LOW_FROM_HIGH }>,
        // An integer store with a non-temporal hint: no SSE state, no SSE checks.
        Movnti => data::mov,
        Maskmovq | Maskmovdqu | Vmaskmovdqu => moves::maskmov,
        Movmskps => int2::<{ op::MOVMSKPS }>,
        Movmskpd => int2::<{ op::MOVMSKPD }>,
        Pmovmskb => int2::<{ op::PMOVMSKB }>,
        _ => return None,
    })
}

fn float_handler(insn: &Insn) -> Option<Handler> {
    use float::*;
    use Mnemonic::*;
    Some(match insn.i.mnemonic() {
        Addps => addps,
        Addpd => addpd,
        Addss => addss,
        Addsd => addsd,
        Subps => subps,
        Subpd => subpd,
        Subss => subss,
        Subsd => subsd,
        Mulps => mulps,
        Mulpd => mulpd,
        Mulss => mulss,
        Mulsd => mulsd,
        Divps => divps,
        Divpd => divpd,
        Divss => divss,
        Divsd => divsd,
        Minps => minps,
        Minpd => minpd,
        Minss => minss,
        Minsd => minsd,
        Maxps => maxps,
        Maxpd => maxpd,
        Maxss => maxss,
        Maxsd => maxsd,
        Sqrtps => sqrtps,
        Sqrtpd => sqrtpd,
        Sqrtss => sqrtss,
        Sqrtsd => sqrtsd,
        Rcpps => rcpps,
        Rcpss => rcpss,
        Rsqrtps => rsqrtps,
        Rsqrtss => rsqrtss,
        Cmpps => cmp::<0>,
        Cmppd => cmp::<1>,
        Cmpss => cmp::<2>,
        Cmpsd => cmp::<3>,
        Comiss => comis::<0>,
        Ucomiss => comis::<1>,
        Comisd => comis::<2>,
        Ucomisd => comis::<3>,
        Cvtps2pd => cvtps2pd,
        Cvtpd2ps => cvtpd2ps,
        Cvtss2sd => cvtss2sd,
        Cvtsd2ss => cvtsd2ss,
        Cvtdq2ps => cvtdq2ps,
        Cvtps2dq => cvtps2dq,
        Cvttps2dq => cvttps2dq,
        Cvtdq2pd => cvtdq2pd,
        Cvtpd2dq => cvtpd2dq,
        Cvttpd2dq => cvttpd2dq,
        Cvtpi2ps => cvtpi2ps,
        Cvtpi2pd => cvtpi2pd,
        Cvtps2pi => cvtps2pi,
        Cvttps2pi => cvttps2pi,
        Cvtpd2pi => cvtpd2pi,
        Cvttpd2pi => cvttpd2pi,
        Cvtss2si => to_int::<0>,
        Cvttss2si => to_int::<1>,
        Cvtsd2si => to_int::<2>,
        Cvttsd2si => to_int::<3>,
        Cvtsi2ss => from_int::<false>,
        Cvtsi2sd => from_int::<true>,
        _ => return None,
    })
}

fn int_handler(insn: &Insn) -> Option<Handler> {
    use op::*;
    use Mnemonic::*;
    Some(match insn.i.mnemonic() {
        Paddb => int2::<PADDB>,
        Paddw => int2::<PADDW>,
        Paddd => int2::<PADDD>,
        Paddq => int2::<PADDQ>,
        Paddsb => int2::<PADDSB>,
        Paddsw => int2::<PADDSW>,
        Paddusb => int2::<PADDUSB>,
        Paddusw => int2::<PADDUSW>,
        Psubb => int2::<PSUBB>,
        Psubw => int2::<PSUBW>,
        Psubd => int2::<PSUBD>,
        Psubq => int2::<PSUBQ>,
        Psubsb => int2::<PSUBSB>,
        Psubsw => int2::<PSUBSW>,
        Psubusb => int2::<PSUBUSB>,
        Psubusw => int2::<PSUBUSW>,
        Pmullw => int2::<PMULLW>,
        Pmulhw => int2::<PMULHW>,
        Pmulhuw => int2::<PMULHUW>,
        Pmuludq => int2::<PMULUDQ>,
        Pmaddwd => int2::<PMADDWD>,
        Pavgb => int2::<PAVGB>,
        Pavgw => int2::<PAVGW>,
        Pminub => int2::<PMINUB>,
        Pmaxub => int2::<PMAXUB>,
        Pminsw => int2::<PMINSW>,
        Pmaxsw => int2::<PMAXSW>,
        Psadbw => int2::<PSADBW>,
        Pcmpeqb => int2::<PCMPEQB>,
        Pcmpeqw => int2::<PCMPEQW>,
        Pcmpeqd => int2::<PCMPEQD>,
        Pcmpgtb => int2::<PCMPGTB>,
        Pcmpgtw => int2::<PCMPGTW>,
        Pcmpgtd => int2::<PCMPGTD>,
        Pand | Andps | Andpd => int2::<AND>,
        Pandn | Andnps | Andnpd => int2::<ANDN>,
        Por | Orps | Orpd => int2::<OR>,
        Pxor | Xorps | Xorpd => int2::<XOR>,
        Psllw => int2::<PSLLW>,
        Pslld => int2::<PSLLD>,
        Psllq => int2::<PSLLQ>,
        Psrlw => int2::<PSRLW>,
        Psrld => int2::<PSRLD>,
        Psrlq => int2::<PSRLQ>,
        Psraw => int2::<PSRAW>,
        Psrad => int2::<PSRAD>,
        Pslldq => int2::<PSLLDQ>,
        Psrldq => int2::<PSRLDQ>,
        Packsswb => int2::<PACKSSWB>,
        Packssdw => int2::<PACKSSDW>,
        Packuswb => int2::<PACKUSWB>,
        Punpcklbw => int2::<UNPCKLBW>,
        Punpcklwd => int2::<UNPCKLWD>,
        Punpckldq | Unpcklps => int2::<UNPCKLDQ>,
        Punpcklqdq | Unpcklpd => int2::<UNPCKLQDQ>,
        Punpckhbw => int2::<UNPCKHBW>,
        Punpckhwd => int2::<UNPCKHWD>,
        Punpckhdq | Unpckhps => int2::<UNPCKHDQ>,
        Punpckhqdq | Unpckhpd => int2::<UNPCKHQDQ>,
        Pshufd => int2::<PSHUFD>,
        Pshufw => int2::<PSHUFW>,
        Pshuflw => int2::<PSHUFLW>,
        Pshufhw => int2::<PSHUFHW>,
        Shufps => int2::<SHUFPS>,
        Shufpd => int2::<SHUFPD>,
        // PEXTRW to memory is SSE4.1.
        Pextrw if insn.i.op0_kind() == OpKind::Register => int2::<PEXTRW>,
        Pinsrw => int2::<PINSRW>,
        _ => return None,
    })
}

fn state_handler(insn: &Insn) -> Option<Handler> {
    use Mnemonic::*;
    Some(match insn.i.mnemonic() {
        Ldmxcsr | Vldmxcsr => state::ldmxcsr,
        Stmxcsr | Vstmxcsr => state::stmxcsr,
        Fxsave | Fxsave64 => state::fxsave,
        Fxrstor | Fxrstor64 => state::fxrstor,
        Emms => state::emms,
        Xsave | Xsave64 | Xsaveopt | Xsaveopt64 => xsave::xsave,
        Xrstor | Xrstor64 => xsave::xrstor,
        Xgetbv => xsave::xgetbv,
        Xsetbv => xsave::xsetbv,
        Vzeroupper => xsave::vzeroupper,
        Vzeroall => xsave::vzeroall,
        _ => return None,
    })
}
