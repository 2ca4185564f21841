//! Code generation for a planned block: where guest registers live while it runs, the memory
//! probe, the templates for stack and branch instructions, and the cold paths.
//!
//! **Registers.** A guest register lives in the CPU struct, or in a host register once an
//! instruction has used it (`home`/`occupant`), and `dirty` says where the host copy is newer.
//! The thirteen host registers other than RSP, R14 (the TLB set) and R15 (the CPU) hold guest
//! registers of the same number, so most instructions are re-encoded with their own register
//! operands; guest RSP, R14 and R15 live in whichever host register is free, and instructions
//! naming them are re-encoded with that register. Scratch values (an address, the probe's
//! temporaries, a host pointer) take host registers no guest value needs at that moment,
//! preferring free ones. Nothing is written back on the main path except where the block
//! ends or calls out: a cold path that calls out writes back what is dirty first (it knows the
//! state at its branch) and reloads what the call clobbered, or everything, after the
//! interpreter ran.
//!
//! **Flags.** The guest's arithmetic flags are either in the host's RFLAGS or saved in
//! `Flags::res` (`Op::Native`), or both; `host_valid` and `saved` track which.

use super::compile::{Div, Native, Plan, Site, Targets};
use super::layout as lay;
use super::x64::{cc, reg::*, Alu, Asm, Fixup, Mem};
use crate::exec::{Insn, NONE, RIP};
use crate::flags::Op;
use iced_x86::{Encoder, Instruction, OpKind, Register};
use janus_engine::cpu::bits;

/// MXCSR's exception mask bits: translated floating point runs only with all of them set.
const MXCSR_MASKS: u32 = 0x1f80;

/// YMM0..YMM15 by number.
const YMM: [Register; 16] = [
    Register::YMM0,
    Register::YMM1,
    Register::YMM2,
    Register::YMM3,
    Register::YMM4,
    Register::YMM5,
    Register::YMM6,
    Register::YMM7,
    Register::YMM8,
    Register::YMM9,
    Register::YMM10,
    Register::YMM11,
    Register::YMM12,
    Register::YMM13,
    Register::YMM14,
    Register::YMM15,
];

/// Host registers for guest values and scratch values (not RSP, R14 = TLB set, R15 = CPU), in
/// the order scratch values take them: registers compiled code uses least come first.
const POOL: [u8; 13] = [
    R11, R10, R9, R8, RDX, RCX, RBX, RBP, R12, R13, RDI, RAX, RSI,
];

/// Host registers that need no REX prefix (the only ones an instruction naming AH..BH can use).
const LOW: u16 = 1 << RAX | 1 << RCX | 1 << RDX | 1 << RBX | 1 << RBP | 1 << RSI | 1 << RDI;

/// Host registers a call may clobber (System V).
const CALLER_SAVED: u16 =
    1 << RAX | 1 << RCX | 1 << RDX | 1 << RSI | 1 << RDI | 1 << R8 | 1 << R9 | 1 << R10 | 1 << R11;

/// Guest registers whose host register of the same number the host keeps for itself.
pub const FLOATING: u16 = 1 << RSP | 1 << R14 | 1 << R15;

pub fn bit(r: u8) -> u16 {
    1 << r
}

/// The register numbers in `mask`, lowest first.
fn regs_in(mask: u16) -> impl Iterator<Item = u8> {
    (0..16u8).filter(move |r| mask & bit(*r) != 0)
}

/// The host register `n` at `size` bytes (low byte for size 1).
pub fn sized(n: u8, size: usize) -> Option<Register> {
    use Register::*;
    const R64: [Register; 16] = [
        RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15,
    ];
    const R32: [Register; 16] = [
        EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI, R8D, R9D, R10D, R11D, R12D, R13D, R14D, R15D,
    ];
    const R16: [Register; 16] = [
        AX, CX, DX, BX, SP, BP, SI, DI, R8W, R9W, R10W, R11W, R12W, R13W, R14W, R15W,
    ];
    const R8B: [Register; 16] = [
        AL, CL, DL, BL, SPL, BPL, SIL, DIL, R8L, R9L, R10L, R11L, R12L, R13L, R14L, R15L,
    ];
    let n = n as usize & 15;
    Some(match size {
        8 => R64[n],
        4 => R32[n],
        2 => R16[n],
        1 => R8B[n],
        _ => return Option::None,
    })
}

fn cpu(disp: i32) -> Mem {
    Mem::at(R15, disp)
}

/// The register and flag state at a point of the main path, which cold code branching from
/// there (or resuming there) must write back or restore.
#[derive(Clone, Copy)]
struct Snap {
    /// Guest register held by each host register.
    occupant: [Option<u8>; 16],
    dirty: u16,
    xcached: u16,
    xdirty: u16,
    ycached: u16,
    ydirty: u16,
    mxcsr: bool,
    /// The host's FPU holds the guest's x87 registers.
    x87: bool,
    /// The host's RFLAGS hold the guest's flags.
    flags: bool,
}

impl Snap {
    fn occupied(&self) -> impl Iterator<Item = (u8, u8)> + '_ {
        (0..16u8).filter_map(|h| self.occupant[h as usize].map(|g| (h, g)))
    }
}

/// Out-of-line code, emitted after the block's main path.
enum Cold {
    /// The x87 image is older than `r.fpu`: make it (a call out), then go back.
    X87Prepare {
        from: Fixup,
        back: usize,
        snap: Snap,
    },
    /// A TLB probe missed: fill the TLB or run the instruction in the interpreter.
    Miss {
        from: Fixup,
        back: usize,
        /// The host register with the linear address.
        lin: u8,
        /// The probe's result register.
        ptr: u8,
        /// Scratch registers whose values the main path still needs after the probe.
        keep: u16,
        snap: Snap,
        info: u32,
        insn: *const Insn,
        off: u64,
        index: u32,
        resume: Resume,
    },
    /// A fallback on the main path ended the block or stopped: count what retired, return
    /// its status.
    Leave { from: Fixup, index: u32 },
    /// A conditional branch in the middle of the block was taken: leave for block offset
    /// `to` with `retired` instructions done, from main-path state `snap` (`saved`: the
    /// guest's flags are in the CPU struct already).
    SideExit {
        from: Fixup,
        snap: Snap,
        saved: bool,
        to: u64,
        retired: u32,
    },
    /// A branch target or return address is not canonical, a 16-byte SSE operand is not
    /// aligned, or the SSE checks failed: the interpreter runs the instruction (and raises
    /// the fault).
    Interpret {
        from: Vec<Fixup>,
        snap: Snap,
        insn: *const Insn,
        off: u64,
        index: u32,
        resume: Resume,
    },
}

/// Where the main path continues after the interpreter ran an instruction in cold code.
#[derive(Clone, Copy)]
enum Resume {
    /// At this offset of the main path, with the state the main path has there.
    At {
        to: Option<usize>,
        snap: Option<Snap>,
    },
    /// The instruction was a branch: leave the block after it.
    Exit { next: u64 },
}

pub struct Gen {
    pub a: Asm,
    base: usize,
    /// Offset of the block's first byte in its page: exits that stay on that page can be
    /// chained.
    page_off: u64,
    t: Targets,
    /// Code size: 64, 32 or 16.
    bits: u32,
    /// Segmented code (16-bit code, or 32-bit code whose segments are not flat): every
    /// memory access checks its segment's limit and adds its base.
    seg: bool,
    /// Bytes of the stack pointer (8; 4 or 2 outside 64-bit mode, from SS.B).
    spw: u8,
    enc: Encoder,
    /// The host's RFLAGS hold the guest's arithmetic flags.
    host_valid: bool,
    /// `Flags` in the CPU struct holds them (in the native form).
    saved: bool,
    /// Host register holding each guest register, and guest register in each host register.
    home: [Option<u8>; 16],
    occupant: [Option<u8>; 16],
    /// Guest registers whose host copy is newer than the CPU struct's.
    dirty: u16,
    /// Host registers the instruction being emitted uses (operands and scratch values).
    busy: u16,
    /// Guest XMM registers held in the host XMM register of the same number, and those newer
    /// there.
    xcached: u16,
    xdirty: u16,
    /// Guest YMM upper halves held in the host's YMM registers (brought in for a VEX
    /// instruction; legacy SSE instructions leave them alone), and those newer than the CPU
    /// struct's.
    ycached: u16,
    ydirty: u16,
    /// The SSE checks (CR0.EM/TS, CR4.OSFXSR, every MXCSR exception masked) passed on this
    /// path since the last call out.
    sse_checked: bool,
    /// The AVX checks (CR4.OSXSAVE, XCR0) passed in this SSE session.
    avx_checked: bool,
    /// The host's FPU holds the guest's x87 registers (loaded with FRSTOR from
    /// `Cpu::jit_x87_img`; FNSAVE puts them back there before any exit or call out).
    x87_live: bool,
    /// The host's MXCSR holds the guest's (loaded for floating point; the guest's exception
    /// flags accumulate there until `sse_end` stores it).
    mxcsr_loaded: bool,
    cold: Vec<Cold>,
}

impl Gen {
    /// `mode` holds the `Cpu::exec_key` bits the translation is for (`TRANSLATION_MODE`).
    pub fn new(base: usize, page_off: u64, t: Targets, bits: u32, mode: u32) -> Gen {
        use crate::core::{FLAT, SS32};
        Gen {
            a: Asm::new(),
            base,
            page_off,
            t,
            bits,
            seg: bits != 64 && mode & FLAT == 0,
            spw: match bits {
                64 => 8,
                _ if mode & SS32 != 0 => 4,
                _ => 2,
            },
            enc: Encoder::new(64),
            host_valid: false,
            saved: true,
            home: [None; 16],
            occupant: [None; 16],
            dirty: 0,
            busy: 0,
            xcached: 0,
            xdirty: 0,
            ycached: 0,
            ydirty: 0,
            sse_checked: false,
            avx_checked: false,
            x87_live: false,
            mxcsr_loaded: false,
            cold: Vec::new(),
        }
    }

    // ---------------------------------------------------------------- registers

    fn snap(&self) -> Snap {
        Snap {
            occupant: self.occupant,
            dirty: self.dirty,
            xcached: self.xcached,
            xdirty: self.xdirty,
            ycached: self.ycached,
            ydirty: self.ydirty,
            mxcsr: self.mxcsr_loaded,
            x87: self.x87_live,
            flags: self.host_valid,
        }
    }

    /// Frees host register `h`, writing its guest value back if it is newer.
    fn unmap_host(&mut self, h: u8) {
        if let Some(g) = self.occupant[h as usize].take() {
            if self.dirty & bit(g) != 0 {
                self.a.store(8, cpu(lay::gpr(g)), h);
                self.dirty &= !bit(g);
            }
            self.home[g as usize] = None;
        }
    }

    /// Writes every newer register back (stores leave RFLAGS alone); they stay cached.
    fn spill(&mut self) {
        for g in regs_in(self.dirty) {
            if let Some(h) = self.home[g as usize] {
                self.a.store(8, cpu(lay::gpr(g)), h);
            }
        }
        self.dirty = 0;
        for x in regs_in(self.xdirty) {
            self.a.movdqu_store(cpu(lay::xmm(x)), x);
        }
        self.xdirty = 0;
        for x in regs_in(self.ydirty) {
            self.ymm_upper(x, false);
        }
        self.ydirty = 0;
    }

    /// Before a call out that may read or change any guest state: everything back to the CPU
    /// struct, nothing cached, the host's MXCSR.
    fn forget_all(&mut self) {
        self.spill();
        self.home = [None; 16];
        self.occupant = [None; 16];
        self.xcached = 0;
        self.ycached = 0;
        self.sse_end();
    }

    /// A host register for a scratch value, which no other use of this instruction has:
    /// preferably a free one, else one whose guest value is not newer than the struct's.
    fn pick(&mut self, low: bool) -> u8 {
        for pass in 0..3 {
            for &h in &POOL {
                if self.busy & bit(h) != 0 || (low && LOW & bit(h) == 0) {
                    continue;
                }
                let ok = match self.occupant[h as usize] {
                    None => pass == 0,
                    Some(g) => pass == 2 || (pass == 1 && self.dirty & bit(g) == 0),
                };
                if ok {
                    self.unmap_host(h);
                    self.busy |= bit(h);
                    return h;
                }
            }
        }
        // The planner keeps every instruction within the register budget.
        debug_assert!(false, "no host register left");
        R11
    }

    /// Loads the guest registers an instruction uses into host registers and keeps them for
    /// it: those with a host register of their own first, so that placing RSP, R14 or R15
    /// (which take any free register) never takes a register another of them needs. Every
    /// emitter pins its registers before it takes scratch registers.
    fn pin(&mut self, regs: &[u8]) {
        for floating in [false, true] {
            for &g in regs {
                if (FLOATING & bit(g) != 0) == floating {
                    self.guest(g);
                }
            }
        }
    }

    /// The guest registers of `insn`'s memory operand address.
    fn mem_regs(s: &Site) -> Vec<u8> {
        let m = s.insn.mem;
        let mut v = Vec::new();
        if m.base != RIP && m.base != NONE {
            v.push(m.base);
        }
        if m.index != NONE && m.base != RIP {
            v.push(m.index);
        }
        v
    }

    /// Guest register `g` (loaded) in a host register, which this instruction keeps. A
    /// register with a host register of its own must be pinned before any scratch register
    /// is taken (`pin`).
    fn guest(&mut self, g: u8) -> u8 {
        if let Some(h) = self.home[g as usize] {
            self.busy |= bit(h);
            return h;
        }
        debug_assert!(
            FLOATING & bit(g) != 0 || self.busy & bit(g) == 0,
            "guest register {g} pinned after its host register was taken"
        );
        let h = if FLOATING & bit(g) != 0 {
            self.pick(false)
        } else {
            // Its own host register, which may hold a floating guest register for now.
            self.unmap_host(g);
            self.busy |= bit(g);
            g
        };
        self.a.load64(h, cpu(lay::gpr(g)));
        self.occupant[h as usize] = Some(g);
        self.home[g as usize] = Some(h);
        h
    }

    /// The instruction wrote guest register `g` in its host register.
    fn wrote(&mut self, g: u8) {
        self.dirty |= bit(g);
    }

    /// Scratch register `h` is no longer needed by this instruction.
    fn release(&mut self, h: u8) {
        if self.occupant[h as usize].is_none() {
            self.busy &= !bit(h);
        }
    }

    // ---------------------------------------------------------------- code size

    /// Bytes of a stack slot and of an instruction pointer.
    fn width(&self) -> u8 {
        (self.bits / 8) as u8
    }

    /// Wraps `r` to the code size (32- and 16-bit code: the low half or quarter,
    /// zero-extended).
    fn wrap(&mut self, r: u8) {
        self.wrap_to(r, self.width());
    }

    /// Wraps `r` to `w` bytes, zero-extended.
    fn wrap_to(&mut self, r: u8, w: u8) {
        match w {
            2 => self.a.movzx_rr16(r, r),
            4 => self.a.mov_rr32(r, r),
            _ => {}
        }
    }

    /// Loads a `w`-byte value, zero-extended.
    fn load_w(&mut self, w: u8, dst: u8, m: Mem) {
        match w {
            2 => self.a.load16(dst, m),
            4 => self.a.load32(dst, m),
            _ => self.a.load64(dst, m),
        }
    }

    /// Loads a `w`-byte value into a guest register as the guest's MOV would: a 16-bit load
    /// keeps the register's upper bits, a 32-bit one clears them.
    fn load_into(&mut self, w: u8, dst: u8, m: Mem) {
        match w {
            2 => self.a.load16_merge(dst, m),
            4 => self.a.load32(dst, m),
            _ => self.a.load64(dst, m),
        }
    }

    /// Sets the guest stack pointer (host register `sp`) to the new offset in `v` (wrapped
    /// to the stack's width): SP alone for a 16-bit stack, as the interpreter's `set_sp`.
    fn set_sp(&mut self, sp: u8, v: u8) {
        if self.spw == 2 {
            self.a.mov_rr16(sp, v);
        } else {
            self.a.mov_rr(sp, v);
        }
    }

    /// Advances the CPU struct's RIP by `to` (wrapping at 4 GiB in 32-bit code, at 64 KiB in
    /// 16-bit code). In 16-bit code it leaves CF set if IP wrapped.
    fn add_rip(&mut self, to: i64) {
        match self.bits {
            16 if to < 0 => self
                .a
                .alu_mi16(Alu::Sub, cpu(lay::rip()), to.unsigned_abs() as u16),
            16 => self.a.alu_mi16(Alu::Add, cpu(lay::rip()), to as u16),
            32 => self.a.alu_mi32(Alu::Add, cpu(lay::rip()), to as i32),
            _ => self.a.alu_mi(Alu::Add, cpu(lay::rip()), to as i32),
        }
    }

    // ---------------------------------------------------------------- flags and SSE state

    fn save(&mut self) {
        if !self.saved {
            self.a.save_flags(cpu(lay::flags_res()));
            self.a.store8_imm(cpu(lay::flags_op()), Op::Native as u8);
            self.saved = true;
        }
    }

    /// `save` where nothing needs RAX, RCX or RFLAGS afterwards (exits and calls out, once
    /// the guest registers are written back): LAHF and SETO instead of PUSHFQ, a few times
    /// cheaper, storing the same image.
    fn save_destroying(&mut self) {
        if !self.saved {
            self.capture_flags();
            self.saved = true;
        }
        self.host_valid = false;
    }

    /// The guest's flags from RFLAGS into `Flags::res` as `Op::Native` expects them (the
    /// arithmetic bits in their places, bit 1 set), using RAX and RCX.
    fn capture_flags(&mut self) {
        if !self.t.lahf {
            self.a.save_flags(cpu(lay::flags_res()));
        } else {
            self.a.bytes(&[
                0x9f, // lahf: AH = SF ZF 0 AF 0 PF 1 CF
                0x0f, 0x90, 0xc1, // seto cl
                0x0f, 0xb6, 0xc9, // movzx ecx, cl
                0xc1, 0xe1, 0x0b, // shl ecx, 11 (OF's place)
                0x0f, 0xb6, 0xc4, // movzx eax, ah
                0x09, 0xc8, // or eax, ecx
            ]);
            self.a.store(8, cpu(lay::flags_res()), RAX);
        }
        self.a.store8_imm(cpu(lay::flags_op()), Op::Native as u8);
    }

    /// Host code that changes RFLAGS follows: keep the guest's flags if they are live.
    fn clobber(&mut self, live: bool) {
        if live {
            self.save();
        }
        self.host_valid = false;
    }

    /// The next host instruction needs the guest's flags in RFLAGS.
    fn need(&mut self) {
        if !self.host_valid {
            self.a.load_flags(cpu(lay::flags_res()));
            self.host_valid = true;
        }
    }

    /// The next host instruction needs the guest's flags in `mask` (RflagsBits) in RFLAGS.
    /// Carry alone comes from the saved image with BT, far cheaper than POPFQ (INC and DEC
    /// keep only CF; ADC, SBB, JB and SETB read only CF); the other flags are then not the
    /// guest's, so `host_valid` stays as it is.
    fn need_flags(&mut self, mask: u32) {
        if self.host_valid {
            return;
        }
        if mask & !iced_x86::RflagsBits::CF == 0 {
            self.a.bt_mi(cpu(lay::flags_res()), 0);
        } else {
            self.need();
        }
    }

    /// Ends the SSE session before a call out or an exit: the guest's MXCSR (with the
    /// exception flags raised since it was loaded) back to the CPU struct and the host's into
    /// MXCSR. Leaves RFLAGS alone.
    fn sse_end(&mut self) {
        if self.mxcsr_loaded {
            self.a.stmxcsr(cpu(lay::mxcsr()));
            self.a.ldmxcsr(cpu(lay::host_mxcsr()));
            self.mxcsr_loaded = false;
        }
        self.sse_checked = false;
        self.avx_checked = false;
        if self.x87_live {
            self.a.fnsave(cpu(lay::x87_img()));
            self.x87_live = false;
        }
    }

    /// The x87 last-instruction opcode and pointer, as the interpreter's `note` keeps them:
    /// FOP, and FIP (the instruction's RIP; outside 64-bit mode its offset with the CS
    /// selector above). Flag-free (MOV and LEA only).
    fn x87_note_ip(&mut self, s: &Site) {
        let fop = s.insn.rel as u16 & 0x7ff;
        self.a.store16_imm(cpu(lay::fpu_fop()), fop);
        let t = self.pick(false);
        self.a.load64(t, cpu(lay::rip()));
        if self.bits == 64 {
            self.a.lea(t, Mem::at(t, s.off as i32));
            self.a.store(8, cpu(lay::fpu_fip()), t);
        } else {
            self.a.lea(t, Mem::at(t, s.off as i32));
            self.wrap(t);
            self.a.store(4, cpu(lay::fpu_fip()), t);
            self.a.load16(t, cpu(lay::seg_selector(crate::cpu::CS)));
            self.a.store(4, cpu(lay::fpu_fip() + 4), t);
        }
        self.release(t);
    }

    /// FDP for an x87 instruction with a memory operand at offset `off` in its segment
    /// (outside 64-bit mode with the operand's selector above).
    fn x87_note_dp(&mut self, s: &Site, off: u8) {
        if self.bits == 64 {
            self.a.store(8, cpu(lay::fpu_fdp()), off);
        } else {
            self.a.store(4, cpu(lay::fpu_fdp()), off);
            let t = self.pick(false);
            self.a
                .load16(t, cpu(lay::seg_selector(s.insn.mem.seg as usize)));
            self.a.store(4, cpu(lay::fpu_fdp() + 4), t);
            self.release(t);
        }
    }

    /// Before an x87 instruction: the guest's x87 registers in the host's FPU, once per
    /// session. The image is made from `r.fpu` first if that is newer (cold: a call out). If
    /// CR0.EM or CR0.TS is set, an exception is unmasked in the control word or one is
    /// pending, the interpreter runs the instruction (which raises what it must) and the
    /// block ends.
    fn x87_begin(&mut self, s: &Site) {
        if self.x87_live {
            return;
        }
        self.clobber(s.live_in);
        self.a.alu_mi(Alu::Cmp, cpu(lay::x87_in_image()), 0);
        let from = self.a.jcc(cc::E);
        let snap = self.snap();
        let back = self.a.len();
        self.cold.push(Cold::X87Prepare { from, back, snap });
        let t = self.pick(false);
        let mut fail = Vec::new();
        let a = &mut self.a;
        a.load64(t, cpu(lay::cr0()));
        a.alu_ri(Alu::And, t, (bits::CR0_EM | bits::CR0_TS) as i32);
        fail.push(a.jcc(cc::NE));
        // FCW's exception masks all set, FSW's exception summary clear.
        a.load32(t, cpu(lay::x87_img()));
        a.alu_ri(Alu::And, t, 0x3f);
        a.alu_ri(Alu::Cmp, t, 0x3f);
        fail.push(a.jcc(cc::NE));
        a.load32(t, cpu(lay::x87_img() + 4));
        a.alu_ri(Alu::And, t, 0x80);
        fail.push(a.jcc(cc::NE));
        self.release(t);
        self.send_to_interpreter(fail, s, Resume::Exit { next: s.next });
        self.a.frstor(cpu(lay::x87_img()));
        self.x87_live = true;
    }

    /// Host YMM register `x`'s upper half from (`load`) or to the guest's in the CPU struct,
    /// around a VEX instruction (the lower half is the cached XMM register).
    fn ymm_upper(&mut self, x: u8, load: bool) {
        use iced_x86::{Code, MemoryOperand, Register};
        let y = YMM[x as usize & 15];
        let m = MemoryOperand::with_base_displ(Register::R15, lay::ymm_hi(x) as i64);
        let ins = if load {
            Instruction::with4(Code::VEX_Vinsertf128_ymm_ymm_xmmm128_imm8, y, y, m, 1)
        } else {
            Instruction::with3(Code::VEX_Vextractf128_xmmm128_ymm_imm8, m, y, 1)
        };
        let ok = ins.is_ok_and(|ins| self.enc.encode(&ins, 0).is_ok());
        let bytes = self.enc.take_buffer();
        debug_assert!(ok, "VINSERTF128/VEXTRACTF128 encode");
        if ok {
            self.a.bytes(&bytes);
        }
    }

    /// VZEROUPPER: the guest's upper halves (of the registers the mode has) become zero.
    fn vzeroupper(&mut self, s: &Site) {
        self.sse_begin(s, false, true);
        let n = if self.bits == 64 { 16 } else { 8 };
        for x in 0..n {
            self.a.store64_imm(cpu(lay::ymm_hi(x)), 0);
            self.a.store64_imm(cpu(lay::ymm_hi(x) + 8), 0);
        }
        // The host's upper halves are stale now: the next VEX instruction reloads them.
        self.ycached = 0;
        self.ydirty = 0;
    }

    /// Before an SSE instruction: the checks its translation depends on, once per session,
    /// and the guest's MXCSR for floating point. If a check fails, the interpreter runs the
    /// instruction (raising #UD or #NM, or the exception an unmasked MXCSR bit asks for) and
    /// the block ends after it.
    fn sse_begin(&mut self, s: &Site, float: bool, avx: bool) {
        if avx && !self.avx_checked {
            // VEX forms: CR4.OSXSAVE, and the SSE and AVX state enabled in XCR0.
            self.clobber(s.live_in);
            let t = self.pick(false);
            let mut from = Vec::new();
            let a = &mut self.a;
            a.load64(t, cpu(lay::cr4()));
            a.alu_ri(Alu::And, t, crate::exec::system::CR4_OSXSAVE as i32);
            from.push(a.jcc(cc::E));
            a.load64(t, cpu(lay::xcr0()));
            a.alu_ri(Alu::And, t, 6);
            a.alu_ri(Alu::Cmp, t, 6);
            from.push(a.jcc(cc::NE));
            self.release(t);
            self.send_to_interpreter(from, s, Resume::Exit { next: s.next });
            self.avx_checked = true;
        }
        if !self.sse_checked {
            self.clobber(s.live_in);
            let t = self.pick(false);
            let mut from = Vec::new();
            let a = &mut self.a;
            a.load64(t, cpu(lay::cr0()));
            a.alu_ri(Alu::And, t, (bits::CR0_EM | bits::CR0_TS) as i32);
            from.push(a.jcc(cc::NE));
            a.load64(t, cpu(lay::cr4()));
            a.alu_ri(Alu::And, t, bits::CR4_OSFXSR as i32);
            from.push(a.jcc(cc::E));
            a.load32(t, cpu(lay::mxcsr()));
            a.alu_ri(Alu::And, t, MXCSR_MASKS as i32);
            a.alu_ri(Alu::Cmp, t, MXCSR_MASKS as i32);
            from.push(a.jcc(cc::NE));
            self.release(t);
            self.send_to_interpreter(from, s, Resume::Exit { next: s.next });
            self.sse_checked = true;
        }
        if float && !self.mxcsr_loaded {
            self.a.ldmxcsr(cpu(lay::mxcsr()));
            self.mxcsr_loaded = true;
        }
    }

    // ---------------------------------------------------------------- exits

    /// Calls `f(cpu, rsi, rdx)` (RSI and RDX set by the caller).
    fn call(&mut self, f: u64) {
        self.a.mov_rr(RDI, R15);
        self.a.mov_ri(RAX, f);
        self.a.call_r(RAX);
    }

    /// Leaves the block with RIP advanced to block offset `to`, `retired` instructions done.
    ///
    /// A target on the block's own page may be chained: the exit ends in a `jmp rel32` that
    /// first leads to the dispatcher and that the dispatcher points at the target block's
    /// translation once there is one (both blocks are then on one physical page, so writing
    /// that page drops them together). Every exit lowers
    /// `Cpu::chain_budget` by the instructions it retired, so control returns to the dispatcher
    /// regularly.
    pub fn exit_rel(&mut self, to: u64, retired: u32) {
        self.spill();
        self.sse_end();
        self.save_destroying();
        self.exit_tail(to, retired);
    }

    /// `exit_rel` once the guest state is in the CPU struct (it leaves `Gen`'s state alone, so
    /// cold code can use it).
    fn exit_tail(&mut self, to: u64, retired: u32) {
        let target = self.page_off as i64 + to as i64;
        if !(0..4096).contains(&target) {
            if to != 0 {
                self.add_rip(to as i64);
            }
            self.lookup_tail(retired);
            return;
        }
        // In 16-bit code a target past either end of the segment's 64 KiB wraps IP: it is on
        // another page then, and the exit is never chained.
        let mut wrapped = None;
        if to != 0 {
            self.add_rip(to as i64);
            if self.bits == 16 {
                wrapped = Some(self.a.jcc(cc::B));
            }
        }
        // The budget counts the instructions retired (the dispatcher adds what was spent to
        // the CPU's count), so one subtraction both counts and bounds the chain.
        self.a
            .alu_mi(Alu::Sub, cpu(lay::chain_budget()), retired as i32);
        let spent = self.a.jcc(cc::LE);
        let site = self.a.jmp();
        let unchained = self.a.len();
        self.a.patch(site, unchained);
        self.a.patch(spent, unchained);
        let site_addr = self.base + site.end();
        self.a.mov_ri(RAX, site_addr as u64);
        self.a.store(8, cpu(lay::jit_exit()), RAX);
        self.a.mov_ri(RAX, 0);
        let here = self.base;
        self.a.jmp_abs(here, self.t.exit);
        if let Some(w) = wrapped {
            let here = self.a.len();
            self.a.patch(w, here);
            self.lookup_tail(retired);
        }
    }

    /// Leaves the block for the dispatcher (never chained), with RIP advanced to block offset
    /// `to`, `retired` instructions done: the dispatcher looks at interrupts first.
    fn exit_to_dispatcher(&mut self, to: u64, retired: u32) {
        self.spill();
        self.sse_end();
        self.save_destroying();
        self.add_rip(to as i64);
        self.leave_normally(retired);
    }

    /// Leaves the block for RIP (already stored), which is known only at run time: through
    /// the jump table straight to its translation when the dispatcher has run it under the
    /// current mappings (spending `Cpu::chain_budget` as `exit_rel` does), else to the
    /// dispatcher.
    fn exit_lookup(&mut self, retired: u32) {
        self.spill();
        self.sse_end();
        self.save_destroying();
        self.lookup_tail(retired);
    }

    /// Leaves the block for the branch target in `v` (after the instruction at `s`).
    fn leave_for(&mut self, v: u8, s: &Site) {
        self.a.store(8, cpu(lay::rip()), v);
        self.exit_lookup(s.index + 1);
    }

    /// `exit_lookup` once the guest state is in the CPU struct.
    fn lookup_tail(&mut self, retired: u32) {
        if self.seg {
            // The jump table is keyed by RIP, which is not the linear address here.
            self.leave_normally(retired);
            return;
        }
        self.a
            .alu_mi(Alu::Sub, cpu(lay::chain_budget()), retired as i32);
        let spent = self.a.jcc(cc::LE);
        let a = &mut self.a;
        a.load64(RAX, cpu(lay::rip()));
        // The tag: RIP ^ exec_key << 48.
        a.load32(RDX, cpu(lay::exec_key()));
        a.shl_ri(RDX, 48);
        a.alu_rr(Alu::Xor, RDX, RAX);
        // The slot: (RIP ^ RIP >> 12) mod JUMP_SLOTS.
        a.mov_rr(RCX, RAX);
        a.shr_ri(RCX, 12);
        a.alu_rr(Alu::Xor, RCX, RAX);
        a.alu_ri(Alu::And, RCX, super::JUMP_SLOTS as i32 - 1);
        a.shl_ri(RCX, super::JUMP_SLOT_SHIFT);
        a.alu_rm(Alu::Add, RCX, cpu(lay::jit_table()));
        a.alu_rm(Alu::Cmp, RDX, Mem::at(RCX, 0));
        let miss_tag = a.jcc(cc::NE);
        // Still the mappings it was found under?
        a.load64(RAX, Mem::at(RCX, 8));
        a.load64(
            RAX,
            Mem {
                base: R15,
                index: Some((RAX, 0)),
                disp: 0,
            },
        );
        a.alu_rm(Alu::Cmp, RAX, Mem::at(RCX, 16));
        let miss_gen = a.jcc(cc::NE);
        a.jmp_m(Mem::at(RCX, 24));
        let here = a.len();
        for f in [miss_tag, miss_gen, spent] {
            a.patch(f, here);
        }
        a.mov_ri(RAX, 0);
        let base = self.base;
        a.jmp_abs(base, self.t.exit);
    }

    // ---------------------------------------------------------------- memory

    /// Computes the guest effective address of `insn`'s memory operand, adding the FS/GS base
    /// when `segment` is set. Returns the host register holding it: a scratch register, or
    /// the base register itself when the address is just that register.
    fn ea(&mut self, s: &Site, segment: bool) -> u8 {
        let m = s.insn.mem;
        let disp = m.disp as i64;
        let seg = m.seg as usize;
        let add_seg = segment && (seg == crate::cpu::FS || seg == crate::cpu::GS);
        let base = (m.base != RIP && m.base != NONE).then(|| self.guest(m.base));
        let index = (m.index != NONE && m.base != RIP).then(|| self.guest(m.index));
        if let (Some(b), None, 0, false, 8) = (base, index, disp, add_seg, s.insn.asize) {
            return b;
        }
        let a = self.pick(false);
        let d = if m.base == RIP {
            self.a.load64(a, cpu(lay::rip()));
            disp.wrapping_add(s.next as i64)
        } else if s.insn.asize == 4 {
            // 32-bit addresses wrap: a displacement is as good as its sign-extended low half.
            disp as u32 as i32 as i64
        } else if s.insn.asize == 2 {
            disp as u16 as i16 as i64
        } else {
            disp
        };
        let d32 = i32::try_from(d).ok();
        match (base, index, d32) {
            (Some(b), Some(i), Some(d)) => self.a.lea(
                a,
                Mem {
                    base: b,
                    index: Some((i, m.scale)),
                    disp: d,
                },
            ),
            (Some(b), None, Some(d)) => self.a.lea(a, Mem::at(b, d)),
            (None, Some(i), Some(d)) if m.base == NONE => {
                self.a.mov_ri(a, d as u64);
                self.a.add_scaled(a, i, m.scale);
            }
            (None, None, Some(d)) if m.base == NONE => self.a.mov_ri(a, d as u64),
            (None, _, Some(d)) => self.a.lea(a, Mem::at(a, d)),
            _ => {
                // A displacement beyond 32 bits: base and index first, then add it.
                let t = self.pick(false);
                self.a.mov_ri(t, d as u64);
                if m.base != RIP {
                    self.a.mov_ri(a, 0);
                }
                if let Some(b) = base {
                    self.a.add_scaled(a, b, 0);
                }
                if let Some(i) = index {
                    self.a.add_scaled(a, i, m.scale);
                }
                self.a.add_scaled(a, t, 0);
                self.release(t);
            }
        }
        self.wrap_to(a, s.insn.asize);
        if add_seg {
            let t = self.pick(false);
            self.a.load64(t, cpu(lay::seg_base(seg)));
            self.a.add_scaled(a, t, 0);
            self.release(t);
        }
        a
    }

    /// The linear address of the memory operand of the instruction at `s`, for a `size`-byte
    /// access (a write if `write`), and its offset in the segment; the guest's flags are
    /// saved first if live (`clobber`). In 64-bit code and in flat segments the two are the
    /// same register (with the FS or GS base added in 64-bit code). Otherwise the segment's
    /// limit is checked, the interpreter running the instruction (and raising the fault) if
    /// it fails, and its base added.
    fn mem_lin(&mut self, s: &Site, size: u8, write: bool, resume: Resume) -> (u8, u8) {
        use crate::cpu::{CS, FS, GS};
        let seg = s.insn.mem.seg as usize;
        let checked = self.bits != 64 && (self.seg || matches!(seg, CS | FS | GS));
        let off = self.ea(s, !checked);
        self.clobber(s.live_in);
        if !checked {
            return (off, off);
        }
        (self.seg_linear(s, seg, off, size, write, resume), off)
    }

    /// The linear address of `size` bytes at the offset in `off` (zero-extended, wrapped
    /// to the address size) in segment `seg`, in a new scratch register, after the limit
    /// check `Cpu::jit_seg_limit` allows (else the interpreter runs the instruction and
    /// execution resumes at `resume`). Flags are clobbered.
    fn seg_linear(
        &mut self,
        s: &Site,
        seg: usize,
        off: u8,
        size: u8,
        write: bool,
        resume: Resume,
    ) -> u8 {
        let lin = self.pick(false);
        self.a.lea(lin, Mem::at(off, size as i32 - 1));
        // A signed comparison: -1 sends every access to the interpreter.
        self.a
            .alu_rm(Alu::Cmp, lin, cpu(lay::seg_limit(seg, write)));
        let from = self.a.jcc(cc::G);
        self.send_to_interpreter(vec![from], s, resume);
        self.a.mov_rr(lin, off);
        self.a.alu_rm(Alu::Add, lin, cpu(lay::seg_base(seg)));
        // Linear addresses wrap at 4 GiB outside 64-bit mode.
        self.a.mov_rr32(lin, lin);
        lin
    }

    /// The linear address of a stack access at the offset in `off` (SS's base and limit
    /// apply in segmented code).
    fn stack_lin(&mut self, s: &Site, off: u8, size: u8, write: bool, resume: Resume) -> u8 {
        if self.seg {
            self.seg_linear(s, crate::cpu::SS, off, size, write, resume)
        } else {
            off
        }
    }

    /// The stack pointer (host register `sp`) as an offset in SS: itself, or in segmented
    /// code a scratch copy wrapped to the stack's width.
    fn sp_offset(&mut self, sp: u8) -> u8 {
        if !self.seg {
            return sp;
        }
        let o = self.pick(false);
        match self.spw {
            2 => self.a.movzx_rr16(o, sp),
            _ => self.a.mov_rr32(o, sp),
        }
        o
    }

    /// Sets the stack pointer (host register `sp`) to the offset in `off` plus `delta`,
    /// wrapped to the stack's width (SP alone for a 16-bit stack).
    fn sp_from(&mut self, sp: u8, off: u8, delta: i32) {
        if self.spw == 2 {
            let t = self.pick(false);
            self.a.lea(t, Mem::at(off, delta));
            self.a.mov_rr16(sp, t);
            self.release(t);
        } else {
            self.a.lea(sp, Mem::at(off, delta));
            self.wrap_to(sp, self.spw);
        }
    }

    /// The TLB check both probes share: `ptr` = the host address of the linear address in
    /// `lin` if the TLB's read (or write) entry for its page covers the access's last byte,
    /// whose address is `last` (so a page crossing misses too); else a branch, returned, to
    /// be patched to the miss path. `t` is scratch.
    fn tlb_probe(&mut self, lin: u8, last: Mem, write: bool, t: u8, ptr: u8) -> Fixup {
        let a = &mut self.a;
        a.lea(t, last);
        a.shr_ri(t, 12);
        // The entry's offset, (page & (TLB_SIZE - 1)) << TLB_ENTRY_SHIFT, in one shift and
        // one mask.
        a.mov_rr(ptr, lin);
        a.shr_ri(ptr, 12 - lay::TLB_ENTRY_SHIFT);
        a.alu_ri(
            Alu::And,
            ptr,
            ((crate::mmu::TLB_SIZE as i32) - 1) << lay::TLB_ENTRY_SHIFT,
        );
        let tag = if write {
            lay::tlb_tag_w()
        } else {
            lay::tlb_tag_r()
        };
        let entry = |disp| Mem {
            base: R14,
            index: Some((ptr, 0)),
            disp,
        };
        a.alu_rm(Alu::Cmp, t, entry(tag));
        let from = a.jcc(cc::NE);
        a.load64(ptr, entry(lay::tlb_addend()));
        a.add_scaled(ptr, lin, 0);
        from
    }

    /// The inline TLB probe for a `size`-byte access at the linear address in `lin`: returns
    /// the register holding the host address (a register that needs no REX prefix if `low`).
    /// A miss goes to cold code that fills the entry and comes back, or runs the instruction
    /// in the interpreter and resumes at `resume`. The flags must have been dealt with
    /// (`clobber`): the probe changes them.
    fn probe(&mut self, s: &Site, lin: u8, size: u8, write: bool, low: bool, resume: Resume) -> u8 {
        let t = self.pick(false);
        let ptr = self.pick(low);
        let from = self.tlb_probe(lin, Mem::at(lin, size as i32 - 1), write, t, ptr);
        let back = self.a.len();
        self.release(t);
        // Scratch values still needed after the probe (an address to keep, a branch target).
        let occupied = (0..16u8)
            .filter(|&h| self.occupant[h as usize].is_some())
            .fold(0u16, |m, h| m | bit(h));
        let keep = self.busy & !occupied & !bit(ptr);
        let snap = self.snap();
        self.cold.push(Cold::Miss {
            from,
            back,
            lin,
            ptr,
            keep,
            snap,
            info: size as u32 | (write as u32) << 8,
            insn: s.insn,
            off: s.off,
            index: s.index,
            resume,
        });
        ptr
    }

    /// RDTSC (and RDTSCP with `aux`): the host's TSC plus the guest's offset, which is what the
    /// interpreter computes; with CR4.TSD set the interpreter runs it (it checks CPL).
    fn rdtsc(&mut self, s: &Site, aux: bool) {
        let resume = self.resume_after();
        if aux {
            self.pin(&[RAX, RDX, RCX]);
        } else {
            self.pin(&[RAX, RDX]);
        }
        self.clobber(s.live_in);
        let t = self.pick(false);
        self.a.load64(t, cpu(lay::cr4()));
        self.a.alu_ri(Alu::And, t, crate::cpu::CR4_TSD as i32);
        let tsd = self.a.jcc(cc::NE);
        self.send_to_interpreter(vec![tsd], s, resume);
        self.a.load64(t, cpu(lay::tsc_offset()));
        self.a.load64(t, Mem::at(t, 0));
        self.a.bytes(&[0x0f, 0x31]); // rdtsc
        self.a.shl_ri(RDX, 32);
        self.a.alu_rr(Alu::Or, RAX, RDX);
        self.a.alu_rr(Alu::Add, RAX, t);
        self.a.mov_rr(RDX, RAX);
        self.a.shr_ri(RDX, 32);
        self.a.mov_rr32(RAX, RAX);
        self.wrote(RAX);
        self.wrote(RDX);
        if aux {
            self.a.load32(RCX, cpu(lay::tsc_aux()));
            self.wrote(RCX);
        }
        self.busy = 0;
        self.resolve();
    }

    /// A probe for `len` bytes (a register, 1 to 4096) at the linear address in `lin`, whose
    /// miss sends the instruction to the interpreter; the host pointer goes to `ptr` (`t` is
    /// scratch).
    #[allow(clippy::too_many_arguments)]
    fn probe_len(
        &mut self,
        s: &Site,
        lin: u8,
        len: u8,
        write: bool,
        resume: Resume,
        t: u8,
        ptr: u8,
    ) {
        let last = Mem {
            base: lin,
            index: Some((len, 0)),
            disp: -1,
        };
        let from = self.tlb_probe(lin, last, write, t, ptr);
        self.send_to_interpreter(vec![from], s, resume);
    }

    /// REP MOVS or REP STOS (64-bit addresses, no segment override) of `size`-byte elements
    /// run by the host's own string instruction when DF is clear and every element lies on
    /// one page of RAM on each side; anything else (a long or backward copy, page crossings,
    /// MMIO, a fault) goes to the interpreter. Flags are not affected.
    fn rep_string(&mut self, s: &Site, movs: bool, size: u8) {
        let resume = self.resume_after();
        let regs: &[u8] = if movs {
            &[RSI, RDI, RCX]
        } else {
            &[RAX, RDI, RCX]
        };
        self.pin(regs);
        self.clobber(s.live_in);
        // Every scratch register first: taking one may write a guest register back, which
        // must happen on the path that skips the copy too.
        let t = self.pick(false);
        let n = self.pick(false);
        let dst = self.pick(false);
        let new_di = self.pick(false);
        let src = movs.then(|| (self.pick(false), self.pick(false)));
        self.a.test_rr64(RCX, RCX);
        let nothing = self.a.jcc(cc::E);
        let mut from = Vec::new();
        self.a.load64(t, cpu(lay::flags_bits()));
        self.a.alu_ri(Alu::And, t, crate::flags::DF as i32);
        from.push(self.a.jcc(cc::NE));
        self.a.alu_ri(Alu::Cmp, RCX, 4096 / size as i32);
        from.push(self.a.jcc(cc::A));
        self.send_to_interpreter(from, s, resume);
        // The byte count.
        self.a.mov_rr(n, RCX);
        if size == 8 {
            self.a.shl_ri(n, 3);
        }
        self.probe_len(s, RDI, n, true, resume, t, dst);
        if let Some((p, _)) = src {
            self.probe_len(s, RSI, n, false, resume, t, p);
        }
        // The host instruction works on RSI, RDI and RCX, where the guest's values are: keep
        // their values afterwards aside, point RSI and RDI at the host addresses.
        let sum = |base| Mem {
            base,
            index: Some((n, 0)),
            disp: 0,
        };
        self.a.lea(new_di, sum(RDI));
        self.a.mov_rr(RDI, dst);
        if let Some((p, new_si)) = src {
            self.a.lea(new_si, sum(RSI));
            self.a.mov_rr(RSI, p);
        }
        self.a.bytes(match (movs, size) {
            (true, 1) => &[0xf3, 0xa4],
            (true, _) => &[0xf3, 0x48, 0xa5],
            (false, 1) => &[0xf3, 0xaa],
            (false, _) => &[0xf3, 0x48, 0xab],
        });
        self.a.mov_rr(RDI, new_di);
        if let Some((_, new_si)) = src {
            self.a.mov_rr(RSI, new_si);
            self.wrote(RSI);
        }
        self.wrote(RDI);
        self.wrote(RCX);
        let here = self.a.len();
        self.a.patch(nothing, here);
        self.busy = 0;
        self.resolve();
    }

    /// Sends the instruction to the interpreter (which raises #GP) if the linear address in
    /// `lin` is not 16-byte aligned. (Guest RAM is mapped page-aligned, so the host pointer
    /// would be misaligned too and the host instruction would fault.)
    fn misaligned_or_interpret(&mut self, s: &Site, lin: u8, align: u8, resume: Resume) {
        let t = self.pick(false);
        self.a.mov_rr32(t, lin);
        self.a.alu_ri(Alu::And, t, align as i32 - 1);
        let from = self.a.jcc(cc::NE);
        self.release(t);
        self.send_to_interpreter(vec![from], s, resume);
    }

    /// Cold: where the branches `from` go, the interpreter runs the instruction at `s` from
    /// the main path's state here, and execution resumes at `resume`.
    fn send_to_interpreter(&mut self, from: Vec<Fixup>, s: &Site, resume: Resume) {
        let snap = self.snap();
        self.cold.push(Cold::Interpret {
            from,
            snap,
            insn: s.insn,
            off: s.off,
            index: s.index,
            resume,
        });
    }

    /// For BT/BTS/BTR/BTC m, r: the address of the `size`-byte operand the bit offset (the
    /// register operand, signed at its own size) lands in, from the operand's address in
    /// `lin`, and the offset within that operand; both in new scratch registers. Flags are
    /// clobbered.
    fn bit_offset(&mut self, s: &Site, lin: u8, size: u8) -> (u8, u8) {
        let r = s.insn.i.op1_register();
        let g = self.guest(r.full_register().number() as u8 & 15);
        let off = self.pick(false);
        let moved = self.pick(false);
        // The offset, sign-extended from its size.
        match r.size() {
            8 => self.a.mov_rr(off, g),
            4 => self.a.movsxd(off, g),
            _ => self.a.movsx16(off, g),
        }
        let shift = match size {
            8 => 6,
            4 => 5,
            _ => 4,
        };
        self.a.mov_rr(moved, off);
        self.a.sar_ri(moved, shift);
        self.a.lea(
            moved,
            Mem {
                base: lin,
                index: Some((moved, shift - 3)),
                disp: 0,
            },
        );
        self.a.alu_ri(Alu::And, off, (size as i32) * 8 - 1);
        self.release(lin);
        (moved, off)
    }

    /// Sends a DIV or IDIV to the interpreter (which raises #DE, or divides what the host
    /// cannot here) unless it cannot fault: the divisor (in host register `Ok(h)`, or at the
    /// host pointer `Err(p)`) is not zero, and the quotient fits: for DIV the high half of the
    /// dividend is below the divisor; for IDIV the dividend is its sign-extended low half and
    /// the divisor is not -1.
    fn div_check(&mut self, s: &Site, d: Div, src: Result<u8, u8>, resume: Resume) {
        self.clobber(s.live_in);
        let t = self.pick(false);
        let wide = d.size == 8;
        match (src, wide) {
            (Ok(h), true) => self.a.mov_rr(t, h),
            (Ok(h), false) => self.a.mov_rr32(t, h),
            (Err(p), true) => self.a.load64(t, Mem::at(p, 0)),
            (Err(p), false) => self.a.load32(t, Mem::at(p, 0)),
        }
        let mut from = Vec::new();
        self.a.test_rr64(t, t);
        from.push(self.a.jcc(cc::E));
        // RAX and RDX are implicit operands, pinned in their own host registers.
        if !d.signed {
            if wide {
                self.a.alu_rr(Alu::Cmp, RDX, t);
            } else {
                self.a.alu_rr32(Alu::Cmp, RDX, t);
            }
            from.push(self.a.jcc(cc::AE));
        } else {
            let u = self.pick(false);
            if wide {
                self.a.mov_rr(u, RAX);
                self.a.sar_ri(u, 63);
                self.a.alu_rr(Alu::Cmp, u, RDX);
                from.push(self.a.jcc(cc::NE));
                self.a.alu_ri(Alu::Cmp, t, -1);
                from.push(self.a.jcc(cc::E));
            } else {
                self.a.mov_rr32(u, RAX);
                self.a.sar_ri32(u, 31);
                self.a.alu_rr32(Alu::Cmp, u, RDX);
                from.push(self.a.jcc(cc::NE));
                // The divisor is -1 when its low half plus one is zero.
                self.a.lea(u, Mem::at(t, 1));
                self.a.test_rr32(u, u);
                from.push(self.a.jcc(cc::E));
            }
            self.release(u);
        }
        self.release(t);
        self.send_to_interpreter(from, s, resume);
    }

    /// Sends the instruction to the interpreter unless CPL is 0 (it raises #GP, or checks
    /// IOPL for CLI and STI).
    fn cpl0_or_interpret(&mut self, s: &Site, resume: Resume) {
        self.clobber(s.live_in);
        let t = self.pick(false);
        self.a.load32(t, cpu(lay::seg_attr(crate::cpu::CS)));
        self.a.alu_ri(Alu::And, t, 0x60);
        let from = self.a.jcc(cc::NE);
        self.release(t);
        self.send_to_interpreter(vec![from], s, resume);
    }

    /// Sends the instruction to the interpreter if `r` is above `max`.
    fn above_or_interpret(&mut self, s: &Site, r: u8, max: i32, resume: Resume) {
        self.clobber(s.live_in);
        self.a.alu_ri(Alu::Cmp, r, max);
        let from = self.a.jcc(cc::A);
        self.send_to_interpreter(vec![from], s, resume);
    }

    /// Sends the instruction to the interpreter (which raises #GP) if `r` is not canonical.
    fn canonical_or_interpret(&mut self, s: &Site, r: u8, resume: Resume) {
        self.clobber(s.live_in);
        let t = self.pick(false);
        // Canonical iff sign-extending from bit 47 gives the value back.
        self.a.mov_rr(t, r);
        self.a.shl_ri(t, 16);
        self.a.sar_ri(t, 16);
        self.a.alu_rr(Alu::Cmp, t, r);
        let from = self.a.jcc(cc::NE);
        self.release(t);
        self.send_to_interpreter(vec![from], s, resume);
    }

    // ---------------------------------------------------------------- instructions

    /// Calls the interpreter for `insn` (at block offset `off`); EAX = its status.
    fn fallback_call(&mut self, insn: *const Insn, off: u64) {
        self.a.mov_ri(RSI, insn as u64);
        self.a.mov_ri(RDX, off);
        self.call(self.t.fallback);
    }

    /// Runs the instruction in the interpreter on the main path.
    fn fallback(&mut self, s: &Site) {
        self.forget_all();
        self.save_destroying();
        self.fallback_call(s.insn, s.off);
        self.host_valid = false;
        self.a.test_rr32(RAX, RAX);
        let from = self.a.jcc(cc::NE);
        self.cold.push(Cold::Leave {
            from,
            index: s.index,
        });
    }

    /// Emits one instruction; returns whether it ended the block.
    pub fn emit(&mut self, s: &Site, plan: &Plan) -> bool {
        self.busy = 0;
        let ended = match plan {
            Plan::Nop => false,
            Plan::Native(n) => {
                self.native(s, n);
                false
            }
            Plan::Lea => {
                self.lea(s);
                false
            }
            Plan::Fallback => {
                self.fallback(s);
                false
            }
            Plan::Jcc(cond) if !s.last => {
                // A branch out of the middle of the block: the taken side leaves through cold
                // code, the main path goes on with the rest of the block.
                self.need_flags(s.insn.i.rflags_read());
                let from = self.a.jcc(*cond);
                let snap = self.snap();
                self.cold.push(Cold::SideExit {
                    from,
                    snap,
                    saved: self.saved,
                    to: (s.next as i64 + s.insn.rel) as u64,
                    retired: s.index + 1,
                });
                false
            }
            Plan::Jcc(cond) => {
                self.spill();
                self.sse_end();
                self.need_flags(s.insn.i.rflags_read());
                // Each side saves the flags after the branch (saving destroys them).
                let (host_valid, saved) = (self.host_valid, self.saved);
                let taken = self.a.jcc(*cond);
                self.exit_rel(s.next, s.index + 1);
                (self.host_valid, self.saved) = (host_valid, saved);
                let here = self.a.len();
                self.a.patch(taken, here);
                self.exit_rel((s.next as i64 + s.insn.rel) as u64, s.index + 1);
                true
            }
            Plan::JmpRel => {
                self.exit_rel((s.next as i64 + s.insn.rel) as u64, s.index + 1);
                true
            }
            Plan::CallRel => {
                let resume = Resume::Exit { next: s.next };
                self.push_return_address(s, resume);
                self.exit_rel((s.next as i64 + s.insn.rel) as u64, s.index + 1);
                true
            }
            Plan::Ret(pop) => {
                let resume = Resume::Exit { next: s.next };
                let w = s.insn.osize;
                let sp = self.guest(RSP);
                self.clobber(s.live_in);
                let off = self.sp_offset(sp);
                let lin = self.stack_lin(s, off, w, false, resume);
                let p = self.probe(s, lin, w, false, false, resume);
                let v = self.pick(false);
                self.load_w(w, v, Mem::at(p, 0));
                self.release(p);
                if self.bits == 64 {
                    self.canonical_or_interpret(s, v, resume);
                } else if self.bits == 16 && w == 4 {
                    // A 32-bit return in 16-bit code: past 64 KiB the interpreter checks the
                    // target against CS's limit (the translation runs only where that limit
                    // covers 64 KiB).
                    self.above_or_interpret(s, v, 0xffff, resume);
                }
                self.sp_from(sp, off, w as i32 + *pop as i32);
                self.wrote(RSP);
                self.leave_for(v, s);
                true
            }
            Plan::JmpInd => {
                let resume = Resume::Exit { next: s.next };
                let v = self.branch_target(s, resume);
                self.leave_for(v, s);
                true
            }
            Plan::CallInd => {
                let resume = Resume::Exit { next: s.next };
                let v = self.branch_target(s, resume);
                self.push_return_address(s, resume);
                self.leave_for(v, s);
                true
            }
            Plan::Push => {
                self.push(s, false);
                false
            }
            Plan::Pushf => {
                self.push(s, true);
                false
            }
            Plan::Pop => {
                self.pop(s);
                false
            }
            Plan::Leave => {
                self.leave(s);
                false
            }
            Plan::Cli => {
                let resume = self.resume_after();
                self.cpl0_or_interpret(s, resume);
                self.a
                    .alu_mi(Alu::And, cpu(lay::flags_bits()), !(crate::flags::IF as i32));
                self.resolve();
                false
            }
            Plan::SetDf(set) => {
                self.clobber(s.live_in);
                let df = crate::flags::DF as i32;
                if *set {
                    self.a.alu_mi(Alu::Or, cpu(lay::flags_bits()), df);
                } else {
                    self.a.alu_mi(Alu::And, cpu(lay::flags_bits()), !df);
                }
                false
            }
            Plan::Sti => {
                // STI sets IF and, if it was clear, blocks interrupts for one instruction; the
                // block ends so that the dispatcher sees both.
                self.cpl0_or_interpret(s, Resume::Exit { next: s.next });
                let t = self.pick(false);
                self.a.load64(t, cpu(lay::flags_bits()));
                self.a.alu_ri(Alu::And, t, crate::flags::IF as i32);
                let was_set = self.a.jcc(cc::NE);
                self.a.store8_imm(cpu(lay::int_shadow()), 1);
                let here = self.a.len();
                self.a.patch(was_set, here);
                self.a
                    .alu_mi(Alu::Or, cpu(lay::flags_bits()), crate::flags::IF as i32);
                self.release(t);
                self.exit_to_dispatcher(s.next, s.index + 1);
                true
            }
            Plan::Rdtsc(aux) => {
                self.rdtsc(s, *aux);
                false
            }
            Plan::RepString(movs, size) => {
                self.rep_string(s, *movs, *size);
                false
            }
            Plan::VzeroUpper => {
                self.vzeroupper(s);
                false
            }
            Plan::Swapgs => {
                let resume = self.resume_after();
                self.cpl0_or_interpret(s, resume);
                let (x, y) = (self.pick(false), self.pick(false));
                let gs = cpu(lay::seg_base(crate::cpu::GS));
                let kernel = cpu(lay::kernel_gs_base());
                self.a.load64(x, gs);
                self.a.load64(y, kernel);
                self.a.store(8, gs, y);
                self.a.store(8, kernel, x);
                self.resolve();
                false
            }
        };
        self.busy = 0;
        ended
    }

    /// A resume point at the end of this (non-branch) instruction, patched by `resolve`.
    fn resume_after(&self) -> Resume {
        Resume::At {
            to: None,
            snap: None,
        }
    }

    /// Points the cold paths of the instruction just emitted at the current offset, with the
    /// state the main path has here.
    fn resolve(&mut self) {
        let here = self.a.len();
        let snap = self.snap();
        for c in self.cold.iter_mut().rev() {
            let r = match c {
                Cold::Miss { resume, .. } | Cold::Interpret { resume, .. } => resume,
                Cold::Leave { .. } | Cold::SideExit { .. } | Cold::X87Prepare { .. } => continue,
            };
            match r {
                Resume::At {
                    to: to @ None,
                    snap: sn,
                } => {
                    *to = Some(here);
                    *sn = Some(snap);
                }
                Resume::At { .. } => break,
                Resume::Exit { .. } => {}
            }
        }
    }

    /// PUSH of a register, an immediate or a memory operand, or PUSHF (of the operand size).
    fn push(&mut self, s: &Site, flags: bool) {
        let resume = self.resume_after();
        let value = match s.insn.i.op0_kind() {
            _ if flags => Some(self.flags_image()),
            OpKind::Register => {
                let r = s.insn.i.op0_register().number() as u8;
                self.pin(&[r, RSP]);
                Some(self.guest(r))
            }
            OpKind::Memory => {
                let mut regs = Self::mem_regs(s);
                regs.push(RSP);
                self.pin(&regs);
                let w = s.insn.osize;
                let (lin, off) = self.mem_lin(s, w, false, resume);
                if off != lin {
                    self.release(off);
                }
                let p = self.probe(s, lin, w, false, false, resume);
                let v = self.pick(false);
                self.load_w(w, v, Mem::at(p, 0));
                self.release(p);
                self.release(lin);
                Some(v)
            }
            _ => None,
        };
        let w = s.insn.osize;
        let sp = self.guest(RSP);
        let a = self.pick(false);
        self.a.lea(a, Mem::at(sp, -(w as i32)));
        self.wrap_to(a, self.spw);
        self.clobber(s.live_in);
        let lin = self.stack_lin(s, a, w, true, resume);
        let p = self.probe(s, lin, w, true, false, resume);
        match value {
            // PUSH RSP stores the value before the decrement.
            Some(v) => self.a.store(w, Mem::at(p, 0), v),
            None => {
                let imm = s.insn.i.immediate(0) as i64 as i32;
                match w {
                    8 => self.a.store64_imm(Mem::at(p, 0), imm),
                    4 => self.a.store32_imm(Mem::at(p, 0), imm),
                    _ => self.a.store16_imm(Mem::at(p, 0), imm as u16),
                }
            }
        }
        self.set_sp(sp, a);
        self.wrote(RSP);
        self.resolve();
    }

    /// The guest's RFLAGS as PUSHF stores them (RF and VM clear), in a scratch register: the
    /// arithmetic flags from the saved image, the others from `Flags::bits`.
    fn flags_image(&mut self) -> u8 {
        use crate::flags::{ARITH, FIXED1, RF, VM};
        self.save();
        self.host_valid = false;
        self.pin(&[RSP]);
        let v = self.pick(false);
        let t = self.pick(false);
        self.a.load64(v, cpu(lay::flags_res()));
        self.a.alu_ri(Alu::And, v, ARITH as i32);
        self.a.load64(t, cpu(lay::flags_bits()));
        self.a.alu_ri(Alu::And, t, !(ARITH | RF | VM) as i32);
        self.a.alu_rr(Alu::Or, v, t);
        self.a.alu_ri(Alu::Or, v, FIXED1 as i32);
        self.release(t);
        v
    }

    /// POP into a 64-bit register.
    fn pop(&mut self, s: &Site) {
        let resume = self.resume_after();
        let dst = s.insn.i.op0_register().number() as u8;
        self.pin(&[dst, RSP]);
        let sp = self.guest(RSP);
        let d = self.guest(dst);
        let w = s.insn.osize;
        self.clobber(s.live_in);
        let off = self.sp_offset(sp);
        let lin = self.stack_lin(s, off, w, false, resume);
        let p = self.probe(s, lin, w, false, false, resume);
        if dst == RSP {
            self.load_into(w, sp, Mem::at(p, 0));
        } else {
            self.load_into(w, d, Mem::at(p, 0));
            self.sp_from(sp, off, w as i32);
            self.wrote(dst);
        }
        self.wrote(RSP);
        self.resolve();
    }

    /// LEAVE: RSP = RBP + 8, RBP = the 8 bytes at RBP.
    fn leave(&mut self, s: &Site) {
        let resume = self.resume_after();
        let bp = self.guest(RBP);
        let sp = self.guest(RSP);
        let w = s.insn.osize;
        self.clobber(s.live_in);
        // The stack's width decides how much of RBP becomes the stack pointer.
        let off = self.sp_offset(bp);
        let lin = self.stack_lin(s, off, w, false, resume);
        let p = self.probe(s, lin, w, false, false, resume);
        self.sp_from(sp, off, w as i32);
        self.load_into(w, bp, Mem::at(p, 0));
        self.wrote(RSP);
        self.wrote(RBP);
        self.resolve();
    }

    /// Pushes the address of the next instruction (a CALL's first half).
    fn push_return_address(&mut self, s: &Site, resume: Resume) {
        let w = s.insn.osize;
        let sp = self.guest(RSP);
        let a = self.pick(false);
        self.a.lea(a, Mem::at(sp, -(w as i32)));
        self.wrap_to(a, self.spw);
        self.clobber(s.live_in);
        let lin = self.stack_lin(s, a, w, true, resume);
        let p = self.probe(s, lin, w, true, false, resume);
        let v = self.pick(false);
        self.a.load64(v, cpu(lay::rip()));
        self.a.lea(v, Mem::at(v, s.next as i32));
        self.wrap(v);
        self.a.store(w, Mem::at(p, 0), v);
        self.set_sp(sp, a);
        self.wrote(RSP);
        self.release(v);
        self.release(p);
        self.release(a);
    }

    /// An indirect branch's target, checked canonical, in a scratch register.
    fn branch_target(&mut self, s: &Site, resume: Resume) -> u8 {
        if s.insn.i.op0_kind() == OpKind::Register {
            let r = self.guest(s.insn.i.op0_register().full_register().number() as u8 & 15);
            let v = self.pick(false);
            match self.bits {
                16 => self.a.movzx_rr16(v, r),
                32 => self.a.mov_rr32(v, r),
                _ => {
                    self.a.mov_rr(v, r);
                    self.canonical_or_interpret(s, v, resume);
                }
            }
            v
        } else {
            self.pin(&Self::mem_regs(s));
            let w = self.width();
            let (lin, off) = self.mem_lin(s, w, false, resume);
            if off != lin {
                self.release(off);
            }
            let v = self.pick(false);
            let p = self.probe(s, lin, w, false, false, resume);
            self.load_w(w, v, Mem::at(p, 0));
            self.release(p);
            self.release(lin);
            if self.bits == 64 {
                self.canonical_or_interpret(s, v, resume);
            }
            v
        }
    }

    fn lea(&mut self, s: &Site) {
        let crate::exec::Opnd::Reg(dst) = s.insn.op[0] else {
            return;
        };
        let mut regs = Self::mem_regs(s);
        regs.push(dst);
        self.pin(&regs);
        let d = self.guest(dst);
        let lin = self.ea(s, false);
        match s.insn.osize {
            8 if lin != d => self.a.mov_rr(d, lin),
            8 => {}
            4 => self.a.mov_rr32(d, lin),
            _ => self.a.mov_rr16(d, lin),
        }
        self.wrote(dst);
    }

    fn native(&mut self, s: &Site, n: &Native) {
        let resume = self.resume_after();
        let mut regs = Self::mem_regs(s);
        regs.extend(n.identity.iter().chain(&n.floating).map(|(g, _)| *g));
        self.pin(&regs);
        if let Some(sse) = n.sse {
            self.sse_begin(s, sse.float, sse.avx);
        }
        if n.x87 {
            self.x87_begin(s);
        }
        let mut bit_reg = None;
        let ptr = if let Some(m) = n.mem {
            let (lin0, off) = self.mem_lin(s, m.size, m.write, resume);
            let mut lin = lin0;
            if n.bit_offset {
                let (moved, reduced) = self.bit_offset(s, lin, m.size);
                lin = moved;
                bit_reg = Some(reduced);
            }
            if n.align != 0 {
                self.misaligned_or_interpret(s, lin, n.align, resume);
            }
            let p = self.probe(s, lin, m.size, m.write, n.high_byte, resume);
            if n.x87_note {
                self.x87_note_dp(s, off);
            }
            self.release(lin);
            // (In flat code the offset is the linear address, which `bit_offset` released.)
            if off != lin0 {
                self.release(off);
            }
            Some(p)
        } else {
            None
        };
        let mut ok = true;
        if let Some(d) = n.div {
            // The divisor: at the host pointer, or in the host register its guest register
            // was pinned to.
            let src = match ptr {
                Some(p) => Some(Err(p)),
                None => self.home[n.ins.op0_register().full_register().number() & 15].map(Ok),
            };
            match src {
                Some(src) => self.div_check(s, d, src, resume),
                None => ok = false,
            }
        }
        if n.x87_note {
            self.x87_note_ip(s);
        }
        if n.flags_in && s.flags_needed {
            self.need_flags(n.flags_kept);
        }
        let mut ins = n.ins;
        for &(k, g, size) in &n.renames {
            let h = self.guest(g);
            match sized(h, size) {
                Some(r) => ins.set_op_register(k, r),
                None => ok = false,
            }
        }
        if let Some(p) = ptr {
            match sized(p, 8) {
                Some(r) => ins.set_memory_base(r),
                None => ok = false,
            }
        }
        if let Some(b) = bit_reg {
            match sized(b, n.ins.op1_register().size()) {
                Some(r) => ins.set_op1_register(r),
                None => ok = false,
            }
        }
        let avx = n.sse.is_some_and(|s| s.avx);
        for &(x, _) in &n.xregs {
            if self.xcached & bit(x) == 0 {
                self.a.movdqu_load(x, cpu(lay::xmm(x)));
                self.xcached |= bit(x);
            }
            if avx && self.ycached & bit(x) == 0 {
                self.ymm_upper(x, true);
                self.ycached |= bit(x);
            }
        }
        let encoded = ok && self.enc.encode(&ins, 0).is_ok();
        // The encoder keeps what it wrote before failing: take it either way.
        let bytes = self.enc.take_buffer();
        if !encoded {
            // Not expected (the planner encoded it with the same kinds of registers): let the
            // interpreter run it.
            self.fallback(s);
        } else {
            self.a.bytes(&bytes);
            for &(g, w) in n.identity.iter().chain(&n.floating) {
                if w {
                    self.wrote(g);
                }
            }
            for &(x, w) in &n.xregs {
                if w {
                    self.xdirty |= bit(x);
                    if avx {
                        self.ydirty |= bit(x);
                    }
                }
            }
            if n.flags_out {
                self.host_valid = true;
                self.saved = false;
            }
        }
        if n.mem.is_some() || n.div.is_some() {
            self.busy = 0;
            self.resolve();
        }
    }

    // ---------------------------------------------------------------- cold code

    /// Emits the cold paths after the main path.
    pub fn emit_cold(&mut self) {
        let cold = std::mem::take(&mut self.cold);
        for c in cold {
            match c {
                Cold::Miss {
                    from,
                    back,
                    lin,
                    ptr,
                    keep,
                    snap,
                    info,
                    insn,
                    off,
                    index,
                    resume,
                } => {
                    let here = self.a.len();
                    self.a.patch(from, here);
                    self.leave_main(&snap);
                    debug_assert!(keep.count_ones() <= 4, "more scratch values than slots");
                    for (k, h) in regs_in(keep).enumerate() {
                        self.a.store(8, cpu(lay::slot(k)), h);
                    }
                    if lin != RSI {
                        self.a.mov_rr(RSI, lin);
                    }
                    self.a.mov_ri(RDX, info as u64);
                    self.call(self.t.tlb_fill);
                    self.a.test_rr64(RAX, RAX);
                    let miss = self.a.jcc(cc::E);
                    self.a.mov_rr(ptr, RAX);
                    for (h, g) in snap.occupied() {
                        if CALLER_SAVED & bit(h) != 0 {
                            self.a.load64(h, cpu(lay::gpr(g)));
                        }
                    }
                    for (k, h) in regs_in(keep).enumerate() {
                        self.a.load64(h, cpu(lay::slot(k)));
                    }
                    self.return_to_main(&snap, false);
                    let j = self.a.jmp();
                    self.a.patch(j, back);
                    let here = self.a.len();
                    self.a.patch(miss, here);
                    self.interpret(insn, off, index, resume);
                }
                Cold::Interpret {
                    from,
                    snap,
                    insn,
                    off,
                    index,
                    resume,
                } => {
                    let here = self.a.len();
                    for f in from {
                        self.a.patch(f, here);
                    }
                    self.leave_main(&snap);
                    self.interpret(insn, off, index, resume);
                }
                Cold::X87Prepare { from, back, snap } => {
                    let here = self.a.len();
                    self.a.patch(from, here);
                    self.leave_main(&snap);
                    self.call(self.t.x87_prepare);
                    for (h, g) in snap.occupied() {
                        if CALLER_SAVED & bit(h) != 0 {
                            self.a.load64(h, cpu(lay::gpr(g)));
                        }
                    }
                    self.return_to_main(&snap, false);
                    let j = self.a.jmp();
                    self.a.patch(j, back);
                }
                Cold::Leave { from, index } => {
                    let here = self.a.len();
                    self.a.patch(from, here);
                    self.leave_status(index);
                }
                Cold::SideExit {
                    from,
                    snap,
                    saved,
                    to,
                    retired,
                } => {
                    let here = self.a.len();
                    self.a.patch(from, here);
                    // The branch consumed the flags: RFLAGS still holds them if the main path
                    // had them there. The registers go back first: the capture uses RAX.
                    self.leave_main(&snap);
                    if snap.flags && !saved {
                        self.capture_flags();
                    }
                    self.exit_tail(to, retired);
                }
            }
        }
    }

    /// Cold: before calling out from a point of the main path in state `snap`: newer
    /// registers back to the CPU struct, and the host's MXCSR.
    fn leave_main(&mut self, snap: &Snap) {
        for (h, g) in snap.occupied() {
            if snap.dirty & bit(g) != 0 {
                self.a.store(8, cpu(lay::gpr(g)), h);
            }
        }
        for x in regs_in(snap.xdirty) {
            self.a.movdqu_store(cpu(lay::xmm(x)), x);
        }
        for x in regs_in(snap.ydirty) {
            self.ymm_upper(x, false);
        }
        if snap.mxcsr {
            self.a.stmxcsr(cpu(lay::mxcsr()));
            self.a.ldmxcsr(cpu(lay::host_mxcsr()));
        }
        if snap.x87 {
            self.a.fnsave(cpu(lay::x87_img()));
        }
    }

    /// Cold: back to a point of the main path in state `snap` after a call out: the XMM
    /// registers, the guest's MXCSR, and (`flags`) the guest's flags.
    fn return_to_main(&mut self, snap: &Snap, flags: bool) {
        for x in regs_in(snap.xcached) {
            self.a.movdqu_load(x, cpu(lay::xmm(x)));
        }
        for x in regs_in(snap.ycached) {
            self.ymm_upper(x, true);
        }
        if snap.mxcsr {
            self.a.ldmxcsr(cpu(lay::mxcsr()));
        }
        if snap.x87 {
            // The call out left the image current (`jit_fallback` hands it back).
            self.a.frstor(cpu(lay::x87_img()));
        }
        if flags && snap.flags {
            self.a.load_flags(cpu(lay::flags_res()));
        }
    }

    /// Cold: runs the instruction in the interpreter, then resumes the main path or leaves.
    /// The guest state is in the CPU struct (`leave_main`).
    fn interpret(&mut self, insn: *const Insn, off: u64, index: u32, resume: Resume) {
        // The main path saved live flags before anything that reaches here.
        self.fallback_call(insn, off);
        self.a.test_rr32(RAX, RAX);
        let stop = self.a.jcc(cc::NE);
        match resume {
            Resume::At { to, snap } => {
                if let Some(snap) = snap {
                    for (h, g) in snap.occupied() {
                        self.a.load64(h, cpu(lay::gpr(g)));
                    }
                    self.return_to_main(&snap, true);
                }
                let j = self.a.jmp();
                self.a.patch(j, to.unwrap_or(0));
            }
            Resume::Exit { next } => {
                // The interpreter counted the instruction itself.
                self.add_rip(next as i64);
                self.leave_normally(index);
            }
        }
        let here = self.a.len();
        self.a.patch(stop, here);
        self.leave_status(index);
    }

    /// Cold: returns "done" after counting `retired` instructions (flags are in the struct).
    fn leave_normally(&mut self, retired: u32) {
        if retired != 0 {
            self.a
                .alu_mi(Alu::Sub, cpu(lay::chain_budget()), retired as i32);
        }
        self.a.mov_ri(RAX, 0);
        let here = self.base;
        self.a.jmp_abs(here, self.t.exit);
    }

    /// Returns the fallback's status in EAX after counting the `index` instructions before it.
    fn leave_status(&mut self, index: u32) {
        if index != 0 {
            self.a
                .alu_mi(Alu::Sub, cpu(lay::chain_budget()), index as i32);
        }
        let here = self.base;
        self.a.jmp_abs(here, self.t.exit);
    }
}
