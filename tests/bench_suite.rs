//! `janus bench --suite` at the quick scale: the Linux guest runs every workload of the suite
//! once on Janus (and on QEMU where installed), the host runs the same programs, and every
//! machine must print each workload's line with the same checksum. No timing is asserted.
//! A host program that computes something else must make the suite fail loudly.
//!
//! The guest and the host's copies of its programs come from `scripts/guest-assets.sh`; see
//! `common/linux.rs` for what happens without them.

mod common;

use common::linux::{assets, Assets};
use common::{stderr, stdout};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

/// The host's copies of the guest's bench programs, or `None` (with the reason) where the
/// guest was built by an older recipe.
fn bench_dir(a: &Assets) -> Option<PathBuf> {
    let dir = a.initramfs.with_file_name("bench");
    if dir.join("jb").is_file() {
        return Some(dir);
    }
    let why = format!(
        "no bench programs in {}; scripts/guest-assets.sh builds them",
        dir.display()
    );
    if std::env::var_os("JANUS_REQUIRE_GUEST").is_some_and(|v| v == "1") {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
}

fn suite(a: &Assets, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_janus"))
        .args(["bench", "--suite", "--scale", "quick", "--json"])
        .arg("--kernel")
        .arg(&a.kernel)
        .arg("--initramfs")
        .arg(&a.initramfs)
        .args(extra)
        .output()
        .expect("run janus bench")
}

#[test]
fn every_workload_runs_and_every_machine_agrees() {
    let Some(a) = assets() else { return };
    if bench_dir(&a).is_none() {
        return;
    }
    let svg = common::temp_file("suite.svg", b"");
    let o = suite(&a, &["--svg", svg.to_str().expect("utf-8 path")]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}\n{}", stdout(&o));
    let r: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(r["ok"], true, "{r:#}");
    let rows = r["rows"].as_array().expect("rows");
    let names: Vec<&str> = rows.iter().filter_map(|w| w["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "boot",
            "sha256",
            "shell",
            "fp-scalar",
            "fp-packed",
            "string",
            "int",
            "indirect",
            "malloc",
            "fork-exec",
            "gzip",
            "syscall",
            "int-i386",
            "fp-scalar-i386"
        ]
    );
    assert!(rows[0]["janus"]["ms"].as_f64().is_some_and(|ms| ms > 0.0));
    let qemu_ran = r["skipped"].as_array().is_some_and(|s| s.is_empty());
    if !qemu_ran {
        eprintln!("QEMU did not run; its column was skipped: {}", r["skipped"]);
    }
    for w in &rows[1..] {
        let name = &w["name"];
        let sum = w["janus"]["sum"].as_str();
        assert!(
            sum.is_some_and(|s| s.len() == 16),
            "{name}: no sum on Janus: {w:#}"
        );
        assert!(w["janus"]["ms"].as_f64().is_some(), "{name}: {w:#}");
        assert_eq!(w["native"]["sum"].as_str(), sum, "{name}: {w:#}");
        if qemu_ran {
            assert_eq!(w["qemu"]["sum"].as_str(), sum, "{name}: {w:#}");
        }
        assert_eq!(w["sums_match"], true, "{name}");
    }
    let chart = std::fs::read_to_string(&svg).expect("the chart");
    assert!(chart.starts_with("<svg"), "{chart:.200}");
    assert!(chart.contains("int-i386"), "the chart names the workloads");
}

#[test]
fn a_wrong_checksum_fails_loudly() {
    let Some(a) = assets() else { return };
    let Some(real) = bench_dir(&a) else { return };
    // Host "programs" that print a well-formed line with a sum nobody computes.
    let dir = std::env::temp_dir().join(format!("janus-it-{}/fake-bench", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = b"#!/bin/sh\necho \"janus-bench: $1 ms=1.000 sum=00000000deadbeef\"\n";
    for f in ["jb", "jb32"] {
        std::fs::write(dir.join(f), script).expect("write fake program");
        let mut perm = std::fs::metadata(dir.join(f)).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(dir.join(f), perm).expect("chmod");
    }
    std::fs::copy(real.join("busybox"), dir.join("busybox")).expect("copy busybox");
    let o = suite(
        &a,
        &[
            "--only",
            "int",
            "--qemu",
            "/nonexistent/qemu",
            "--bench-dir",
            dir.to_str().expect("utf-8 path"),
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("int: CHECKSUM MISMATCH: janus-soft ")
            && err.contains("native 00000000deadbeef"),
        "{err}"
    );
    let r: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(r["ok"], false);
    assert_eq!(r["rows"][1]["sums_match"], false);
}

#[test]
fn rounds_report_medians_and_each_rounds_mean() {
    let Some(a) = assets() else { return };
    if bench_dir(&a).is_none() {
        return;
    }
    let o = suite(&a, &["--rounds", "2", "--only", "int"]);
    assert!(o.status.success(), "{}\n{}", stderr(&o), stdout(&o));
    let r: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(r["ok"], true, "{r:#}");
    let qemu_ran = r["skipped"].as_array().is_some_and(|s| s.is_empty());
    if qemu_ran {
        assert_eq!(r["rounds"], 2, "{r:#}");
        let each = r["round_geomeans"].as_array().expect("round means");
        assert_eq!(each.len(), 2, "{r:#}");
        assert!(each.iter().all(|g| g.as_f64().is_some_and(|g| g > 0.0)));
    }
    let rows = r["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "the boot and int");
    assert!(rows[1]["janus"]["ms"].as_f64().is_some_and(|ms| ms > 0.0));
}
