//! Runs one instruction both in a [`TestMachine`] and natively on the host, from the same
//! state, and compares what each left behind.
//!
//! The native side assembles a stub around the instruction's bytes in an executable page: it
//! saves the host's x87/SSE state, loads the test state with FXRSTOR64, sets RAX/RCX/RDX and
//! the arithmetic flags, points RBX and RDI at a data buffer, runs the instruction, and saves
//! the results with FXSAVE64 before restoring the host state.

use crate::fpu::Fpu;
use crate::testing::{End, TestMachine, DATA};
use iced_x86::code_asm::*;

/// Bytes of the data buffer the instruction may address through RBX (or RDI).
pub const DATA_LEN: usize = 64;

/// The state an instruction starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub xmm: [u128; 16],
    /// MM0..MM7 = physical x87 registers (TOP stays 0); bytes 8..10 are the exponent.
    pub st: [[u8; 10]; 8],
    pub fcw: u16,
    pub fsw: u16,
    pub ftw: u8,
    pub mxcsr: u32,
    /// RAX, RCX, RDX.
    pub gpr: [u64; 3],
    /// Arithmetic flags (CF, PF, AF, ZF, SF, OF).
    pub flags: u64,
    pub data: [u8; DATA_LEN],
}

impl Default for State {
    fn default() -> State {
        State {
            xmm: [0; 16],
            st: [[0; 10]; 8],
            fcw: 0x037f,
            fsw: 0,
            ftw: 0,
            mxcsr: 0x1f80,
            gpr: [0; 3],
            flags: 0,
            data: [0; DATA_LEN],
        }
    }
}

pub const ARITH: u64 = 0x8d5;

/// Assembles instructions for 64-bit mode at address 0.
pub fn assemble(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).expect("64-bit assembler");
    f(&mut a).expect("encodable test instruction");
    a.assemble(0).expect("assembled")
}

/// The layout the native stub works on.
#[repr(C, align(16))]
struct Frame {
    fx: [u8; 512],
    host: [u8; 512],
    data: [u8; DATA_LEN],
    gpr: [u64; 3],
    flags: u64,
}

const FX: i32 = 0;
const HOST: i32 = 512;
const DATA_OFF: i32 = 1024;
const GPR: i32 = DATA_OFF + DATA_LEN as i32;
const FLAGS: i32 = GPR + 24;

/// An executable copy of the stub around one instruction.
pub struct Native {
    page: *mut libc::c_void,
    len: usize,
}

impl Native {
    pub fn new(insn: &[u8]) -> Native {
        let code = assemble(|a| {
            a.push(rbx)?;
            a.push(r15)?;
            a.mov(r15, rdi)?;
            a.fxsave64(ptr(r15 + HOST))?;
            a.fxrstor64(ptr(r15 + FX))?;
            a.mov(rax, qword_ptr(r15 + GPR))?;
            a.mov(rcx, qword_ptr(r15 + GPR + 8))?;
            a.mov(rdx, qword_ptr(r15 + GPR + 16))?;
            a.lea(rbx, ptr(r15 + DATA_OFF))?;
            a.lea(rdi, ptr(r15 + DATA_OFF))?;
            a.push(qword_ptr(r15 + FLAGS))?;
            a.popfq()?;
            a.db(insn)?;
            a.pushfq()?;
            a.pop(qword_ptr(r15 + FLAGS))?;
            a.mov(qword_ptr(r15 + GPR), rax)?;
            a.mov(qword_ptr(r15 + GPR + 8), rcx)?;
            a.mov(qword_ptr(r15 + GPR + 16), rdx)?;
            a.fxsave64(ptr(r15 + FX))?;
            a.fxrstor64(ptr(r15 + HOST))?;
            a.pop(r15)?;
            a.pop(rbx)?;
            a.ret()
        });
        let len = code.len().next_multiple_of(4096);
        // SAFETY: an anonymous private mapping; the result is checked before use.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED, "mmap for the native stub");
        // SAFETY: `page` is a fresh writable mapping of at least `code.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), page as *mut u8, code.len()) };
        Native { page, len }
    }

    /// Runs the instruction natively from `s`.
    pub fn run(&self, s: &State) -> State {
        let mut f = Frame {
            fx: fx_image(s),
            host: [0; 512],
            data: s.data,
            gpr: s.gpr,
            flags: (s.flags & ARITH) | 2,
        };
        // SAFETY: the page holds the stub assembled in `new`, a complete function with the C
        // ABI that takes a pointer to a `Frame`, preserves the callee-saved registers it uses
        // (RBX, R15) and restores the host's x87/SSE state before returning. The test
        // instruction only addresses the frame's data buffer.
        unsafe {
            let stub: extern "C" fn(*mut Frame) = std::mem::transmute(self.page);
            stub(&mut f);
        }
        let mut out = from_fx_image(&f.fx);
        out.data = f.data;
        out.gpr = f.gpr;
        out.flags = f.flags & ARITH;
        out
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`.
        unsafe { libc::munmap(self.page, self.len) };
    }
}

/// `s` as an FXSAVE64 image (stack order equals physical order: TOP is 0).
fn fx_image(s: &State) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0..2].copy_from_slice(&s.fcw.to_le_bytes());
    b[2..4].copy_from_slice(&s.fsw.to_le_bytes());
    b[4] = s.ftw;
    b[24..28].copy_from_slice(&s.mxcsr.to_le_bytes());
    b[28..32].copy_from_slice(&0xffffu32.to_le_bytes());
    for i in 0..8 {
        b[32 + 16 * i..42 + 16 * i].copy_from_slice(&s.st[i]);
    }
    for i in 0..16 {
        b[160 + 16 * i..176 + 16 * i].copy_from_slice(&s.xmm[i].to_le_bytes());
    }
    b
}

fn from_fx_image(b: &[u8; 512]) -> State {
    let mut s = State {
        fcw: u16::from_le_bytes([b[0], b[1]]),
        fsw: u16::from_le_bytes([b[2], b[3]]),
        ftw: b[4],
        mxcsr: u32::from_le_bytes([b[24], b[25], b[26], b[27]]),
        ..State::default()
    };
    for i in 0..8 {
        s.st[i].copy_from_slice(&b[32 + 16 * i..42 + 16 * i]);
    }
    for i in 0..16 {
        s.xmm[i] = u128::from_le_bytes(b[160 + 16 * i..176 + 16 * i].try_into().unwrap());
    }
    s
}

/// Loads `s` into the guest's registers and memory.
pub fn load(m: &mut TestMachine, s: &State) {
    m.write(DATA, &s.data);
    let r = m.regs();
    r.gpr[0] = s.gpr[0];
    r.gpr[1] = s.gpr[1];
    r.gpr[2] = s.gpr[2];
    r.gpr[3] = DATA;
    r.gpr[7] = DATA;
    r.flags.load((s.flags & ARITH) | 2);
    let f = &mut r.fpu;
    *f = Fpu {
        fcw: s.fcw,
        fsw: s.fsw,
        ftw: s.ftw,
        mxcsr: s.mxcsr,
        xmm: s.xmm,
        ..Fpu::default()
    };
    let top = f.top();
    for i in 0..8 {
        f.st[(top + i) & 7][..10].copy_from_slice(&s.st[i]);
    }
}

/// Reads the guest's state back (x87 registers in stack order, as FXSAVE would).
pub fn unload(m: &mut TestMachine) -> State {
    let data = m.read(DATA, DATA_LEN);
    let r = m.regs();
    let f = &r.fpu;
    let mut s = State {
        xmm: f.xmm,
        fcw: f.fcw,
        fsw: f.fsw,
        ftw: f.ftw,
        mxcsr: f.mxcsr,
        gpr: [r.gpr[0], r.gpr[1], r.gpr[2]],
        flags: r.flags.get() & ARITH,
        ..State::default()
    };
    for i in 0..8 {
        s.st[i].copy_from_slice(&f.st[(f.top() + i) & 7][..10]);
    }
    s.data.copy_from_slice(&data);
    s
}

/// Runs `insn` (then HLT) in a fresh machine from `s`.
pub fn guest(insn: &[u8], s: &State) -> (End, State) {
    let mut code = insn.to_vec();
    code.push(0xf4);
    let mut m = TestMachine::long_mode(&code);
    load(&mut m, s);
    let end = m.run();
    (end, unload(&mut m))
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A single-precision value that is often special (zeros, infinities, NaNs, denormals,
    /// extremes, integer boundaries), otherwise random bits or an ordinary number.
    pub fn f32_bits(&mut self) -> u32 {
        const SPECIAL: [u32; 20] = [
            0x0000_0000,
            0x8000_0000,
            0x3f80_0000,
            0xbf80_0000,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0xffc0_0000,
            0x7f80_0001,
            0x0000_0001,
            0x007f_ffff,
            0x0080_0000,
            0x7f7f_ffff,
            0x4f00_0000,
            0xcf00_0000,
            0x5f00_0000,
            0x3eaa_aaab,
            0x4049_0fdb,
            0x0040_0000,
            0x3fc0_0000,
        ];
        match self.below(4) {
            0 => SPECIAL[self.below(SPECIAL.len() as u64) as usize],
            1 => self.next() as u32,
            _ => ((self.below(2000) as f32 - 1000.0) / (1 + self.below(64)) as f32).to_bits(),
        }
    }

    /// A double-precision value, like [`Rng::f32_bits`].
    pub fn f64_bits(&mut self) -> u64 {
        const SPECIAL: [u64; 18] = [
            0,
            0x8000_0000_0000_0000,
            0x3ff0_0000_0000_0000,
            0xbff0_0000_0000_0000,
            0x7ff0_0000_0000_0000,
            0xfff0_0000_0000_0000,
            0x7ff8_0000_0000_0000,
            0x7ff0_0000_0000_0001,
            1,
            0x000f_ffff_ffff_ffff,
            0x0010_0000_0000_0000,
            0x7fef_ffff_ffff_ffff,
            0x41e0_0000_0000_0000,
            0xc1e0_0000_0000_0000,
            0x43e0_0000_0000_0000,
            0x3fd5_5555_5555_5555,
            0x47f0_0000_0000_0000,
            0x3690_0000_0000_0000,
        ];
        match self.below(4) {
            0 => SPECIAL[self.below(SPECIAL.len() as u64) as usize],
            1 => self.next(),
            _ => ((self.below(2000) as f64 - 1000.0) / (1 + self.below(64)) as f64).to_bits(),
        }
    }

    /// 64 bits holding either two singles or one double.
    pub fn f_u64(&mut self) -> u64 {
        if self.below(2) == 0 {
            self.f32_bits() as u64 | (self.f32_bits() as u64) << 32
        } else {
            self.f64_bits()
        }
    }

    /// 128 bits of float-like lanes (or, sometimes, small integers for the conversions).
    pub fn vec(&mut self) -> u128 {
        if self.below(6) == 0 {
            let mut v = 0u128;
            for i in 0..4 {
                v |= ((self.below(4000) as i32 - 2000) as u32 as u128) << (32 * i);
            }
            return v;
        }
        self.f_u64() as u128 | (self.f_u64() as u128) << 64
    }

    /// A random state; MXCSR has every exception masked, a random rounding mode, DAZ and FTZ,
    /// and sometimes sticky flags already set.
    pub fn state(&mut self) -> State {
        let mut s = State::default();
        for x in s.xmm.iter_mut() {
            *x = self.vec();
        }
        for r in s.st.iter_mut() {
            r[..8].copy_from_slice(&self.f_u64().to_le_bytes());
            r[8..].copy_from_slice(&(self.next() as u16).to_le_bytes());
        }
        s.mxcsr = 0x1f80 | (self.below(4) as u32) << 13;
        s.mxcsr |= if self.below(4) == 0 { 0x40 } else { 0 };
        s.mxcsr |= if self.below(4) == 0 { 0x8000 } else { 0 };
        s.mxcsr |= if self.below(4) == 0 {
            self.below(64) as u32
        } else {
            0
        };
        if self.below(4) == 0 {
            s.fsw = (self.below(8) as u16) << 11;
            s.ftw = self.next() as u8;
        }
        s.gpr = [self.next(), self.next(), self.next()];
        if self.below(2) == 0 {
            s.gpr[0] = self.f64_bits();
            s.gpr[1] = self.below(40);
            s.gpr[2] = (self.below(2000) as i64 - 1000) as u64;
        }
        s.flags = self.next() & ARITH;
        for c in s.data.chunks_mut(8) {
            c.copy_from_slice(&self.f_u64().to_le_bytes());
        }
        s
    }
}

/// Runs `insn` from `cases` random states on both sides and asserts identical results.
pub fn compare(name: &str, insn: &[u8], seed: u64, cases: usize) {
    let native = Native::new(insn);
    let mut rng = Rng::new(seed ^ (name.len() as u64 * 0x9e37_79b9));
    for case in 0..cases {
        let s = rng.state();
        let want = native.run(&s);
        let (end, got) = guest(insn, &s);
        assert_eq!(
            end,
            End::Halt,
            "{name}: case {case} did not complete\nstate {s:x?}"
        );
        if got != want {
            panic!("{name}: case {case} differs\ninput  {s:x?}\nnative {want:x?}\nguest  {got:x?}");
        }
    }
}
