//! Random code on the soft engine: random instruction bytes (with a bias towards the two- and
//! three-byte opcode maps and VEX, where the host stubs and the translator's vector paths
//! are), from random registers, at CPL 0 and CPL 3, with some page-table entries scrambled,
//! interpreted and translated. Whatever the guest does, the VMM must not crash, hang or
//! touch memory outside the guest: each run ends in HLT, a triple fault, a reported failure,
//! or the time limit (the vCPU's kick flag).
//!
//! Deterministic: the seed is fixed (`JANUS_RANDOM_CODE_SEED` and `JANUS_RANDOM_CODE_RUNS`
//! change it and the count).

mod common;
use common::Rng;
use janus_engine::{Vcpu, VmExit};
use janus_soft::testing::{TestMachine, CODE, DATA};
use janus_soft::vcpu::JitMode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Random bytes, with opcode-map escapes, VEX prefixes and operand-size prefixes sprinkled in
/// so that more than the one-byte map gets decoded.
fn code(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut c = Vec::with_capacity(len + 16);
    while c.len() < len {
        match rng.below(10) {
            0 => c.extend([0x0f, rng.next() as u8]),
            1 => c.extend([0x0f, 0x38 + 2 * (rng.below(2) as u8), rng.next() as u8]),
            2 => {
                // C4 with a valid-looking map (1-3), or C5.
                if rng.chance(50) {
                    c.extend([0xc4, 0xe0 | (1 + rng.below(3) as u8), rng.next() as u8]);
                } else {
                    c.extend([0xc5, rng.next() as u8]);
                }
                c.push(rng.next() as u8);
            }
            3 => c.push([0x66, 0xf2, 0xf3, 0x48, 0x41][rng.below(5) as usize]),
            _ => c.push(rng.next() as u8),
        }
        // A ModRM byte pointing at [reg] often, so memory operands land in RAM.
        if rng.chance(30) {
            c.push((rng.below(8) as u8) << 3 | rng.below(8) as u8);
        }
    }
    c.push(0xf4);
    c
}

/// Where the exception handlers, IDT and TSS go (in RAM, below the code).
const HANDLERS: u64 = 0x8_0000;
const IDT: u64 = 0x9_0000;
const TSS: u64 = 0x9_1000;
const IST_TOP: u64 = 0xa_0000;

/// Every vector through a 64-bit interrupt gate (DPL 3, so INT n works from user code too,
/// IST 1) to a handler that jumps back into the random program at a place of its own: each
/// exception is a new start, until the time limit.
fn exceptions_resume(m: &mut TestMachine, program_len: u64) {
    for v in 0..256u64 {
        let handler = HANDLERS + v * 16;
        let lo = (handler & 0xffff)
            | (0x08 << 16)
            | (1 << 32)
            | (0xee << 40)
            | (((handler >> 16) & 0xffff) << 48);
        m.write_u64(IDT + v * 16, lo);
        m.write_u64(IDT + v * 16 + 8, handler >> 32);
        let target = CODE + (v * 37) % program_len;
        let rel = (target as i64 - (handler as i64 + 5)) as i32;
        let mut jmp = vec![0xe9];
        jmp.extend_from_slice(&rel.to_le_bytes());
        m.write(handler, &jmp);
    }
    m.write_u64(TSS + 4, IST_TOP);
    m.write_u64(TSS + 0x24, IST_TOP);
    let r = m.regs();
    r.idtr.base = IDT;
    r.idtr.limit = 256 * 16 - 1;
    r.tr.base = TSS;
    r.tr.limit = 0x67;
    r.tr.attr = 0x8b;
    r.tr.unusable = false;
}

/// Runs one random program; returns how it ended (for the summary) and the blocks the
/// translator translated.
fn run_one(rng: &mut Rng, jit: bool) -> (&'static str, u64) {
    let program = code(rng, 256);
    let mut m = TestMachine::long_mode(&program);
    if rng.chance(75) {
        exceptions_resume(&mut m, program.len() as u64);
    }
    let user = rng.chance(25);
    m.enable_avx();
    {
        let r = m.regs();
        for g in r.gpr.iter_mut() {
            *g = if rng.chance(70) {
                DATA + rng.below(1 << 20)
            } else {
                rng.next()
            };
        }
        r.gpr[4] = DATA + 0x10_0000 + rng.below(0x1000);
        for x in r.fpu.xmm.iter_mut().chain(r.fpu.ymm_hi.iter_mut()) {
            *x = (rng.next() as u128) << 64 | rng.next() as u128;
        }
        if rng.chance(20) {
            r.fpu.mxcsr = (rng.next() as u32) & 0xffff;
        }
    }
    if user {
        // CPL 3 on user pages: the code's and the data's 2 MiB pages (PD entries 0 and 1 map
        // 0-4 MiB; CODE and DATA are at 1 and 2 MiB).
        for page in [CODE, DATA] {
            let pde = 0x3000 + (page >> 21) * 8;
            m.write_u64(pde, m.read_u64(pde) | 4);
        }
        // The GDT's user code (index 3) and data (index 4) descriptors, DPL 3.
        let r = m.regs();
        r.seg[1].selector = 0x1b;
        r.seg[1].attr |= 3 << 5;
        r.seg[2].selector = 0x23;
        r.seg[2].attr |= 3 << 5;
    }
    // Scramble a few page-directory entries: present, writable, user, NX, size and address
    // bits, anywhere in the first 4 GiB.
    for _ in 0..rng.below(4) {
        let pde = 0x3000 + rng.below(4 * 512) * 8;
        let bit = [0, 1, 2, 7, 63, 21, 22, 30, 35][rng.below(9) as usize];
        m.write_u64(pde, m.read_u64(pde) ^ (1 << bit));
    }
    m.vcpu
        .set_jit(if jit { JitMode::After(0) } else { JitMode::Off });
    let kick = m.vcpu.kick_flag();
    let deadline = Instant::now() + Duration::from_millis(20);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let (kick, done) = (kick.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
                if Instant::now() > deadline {
                    kick.store(true, Ordering::Release);
                }
            }
        })
    };
    let mut exits = 0;
    let end = loop {
        exits += 1;
        match m.vcpu.run() {
            Err(_) => break "engine error",
            Ok(VmExit::Halt) => break "hlt",
            Ok(VmExit::Shutdown) => break "triple fault",
            Ok(VmExit::Failed { reason }) => {
                if std::env::var_os("JANUS_RANDOM_CODE_VERBOSE").is_some() {
                    eprintln!("failed: {reason}");
                }
                break "failed";
            }
            Ok(VmExit::Interrupted) if Instant::now() > deadline => break "time limit",
            Ok(VmExit::PioIn { data, .. }) | Ok(VmExit::MmioRead { data, .. }) => data.fill(0xff),
            Ok(_) => {}
        }
        if exits > 10_000 {
            break "exit limit";
        }
    };
    done.store(true, Ordering::Release);
    let _ = watchdog.join();
    (end, m.vcpu.jit_stats().blocks)
}

#[test]
fn random_code_never_brings_the_vmm_down() {
    let seed = std::env::var("JANUS_RANDOM_CODE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x4a61_6e75_7352_6e64u64);
    let runs: u64 = std::env::var("JANUS_RANDOM_CODE_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 100 } else { 600 });
    let mut rng = Rng::new(seed);
    let mut ends = std::collections::BTreeMap::new();
    let mut translated = [0u64; 2];
    let t0 = Instant::now();
    for i in 0..runs {
        let jit = i % 2 == 1;
        let (end, blocks) = run_one(&mut rng, jit);
        *ends.entry(end).or_insert(0) += 1;
        translated[jit as usize] += blocks;
    }
    eprintln!(
        "random code: {runs} programs (seed {seed:#x}) in {:.1} s: {ends:?}",
        t0.elapsed().as_secs_f64()
    );
    // Getting here is the point; and half the programs really ran translated code.
    assert_eq!(translated[0], 0, "the interpreted half translated nothing");
    assert!(
        translated[1] > runs / 4,
        "translated blocks: {}",
        translated[1]
    );
}
