//! Running one x87 operation on the host FPU, so that results, exception flags and condition
//! codes are the hardware's own (the soft engine requires an x86-64 host).
//!
//! A [`Kernel`] loads up to two 80-bit operands onto the host stack (empty on entry, as Rust's
//! inline assembly guarantees when every `st` register is clobbered), executes exactly one x87
//! instruction and takes the results back, leaving the stack empty and the host control word
//! as it found it.
//!
//! * Fast path: the guest's precision and rounding control with every exception masked, so the
//!   host never traps; results come back with `fstp`.
//! * Slow path, only when the fast run raised an exception the guest has unmasked: the same
//!   instruction again under the guest's own control word, starting from the guest's condition
//!   codes, then `fnsave`. The host notes the unmasked exception as pending, but only a later
//!   *waiting* x87 instruction would trap, and `fnsave` does not wait; it also reinitialises
//!   the FPU. So the guest gets the hardware's unmasked response (operands left alone, or a
//!   biased-exponent result) without the host ever taking #MF.

use core::arch::asm;
use core::mem::offset_of;

/// An 80-bit extended-precision value as `fld`/`fstp tbyte` access it: the 64-bit significand
/// then the sign and 15-bit exponent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct F80 {
    pub sig: u64,
    pub se: u16,
}

/// Tags as the full tag word encodes them.
pub const TAG_VALID: u16 = 0;
pub const TAG_ZERO: u16 = 1;
pub const TAG_SPECIAL: u16 = 2;
pub const TAG_EMPTY: u16 = 3;

impl F80 {
    /// The default quiet NaN the FPU writes as the masked response to an invalid operation.
    pub const INDEFINITE: F80 = F80 {
        sig: 0xc000_0000_0000_0000,
        se: 0xffff,
    };

    /// From the first 10 bytes of `b` (little-endian, as in memory and in FXSAVE images).
    pub fn from_bytes(b: &[u8]) -> F80 {
        let mut sig = [0u8; 8];
        sig.copy_from_slice(&b[..8]);
        F80 {
            sig: u64::from_le_bytes(sig),
            se: u16::from_le_bytes([b[8], b[9]]),
        }
    }

    pub fn to_bytes(self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&self.sig.to_le_bytes());
        b[8..].copy_from_slice(&self.se.to_le_bytes());
        b
    }

    /// The tag FSTENV and FSAVE report for a non-empty register holding this value.
    pub fn tag(self) -> u16 {
        let exp = self.se & 0x7fff;
        match exp {
            0 if self.sig == 0 => TAG_ZERO,
            // Denormals and pseudo-denormals; infinities, NaNs and unsupported encodings.
            0 | 0x7fff => TAG_SPECIAL,
            // An unnormal (integer bit clear) is an unsupported encoding.
            _ if self.sig >> 63 == 0 => TAG_SPECIAL,
            _ => TAG_VALID,
        }
    }
}

/// Everything one kernel run reads and writes, at the fixed offsets the templates use.
#[repr(C)]
struct Io {
    /// Host st(0) and st(1) before the instruction.
    ops: [F80; 2],
    /// Host st(0), st(1), st(2) after it (fast path).
    res: [F80; 3],
    /// The memory operand, in and out.
    mem: [u8; 16],
    /// Control word to run under (fast path).
    cw: u16,
    /// Status word after the instruction (fast path).
    sw: u16,
    /// The host's own control word, restored at the end.
    save: u16,
    /// AH after LAHF, for FCOMI and friends.
    flags: u8,
    _pad: u8,
    /// Environment loaded before the slow run (32-bit protected-mode format).
    env: [u8; 28],
    /// FNSAVE image after the slow run.
    img: [u8; 108],
}

// The templates below address `Io` by these offsets.
const _: () = {
    assert!(offset_of!(Io, ops) == 0);
    assert!(offset_of!(Io, res) == 32);
    assert!(offset_of!(Io, mem) == 80);
    assert!(offset_of!(Io, cw) == 96);
    assert!(offset_of!(Io, sw) == 98);
    assert!(offset_of!(Io, save) == 100);
    assert!(offset_of!(Io, flags) == 102);
    assert!(offset_of!(Io, env) == 104);
    assert!(offset_of!(Io, img) == 132);
};

/// One x87 instruction prepared to run on the host.
pub struct Kernel {
    fast: fn(&mut Io),
    slow: fn(&mut Io),
    /// Values on the host stack after the instruction completes normally.
    n_out: u8,
    /// The instruction leaves some condition codes alone in some cases (which the fast path,
    /// starting from whatever the host had, cannot reproduce): always take the slow path,
    /// which starts from the guest's condition codes.
    seeded: bool,
}

/// What a kernel run produced.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    /// Host st(0..depth) after the instruction.
    pub res: [F80; 3],
    /// The memory operand after the instruction (stores).
    pub mem: [u8; 16],
    /// Host status word: exception flags and condition codes.
    pub sw: u16,
    /// Values left on the host stack: less than the normal count means the instruction did
    /// not complete (an unmasked exception suppressed it).
    pub depth: u8,
    /// AH as LAHF read it after the instruction (FCOMI kernels); [`FLAGS_UNCHANGED`] if the
    /// instruction did not set EFLAGS.
    pub flags: u8,
}

/// LAHF's value after `xor eax, eax`: ZF and PF set, CF clear, which no FCOMI result gives.
pub const FLAGS_UNCHANGED: u8 = 0x46;

const MASK_ALL: u16 = 0x3f;
const UM: u16 = 0x10;
const COND: u16 = 0x4700;

/// Runs `k` with host st(0) = `ops[0]`, st(1) = `ops[1]` (as many as it loads) and memory
/// operand `mem`, under guest control word `cw`; `fsw` supplies the starting condition codes
/// for the slow path.
pub fn run(k: &Kernel, cw: u16, fsw: u16, ops: [F80; 2], mem: [u8; 16]) -> Out {
    let mut io = Io {
        ops,
        res: [F80::default(); 3],
        mem,
        cw: cw | MASK_ALL,
        sw: 0,
        save: 0,
        flags: 0,
        _pad: 0,
        env: [0; 28],
        img: [0; 108],
    };
    if !k.seeded {
        (k.fast)(&mut io);
        // An unmasked underflow is raised for every tiny result, a masked one only for an
        // inexact tiny result: the masked run cannot tell, so a guest that unmasks UE always
        // gets the slow path.
        if io.sw & !cw & MASK_ALL == 0 && cw & UM != 0 {
            return Out {
                res: io.res,
                mem: io.mem,
                sw: io.sw,
                depth: k.n_out,
                flags: io.flags,
            };
        }
    }
    io.mem = mem;
    io.env[0..2].copy_from_slice(&cw.to_le_bytes());
    io.env[4..6].copy_from_slice(&(fsw & COND).to_le_bytes());
    io.env[8..10].copy_from_slice(&0xffffu16.to_le_bytes());
    (k.slow)(&mut io);
    slow_out(&io)
}

/// Reads the slow run's FNSAVE image.
fn slow_out(io: &Io) -> Out {
    let sw = u16::from_le_bytes([io.img[4], io.img[5]]);
    let tw = u16::from_le_bytes([io.img[8], io.img[9]]);
    let depth = (0..8).filter(|i| (tw >> (2 * i)) & 3 != TAG_EMPTY).count() as u8;
    let mut res = [F80::default(); 3];
    for (k, r) in res.iter_mut().enumerate() {
        *r = F80::from_bytes(&io.img[28 + 10 * k..]);
    }
    Out {
        res,
        mem: io.mem,
        sw,
        depth,
        flags: io.flags,
    }
}

macro_rules! loads {
    (0) => {
        ""
    };
    (1) => {
        "fld tbyte ptr [{io}]"
    };
    (2) => {
        "fld tbyte ptr [{io} + 16]\nfld tbyte ptr [{io}]"
    };
}

macro_rules! stores {
    (0) => {
        ""
    };
    (1) => {
        "fstp tbyte ptr [{io} + 32]"
    };
    (2) => {
        "fstp tbyte ptr [{io} + 32]\nfstp tbyte ptr [{io} + 48]"
    };
}

/// A [`Kernel`] that loads `$nin` operands, runs the one x87 instruction in `$op` and leaves
/// `$nout` values. `$op` may use `{io}` + 80 for the memory operand and rax (clobbered).
macro_rules! kernel {
    (seeded $nin:tt -> $nout:tt, $op:literal) => {
        Kernel {
            seeded: true,
            ..kernel!($nin -> $nout, $op)
        }
    };
    ($nin:tt -> $nout:tt, $op:literal) => {{
        fn fast(io: &mut Io) {
            let p: *mut Io = io;
            // SAFETY: `p` is an exclusive borrow of an `Io`; the template reads and writes only
            // inside it (offsets asserted above). It starts on the empty host stack and leaves it
            // empty (every `st` register is declared clobbered), runs with all exceptions masked
            // so nothing traps, and restores the host control word and clears the flags it set.
            unsafe {
                asm!(
                    "fnstcw word ptr [{io} + 100]",
                    "fnclex",
                    "fldcw word ptr [{io} + 96]",
                    loads!($nin),
                    $op,
                    "fnstsw word ptr [{io} + 98]",
                    stores!($nout),
                    "fnclex",
                    "fldcw word ptr [{io} + 100]",
                    io = in(reg) p,
                    out("rax") _,
                    out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                    out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
                    options(nostack),
                );
            }
        }
        fn slow(io: &mut Io) {
            let p: *mut Io = io;
            // SAFETY: as in `fast`, except that the guest's unmasked exceptions stay unmasked: the
            // one instruction in `$op` may leave an exception pending, and the very next x87
            // instruction is FNSAVE, which does not wait (so cannot trap) and reinitialises the
            // FPU, emptying the stack, before the host control word is restored.
            unsafe {
                asm!(
                    "fnstcw word ptr [{io} + 100]",
                    "fnclex",
                    "fldenv [{io} + 104]",
                    loads!($nin),
                    $op,
                    "fnsave [{io} + 132]",
                    "fldcw word ptr [{io} + 100]",
                    io = in(reg) p,
                    out("rax") _,
                    out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                    out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
                    options(nostack),
                );
            }
        }
        Kernel {
            fast,
            slow,
            n_out: $nout,
            seeded: false,
        }
    }};
}

/// The six arithmetic operations, in this order in every table below.
pub const ADD: usize = 0;
pub const MUL: usize = 1;
pub const SUB: usize = 2;
pub const SUBR: usize = 3;
pub const DIV: usize = 4;
pub const DIVR: usize = 5;

/// `st(0) = st(0) op st(1)` (D8 /r register forms; raw bytes, since assemblers disagree on
/// the operand order of the reversed forms).
pub static ARITH_RR: [Kernel; 6] = [
    kernel!(2 -> 2, ".byte 0xd8, 0xc1"),
    kernel!(2 -> 2, ".byte 0xd8, 0xc9"),
    kernel!(2 -> 2, ".byte 0xd8, 0xe1"),
    kernel!(2 -> 2, ".byte 0xd8, 0xe9"),
    kernel!(2 -> 2, ".byte 0xd8, 0xf1"),
    kernel!(2 -> 2, ".byte 0xd8, 0xf9"),
];

/// `st(1) = st(1) op st(0)`, pop (DE forms with i = 1).
pub static ARITH_POP: [Kernel; 6] = [
    kernel!(2 -> 1, ".byte 0xde, 0xc1"),
    kernel!(2 -> 1, ".byte 0xde, 0xc9"),
    kernel!(2 -> 1, ".byte 0xde, 0xe9"),
    kernel!(2 -> 1, ".byte 0xde, 0xe1"),
    kernel!(2 -> 1, ".byte 0xde, 0xf9"),
    kernel!(2 -> 1, ".byte 0xde, 0xf1"),
];

/// Memory operand kinds, indexing the per-kind tables.
pub const M32FP: usize = 0;
pub const M64FP: usize = 1;
pub const M16INT: usize = 2;
pub const M32INT: usize = 3;
pub const M64INT: usize = 4;
pub const M80BCD: usize = 5;
/// FISTTP's integer stores (SSE3), which truncate whatever the rounding control says.
pub const M16INT_TRUNC: usize = 6;
pub const M32INT_TRUNC: usize = 7;
pub const M64INT_TRUNC: usize = 8;
/// Bytes of each kind.
pub const KIND_SIZE: [usize; 9] = [4, 8, 2, 4, 8, 10, 2, 4, 8];

/// `st(0) = st(0) op mem`, per kind (m32fp, m64fp, m16int, m32int).
pub static ARITH_MEM: [[Kernel; 6]; 4] = [
    [
        kernel!(1 -> 1, "fadd dword ptr [{io} + 80]"),
        kernel!(1 -> 1, "fmul dword ptr [{io} + 80]"),
        kernel!(1 -> 1, "fsub dword ptr [{io} + 80]"),
        kernel!(1 -> 1, "fsubr dword ptr [{io} + 80]"),
        kernel!(1 -> 1, "fdiv dword ptr [{io} + 80]"),
        kernel!(1 -> 1, "fdivr dword ptr [{io} + 80]"),
    ],
    [
        kernel!(1 -> 1, "fadd qword ptr [{io} + 80]"),
        kernel!(1 -> 1, "fmul qword ptr [{io} + 80]"),
        kernel!(1 -> 1, "fsub qword ptr [{io} + 80]"),
        kernel!(1 -> 1, "fsubr qword ptr [{io} + 80]"),
        kernel!(1 -> 1, "fdiv qword ptr [{io} + 80]"),
        kernel!(1 -> 1, "fdivr qword ptr [{io} + 80]"),
    ],
    [
        kernel!(1 -> 1, "fiadd word ptr [{io} + 80]"),
        kernel!(1 -> 1, "fimul word ptr [{io} + 80]"),
        kernel!(1 -> 1, "fisub word ptr [{io} + 80]"),
        kernel!(1 -> 1, "fisubr word ptr [{io} + 80]"),
        kernel!(1 -> 1, "fidiv word ptr [{io} + 80]"),
        kernel!(1 -> 1, "fidivr word ptr [{io} + 80]"),
    ],
    [
        kernel!(1 -> 1, "fiadd dword ptr [{io} + 80]"),
        kernel!(1 -> 1, "fimul dword ptr [{io} + 80]"),
        kernel!(1 -> 1, "fisub dword ptr [{io} + 80]"),
        kernel!(1 -> 1, "fisubr dword ptr [{io} + 80]"),
        kernel!(1 -> 1, "fidiv dword ptr [{io} + 80]"),
        kernel!(1 -> 1, "fidivr dword ptr [{io} + 80]"),
    ],
];

/// Compare st(0) with st(1), popping 0, 1 or 2 values: [ordered (FCOM), unordered (FUCOM)].
pub static COMPARE_RR: [[Kernel; 3]; 2] = [
    [
        kernel!(2 -> 2, ".byte 0xd8, 0xd1"),
        kernel!(2 -> 1, ".byte 0xd8, 0xd9"),
        kernel!(2 -> 0, ".byte 0xde, 0xd9"),
    ],
    [
        kernel!(2 -> 2, ".byte 0xdd, 0xe1"),
        kernel!(2 -> 1, ".byte 0xdd, 0xe9"),
        kernel!(2 -> 0, ".byte 0xda, 0xe9"),
    ],
];

/// Compare st(0) with memory, [no pop, pop], per kind (m32fp, m64fp, m16int, m32int).
pub static COMPARE_MEM: [[Kernel; 2]; 4] = [
    [
        kernel!(1 -> 1, "fcom dword ptr [{io} + 80]"),
        kernel!(1 -> 0, "fcomp dword ptr [{io} + 80]"),
    ],
    [
        kernel!(1 -> 1, "fcom qword ptr [{io} + 80]"),
        kernel!(1 -> 0, "fcomp qword ptr [{io} + 80]"),
    ],
    [
        kernel!(1 -> 1, "ficom word ptr [{io} + 80]"),
        kernel!(1 -> 0, "ficomp word ptr [{io} + 80]"),
    ],
    [
        kernel!(1 -> 1, "ficom dword ptr [{io} + 80]"),
        kernel!(1 -> 0, "ficomp dword ptr [{io} + 80]"),
    ],
];

/// FCOMI family, st(0) with st(1), [no pop, pop]: [ordered, unordered]. EFLAGS are seeded
/// with a pattern FCOMI never produces, so the caller can tell whether it set them.
pub static COMPARE_EFLAGS: [[Kernel; 2]; 2] = [
    [
        kernel!(2 -> 2, "xor eax, eax\n.byte 0xdb, 0xf1\nlahf\nmov byte ptr [{io} + 102], ah"),
        kernel!(2 -> 1, "xor eax, eax\n.byte 0xdf, 0xf1\nlahf\nmov byte ptr [{io} + 102], ah"),
    ],
    [
        kernel!(2 -> 2, "xor eax, eax\n.byte 0xdb, 0xe9\nlahf\nmov byte ptr [{io} + 102], ah"),
        kernel!(2 -> 1, "xor eax, eax\n.byte 0xdf, 0xe9\nlahf\nmov byte ptr [{io} + 102], ah"),
    ],
];

pub static FTST: Kernel = kernel!(1 -> 1, "ftst");
pub static FXAM: Kernel = kernel!(1 -> 1, "fxam");

/// One-operand functions of st(0), replacing it.
pub const FSQRT: usize = 0;
pub const FRNDINT: usize = 1;
pub const F2XM1: usize = 2;
pub const FSIN: usize = 3;
pub const FCOS: usize = 4;
pub static UNARY: [Kernel; 5] = [
    kernel!(1 -> 1, "fsqrt"),
    kernel!(1 -> 1, "frndint"),
    kernel!(1 -> 1, "f2xm1"),
    kernel!(1 -> 1, "fsin"),
    kernel!(1 -> 1, "fcos"),
];

/// Functions of st(0) that replace it and push a second result.
pub const FPTAN: usize = 0;
pub const FSINCOS: usize = 1;
pub const FXTRACT: usize = 2;
pub static PUSHING: [Kernel; 3] = [
    kernel!(1 -> 2, "fptan"),
    kernel!(1 -> 2, "fsincos"),
    kernel!(1 -> 2, "fxtract"),
];

/// Functions of st(0) and st(1) that replace st(0). The partial remainders leave the
/// condition codes alone for invalid operands, so they start from the guest's.
pub const FSCALE: usize = 0;
pub const FPREM: usize = 1;
pub const FPREM1: usize = 2;
pub static IN_PLACE2: [Kernel; 3] = [
    kernel!(2 -> 2, "fscale"),
    kernel!(seeded 2 -> 2, "fprem"),
    kernel!(seeded 2 -> 2, "fprem1"),
];

/// Functions of st(0) and st(1) that store into st(1) and pop.
pub const FYL2X: usize = 0;
pub const FYL2XP1: usize = 1;
pub const FPATAN: usize = 2;
pub static POPPING: [Kernel; 3] = [
    kernel!(2 -> 1, "fyl2x"),
    kernel!(2 -> 1, "fyl2xp1"),
    kernel!(2 -> 1, "fpatan"),
];

/// Loads from memory, per kind.
pub static LOAD: [Kernel; 6] = [
    kernel!(0 -> 1, "fld dword ptr [{io} + 80]"),
    kernel!(0 -> 1, "fld qword ptr [{io} + 80]"),
    kernel!(0 -> 1, "fild word ptr [{io} + 80]"),
    kernel!(0 -> 1, "fild dword ptr [{io} + 80]"),
    kernel!(0 -> 1, "fild qword ptr [{io} + 80]"),
    kernel!(0 -> 1, "fbld tbyte ptr [{io} + 80]"),
];

/// Stores of st(0) to memory (popping the host stack), per kind.
pub static STORE: [Kernel; 9] = [
    kernel!(1 -> 0, "fstp dword ptr [{io} + 80]"),
    kernel!(1 -> 0, "fstp qword ptr [{io} + 80]"),
    kernel!(1 -> 0, "fistp word ptr [{io} + 80]"),
    kernel!(1 -> 0, "fistp dword ptr [{io} + 80]"),
    kernel!(1 -> 0, "fistp qword ptr [{io} + 80]"),
    kernel!(1 -> 0, "fbstp tbyte ptr [{io} + 80]"),
    kernel!(1 -> 0, "fisttp word ptr [{io} + 80]"),
    kernel!(1 -> 0, "fisttp dword ptr [{io} + 80]"),
    kernel!(1 -> 0, "fisttp qword ptr [{io} + 80]"),
];

/// FLD1, FLDL2T, FLDL2E, FLDPI, FLDLG2, FLDLN2, FLDZ: rounded by the guest's rounding control.
pub static CONSTANT: [Kernel; 7] = [
    kernel!(0 -> 1, "fld1"),
    kernel!(0 -> 1, "fldl2t"),
    kernel!(0 -> 1, "fldl2e"),
    kernel!(0 -> 1, "fldpi"),
    kernel!(0 -> 1, "fldlg2"),
    kernel!(0 -> 1, "fldln2"),
    kernel!(0 -> 1, "fldz"),
];

/// What a masked invalid store of `kind` writes: the host's own response to storing the
/// indefinite NaN (the integer or BCD indefinite, or the narrower NaN).
pub fn indefinite_store(kind: usize) -> [u8; 16] {
    run(
        &STORE[kind],
        0x037f,
        0,
        [F80::INDEFINITE, F80::default()],
        [0; 16],
    )
    .mem
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: F80 = F80 {
        sig: 1 << 63,
        se: 0x3fff,
    };
    const TWO: F80 = F80 {
        sig: 1 << 63,
        se: 0x4000,
    };

    #[test]
    fn adds_on_the_host() {
        let out = run(&ARITH_RR[ADD], 0x037f, 0, [ONE, ONE], [0; 16]);
        assert_eq!(out.res[0], TWO);
        assert_eq!(out.depth, 2);
        assert_eq!(out.sw & 0x3f, 0);
    }

    #[test]
    fn unmasked_zero_divide_leaves_the_operand() {
        // ZE unmasked: the slow path runs, the host suppresses the division.
        let zero = F80::default();
        let out = run(&ARITH_RR[DIV], 0x037b, 0, [ONE, zero], [0; 16]);
        assert_eq!(out.sw & 0x3f, 0x04);
        assert_eq!(out.res[0], ONE);
        assert_eq!(out.depth, 2);
        // The host FPU is usable afterwards (a pending #MF would kill the test).
        let out = run(&ARITH_RR[MUL], 0x037f, 0, [TWO, TWO], [0; 16]);
        assert_eq!(out.res[0].se, 0x4001);
    }

    #[test]
    fn indefinite_stores() {
        assert_eq!(indefinite_store(M32FP)[..4], 0xffc0_0000u32.to_le_bytes());
        assert_eq!(indefinite_store(M16INT)[..2], 0x8000u16.to_le_bytes());
        assert_eq!(
            indefinite_store(M64INT)[..8],
            0x8000_0000_0000_0000u64.to_le_bytes()
        );
    }
}
