//! x87 and SSE register state, laid out as FXSAVE stores it.

/// The x87 FPU, MMX and SSE registers.
#[derive(Clone, Debug)]
pub struct Fpu {
    /// Control word.
    pub fcw: u16,
    /// Status word (TOP in bits 11..=13).
    pub fsw: u16,
    /// Abridged tag word (FXSAVE form): bit i set = physical register i is valid.
    pub ftw: u8,
    /// Last instruction opcode, instruction and data pointers.
    pub fop: u16,
    pub fip: u64,
    pub fdp: u64,
    /// Physical registers R0..R7 (80-bit values in the low 10 bytes).
    pub st: [[u8; 16]; 8],
    pub mxcsr: u32,
    pub xmm: [u128; 16],
    /// Bits 128..256 of YMM0..YMM15 (the AVX state; zero unless AVX instructions wrote them).
    pub ymm_hi: [u128; 16],
}

impl Default for Fpu {
    /// The state after FNINIT with MXCSR at its reset value.
    fn default() -> Fpu {
        Fpu {
            fcw: 0x037f,
            fsw: 0,
            ftw: 0,
            fop: 0,
            fip: 0,
            fdp: 0,
            st: [[0; 16]; 8],
            mxcsr: 0x1f80,
            xmm: [0; 16],
            ymm_hi: [0; 16],
        }
    }
}

/// MXCSR bits software may set (DAZ included, as CPUID/FXSAVE report MXCSR_MASK 0xffff).
pub const MXCSR_MASK: u32 = 0xffff;

impl Fpu {
    /// TOP field of the status word.
    pub fn top(&self) -> usize {
        ((self.fsw >> 11) & 7) as usize
    }
}
