//! RFLAGS with lazily computed arithmetic flags.
//!
//! Most instructions set CF, PF, AF, ZF, SF and OF, and most of those values are never read.
//! So an arithmetic instruction records what it did (the operation, operand size, result and
//! sources) and the flags are computed only when something reads them: a conditional jump asks
//! for one condition, PUSHF for all of them.

pub const CF: u64 = 1 << 0;
pub const PF: u64 = 1 << 2;
pub const AF: u64 = 1 << 4;
pub const ZF: u64 = 1 << 6;
pub const SF: u64 = 1 << 7;
pub const TF: u64 = 1 << 8;
pub const IF: u64 = 1 << 9;
pub const DF: u64 = 1 << 10;
pub const OF: u64 = 1 << 11;
pub const IOPL: u64 = 3 << 12;
pub const NT: u64 = 1 << 14;
pub const RF: u64 = 1 << 16;
pub const VM: u64 = 1 << 17;
pub const AC: u64 = 1 << 18;
pub const VIF: u64 = 1 << 19;
pub const VIP: u64 = 1 << 20;
pub const ID: u64 = 1 << 21;
/// Bit 1 always reads as 1.
pub const FIXED1: u64 = 1 << 1;
/// The six arithmetic status flags.
pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
/// Every flag software can change (the rest read as 0).
pub const WRITABLE: u64 = ARITH | TF | IF | DF | IOPL | NT | RF | VM | AC | VIF | VIP | ID;

/// What the last flag-setting instruction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// The arithmetic flags are stored in `Flags::bits`.
    None,
    Add,
    /// Add with carry: `src2` holds the carry-in in bit 63 ... see `Flags::set_adc`.
    Adc,
    Sub,
    Sbb,
    /// AND, OR, XOR, TEST: CF = OF = 0, AF undefined (0).
    Logic,
    /// INC/DEC keep CF, which is saved in `carry`.
    Inc,
    Dec,
    /// NEG: CF = (src != 0).
    Neg,
    /// SHL: `src2` is the count (1..=size bits), `src1` the value before.
    Shl,
    Shr,
    Sar,
    /// Set by translated code: `res` holds the host's RFLAGS as PUSHFQ stored it right after
    /// the host ran the guest's instruction natively; its arithmetic bits are the guest's.
    Native,
}

#[derive(Clone, Copy, Debug)]
pub struct Flags {
    /// Non-arithmetic bits always, arithmetic bits when `op` is `None`.
    pub bits: u64,
    pub op: Op,
    /// Operand size in bytes (1, 2, 4, 8).
    pub size: u8,
    /// CF to keep for INC/DEC, carry-in for ADC/SBB.
    pub carry: bool,
    pub res: u64,
    pub src1: u64,
    pub src2: u64,
}

impl Default for Flags {
    fn default() -> Flags {
        Flags {
            bits: FIXED1,
            op: Op::None,
            size: 8,
            carry: false,
            res: 0,
            src1: 0,
            src2: 0,
        }
    }
}

#[inline(always)]
pub fn mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

#[inline(always)]
pub fn sign_bit(size: u8) -> u64 {
    1u64 << (size as u32 * 8 - 1)
}

/// Sign-extends the low `size` bytes of `v`.
#[inline(always)]
pub fn sext(v: u64, size: u8) -> i64 {
    let shift = 64 - size as u32 * 8;
    ((v << shift) as i64) >> shift
}

#[inline(always)]
fn parity(v: u64) -> bool {
    (v as u8).count_ones().is_multiple_of(2)
}

impl Flags {
    #[inline(always)]
    pub fn set(&mut self, op: Op, size: u8, res: u64, src1: u64, src2: u64) {
        self.op = op;
        self.size = size;
        self.res = res & mask(size);
        self.src1 = src1;
        self.src2 = src2;
    }

    /// ADC/SBB: the carry-in is part of the operation.
    #[inline(always)]
    pub fn set_carry_op(&mut self, op: Op, size: u8, res: u64, src1: u64, src2: u64, carry: bool) {
        self.set(op, size, res, src1, src2);
        self.carry = carry;
    }

    /// INC/DEC: CF is kept from before.
    #[inline(always)]
    pub fn set_incdec(&mut self, op: Op, size: u8, res: u64, src1: u64) {
        let cf = self.cf();
        self.set(op, size, res, src1, 1);
        self.carry = cf;
    }

    #[inline(always)]
    pub fn cf(&self) -> bool {
        let m = mask(self.size);
        let (a, b, r) = (self.src1 & m, self.src2 & m, self.res);
        match self.op {
            Op::None => self.bits & CF != 0,
            Op::Add => r < a,
            Op::Adc => r < a || (self.carry && r == a),
            Op::Sub => a < b,
            Op::Sbb => a < b || (self.carry && b == m) || (self.carry && a == b),
            Op::Logic => false,
            Op::Inc | Op::Dec => self.carry,
            Op::Neg => a != 0,
            Op::Shl => {
                let n = self.src2 as u32;
                n <= self.size as u32 * 8 && (a >> (self.size as u32 * 8 - n)) & 1 != 0
            }
            Op::Shr => (a >> (self.src2 as u32 - 1)) & 1 != 0,
            Op::Sar => {
                let n = (self.src2 as u32).min(64);
                (sext(a, self.size) >> (n - 1).min(63)) & 1 != 0
            }
            Op::Native => self.res & CF != 0,
        }
    }

    #[inline(always)]
    pub fn zf(&self) -> bool {
        match self.op {
            Op::None => self.bits & ZF != 0,
            Op::Native => self.res & ZF != 0,
            _ => self.res == 0,
        }
    }

    #[inline(always)]
    pub fn sf(&self) -> bool {
        match self.op {
            Op::None => self.bits & SF != 0,
            Op::Native => self.res & SF != 0,
            _ => self.res & sign_bit(self.size) != 0,
        }
    }

    #[inline(always)]
    pub fn pf(&self) -> bool {
        match self.op {
            Op::None => self.bits & PF != 0,
            Op::Native => self.res & PF != 0,
            _ => parity(self.res),
        }
    }

    pub fn af(&self) -> bool {
        let (a, b, r) = (self.src1, self.src2, self.res);
        match self.op {
            Op::None => self.bits & AF != 0,
            Op::Add | Op::Adc | Op::Sub | Op::Sbb => (a ^ b ^ r) & 0x10 != 0,
            Op::Inc => r & 0xf == 0,
            Op::Dec => r & 0xf == 0xf,
            Op::Neg => a & 0xf != 0,
            Op::Logic | Op::Shl | Op::Shr | Op::Sar => false,
            Op::Native => self.res & AF != 0,
        }
    }

    #[inline(always)]
    pub fn of(&self) -> bool {
        let m = mask(self.size);
        let sb = sign_bit(self.size);
        let (a, b, r) = (self.src1 & m, self.src2 & m, self.res);
        match self.op {
            Op::None => self.bits & OF != 0,
            Op::Add | Op::Adc => (a ^ r) & (b ^ r) & sb != 0,
            Op::Sub | Op::Sbb => (a ^ b) & (a ^ r) & sb != 0,
            Op::Logic => false,
            Op::Inc => r == sb,
            Op::Dec => r == sb - 1,
            Op::Neg => r == sb,
            // Defined for 1-bit shifts; Janus gives the same value for others, as Intel CPUs do.
            Op::Shl => ((r ^ (if self.cf() { sb } else { 0 })) & sb) != 0,
            Op::Shr => {
                if self.src2 == 1 {
                    a & sb != 0
                } else {
                    false
                }
            }
            Op::Sar => false,
            Op::Native => self.res & OF != 0,
        }
    }

    /// Evaluates condition code `cc` (the low nibble of Jcc/SETcc/CMOVcc opcodes).
    #[inline(always)]
    pub fn cond(&self, cc: u8) -> bool {
        // Fast paths for the common producer of a condition: CMP/SUB.
        if self.op == Op::Sub {
            let m = mask(self.size);
            let (a, b) = (self.src1 & m, self.src2 & m);
            let (sa, sb) = (sext(a, self.size), sext(b, self.size));
            let r = match cc >> 1 {
                0 => return self.of() ^ (cc & 1 != 0),
                1 => a < b,
                2 => a == b,
                3 => a <= b,
                4 => self.sf(),
                5 => self.pf(),
                6 => sa < sb,
                _ => sa <= sb,
            };
            return r ^ (cc & 1 != 0);
        }
        let r = match cc >> 1 {
            0 => self.of(),
            1 => self.cf(),
            2 => self.zf(),
            3 => self.cf() || self.zf(),
            4 => self.sf(),
            5 => self.pf(),
            6 => self.sf() != self.of(),
            _ => self.zf() || (self.sf() != self.of()),
        };
        r ^ (cc & 1 != 0)
    }

    /// The full RFLAGS value.
    pub fn get(&self) -> u64 {
        match self.op {
            Op::None => return self.bits | FIXED1,
            Op::Native => return (self.bits & !ARITH) | (self.res & ARITH) | FIXED1,
            _ => {}
        }
        let mut f = self.bits & !ARITH;
        f |= self.cf() as u64 * CF;
        f |= self.pf() as u64 * PF;
        f |= self.af() as u64 * AF;
        f |= self.zf() as u64 * ZF;
        f |= self.sf() as u64 * SF;
        f |= self.of() as u64 * OF;
        f | FIXED1
    }

    /// Sets every flag from `v` (only the writable bits).
    pub fn load(&mut self, v: u64) {
        self.bits = (v & WRITABLE) | FIXED1;
        self.op = Op::None;
    }

    /// Makes the arithmetic flags concrete in `bits` so single bits can be changed.
    #[inline]
    pub fn materialize(&mut self) {
        if self.op != Op::None {
            self.bits = self.get();
            self.op = Op::None;
        }
    }

    /// Puts the arithmetic flags in the form translated code loads with POPFQ: `res` holds
    /// them (and bit 1) with every other bit clear, so the host's DF, TF, IF and AC are never
    /// touched.
    #[inline]
    pub fn to_native(&mut self) {
        if self.op != Op::Native {
            let v = self.get();
            self.bits = v & !ARITH;
            self.res = (v & ARITH) | FIXED1;
            self.op = Op::Native;
        }
    }

    /// Sets or clears flag bits (materializing first).
    #[inline]
    pub fn assign(&mut self, bit: u64, on: bool) {
        if bit & ARITH != 0 {
            self.materialize();
        }
        if on {
            self.bits |= bit;
        } else {
            self.bits &= !bit;
        }
    }

    #[inline(always)]
    pub fn df(&self) -> bool {
        self.bits & DF != 0
    }

    #[inline(always)]
    pub fn if_(&self) -> bool {
        self.bits & IF != 0
    }

    pub fn iopl(&self) -> u8 {
        ((self.bits >> 12) & 3) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(a: u64, b: u64, size: u8) -> Flags {
        let mut f = Flags::default();
        f.set(Op::Sub, size, a.wrapping_sub(b), a, b);
        f
    }

    #[test]
    fn sub_flags() {
        let f = sub(1, 2, 4);
        assert!(f.cf() && f.sf() && !f.zf() && !f.of());
        let f = sub(0x8000_0000, 1, 4);
        assert!(f.of() && !f.cf() && !f.sf());
        let f = sub(5, 5, 1);
        assert!(f.zf() && !f.cf() && f.pf());
    }

    #[test]
    fn conditions_agree_with_flags() {
        for (a, b) in [
            (1u64, 2u64),
            (2, 1),
            (5, 5),
            (0x80, 1),
            (0xff, 0x7f),
            (0, 0x80),
        ] {
            let f = sub(a, b, 1);
            let mut g = f;
            g.materialize();
            for cc in 0..16 {
                assert_eq!(f.cond(cc), g.cond(cc), "a={a:#x} b={b:#x} cc={cc}");
            }
        }
    }

    #[test]
    fn inc_keeps_carry() {
        let mut f = Flags::default();
        f.load(CF);
        f.set_incdec(Op::Inc, 1, 0x00, 0xff);
        assert!(f.cf(), "INC keeps CF");
        assert!(f.zf() && f.af());
        f.set_incdec(Op::Inc, 1, 0x80, 0x7f);
        assert!(f.of() && f.cf());
    }

    #[test]
    fn adc_sbb_carry() {
        let mut f = Flags::default();
        f.set_carry_op(
            Op::Adc,
            1,
            0xff_u64.wrapping_add(0).wrapping_add(1),
            0xff,
            0,
            true,
        );
        assert!(f.cf() && f.zf());
        f.set_carry_op(Op::Sbb, 1, 0u64.wrapping_sub(0).wrapping_sub(1), 0, 0, true);
        assert!(f.cf() && f.sf());
    }

    #[test]
    fn native_form_round_trips() {
        let mut f = sub(1, 2, 4);
        f.bits |= IF | DF;
        let before = f.get();
        f.to_native();
        assert_eq!(f.op, Op::Native);
        assert_eq!(
            f.res & !(ARITH | FIXED1),
            0,
            "only arithmetic bits reach POPFQ"
        );
        assert_eq!(f.get(), before);
        for cc in 0..16 {
            assert_eq!(f.cond(cc), sub(1, 2, 4).cond(cc), "cc={cc}");
        }
        // A raw PUSHFQ value (host IF set) keeps the guest's own IF and DF.
        f.res = 0x246;
        assert_eq!(f.get(), IF | DF | ZF | PF | FIXED1);
        f.materialize();
        assert_eq!(f.bits, IF | DF | ZF | PF | FIXED1);
    }

    #[test]
    fn get_and_load_round_trip() {
        let mut f = Flags::default();
        f.load(CF | ZF | IF | DF | 0xffff_0000_0000);
        assert_eq!(f.get(), CF | ZF | IF | DF | FIXED1);
        f.assign(CF, false);
        assert_eq!(f.get() & CF, 0);
    }
}
