//! `--cpu`: the x86-64 level the soft engine presents. The same Linux guest and programs run
//! at v1 and at the default (the highest level the host runs); the guest sees the level's
//! features in /proc/cpuinfo, and glibc, which picks its string routines by them, computes
//! the same results either way.
//!
//! The guest comes from `scripts/guest-assets.sh`; see `common/linux.rs` for what happens
//! without it.

mod common;

use common::linux::{assets, boot, run_to_end};

/// Boots the guest at `cpu`, runs workloads that use glibc's string and vector routines;
/// returns the console and the start line's CPU model.
fn run_at(cpu: &str) -> (String, String) {
    let a = assets().expect("checked by the caller");
    let script = "for f in pni ssse3 sse4_1 sse4_2 avx avx2 bmi1 bmi2 fma f16c abm movbe xsave; do \
                  grep -q \"^flags.* $f\" /proc/cpuinfo && echo \"flag-$f=1\" || echo \"flag-$f=0\"; done\n\
                  /bench/jb string 300\n/bench/jb fp-packed 200\n/bench/jb indirect 2000\n\
                  dmesg | grep 'x86/fpu: Enabled' || true\n";
    let cmdline = format!(
        "console=ttyS0 quiet janus.cmd={}",
        common::base64(script.as_bytes())
    );
    let mut cmd = boot(&a, &cmdline);
    cmd.args(["--cpu", cpu]);
    let run = run_to_end(cmd, &format!("cpu-{cpu}"));
    let ctx = run.context();
    assert!(run.status.success(), "janus --cpu {cpu} failed; {ctx}");
    assert!(run.console.contains("janus-cmd: end status=0"), "{ctx}");
    let model = run
        .stderr
        .lines()
        .find_map(|l| l.split(", cpu ").nth(1))
        .unwrap_or_default()
        .to_string();
    (run.console, model)
}

/// The `janus-bench:` lines without their times.
fn checksums(console: &str) -> Vec<String> {
    console
        .lines()
        .filter(|l| l.starts_with("janus-bench:"))
        .map(|l| {
            l.split_whitespace()
                .filter(|w| !w.starts_with("ms="))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// /proc/cpuinfo flags each level adds.
const V2_FLAGS: [&str; 4] = ["pni", "ssse3", "sse4_1", "sse4_2"];
const V3_FLAGS: [&str; 9] = [
    "avx", "avx2", "bmi1", "bmi2", "fma", "f16c", "abm", "movbe", "xsave",
];

fn has_flags(console: &str, flags: &[&str], on: bool) {
    for f in flags {
        let want = format!("flag-{f}={}", on as u8);
        assert!(console.contains(&want), "expected {want}:\n{console}");
    }
}

#[test]
fn levels_show_their_features_and_compute_alike() {
    if assets().is_none() {
        return;
    }
    let (v1, m1) = run_at("v1");
    assert_eq!(m1, "x86-64-v1");
    has_flags(&v1, &V2_FLAGS, false);
    has_flags(&v1, &V3_FLAGS, false);
    let sums = checksums(&v1);
    assert_eq!(sums.len(), 3, "{v1}");
    use std::arch::is_x86_feature_detected as has;
    let host_v2 = has!("sse4.2") && has!("ssse3");
    let host_v3 = host_v2 && has!("avx2") && has!("bmi2") && has!("fma") && has!("movbe");
    if host_v2 {
        let (v2, m2) = run_at("v2");
        assert_eq!(m2, "x86-64-v2");
        has_flags(&v2, &V2_FLAGS, true);
        has_flags(&v2, &V3_FLAGS, false);
        assert_eq!(checksums(&v2), sums, "results differ between v1 and v2");
    }
    // The default: the highest level the host runs.
    let (top, model) = run_at("host");
    if host_v3 {
        assert_eq!(model, "x86-64-v3");
        has_flags(&top, &V2_FLAGS, true);
        has_flags(&top, &V3_FLAGS, true);
        // Linux saves the AVX state with XSAVE.
        assert!(top.contains("xstate features 0x7"), "{top}");
    }
    assert_eq!(
        checksums(&top),
        sums,
        "results differ between v1 and {model}"
    );
}
