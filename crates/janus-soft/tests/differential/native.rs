//! Runs a body natively: a fixed prologue loads the test state, the body runs, a fixed
//! epilogue saves the result. Faults are caught with signal handlers that record the trap
//! number and the registers at the fault and resume at a recovery stub.

use crate::layout::{ctrl, Layout, CMP_LEN, CODE_MAP_LEN, CTRL_MAP_LEN, DATA_MAP_LEN, HOLE_LEN};
use crate::state::{Fx, State, TESTED_FLAGS};
use iced_x86::{Code, Encoder, Instruction, MemoryOperand, Register};
use std::cell::Cell;
use std::sync::atomic::{compiler_fence, Ordering};
use std::sync::Once;

/// How a run ended, natively or in the engine.
#[derive(Clone)]
pub struct Outcome {
    /// The exception vector, if the body faulted (trap number natively).
    pub fault: Option<u8>,
    /// How the fault showed (native signal) or why the engine could not finish.
    pub detail: String,
    /// The engine stopped without reaching the end or an exception handler.
    pub failure: Option<String>,
    /// The end of the body, or the RIP of the exception.
    pub rip: u64,
    pub gpr: [u64; 16],
    pub rflags: u64,
    pub fx: Fx,
    pub ymmh: [u128; 16],
    pub mem: Vec<u8>,
}

thread_local! {
    /// Region base of the body this thread is running natively (0: none).
    static RUNNING: Cell<u64> = const { Cell::new(0) };
    static ALT_STACK: Cell<bool> = const { Cell::new(false) };
}

/// The dispositions `install_handlers` replaced.
static PREVIOUS: std::sync::OnceLock<Vec<(libc::c_int, libc::sigaction)>> =
    std::sync::OnceLock::new();

const SIGNALS: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
];

/// RAX..R15 in encoding order, as `ucontext` indices.
const GREGS: [libc::c_int; 16] = [
    libc::REG_RAX,
    libc::REG_RCX,
    libc::REG_RDX,
    libc::REG_RBX,
    libc::REG_RSP,
    libc::REG_RBP,
    libc::REG_RSI,
    libc::REG_RDI,
    libc::REG_R8,
    libc::REG_R9,
    libc::REG_R10,
    libc::REG_R11,
    libc::REG_R12,
    libc::REG_R13,
    libc::REG_R14,
    libc::REG_R15,
];

pub fn signal_name(sig: u64) -> &'static str {
    match sig as libc::c_int {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        _ => "signal",
    }
}

extern "C" fn on_signal(sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let base = RUNNING.with(|r| r.get());
    if base == 0 {
        // Not a body of ours: the handler that was there before (the engine's, for a trap in
        // one of its host stubs), or the fault happens again with the default action.
        let prev = PREVIOUS
            .get()
            .and_then(|p| p.iter().find(|(s, _)| *s == sig));
        match prev {
            Some((_, p)) if p.sa_flags & libc::SA_SIGINFO != 0 && p.sa_sigaction > 1 => {
                // SAFETY: a SA_SIGINFO handler has this signature.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig, _info, ctx);
            }
            // SAFETY: resetting a signal's disposition has no memory-safety preconditions.
            _ => unsafe {
                libc::signal(sig, libc::SIG_DFL);
            },
        }
        return;
    }
    // A fault in the recovery path must not loop: the next one is fatal.
    RUNNING.with(|r| r.set(0));
    let lay = Layout { base };
    let c = lay.ctrl();
    // SAFETY: with SA_SIGINFO the kernel passes a valid ucontext_t as the third argument,
    // and nothing else refers to it while the handler runs.
    let uc = unsafe { &mut *(ctx as *mut libc::ucontext_t) };
    let g = &mut uc.uc_mcontext.gregs;
    let put = |off: u64, v: u64| {
        // SAFETY: the control block is part of this region's live read-write mapping (the
        // region is running, so it is mapped), and 8-byte aligned.
        unsafe { std::ptr::write_volatile((c + off) as *mut u64, v) };
    };
    put(ctrl::FAULTED, 1);
    put(ctrl::TRAPNO, g[libc::REG_TRAPNO as usize] as u64);
    put(ctrl::SIGNO, sig as u64);
    put(ctrl::FAULT_RIP, g[libc::REG_RIP as usize] as u64);
    put(ctrl::OUT_FLAGS, g[libc::REG_EFL as usize] as u64);
    for (i, r) in GREGS.iter().enumerate() {
        put(ctrl::OUT_GPR + 8 * i as u64, g[*r as usize] as u64);
    }
    g[libc::REG_RIP as usize] = lay.recover() as i64;
}

fn install_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The engine's handler for its host stubs must be there first, to be chained to.
        janus_soft::exec::sse::prepare_host_stubs();
        let mut previous = Vec::new();
        for sig in SIGNALS {
            // SAFETY: an all-zero sigaction is a valid starting value; the fields are then
            // filled in, and `on_signal` has the SA_SIGINFO signature.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut sa.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                let rc = libc::sigaction(sig, &sa, &mut old);
                assert_eq!(rc, 0, "sigaction({sig})");
                previous.push((sig, old));
            }
        }
        let _ = PREVIOUS.set(previous);
    });
    // Faults happen with RSP in the test stack: handle them on a stack of our own.
    ALT_STACK.with(|done| {
        if done.get() {
            return;
        }
        let stack: &'static mut [u8] = Vec::leak(vec![0u8; 256 << 10]);
        let ss = libc::stack_t {
            ss_sp: stack.as_mut_ptr() as *mut libc::c_void,
            ss_flags: 0,
            ss_size: stack.len(),
        };
        // SAFETY: `ss` describes a leaked (so never freed) buffer owned by nobody else.
        let rc = unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
        assert_eq!(rc, 0, "sigaltstack");
        done.set(true);
    });
}

/// `[addr]`, 64-bit addressing with a sign-extended 32-bit displacement (every harness
/// address is below 2 GiB). (Displacement size 4 would mean 32-bit addressing: a 67 prefix.)
pub fn abs(addr: u64) -> MemoryOperand {
    MemoryOperand::with_displ(addr, 8)
}

/// Encodes `insns` one after the other from `ip`.
pub fn assemble(ip: u64, insns: &[Instruction]) -> Vec<u8> {
    let mut e = Encoder::new(64);
    let mut at = ip;
    for i in insns {
        at += e.encode(i, at).expect("harness instruction encodes") as u64;
    }
    e.take_buffer()
}

const GPRS: [Register; 16] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RBX,
    Register::RSP,
    Register::RBP,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];
const SAVED: [Register; 6] = [
    Register::RBX,
    Register::RBP,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

fn i1(code: Code, op: impl Into<Op1>) -> Instruction {
    op.into().make(code)
}

/// Operand for `i1` (keeps the harness listing short).
pub enum Op1 {
    R(Register),
    M(MemoryOperand),
}
impl From<Register> for Op1 {
    fn from(r: Register) -> Op1 {
        Op1::R(r)
    }
}
impl From<MemoryOperand> for Op1 {
    fn from(m: MemoryOperand) -> Op1 {
        Op1::M(m)
    }
}
impl Op1 {
    fn make(self, code: Code) -> Instruction {
        match self {
            Op1::R(r) => Instruction::with1(code, r),
            Op1::M(m) => Instruction::with1(code, m),
        }
        .expect("harness instruction")
    }
}

fn store(addr: u64, r: Register) -> Instruction {
    Instruction::with2(Code::Mov_rm64_r64, abs(addr), r).expect("mov [abs], r64")
}
fn load(r: Register, addr: u64) -> Instruction {
    Instruction::with2(Code::Mov_r64_rm64, r, abs(addr)).expect("mov r64, [abs]")
}

/// YMM0..YMM15.
fn ymm(n: usize) -> Register {
    crate::catalog::reg(Register::YMM0 as usize + n)
}

/// The host runs AVX: the harness moves the YMM upper halves in and out too.
pub fn host_avx() -> bool {
    std::arch::is_x86_feature_detected!("avx")
}

/// Restores the host stack and FPU state, then returns to the Rust caller.
fn leave_sequence(c: u64) -> Vec<Instruction> {
    let mut v = Vec::new();
    if host_avx() {
        for n in 0..16 {
            let m = abs(c + ctrl::OUT_YMMH + 16 * n as u64);
            v.push(
                Instruction::with3(Code::VEX_Vextractf128_xmmm128_ymm_imm8, m, ymm(n), 1)
                    .expect("vextractf128"),
            );
        }
        v.push(Instruction::with(Code::VEX_Vzeroupper));
    }
    v.extend([
        i1(Code::Fxsave64_m512byte, abs(c + ctrl::OUT_FX)),
        i1(Code::Fxrstor64_m512byte, abs(c + ctrl::HOST_FX)),
        Instruction::with(Code::Cld),
    ]);
    for r in SAVED.iter().rev() {
        v.push(i1(Code::Pop_r64, *r));
    }
    v.push(Instruction::with(Code::Retnq));
    v
}

pub struct Native {
    lay: Layout,
}

impl Native {
    pub fn new(lay: Layout) -> Native {
        install_handlers();
        let map = |addr: u64, len: usize, prot: libc::c_int| {
            // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; the result is
            // checked below.
            let p = unsafe {
                libc::mmap(
                    addr as *mut libc::c_void,
                    len,
                    prot,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            assert!(
                p as u64 == addr,
                "differential: cannot map {len:#x} bytes at {addr:#x} (in use?): {}",
                std::io::Error::last_os_error()
            );
        };
        map(lay.base, DATA_MAP_LEN, libc::PROT_READ | libc::PROT_WRITE);
        // The hole: reserved, inaccessible (any access faults as an unmapped page does).
        map(lay.hole(), HOLE_LEN as usize, libc::PROT_NONE);
        map(lay.ctrl(), CTRL_MAP_LEN, libc::PROT_READ | libc::PROT_WRITE);
        map(
            lay.code(),
            CODE_MAP_LEN,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
        );
        // Reserve the page after the code, so that fetching from it faults.
        map(lay.code_end(), 0x1000, libc::PROT_NONE);
        let n = Native { lay };
        let c = lay.ctrl();
        // HLT everywhere: a stray jump faults (#GP at CPL 3) instead of running junk.
        n.write(lay.code(), &[0xf4; CODE_MAP_LEN]);

        let mut pro = Vec::new();
        for r in SAVED {
            pro.push(i1(Code::Push_r64, r));
        }
        pro.push(store(c + ctrl::HOST_RSP, Register::RSP));
        pro.push(i1(Code::Fxsave64_m512byte, abs(c + ctrl::HOST_FX)));
        pro.push(i1(Code::Fxrstor64_m512byte, abs(c + ctrl::IN_FX)));
        if host_avx() {
            for n in 0..16 {
                let m = abs(c + ctrl::IN_YMMH + 16 * n as u64);
                pro.push(
                    Instruction::with4(
                        Code::VEX_Vinsertf128_ymm_ymm_xmmm128_imm8,
                        ymm(n),
                        ymm(n),
                        m,
                        1,
                    )
                    .expect("vinsertf128"),
                );
            }
        }
        // Flags through the host stack, so the test stack is not touched.
        pro.push(i1(Code::Push_rm64, abs(c + ctrl::IN_FLAGS)));
        pro.push(Instruction::with(Code::Popfq));
        pro.push(load(Register::RSP, c + ctrl::IN_GPR + 32));
        for (i, r) in GPRS.iter().enumerate() {
            if i != 4 {
                pro.push(load(*r, c + ctrl::IN_GPR + 8 * i as u64));
            }
        }
        pro.push(i1(Code::Jmp_rm64, abs(c + ctrl::BODY_PTR)));
        let pro = assemble(lay.code(), &pro);
        assert!(lay.code() + pro.len() as u64 <= lay.recover());
        n.write(lay.code(), &pro);

        let mut rec = vec![load(Register::RSP, c + ctrl::HOST_RSP)];
        rec.extend(leave_sequence(c));
        n.write(lay.recover(), &assemble(lay.recover(), &rec));

        let mut epi = Vec::new();
        for (i, r) in GPRS.iter().enumerate() {
            epi.push(store(c + ctrl::OUT_GPR + 8 * i as u64, *r));
        }
        epi.push(load(Register::RSP, c + ctrl::HOST_RSP));
        epi.push(Instruction::with(Code::Pushfq));
        epi.push(i1(Code::Pop_rm64, abs(c + ctrl::OUT_FLAGS)));
        epi.extend(leave_sequence(c));
        let epi = assemble(lay.epilogue(), &epi);
        assert!(lay.epilogue() + epi.len() as u64 <= lay.body());
        n.write(lay.epilogue(), &epi);
        n
    }

    /// Whether `len` bytes at `addr` lie in one of this region's mappings.
    fn mapped(&self, addr: u64, len: usize) -> bool {
        let l = self.lay;
        [
            (l.base, DATA_MAP_LEN),
            (l.ctrl(), CTRL_MAP_LEN),
            (l.code(), CODE_MAP_LEN),
        ]
        .iter()
        .any(|(a, n)| addr >= *a && addr + len as u64 <= a + *n as u64)
    }

    fn write(&self, addr: u64, bytes: &[u8]) {
        assert!(self.mapped(addr, bytes.len()), "write outside the region");
        // SAFETY: the range is inside one of this region's mappings (checked above), which
        // live as long as `self`; nothing else holds references into them.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
    }

    fn read(&self, addr: u64, out: &mut [u8]) {
        assert!(self.mapped(addr, out.len()), "read outside the region");
        // SAFETY: as in `write`.
        unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, out.as_mut_ptr(), out.len()) };
    }

    fn read_u64(&self, addr: u64) -> u64 {
        let mut b = [0u8; 8];
        self.read(addr, &mut b);
        u64::from_le_bytes(b)
    }

    fn write_u64(&self, addr: u64, v: u64) {
        self.write(addr, &v.to_le_bytes());
    }

    /// Runs `body`, placed at `at` (in the code page; the part beyond its end is cut off),
    /// from `st`.
    pub fn run(&mut self, st: &State, body: &[u8], at: u64) -> Outcome {
        let lay = self.lay;
        let c = lay.ctrl();
        assert!(at >= lay.body() && at < lay.code_end());
        self.write(lay.data(), &st.mem);
        for (i, v) in st.gpr.iter().enumerate() {
            self.write_u64(c + ctrl::IN_GPR + 8 * i as u64, *v);
        }
        self.write_u64(c + ctrl::IN_FLAGS, (st.rflags & TESTED_FLAGS) | 0x202);
        self.write_u64(c + ctrl::FAULTED, 0);
        self.write(c + ctrl::IN_FX, &st.fx.0);
        for (n, v) in st.ymmh.iter().enumerate() {
            self.write(c + ctrl::IN_YMMH + 16 * n as u64, &v.to_le_bytes());
        }
        self.write_u64(c + ctrl::BODY_PTR, at);
        let mut code = vec![0xf4u8; Layout::BODY_MAX];
        let end = at + body.len() as u64;
        let jmp = Instruction::with_branch(Code::Jmp_rel32_64, lay.epilogue()).expect("jmp");
        let mut bytes = body.to_vec();
        bytes.extend_from_slice(&assemble(end, &[jmp]));
        let off = (at - lay.body()) as usize;
        let n = bytes.len().min(Layout::BODY_MAX - off);
        code[off..off + n].copy_from_slice(&bytes[..n]);
        self.write(lay.body(), &code);

        compiler_fence(Ordering::SeqCst);
        RUNNING.with(|r| r.set(lay.base));
        // SAFETY: the code page holds the prologue written in `new`: it saves the callee-saved
        // registers, RSP and the FPU state, runs the body and restores everything before it
        // returns (directly, or through the recovery stub after a fault), so to the caller it
        // is an ordinary `extern "C" fn()`.
        let entry: extern "C" fn() = unsafe { std::mem::transmute(lay.code() as usize) };
        entry();
        RUNNING.with(|r| r.set(0));
        compiler_fence(Ordering::SeqCst);

        let mut gpr = [0u64; 16];
        for (i, g) in gpr.iter_mut().enumerate() {
            *g = self.read_u64(c + ctrl::OUT_GPR + 8 * i as u64);
        }
        let mut fx = Fx([0; 512]);
        self.read(c + ctrl::OUT_FX, &mut fx.0);
        let mut ymmh = [0u128; 16];
        if host_avx() {
            for (n, v) in ymmh.iter_mut().enumerate() {
                let mut b = [0u8; 16];
                self.read(c + ctrl::OUT_YMMH + 16 * n as u64, &mut b);
                *v = u128::from_le_bytes(b);
            }
        }
        let mut mem = vec![0u8; CMP_LEN];
        self.read(lay.data(), &mut mem);
        let faulted = self.read_u64(c + ctrl::FAULTED) != 0;
        let (fault, detail, rip) = if faulted {
            let sig = self.read_u64(c + ctrl::SIGNO);
            (
                Some(self.read_u64(c + ctrl::TRAPNO) as u8),
                signal_name(sig).to_string(),
                self.read_u64(c + ctrl::FAULT_RIP),
            )
        } else {
            (None, String::new(), end)
        };
        Outcome {
            fault,
            detail,
            failure: None,
            rip,
            gpr,
            rflags: self.read_u64(c + ctrl::OUT_FLAGS),
            fx,
            ymmh,
            mem,
        }
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        // SAFETY: the ranges were mapped by `new` and nothing refers to them any more.
        unsafe {
            libc::munmap(self.lay.base as *mut libc::c_void, DATA_MAP_LEN);
            libc::munmap(self.lay.hole() as *mut libc::c_void, HOLE_LEN as usize);
            libc::munmap(self.lay.code_end() as *mut libc::c_void, 0x1000);
            libc::munmap(self.lay.ctrl() as *mut libc::c_void, CTRL_MAP_LEN);
            libc::munmap(self.lay.code() as *mut libc::c_void, CODE_MAP_LEN);
        }
    }
}
