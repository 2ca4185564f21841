//! Runs a body on the soft engine: a [`TestMachine`] in 64-bit mode with the body at the same
//! address as natively, followed by HLT, and an IDT whose handlers record the vector.

use crate::layout::{Layout, CMP_LEN, CODE_MAP_LEN};
use crate::native::Outcome;
use crate::state::{Fx, State, TESTED_FLAGS};
use janus_soft::core::Cpu;
use janus_soft::cpu::{Dtr, Regs};
use janus_soft::fpu::Fpu;
use janus_soft::mem::PhysMem;
use janus_soft::testing::{End, TestMachine};
use janus_soft::vcpu::DmaLog;
use janus_soft::vcpu::JitMode;
use janus_soft::{SoftVcpu, Tsc};
use std::sync::Arc;

/// Guest-only structures (below the regions, outside everything compared).
const IDT: u64 = 0x30_0000;
const HANDLERS: u64 = 0x30_1000;
const TSS: u64 = 0x30_2000;
/// The handlers write their vector here (0xff: no exception).
const VECTOR: u64 = 0x30_3000;
/// IST1 stack: every gate uses it, so an exception frame never lands in the compared stack.
const IST_TOP: u64 = 0x30_8000;
/// A 4 KiB page table for the 2 MiB page holding the region, so its hole can be unmapped.
const PT: u64 = 0x30_9000;
/// Where `TestMachine::long_mode` puts the page directory for the first GiB.
const PD: u64 = 0x3000;
const VECTORS: u64 = 32;

pub struct Engine {
    m: TestMachine,
    /// Translate each body before running it (the translator's templates and native code are
    /// then what is compared), or interpret.
    jit: bool,
    regs0: Regs,
    cpuid: Vec<janus_engine::CpuidEntry>,
    tsc: Arc<Tsc>,
    lay: Layout,
}

/// FXSAVE image → the engine's FPU registers (ST(i) is physical register TOP+i).
pub fn fx_to_fpu(fx: &Fx, fpu: &mut Fpu) {
    fpu.fcw = fx.fcw();
    fpu.fsw = fx.fsw();
    fpu.ftw = fx.ftw();
    fpu.fop = 0;
    fpu.fip = 0;
    fpu.fdp = 0;
    let top = fx.top();
    for i in 0..8 {
        let mut r = [0u8; 16];
        r[..10].copy_from_slice(&fx.st(i));
        fpu.st[(top + i) & 7] = r;
    }
    fpu.mxcsr = fx.mxcsr();
    for i in 0..16 {
        fpu.xmm[i] = fx.xmm(i);
    }
}

/// The engine's FPU registers → an FXSAVE image (fields the suite compares).
pub fn fpu_to_fx(fpu: &Fpu) -> Fx {
    let mut fx = Fx([0; 512]);
    fx.set_fcw(fpu.fcw);
    fx.set_fsw(fpu.fsw);
    fx.set_ftw(fpu.ftw);
    fx.set_mxcsr(fpu.mxcsr);
    let top = fpu.top();
    for i in 0..8 {
        let r = fpu.st[(top + i) & 7];
        fx.set_st(i, r[..10].try_into().unwrap_or_default());
    }
    for i in 0..16 {
        fx.set_xmm(i, fpu.xmm[i]);
    }
    fx
}

impl Engine {
    pub fn new(lay: Layout, jit: bool) -> Engine {
        let mut m = TestMachine::long_mode(&[]);
        for v in 0..VECTORS {
            let handler = HANDLERS + v * 16;
            // 64-bit interrupt gate, selector 0x08, IST 1, present, DPL 0.
            let lo = (handler & 0xffff)
                | (0x08 << 16)
                | (1 << 32)
                | (0x8e << 40)
                | (((handler >> 16) & 0xffff) << 48);
            m.write_u64(IDT + v * 16, lo);
            m.write_u64(IDT + v * 16 + 8, handler >> 32);
            // mov byte [VECTOR], v ; hlt
            let mut code = vec![0xc6, 0x04, 0x25];
            code.extend_from_slice(&(VECTOR as u32).to_le_bytes());
            code.push(v as u8);
            code.push(0xf4);
            m.write(handler, &code);
        }
        m.write_u64(TSS + 0x24, IST_TOP);
        // Split the region's 2 MiB page into 4 KiB pages and leave the hole not present.
        let big = lay.hole() & !0x1f_ffff;
        assert!(big < 1 << 30, "region in the first GiB");
        for e in 0..512u64 {
            let page = big + e * 0x1000;
            let pte = if page == lay.hole() || page == lay.code_end() {
                0
            } else {
                page | 3
            };
            m.write_u64(PT + e * 8, pte);
        }
        m.write_u64(PD + (big >> 21) * 8, PT | 3);
        m.write(lay.code(), &[0xf4; CODE_MAP_LEN]);
        let mut regs0 = m.regs().clone();
        regs0.idtr = Dtr {
            base: IDT,
            limit: (VECTORS * 16 - 1) as u16,
        };
        regs0.tr.base = TSS;
        Engine {
            m,
            jit,
            regs0,
            cpuid: janus_soft::cpuid::supported(
                janus_soft::host_tsc_hz(),
                janus_soft::cpuid::Level::host_max(),
            ),
            tsc: Arc::new(Tsc::new()),
            lay,
        }
    }

    /// Runs `body` (then HLT), placed at `at` (in the code page; the part beyond its end is
    /// cut off), from `st` on a fresh vCPU.
    pub fn run(&mut self, st: &State, body: &[u8], at: u64) -> Outcome {
        let lay = self.lay;
        let m = &mut self.m;
        m.write(lay.data(), &st.mem);
        let mut code = vec![0xf4u8; Layout::BODY_MAX];
        let off = (at - lay.body()) as usize;
        let n = body.len().min(Layout::BODY_MAX - off);
        code[off..off + n].copy_from_slice(&body[..n]);
        m.write(lay.body(), &code);
        m.write(VECTOR, &[0xff]);

        let mut r = self.regs0.clone();
        r.gpr = st.gpr;
        r.rip = at;
        // IF set as natively (user code always runs with IF=1; PUSHF must see the same).
        r.flags
            .load((st.rflags & TESTED_FLAGS) | janus_soft::flags::IF | 2);
        fx_to_fpu(&st.fx, &mut r.fpu);
        r.fpu.ymm_hi = st.ymmh;
        // As the host's kernel sets it up for user code: XSAVE on, x87/SSE/AVX state enabled
        // (where the engine's level has them).
        if janus_soft::cpuid::Isa::from_cpuid(&self.cpuid).xsave() {
            r.cr4 |= janus_soft::exec::system::CR4_OSXSAVE;
            r.xcr0 = janus_soft::cpuid::XCR0_V3;
        }
        let cpu = Cpu::new(
            r,
            PhysMem::new(&m.mem),
            self.cpuid.clone(),
            self.tsc.clone(),
        );
        let mut vcpu = SoftVcpu::new(cpu, None, Arc::new(DmaLog::default()));
        vcpu.set_jit(if self.jit {
            JitMode::After(0)
        } else {
            JitMode::Off
        });
        // One translator (one code buffer) serves every case.
        m.vcpu.hand_jit_to(&mut vcpu);
        m.vcpu = vcpu;
        let end = m.run();

        let regs = m.regs().clone();
        let mut out = Outcome {
            fault: None,
            detail: String::new(),
            failure: None,
            rip: regs.rip,
            gpr: regs.gpr,
            rflags: regs.flags.get(),
            fx: fpu_to_fx(&regs.fpu),
            ymmh: if crate::native::host_avx() {
                regs.fpu.ymm_hi
            } else {
                [0; 16]
            },
            mem: m.read(lay.data(), CMP_LEN),
        };
        match end {
            End::Halt => {
                let v = m.read(VECTOR, 1)[0];
                if v != 0xff {
                    out.fault = Some(v);
                    out.detail = "exception".into();
                    out.rip = m.read_u64(IST_TOP - 40);
                    out.rflags = m.read_u64(IST_TOP - 24);
                    out.gpr[4] = m.read_u64(IST_TOP - 16);
                } else {
                    // RIP is past the HLT that ended the run.
                    out.rip = regs.rip.wrapping_sub(1);
                    let end = at + body.len() as u64;
                    if out.rip != end {
                        out.failure = Some(format!(
                            "halted at {:#x}, not at the end of the body {end:#x}",
                            out.rip
                        ));
                    }
                }
            }
            End::Shutdown => out.failure = Some("triple fault".into()),
            End::Failed(why) => out.failure = Some(format!("engine failed: {why}")),
            End::Budget => out.failure = Some("exit budget ran out".into()),
        }
        if let Some(f) = &out.failure {
            out.detail = f.clone();
        }
        out
    }
}
