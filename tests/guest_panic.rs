//! A guest kernel panic is visible: in para mode the guest finds QEMU's pvpanic device through
//! ACPI (Linux's `pvpanic-mmio` driver), says it panicked, and `janus run` reports it and exits
//! with status 4.
//!
//! The guest comes from `scripts/guest-assets.sh`; see `common/linux.rs` for what happens
//! without it.

mod common;

use common::linux::{assets, run_to_end};
use std::process::Command;

#[test]
fn a_panic_in_para_mode_is_reported() {
    let Some(a) = assets() else { return };
    let script = "test -d /sys/bus/platform/drivers/pvpanic-mmio && echo pvpanic-bound\n\
                  echo c > /proc/sysrq-trigger\n";
    let cmdline = format!(
        "console=ttyS0 quiet janus.modules=pvpanic-mmio janus.cmd={}",
        common::base64(script.as_bytes())
    );
    let mut c = Command::new(env!("CARGO_BIN_EXE_janus"));
    c.args([
        "run",
        "--engine",
        "soft",
        "--mode",
        "para",
        "--memory",
        "size=512M",
    ])
    .arg("--kernel")
    .arg(&a.kernel)
    .arg("--initramfs")
    .arg(&a.initramfs)
    .args(["--cmdline", &cmdline]);
    let run = run_to_end(c, "panic");
    let ctx = run.context();
    assert!(run.console.contains("pvpanic-bound"), "{ctx}");
    assert!(run.console.contains("Kernel panic"), "{ctx}");
    assert!(
        run.stderr.contains("janus: guest panicked (pvpanic)"),
        "{ctx}"
    );
    assert_eq!(run.status.code(), Some(4), "{ctx}");
}
