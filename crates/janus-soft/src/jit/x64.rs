//! A small x86-64 assembler for the fixed host sequences the translator emits around the
//! guest's own instructions (which iced-x86's encoder re-encodes): loads and stores of guest
//! state relative to the CPU pointer, address arithmetic, the TLB probe, branches and calls.
//! Only the forms used are here; each is the standard encoding (REX, opcode, ModRM, SIB,
//! displacement, immediate).

/// Host general-purpose registers by encoding number.
pub mod reg {
    pub const RAX: u8 = 0;
    pub const RCX: u8 = 1;
    pub const RDX: u8 = 2;
    pub const RBX: u8 = 3;
    pub const RSP: u8 = 4;
    pub const RBP: u8 = 5;
    pub const RSI: u8 = 6;
    pub const RDI: u8 = 7;
    pub const R8: u8 = 8;
    pub const R9: u8 = 9;
    pub const R10: u8 = 10;
    pub const R11: u8 = 11;
    pub const R12: u8 = 12;
    pub const R13: u8 = 13;
    pub const R14: u8 = 14;
    pub const R15: u8 = 15;
}

/// A memory operand `[base + index * scale + disp]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mem {
    pub base: u8,
    /// Index register and log2 of the scale (0..=3).
    pub index: Option<(u8, u8)>,
    pub disp: i32,
}

impl Mem {
    pub fn at(base: u8, disp: i32) -> Mem {
        Mem {
            base,
            index: None,
            disp,
        }
    }
}

/// Condition codes (the low nibble of Jcc/SETcc/CMOVcc).
pub mod cc {
    pub const AE: u8 = 3;
    pub const E: u8 = 4;
    pub const NE: u8 = 5;
    pub const B: u8 = 2;
    pub const A: u8 = 7;
    pub const G: u8 = 0xf;
    pub const LE: u8 = 0xe;
}

/// ALU operations in their ModRM /digit order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alu {
    Add = 0,
    Or = 1,
    And = 4,
    Sub = 5,
    Xor = 6,
    Cmp = 7,
}

/// A position in the code to patch with a rel32 once its target is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixup(usize);

impl Fixup {
    /// Offset just after the rel32 field (where the branch is measured from).
    pub fn end(self) -> usize {
        self.0
    }
}

#[derive(Default)]
pub struct Asm {
    pub buf: Vec<u8>,
}

impl Asm {
    pub fn new() -> Asm {
        Asm {
            buf: Vec::with_capacity(4096),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    fn u8(&mut self, b: u8) {
        self.buf.push(b);
    }

    fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// REX prefix for operand size `w` and register extensions, emitted only when needed
    /// (`force` for byte registers SPL..DIL).
    fn rex(&mut self, w: bool, r: u8, x: u8, b: u8, force: bool) {
        let v = 0x40 | (w as u8) << 3 | (r >> 3) << 2 | (x >> 3) << 1 | (b >> 3);
        if v != 0x40 || force {
            self.u8(v);
        }
    }

    fn rex_mem(&mut self, w: bool, r: u8, m: &Mem, force: bool) {
        let x = m.index.map_or(0, |(i, _)| i);
        self.rex(w, r, x, m.base, force);
    }

    /// ModRM (and SIB and displacement) for register field `r` and memory operand `m`.
    fn modrm_mem(&mut self, r: u8, m: &Mem) {
        let r = r & 7;
        let base = m.base & 7;
        // [rbp]/[r13] have no mod=00 form: use a zero disp8.
        let (md, disp8) = if m.disp == 0 && base != reg::RBP {
            (0u8, false)
        } else if (-128..=127).contains(&m.disp) {
            (1, true)
        } else {
            (2, false)
        };
        match m.index {
            None if base != reg::RSP => self.u8(md << 6 | r << 3 | base),
            None => {
                self.u8(md << 6 | r << 3 | 4);
                self.u8(0x24);
            }
            Some((i, s)) => {
                self.u8(md << 6 | r << 3 | 4);
                self.u8(s << 6 | (i & 7) << 3 | base);
            }
        }
        match md {
            1 => self.u8(m.disp as i8 as u8),
            2 => self.i32(m.disp),
            _ => {}
        }
        let _ = disp8;
    }

    fn modrm_reg(&mut self, r: u8, rm: u8) {
        self.u8(0xc0 | (r & 7) << 3 | (rm & 7));
    }

    /// `op r, [m]` / `op [m], r` with an opcode taking ModRM, 64-bit.
    fn op_rm64(&mut self, opcode: u8, r: u8, m: &Mem) {
        self.rex_mem(true, r, m, false);
        self.u8(opcode);
        self.modrm_mem(r, m);
    }

    /// `mov r64, [m]`
    pub fn load64(&mut self, dst: u8, m: Mem) {
        self.op_rm64(0x8b, dst, &m);
    }

    /// `mov r32, [m]` (zero-extended).
    pub fn load32(&mut self, dst: u8, m: Mem) {
        self.rex_mem(false, dst, &m, false);
        self.u8(0x8b);
        self.modrm_mem(dst, &m);
    }

    /// `jmp qword [m]`
    pub fn jmp_m(&mut self, m: Mem) {
        self.rex_mem(false, 0, &m, false);
        self.u8(0xff);
        self.modrm_mem(4, &m);
    }

    /// `mov [m], r` of `size` bytes (1, 2, 4, 8).
    pub fn store(&mut self, size: u8, m: Mem, src: u8) {
        match size {
            1 => {
                self.rex_mem(false, src, &m, src >= 4);
                self.u8(0x88);
            }
            2 => {
                self.u8(0x66);
                self.rex_mem(false, src, &m, false);
                self.u8(0x89);
            }
            4 => {
                self.rex_mem(false, src, &m, false);
                self.u8(0x89);
            }
            _ => {
                self.rex_mem(true, src, &m, false);
                self.u8(0x89);
            }
        }
        self.modrm_mem(src, &m);
    }

    /// `mov byte [m], imm8`
    pub fn store8_imm(&mut self, m: Mem, imm: u8) {
        self.rex_mem(false, 0, &m, false);
        self.u8(0xc6);
        self.modrm_mem(0, &m);
        self.u8(imm);
    }

    /// `bt qword [m], imm8`: CF = that bit.
    pub fn bt_mi(&mut self, m: Mem, bit: u8) {
        self.rex_mem(true, 0, &m, false);
        self.u8(0x0f);
        self.u8(0xba);
        self.modrm_mem(4, &m);
        self.u8(bit);
    }

    /// `movsxd r64, r32`
    pub fn movsxd(&mut self, dst: u8, src: u8) {
        self.rex(true, dst, 0, src, false);
        self.u8(0x63);
        self.modrm_reg(dst, src);
    }

    /// `movsx r64, r16`
    pub fn movsx16(&mut self, dst: u8, src: u8) {
        self.rex(true, dst, 0, src, false);
        self.u8(0x0f);
        self.u8(0xbf);
        self.modrm_reg(dst, src);
    }

    /// `mov dword [m], imm32`
    pub fn store16_imm(&mut self, m: Mem, imm: u16) {
        self.u8(0x66);
        self.rex_mem(false, 0, &m, false);
        self.u8(0xc7);
        self.modrm_mem(0, &m);
        self.buf.extend_from_slice(&imm.to_le_bytes());
    }

    /// `movzx dst32, word [m]`
    pub fn load16(&mut self, dst: u8, m: Mem) {
        self.rex_mem(false, dst, &m, false);
        self.u8(0x0f);
        self.u8(0xb7);
        self.modrm_mem(dst, &m);
    }

    pub fn store32_imm(&mut self, m: Mem, imm: i32) {
        self.rex_mem(false, 0, &m, false);
        self.u8(0xc7);
        self.modrm_mem(0, &m);
        self.i32(imm);
    }

    /// `op dword [m], simm32`
    pub fn alu_mi32(&mut self, op: Alu, m: Mem, imm: i32) {
        self.alu_m(false, op, m, imm);
    }

    /// `mov qword [m], simm32`
    pub fn store64_imm(&mut self, m: Mem, imm: i32) {
        self.rex_mem(true, 0, &m, false);
        self.u8(0xc7);
        self.modrm_mem(0, &m);
        self.i32(imm);
    }

    /// `lea r64, [m]`
    pub fn lea(&mut self, dst: u8, m: Mem) {
        self.op_rm64(0x8d, dst, &m);
    }

    /// `lea dst, [dst + r << scale]`: adds a scaled register without touching RFLAGS.
    pub fn add_scaled(&mut self, dst: u8, r: u8, scale: u8) {
        self.lea(
            dst,
            Mem {
                base: dst,
                index: Some((r, scale)),
                disp: 0,
            },
        );
    }

    /// `mov r64, r64`
    pub fn mov_rr(&mut self, dst: u8, src: u8) {
        self.rex(true, src, 0, dst, false);
        self.u8(0x89);
        self.modrm_reg(src, dst);
    }

    /// `mov r16, r16` (the destination's upper 48 bits are kept).
    pub fn mov_rr16(&mut self, dst: u8, src: u8) {
        self.u8(0x66);
        self.rex(false, src, 0, dst, false);
        self.u8(0x89);
        self.modrm_reg(src, dst);
    }

    /// `movzx r32, r16` (zero-extends into the 64-bit register).
    pub fn movzx_rr16(&mut self, dst: u8, src: u8) {
        self.rex(false, dst, 0, src, false);
        self.u8(0x0f);
        self.u8(0xb7);
        self.modrm_reg(dst, src);
    }

    /// `mov r16, [m]` (the register's upper 48 bits are kept).
    pub fn load16_merge(&mut self, dst: u8, m: Mem) {
        self.u8(0x66);
        self.rex_mem(false, dst, &m, false);
        self.u8(0x8b);
        self.modrm_mem(dst, &m);
    }

    /// `op word [m], imm16`
    pub fn alu_mi16(&mut self, op: Alu, m: Mem, imm: u16) {
        self.u8(0x66);
        self.rex_mem(false, 0, &m, false);
        self.u8(0x81);
        self.modrm_mem(op as u8, &m);
        self.buf.extend_from_slice(&imm.to_le_bytes());
    }

    /// `mov r32, r32` (zero-extends into the 64-bit register).
    pub fn mov_rr32(&mut self, dst: u8, src: u8) {
        self.rex(false, src, 0, dst, false);
        self.u8(0x89);
        self.modrm_reg(src, dst);
    }

    /// `mov r64, imm64` (the shortest form that gives the same 64-bit value).
    pub fn mov_ri(&mut self, dst: u8, imm: u64) {
        if imm <= u32::MAX as u64 {
            self.rex(false, 0, 0, dst, false);
            self.u8(0xb8 | (dst & 7));
            self.i32(imm as u32 as i32);
        } else if imm as i64 >= i32::MIN as i64 && imm as i64 <= i32::MAX as i64 {
            self.rex(true, 0, 0, dst, false);
            self.u8(0xc7);
            self.modrm_reg(0, dst);
            self.i32(imm as i64 as i32);
        } else {
            self.rex(true, 0, 0, dst, false);
            self.u8(0xb8 | (dst & 7));
            self.buf.extend_from_slice(&imm.to_le_bytes());
        }
    }

    /// `op r64, simm32`
    pub fn alu_ri(&mut self, op: Alu, dst: u8, imm: i32) {
        self.rex(true, 0, 0, dst, false);
        if (-128..=127).contains(&imm) {
            self.u8(0x83);
            self.modrm_reg(op as u8, dst);
            self.u8(imm as i8 as u8);
        } else {
            self.u8(0x81);
            self.modrm_reg(op as u8, dst);
            self.i32(imm);
        }
    }

    /// `op qword [m], simm32`
    pub fn alu_mi(&mut self, op: Alu, m: Mem, imm: i32) {
        self.alu_m(true, op, m, imm);
    }

    /// `op qword/dword [m], simm32`, with the short form for an 8-bit immediate.
    fn alu_m(&mut self, wide: bool, op: Alu, m: Mem, imm: i32) {
        self.rex_mem(wide, 0, &m, false);
        if (-128..=127).contains(&imm) {
            self.u8(0x83);
            self.modrm_mem(op as u8, &m);
            self.u8(imm as i8 as u8);
        } else {
            self.u8(0x81);
            self.modrm_mem(op as u8, &m);
            self.i32(imm);
        }
    }

    /// `op r64, [m]`
    pub fn alu_rm(&mut self, op: Alu, dst: u8, m: Mem) {
        self.op_rm64((op as u8) << 3 | 3, dst, &m);
    }

    /// `shr r64, imm8`
    pub fn shr_ri(&mut self, dst: u8, imm: u8) {
        self.rex(true, 0, 0, dst, false);
        self.u8(0xc1);
        self.modrm_reg(5, dst);
        self.u8(imm);
    }

    /// `shl r64, imm8`
    pub fn shl_ri(&mut self, dst: u8, imm: u8) {
        self.rex(true, 0, 0, dst, false);
        self.u8(0xc1);
        self.modrm_reg(4, dst);
        self.u8(imm);
    }

    /// `sar r64, imm8`
    pub fn sar_ri(&mut self, dst: u8, imm: u8) {
        self.rex(true, 0, 0, dst, false);
        self.u8(0xc1);
        self.modrm_reg(7, dst);
        self.u8(imm);
    }

    /// `sar r32, imm8`
    pub fn sar_ri32(&mut self, dst: u8, imm: u8) {
        self.rex(false, 0, 0, dst, false);
        self.u8(0xc1);
        self.modrm_reg(7, dst);
        self.u8(imm);
    }

    /// `op r32, r32`
    pub fn alu_rr32(&mut self, op: Alu, dst: u8, src: u8) {
        self.rex(false, src, 0, dst, false);
        self.u8((op as u8) << 3 | 1);
        self.modrm_reg(src, dst);
    }

    /// `op r64, r64`
    pub fn alu_rr(&mut self, op: Alu, dst: u8, src: u8) {
        self.rex(true, src, 0, dst, false);
        self.u8((op as u8) << 3 | 1);
        self.modrm_reg(src, dst);
    }

    /// `test r64, r64`
    pub fn test_rr64(&mut self, a: u8, b: u8) {
        self.rex(true, b, 0, a, false);
        self.u8(0x85);
        self.modrm_reg(b, a);
    }

    /// `test r32, r32`
    pub fn test_rr32(&mut self, a: u8, b: u8) {
        self.rex(false, b, 0, a, false);
        self.u8(0x85);
        self.modrm_reg(b, a);
    }

    /// `jcc rel32` to a target patched later.
    pub fn jcc(&mut self, cc: u8) -> Fixup {
        self.u8(0x0f);
        self.u8(0x80 | cc);
        self.i32(0);
        Fixup(self.buf.len())
    }

    /// `jmp rel32` to a target patched later.
    pub fn jmp(&mut self) -> Fixup {
        self.u8(0xe9);
        self.i32(0);
        Fixup(self.buf.len())
    }

    /// Points the branch at `f` to offset `target` of this buffer.
    pub fn patch(&mut self, f: Fixup, target: usize) {
        let rel = target as i64 - f.0 as i64;
        self.buf[f.0 - 4..f.0].copy_from_slice(&(rel as i32).to_le_bytes());
    }

    /// `jmp rel32` to an absolute address, given where this buffer will be placed.
    pub fn jmp_abs(&mut self, here: usize, target: usize) {
        self.u8(0xe9);
        let end = here + self.buf.len() + 4;
        self.i32((target as i64 - end as i64) as i32);
    }

    /// `call r64`
    pub fn call_r(&mut self, r: u8) {
        self.rex(false, 0, 0, r, false);
        self.u8(0xff);
        self.modrm_reg(2, r);
    }

    /// `jmp r64`
    pub fn jmp_r(&mut self, r: u8) {
        self.rex(false, 0, 0, r, false);
        self.u8(0xff);
        self.modrm_reg(4, r);
    }

    pub fn push_r(&mut self, r: u8) {
        self.rex(false, 0, 0, r, false);
        self.u8(0x50 | (r & 7));
    }

    pub fn pop_r(&mut self, r: u8) {
        self.rex(false, 0, 0, r, false);
        self.u8(0x58 | (r & 7));
    }

    /// `pushfq; pop qword [m]`: the host's RFLAGS into memory.
    pub fn save_flags(&mut self, m: Mem) {
        self.u8(0x9c);
        self.rex_mem(false, 0, &m, false);
        self.u8(0x8f);
        self.modrm_mem(0, &m);
    }

    /// `push qword [m]; popfq`: RFLAGS from memory.
    pub fn load_flags(&mut self, m: Mem) {
        self.rex_mem(false, 0, &m, false);
        self.u8(0xff);
        self.modrm_mem(6, &m);
        self.u8(0x9d);
    }

    /// `movdqu xmm, [m]`
    pub fn movdqu_load(&mut self, x: u8, m: Mem) {
        self.u8(0xf3);
        self.rex_mem(false, x, &m, false);
        self.u8(0x0f);
        self.u8(0x6f);
        self.modrm_mem(x, &m);
    }

    /// `movdqu [m], xmm`
    pub fn movdqu_store(&mut self, m: Mem, x: u8) {
        self.u8(0xf3);
        self.rex_mem(false, x, &m, false);
        self.u8(0x0f);
        self.u8(0x7f);
        self.modrm_mem(x, &m);
    }

    /// `ldmxcsr [m]`
    pub fn ldmxcsr(&mut self, m: Mem) {
        self.rex_mem(false, 0, &m, false);
        self.u8(0x0f);
        self.u8(0xae);
        self.modrm_mem(2, &m);
    }

    /// `frstor [m]` (the 108-byte 32-bit format)
    pub fn frstor(&mut self, m: Mem) {
        self.rex_mem(false, 0, &m, false);
        self.u8(0xdd);
        self.modrm_mem(4, &m);
    }

    /// `fnsave [m]` (the 108-byte 32-bit format; the FPU is initialized after)
    pub fn fnsave(&mut self, m: Mem) {
        self.rex_mem(false, 0, &m, false);
        self.u8(0xdd);
        self.modrm_mem(6, &m);
    }

    /// `stmxcsr [m]`
    pub fn stmxcsr(&mut self, m: Mem) {
        self.rex_mem(false, 0, &m, false);
        self.u8(0x0f);
        self.u8(0xae);
        self.modrm_mem(3, &m);
    }

    pub fn ret(&mut self) {
        self.u8(0xc3);
    }
}

#[cfg(test)]
mod tests {
    use super::reg::*;
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

    /// Disassembles `code` to Intel syntax, one instruction per line.
    fn dis(code: &[u8]) -> Vec<String> {
        let mut d = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
        let mut f = IntelFormatter::new();
        let mut out = Vec::new();
        for i in &mut d {
            let mut s = String::new();
            f.format(&i, &mut s);
            out.push(s);
        }
        out
    }

    fn one(emit: impl FnOnce(&mut Asm)) -> String {
        let mut a = Asm::new();
        emit(&mut a);
        let v = dis(&a.buf);
        assert_eq!(v.len(), 1, "{v:?}");
        v[0].clone()
    }

    #[test]
    fn loads_and_stores_encode_every_base() {
        assert_eq!(one(|a| a.load64(RAX, Mem::at(R15, 8))), "mov rax,[r15+8]");
        assert_eq!(one(|a| a.load64(R11, Mem::at(RSP, 0))), "mov r11,[rsp]");
        assert_eq!(
            one(|a| a.load64(RCX, Mem::at(R12, 0x200))),
            "mov rcx,[r12+200h]"
        );
        assert_eq!(one(|a| a.load64(RDX, Mem::at(RBP, 0))), "mov rdx,[rbp]");
        assert_eq!(one(|a| a.load64(RDX, Mem::at(R13, -8))), "mov rdx,[r13-8]");
        assert_eq!(
            one(|a| a.store(8, Mem::at(R15, 16), R9)),
            "mov [r15+10h],r9"
        );
        assert_eq!(one(|a| a.store(4, Mem::at(RAX, 0), RSI)), "mov [rax],esi");
        assert_eq!(
            one(|a| a.store(2, Mem::at(R15, 2), R10)),
            "mov [r15+2],r10w"
        );
        assert_eq!(one(|a| a.store(1, Mem::at(R15, 1), RSI)), "mov [r15+1],sil");
        assert_eq!(one(|a| a.store(1, Mem::at(R15, 1), RAX)), "mov [r15+1],al");
        assert_eq!(
            one(|a| a.store8_imm(Mem::at(R15, 3), 9)),
            "mov byte ptr [r15+3],9"
        );
        assert_eq!(
            one(|a| a.store64_imm(Mem::at(R15, 0x100), -1)),
            "mov qword ptr [r15+100h],0FFFFFFFFFFFFFFFFh"
        );
    }

    #[test]
    fn sse_state_moves() {
        assert_eq!(
            one(|a| a.movdqu_load(3, Mem::at(R15, 0x300))),
            "movdqu xmm3,[r15+300h]"
        );
        assert_eq!(
            one(|a| a.movdqu_store(Mem::at(R15, 0x310), 12)),
            "movdqu [r15+310h],xmm12"
        );
        assert_eq!(one(|a| a.ldmxcsr(Mem::at(R15, 8))), "ldmxcsr [r15+8]");
        assert_eq!(one(|a| a.sar_ri32(R9, 31)), "sar r9d,1Fh");
        assert_eq!(one(|a| a.movsxd(RAX, R10)), "movsxd rax,r10d");
        assert_eq!(one(|a| a.movsx16(R11, RCX)), "movsx r11,cx");
        assert_eq!(
            one(|a| a.bt_mi(Mem::at(R15, 0x530), 0)),
            "bt qword ptr [r15+530h],0"
        );
        assert_eq!(one(|a| a.alu_rr32(Alu::Cmp, RDX, R10)), "cmp edx,r10d");
        assert_eq!(
            one(|a| a.store32_imm(Mem::at(R11, 0), -2)),
            "mov dword ptr [r11],0FFFFFFFEh"
        );
        assert_eq!(
            one(|a| a.alu_mi32(Alu::Add, Mem::at(R15, 0x80), 0x1234)),
            "add dword ptr [r15+80h],1234h"
        );
        assert_eq!(one(|a| a.stmxcsr(Mem::at(RAX, 0))), "stmxcsr [rax]");
    }

    #[test]
    fn address_arithmetic() {
        let m = Mem {
            base: R14,
            index: Some((RCX, 2)),
            disp: 0x10,
        };
        assert_eq!(one(|a| a.lea(RAX, m)), "lea rax,[r14+rcx*4+10h]");
        let m = Mem {
            base: RBP,
            index: Some((R9, 3)),
            disp: 0,
        };
        assert_eq!(one(|a| a.lea(RDX, m)), "lea rdx,[rbp+r9*8]");
        assert_eq!(one(|a| a.mov_rr(R8, RAX)), "mov r8,rax");
        assert_eq!(one(|a| a.mov_rr32(RAX, RAX)), "mov eax,eax");
        assert_eq!(one(|a| a.mov_ri(R11, 5)), "mov r11d,5");
        assert_eq!(
            one(|a| a.mov_ri(RAX, u64::MAX)),
            "mov rax,0FFFFFFFFFFFFFFFFh"
        );
        assert_eq!(
            one(|a| a.mov_ri(RBX, 0x1234_5678_9abc)),
            "mov rbx,123456789ABCh"
        );
        assert_eq!(one(|a| a.alu_ri(Alu::And, RCX, 0x3ff)), "and rcx,3FFh");
        assert_eq!(one(|a| a.alu_ri(Alu::Add, R10, 1)), "add r10,1");
        assert_eq!(
            one(|a| a.alu_mi(Alu::Add, Mem::at(R15, 0x80), 12)),
            "add qword ptr [r15+80h],0Ch"
        );
        assert_eq!(
            one(|a| a.alu_rm(
                Alu::Cmp,
                RDX,
                Mem {
                    base: R14,
                    index: Some((RAX, 0)),
                    disp: 0
                }
            )),
            "cmp rdx,[r14+rax]"
        );
        assert_eq!(one(|a| a.shr_ri(RDX, 12)), "shr rdx,0Ch");
        assert_eq!(one(|a| a.shl_ri(R9, 6)), "shl r9,6");
        assert_eq!(one(|a| a.test_rr32(RAX, RAX)), "test eax,eax");
        assert_eq!(one(|a| a.test_rr64(R9, RAX)), "test r9,rax");
        assert_eq!(one(|a| a.sar_ri(RDX, 16)), "sar rdx,10h");
        assert_eq!(one(|a| a.alu_rr(Alu::Cmp, RDX, R12)), "cmp rdx,r12");
    }

    #[test]
    fn sixteen_bit_forms() {
        assert_eq!(one(|a| a.mov_rr16(RSP, R9)), "mov sp,r9w");
        assert_eq!(one(|a| a.mov_rr16(R10, RAX)), "mov r10w,ax");
        assert_eq!(one(|a| a.movzx_rr16(R11, RBX)), "movzx r11d,bx");
        assert_eq!(one(|a| a.movzx_rr16(RAX, R13)), "movzx eax,r13w");
        assert_eq!(
            one(|a| a.load16_merge(R8, Mem::at(RDX, 0))),
            "mov r8w,[rdx]"
        );
        assert_eq!(
            one(|a| a.alu_mi16(Alu::Sub, Mem::at(R15, 0x80), 0x20)),
            "sub word ptr [r15+80h],20h"
        );
    }

    #[test]
    fn control_transfers() {
        assert_eq!(one(|a| a.call_r(RAX)), "call rax");
        assert_eq!(one(|a| a.jmp_r(RSI)), "jmp rsi");
        assert_eq!(one(|a| a.push_r(R15)), "push r15");
        assert_eq!(one(|a| a.pop_r(RBX)), "pop rbx");
        let mut a = Asm::new();
        a.save_flags(Mem::at(R15, 0x40));
        a.load_flags(Mem::at(R15, 0x40));
        assert_eq!(
            dis(&a.buf),
            [
                "pushfq",
                "pop qword ptr [r15+40h]",
                "push qword ptr [r15+40h]",
                "popfq"
            ]
        );
        let mut a = Asm::new();
        let f = a.jcc(cc::NE);
        a.ret();
        let end = a.len();
        a.patch(f, end);
        assert_eq!(dis(&a.buf), ["jne 7", "ret"]);
    }
}
