//! The soft engine under arbitrary guest code: the input is the code, run at CPL 0 in 64-bit
//! mode with the AVX state enabled, translated after one interpreted run, for at most 20 ms
//! (the vCPU's kick flag). Checked: nothing panics or crashes the process, whatever the code
//! does (the same property `crates/janus-soft/tests/random_code.rs` checks with random bytes).

#![no_main]

use janus_engine::{Vcpu, VmExit};
use janus_soft::testing::{TestMachine, DATA};
use janus_soft::vcpu::JitMode;
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fuzz_target!(|code: &[u8]| {
    let code = &code[..code.len().min(4096)];
    let mut m = TestMachine::long_mode(code);
    m.enable_avx();
    for (k, g) in m.regs().gpr.iter_mut().enumerate() {
        *g = DATA + 0x1000 * k as u64;
    }
    m.vcpu.set_jit(JitMode::After(1));
    let kick = m.vcpu.kick_flag();
    let deadline = Instant::now() + Duration::from_millis(20);
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        kick.store(true, Ordering::Release);
    });
    for _ in 0..10_000 {
        match m.vcpu.run() {
            Err(_) | Ok(VmExit::Halt | VmExit::Shutdown | VmExit::Failed { .. }) => break,
            Ok(VmExit::Interrupted) if Instant::now() > deadline => break,
            Ok(VmExit::PioIn { data, .. }) | Ok(VmExit::MmioRead { data, .. }) => data.fill(0xff),
            Ok(_) => {}
        }
    }
    let _ = watchdog.join();
});
