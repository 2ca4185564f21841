//! From iced-x86's decoded instruction to an [`Insn`]: operands in a cheap form and the
//! handler that implements the instruction, chosen once.

use crate::cpuid::Isa;
use crate::exec::{
    self, alu, control, data, string, system, Handler, Insn, MemRef, Opnd, NONE, RIP,
};
use iced_x86::{Instruction, Mnemonic, OpKind, Register};

/// Maps a general-purpose register to (index, size); AH..BH map to 16..=19.
pub fn gpr(r: Register) -> Option<(u8, u8)> {
    let v = r as u32;
    let al = Register::AL as u32;
    let ax = Register::AX as u32;
    let eax = Register::EAX as u32;
    let rax = Register::RAX as u32;
    Some(match v {
        _ if (al..al + 4).contains(&v) => ((v - al) as u8, 1),
        _ if (al + 4..al + 8).contains(&v) => ((16 + v - al - 4) as u8, 1),
        _ if (al + 8..al + 20).contains(&v) => ((v - al - 4) as u8, 1),
        _ if (ax..ax + 16).contains(&v) => ((v - ax) as u8, 2),
        _ if (eax..eax + 16).contains(&v) => ((v - eax) as u8, 4),
        _ if (rax..rax + 16).contains(&v) => ((v - rax) as u8, 8),
        _ => return None,
    })
}

fn seg_index(r: Register) -> u8 {
    match r {
        Register::ES => 0,
        Register::CS => 1,
        Register::SS => 2,
        Register::FS => 4,
        Register::GS => 5,
        _ => 3,
    }
}

/// Address size in bytes of the instruction's memory operand.
fn address_size(i: &Instruction, bitness: u32) -> u8 {
    let from_reg = |r: Register| match r {
        Register::RIP => Some(8),
        Register::EIP => Some(4),
        r => gpr(r).map(|(_, s)| s),
    };
    if let Some(s) = from_reg(i.memory_base()).or_else(|| from_reg(i.memory_index())) {
        return s;
    }
    match i.memory_displ_size() {
        2 => 2,
        4 => 4,
        8 => 8,
        _ => (bitness / 8) as u8,
    }
}

/// String-instruction address size from its implicit rSI/rDI operand kinds.
fn string_address_size(i: &Instruction) -> Option<u8> {
    (0..i.op_count()).find_map(|k| match i.op_kind(k) {
        OpKind::MemorySegSI | OpKind::MemorySegDI | OpKind::MemoryESDI => Some(2),
        OpKind::MemorySegESI | OpKind::MemorySegEDI | OpKind::MemoryESEDI => Some(4),
        OpKind::MemorySegRSI | OpKind::MemorySegRDI | OpKind::MemoryESRDI => Some(8),
        _ => None,
    })
}

fn operand(i: &Instruction, k: u32) -> Opnd {
    match i.op_kind(k) {
        OpKind::Register => match gpr(i.op_register(k)) {
            Some((r, _)) => Opnd::Reg(r),
            None => Opnd::None,
        },
        OpKind::Memory => Opnd::Mem,
        OpKind::Immediate8
        | OpKind::Immediate8_2nd
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => Opnd::Imm(i.immediate(k)),
        _ => Opnd::None,
    }
}

/// Size in bytes of operand `k` (register or memory), if it has one.
fn operand_size(i: &Instruction, k: u32) -> Option<u8> {
    match i.op_kind(k) {
        OpKind::Register => gpr(i.op_register(k)).map(|(_, s)| s),
        OpKind::Memory => match i.memory_size().size() {
            0 => None,
            s => Some(s as u8),
        },
        _ => None,
    }
}

/// Makes `i`'s memory operand `[base]`, with no index, displacement or segment override: how
/// an instruction is re-encoded to run on the host with its operand at a host pointer.
pub fn rebase_memory(i: &mut Instruction, base: Register) {
    i.set_memory_base(base);
    i.set_memory_index(Register::None);
    i.set_memory_index_scale(1);
    i.set_memory_displacement64(0);
    i.set_memory_displ_size(0);
    i.set_segment_prefix(Register::None);
}

/// Builds the executable form of `i`, decoded at `bitness`, for a CPU that advertises `isa`
/// (an instruction of an extension it does not advertise raises #UD, as on such a CPU).
pub fn lower(i: &Instruction, bitness: u32, isa: Isa) -> Insn {
    let op = [
        if i.op_count() > 0 {
            operand(i, 0)
        } else {
            Opnd::None
        },
        if i.op_count() > 1 {
            operand(i, 1)
        } else {
            Opnd::None
        },
        if i.op_count() > 2 {
            operand(i, 2)
        } else {
            Opnd::None
        },
    ];
    let has_mem = (0..i.op_count()).any(|k| i.op_kind(k) == OpKind::Memory);
    let asize = string_address_size(i)
        .or_else(|| has_mem.then(|| address_size(i, bitness)))
        .unwrap_or_else(|| loop_address_size(i, bitness));
    let next_ip = i.next_ip();
    let mem = if has_mem {
        let base = match i.memory_base() {
            Register::None => NONE,
            Register::RIP | Register::EIP => RIP,
            r => gpr(r).map_or(NONE, |(n, _)| n),
        };
        let index = gpr(i.memory_index()).map_or(NONE, |(n, _)| n);
        // iced resolves RIP-relative displacements to absolute addresses at the decode IP;
        // store them relative to the next instruction so the block can run at any address.
        let disp = if base == RIP {
            i.memory_displacement64().wrapping_sub(next_ip)
        } else {
            i.memory_displacement64()
        };
        MemRef {
            base,
            index,
            scale: i.memory_index_scale().trailing_zeros() as u8,
            seg: seg_index(memory_segment(i, bitness)),
            disp,
        }
    } else {
        // String instructions and XLAT: the source segment (overridable).
        MemRef {
            base: NONE,
            index: NONE,
            scale: 0,
            seg: seg_index(memory_segment(i, bitness)),
            disp: 0,
        }
    };
    let osize = operand_size(i, 0)
        .or_else(|| (i.op_count() > 1).then(|| operand_size(i, 1)).flatten())
        .or_else(|| implicit_operand_size(i))
        .unwrap_or((bitness / 8) as u8);
    let ssize = if i.op_count() > 1 {
        operand_size(i, 1).unwrap_or(osize)
    } else {
        osize
    };
    let rel = match i.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            i.near_branch_target().wrapping_sub(next_ip) as i64
        }
        _ => 0,
    };
    let rep = if i.has_rep_prefix() || i.has_repe_prefix() {
        1
    } else if i.has_repne_prefix() {
        2
    } else {
        0
    };
    let mut insn = Insn {
        exec: exec::unimplemented,
        len: i.len() as u8,
        osize,
        ssize,
        asize,
        cc: condition(i),
        rep,
        op,
        mem,
        rel,
        aux: 0,
        implemented: true,
        i: *i,
    };
    let count_zeros = matches!(i.mnemonic(), Mnemonic::Tzcnt | Mnemonic::Lzcnt);
    if count_zeros && isa.allows(i) {
        // With BMI1/LZCNT, F3 0F BC/BD are TZCNT/LZCNT (the host runs them); without, they
        // are BSF/BSR with an ignored prefix (`handler`).
        if let Some(h) = exec::extended(&mut insn) {
            insn.exec = h;
            return insn;
        }
    } else if !isa.allows(i) && !count_zeros {
        insn.implemented = false;
        insn.exec = exec::invalid;
        return insn;
    }
    insn.exec = match handler(&mut insn) {
        Some(h) => h,
        None => {
            insn.implemented = false;
            exec::unimplemented
        }
    };
    insn
}

/// The segment of the memory operand. In 64-bit mode CS, DS, ES and SS overrides are
/// ignored: the default segment (SS for an rBP or rSP base, else DS) decides whether a
/// non-canonical address raises #SS or #GP.
fn memory_segment(i: &Instruction, bitness: u32) -> Register {
    let seg = i.memory_segment();
    if bitness != 64
        || !matches!(
            seg,
            Register::ES | Register::CS | Register::SS | Register::DS
        )
    {
        return seg;
    }
    match i.memory_base() {
        Register::RSP | Register::RBP | Register::ESP | Register::EBP => Register::SS,
        _ => Register::DS,
    }
}

/// Operand size of instructions whose operands do not say it: the accumulator extensions,
/// ENTER/LEAVE, near returns and near branches (the 16-bit forms truncate IP).
fn implicit_operand_size(i: &Instruction) -> Option<u8> {
    use iced_x86::Code::*;
    Some(match i.code() {
        Cbw | Cwd | Enterw_imm16_imm8 | Leavew | Retnw | Retnw_imm16 => 2,
        Cwde | Cdq | Enterd_imm16_imm8 | Leaved | Retnd | Retnd_imm16 => 4,
        Cdqe | Cqo | Enterq_imm16_imm8 | Leaveq | Retnq | Retnq_imm16 => 8,
        _ => match i.op0_kind() {
            OpKind::NearBranch16 => 2,
            OpKind::NearBranch32 => 4,
            OpKind::NearBranch64 => 8,
            _ => return None,
        },
    })
}

/// Address size of LOOP/JCXZ (their count register) and of operand-less forms.
fn loop_address_size(i: &Instruction, bitness: u32) -> u8 {
    use iced_x86::Code::*;
    match i.code() {
        Loopne_rel8_16_CX | Loope_rel8_16_CX | Loop_rel8_16_CX | Jcxz_rel8_16
        | Loopne_rel8_32_CX | Loope_rel8_32_CX | Loop_rel8_32_CX | Jcxz_rel8_32 => 2,
        Loopne_rel8_16_ECX | Loope_rel8_16_ECX | Loop_rel8_16_ECX | Jecxz_rel8_16
        | Loopne_rel8_32_ECX | Loope_rel8_32_ECX | Loop_rel8_32_ECX | Jecxz_rel8_32
        | Loopne_rel8_64_ECX | Loope_rel8_64_ECX | Loop_rel8_64_ECX | Jecxz_rel8_64 => 4,
        Loopne_rel8_16_RCX | Loope_rel8_16_RCX | Loop_rel8_16_RCX | Jrcxz_rel8_16
        | Loopne_rel8_64_RCX | Loope_rel8_64_RCX | Loop_rel8_64_RCX | Jrcxz_rel8_64 => 8,
        _ => (bitness / 8) as u8,
    }
}

fn condition(i: &Instruction) -> u8 {
    use iced_x86::ConditionCode::*;
    match i.condition_code() {
        o => 0,
        no => 1,
        b => 2,
        ae => 3,
        e => 4,
        ne => 5,
        be => 6,
        a => 7,
        s => 8,
        ns => 9,
        p => 10,
        np => 11,
        l => 12,
        ge => 13,
        le => 14,
        g => 15,
        _ => 0,
    }
}

/// Picks the handler (`None`: not implemented); may adjust operand facts the handler relies
/// on.
fn handler(insn: &mut Insn) -> Option<Handler> {
    use Mnemonic::*;
    let i = insn.i;
    let rr = matches!(insn.op, [Opnd::Reg(_), Opnd::Reg(_), _]);
    let ri = matches!(insn.op, [Opnd::Reg(_), Opnd::Imm(_), _]);
    macro_rules! alu {
        ($op:expr) => {{
            use alu::{alu_ri as ri_, alu_rr as rr_};
            if rr {
                by_size(
                    insn.osize,
                    [
                        rr_::<{ $op }, 1>,
                        rr_::<{ $op }, 2>,
                        rr_::<{ $op }, 4>,
                        rr_::<{ $op }, 8>,
                    ],
                )
            } else if ri {
                by_size(
                    insn.osize,
                    [
                        ri_::<{ $op }, 1>,
                        ri_::<{ $op }, 2>,
                        ri_::<{ $op }, 4>,
                        ri_::<{ $op }, 8>,
                    ],
                )
            } else {
                alu::alu::<{ $op }>
            }
        }};
    }
    let stack_bytes = (-i.stack_pointer_increment()).unsigned_abs() as u8;
    Some(match i.mnemonic() {
        INVALID => exec::invalid,
        Add => alu!(alu::ADD),
        Or => alu!(alu::OR),
        Adc => alu!(alu::ADC),
        Sbb => alu!(alu::SBB),
        And => alu!(alu::AND),
        Sub => alu!(alu::SUB),
        Xor => alu!(alu::XOR),
        Cmp => alu!(alu::CMP),
        Test => alu!(alu::TEST),
        Inc if matches!(insn.op[0], Opnd::Reg(_)) => {
            use alu::incdec_r as f;
            by_size(
                insn.osize,
                [f::<false, 1>, f::<false, 2>, f::<false, 4>, f::<false, 8>],
            )
        }
        Dec if matches!(insn.op[0], Opnd::Reg(_)) => {
            use alu::incdec_r as f;
            by_size(
                insn.osize,
                [f::<true, 1>, f::<true, 2>, f::<true, 4>, f::<true, 8>],
            )
        }
        Inc => alu::inc,
        Dec => alu::dec,
        Neg => alu::neg,
        Not => alu::not,
        Mul => alu::mul,
        Imul => alu::imul,
        Div => alu::div,
        Idiv => alu::idiv,
        Shl | Sal => alu::shift::<{ alu::SHL }>,
        Shr => alu::shift::<{ alu::SHR }>,
        Sar => alu::shift::<{ alu::SAR }>,
        Rol => alu::shift::<{ alu::ROL }>,
        Ror => alu::shift::<{ alu::ROR }>,
        Rcl => alu::shift::<{ alu::RCL }>,
        Rcr => alu::shift::<{ alu::RCR }>,
        Shld => alu::shld_shrd::<true>,
        Shrd => alu::shld_shrd::<false>,
        Bt => alu::bt::<{ alu::BT }>,
        Bts => alu::bt::<{ alu::BTS }>,
        Btr => alu::bt::<{ alu::BTR }>,
        Btc => alu::bt::<{ alu::BTC }>,
        Bsf | Tzcnt => alu::bsf_bsr::<false>,
        Bsr | Lzcnt => alu::bsf_bsr::<true>,
        Popcnt => alu::popcnt,
        Xadd => alu::xadd,
        Cmpxchg => alu::cmpxchg,
        Cmpxchg8b | Cmpxchg16b => alu::cmpxchg_wide,
        Bswap => alu::bswap,
        Cbw | Cwde | Cdqe => alu::cbw,
        Cwd | Cdq | Cqo => alu::cwd,
        Daa => alu::daa_das::<false>,
        Das => alu::daa_das::<true>,
        Aaa => alu::aaa_aas::<false>,
        Aas => alu::aaa_aas::<true>,
        Aam => alu::aam,
        Aad => alu::aad,

        Mov => match (i.op0_kind(), i.op1_kind()) {
            (OpKind::Register, OpKind::Register) => {
                let (a, b) = (i.op0_register(), i.op1_register());
                if a.is_cr() {
                    system::mov_to_cr
                } else if b.is_cr() {
                    system::mov_from_cr
                } else if a.is_dr() {
                    system::mov_to_dr
                } else if b.is_dr() {
                    system::mov_from_dr
                } else if a.is_segment_register() {
                    system::mov_to_sreg
                } else if b.is_segment_register() {
                    system::mov_from_sreg
                } else if a.is_tr() || b.is_tr() {
                    exec::invalid
                } else {
                    use data::mov_rr as f;
                    by_size(insn.osize, [f::<1>, f::<2>, f::<4>, f::<8>])
                }
            }
            (OpKind::Register, OpKind::Memory) if i.op0_register().is_segment_register() => {
                system::mov_to_sreg
            }
            (OpKind::Memory, OpKind::Register) if i.op1_register().is_segment_register() => {
                system::mov_from_sreg
            }
            _ if ri => {
                use data::mov_ri as f;
                by_size(insn.osize, [f::<1>, f::<2>, f::<4>, f::<8>])
            }
            _ => data::mov,
        },
        Movzx => data::movzx,
        Movsx | Movsxd => data::movsx,
        Lea => data::lea,
        Xchg => data::xchg,
        Push => {
            insn.osize = stack_bytes;
            if i.op0_kind() == OpKind::Register && i.op0_register().is_segment_register() {
                system::push_sreg
            } else {
                data::push_op
            }
        }
        Pop => {
            insn.osize = stack_bytes;
            if i.op0_kind() == OpKind::Register && i.op0_register().is_segment_register() {
                system::pop_sreg
            } else {
                data::pop_op
            }
        }
        Pushf | Pushfd | Pushfq => {
            insn.osize = stack_bytes;
            data::pushf
        }
        Popf | Popfd | Popfq => {
            insn.osize = stack_bytes;
            data::popf
        }
        Pusha | Pushad => {
            insn.osize = stack_bytes / 8;
            data::pusha
        }
        Popa | Popad => {
            insn.osize = stack_bytes / 8;
            data::popa
        }
        Lahf => data::lahf,
        Sahf => data::sahf,
        Cmovo | Cmovno | Cmovb | Cmovae | Cmove | Cmovne | Cmovbe | Cmova | Cmovs | Cmovns
        | Cmovp | Cmovnp | Cmovl | Cmovge | Cmovle | Cmovg => data::cmov,
        Seto | Setno | Setb | Setae | Sete | Setne | Setbe | Seta | Sets | Setns | Setp | Setnp
        | Setl | Setge | Setle | Setg => data::setcc,
        Enter => data::enter,
        Leave => data::leave,
        Xlatb => data::xlat,
        Nop | Pause | Lfence | Mfence | Sfence | Prefetch | Prefetchw | Prefetchnta
        | Prefetcht0 | Prefetcht1 | Prefetcht2 | Endbr32 | Endbr64 => data::nop,
        Clflush | Clflushopt => data::clflush,
        Clc => data::flag_op::<0>,
        Stc => data::flag_op::<1>,
        Cmc => data::flag_op::<2>,
        Cld => data::flag_op::<3>,
        Std => data::flag_op::<4>,

        Jmp => match i.op0_kind() {
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => control::jmp_rel,
            OpKind::FarBranch16 | OpKind::FarBranch32 => {
                insn.osize = far_branch_size(&i);
                control::jmp_far_direct
            }
            _ if is_far_pointer(&i) => {
                insn.osize = (i.memory_size().size() - 2) as u8;
                control::jmp_far_ind
            }
            _ => control::jmp_ind,
        },
        Jo | Jno | Jb | Jae | Je | Jne | Jbe | Ja | Js | Jns | Jp | Jnp | Jl | Jge | Jle | Jg => {
            control::jcc
        }
        Call => match i.op0_kind() {
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => control::call_rel,
            OpKind::FarBranch16 | OpKind::FarBranch32 => {
                insn.osize = far_branch_size(&i);
                control::call_far_direct
            }
            _ if is_far_pointer(&i) => {
                insn.osize = (i.memory_size().size() - 2) as u8;
                control::call_far_ind
            }
            _ => control::call_ind,
        },
        Ret => control::ret,
        Retf => {
            insn.osize = match i.code() {
                iced_x86::Code::Retfw | iced_x86::Code::Retfw_imm16 => 2,
                iced_x86::Code::Retfq | iced_x86::Code::Retfq_imm16 => 8,
                _ => 4,
            };
            control::ret_far
        }
        Loop | Loope | Loopne => control::loop_,
        Jcxz | Jecxz | Jrcxz => control::jcxz,
        Int | Int3 | Into | Int1 => control::int,
        Iret | Iretd | Iretq => {
            insn.osize = match i.mnemonic() {
                Iret => 2,
                Iretd => 4,
                _ => 8,
            };
            control::iret
        }
        Syscall => control::syscall,
        Sysret | Sysretq => {
            insn.osize = if i.mnemonic() == Sysretq { 8 } else { 4 };
            control::sysret
        }
        Sysenter => control::sysenter,
        Sysexit | Sysexitq => {
            insn.osize = if i.mnemonic() == Sysexitq { 8 } else { 4 };
            control::sysexit
        }

        Movsb | Movsw | Movsd | Movsq if !is_sse(&i) => {
            string_size(insn);
            string::movs
        }
        Stosb | Stosw | Stosd | Stosq => {
            string_size(insn);
            string::stos
        }
        Lodsb | Lodsw | Lodsd | Lodsq => {
            string_size(insn);
            string::lods
        }
        Cmpsb | Cmpsw | Cmpsd | Cmpsq if !is_sse(&i) => {
            string_size(insn);
            string::cmps
        }
        Scasb | Scasw | Scasd | Scasq => {
            string_size(insn);
            string::scas
        }
        Insb | Insw | Insd => {
            string_size(insn);
            string::ins
        }
        Outsb | Outsw | Outsd => {
            string_size(insn);
            string::outs
        }

        In => {
            insn.osize = gpr(i.op0_register()).map_or(1, |(_, s)| s);
            system::in_
        }
        Out => {
            insn.osize = gpr(i.op1_register()).map_or(1, |(_, s)| s);
            system::out
        }
        Hlt => system::hlt,
        Cli => system::cli,
        Sti => system::sti,
        Cpuid => system::cpuid,
        Rdtsc => system::rdtsc,
        Rdtscp => system::rdtscp,
        Rdmsr => system::rdmsr,
        Wrmsr => system::wrmsr,
        Rdpmc => system::rdpmc,
        Lgdt => system::lgdt_lidt::<false>,
        Lidt => system::lgdt_lidt::<true>,
        Sgdt => system::sgdt_sidt::<false>,
        Sidt => system::sgdt_sidt::<true>,
        Lldt => system::lldt,
        Ltr => system::ltr,
        Sldt => system::sldt_str::<false>,
        Str => system::sldt_str::<true>,
        Lmsw => system::lmsw,
        Smsw => system::smsw,
        Clts => system::clts,
        Invlpg => system::invlpg,
        Wbinvd | Invd => system::privileged_nop,
        Swapgs => system::swapgs,
        Lds | Les | Lfs | Lgs | Lss => {
            insn.osize = (i.memory_size().size() - 2) as u8;
            system::load_far_pointer
        }
        Lar => system::descriptor_query::<0>,
        Lsl => system::descriptor_query::<1>,
        Verr => system::descriptor_query::<2>,
        Verw => system::descriptor_query::<3>,
        Ud0 | Ud1 | Ud2 => exec::invalid,
        _ => return crate::exec::extended(insn),
    })
}

/// The handler for operand size `size` out of its 1-, 2-, 4- and 8-byte monomorphizations
/// (the register forms of the hottest instructions, so they skip a size dispatch at run time).
fn by_size(size: u8, h: [Handler; 4]) -> Handler {
    match size {
        1 => h[0],
        2 => h[1],
        4 => h[2],
        _ => h[3],
    }
}

/// SSE forms share mnemonics with string instructions (MOVSD, CMPSD).
fn is_sse(i: &Instruction) -> bool {
    (0..i.op_count()).any(|k| i.op_kind(k) == OpKind::Register && i.op_register(k).is_xmm())
}

/// String instruction element size from the mnemonic's suffix.
fn string_size(insn: &mut Insn) {
    use Mnemonic::*;
    insn.osize = match insn.i.mnemonic() {
        Movsb | Stosb | Lodsb | Cmpsb | Scasb | Insb | Outsb => 1,
        Movsw | Stosw | Lodsw | Cmpsw | Scasw | Insw | Outsw => 2,
        Movsd | Stosd | Lodsd | Cmpsd | Scasd | Insd | Outsd => 4,
        _ => 8,
    };
}

/// Offset size of a direct far branch (ptr16:16 or ptr16:32).
fn far_branch_size(i: &Instruction) -> u8 {
    if i.op0_kind() == OpKind::FarBranch32 {
        4
    } else {
        2
    }
}

/// A memory operand holding a far pointer (offset and selector).
fn is_far_pointer(i: &Instruction) -> bool {
    use iced_x86::MemorySize::*;
    matches!(i.memory_size(), SegPtr16 | SegPtr32 | SegPtr64)
}
