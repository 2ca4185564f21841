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
    let script = "for f in pni ssse3 sse4_1 sse4_2; do \
                  grep -q \"^flags.* $f\" /proc/cpuinfo && echo \"flag-$f=1\" || echo \"flag-$f=0\"; done\n\
                  /bench/jb string 300\n/bench/jb fp-packed 200\n/bench/jb indirect 2000\n";
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

#[test]
fn levels_show_their_features_and_compute_alike() {
    if assets().is_none() {
        return;
    }
    let (v1, m1) = run_at("v1");
    assert_eq!(m1, "x86-64-v1");
    for f in ["pni", "ssse3", "sse4_1", "sse4_2"] {
        assert!(v1.contains(&format!("flag-{f}=0")), "v1 shows {f}:\n{v1}");
    }
    let (top, model) = run_at("host");
    let v2 = std::arch::is_x86_feature_detected!("sse4.2")
        && std::arch::is_x86_feature_detected!("ssse3");
    if v2 {
        assert_eq!(model, "x86-64-v2");
        for f in ["pni", "ssse3", "sse4_1", "sse4_2"] {
            assert!(top.contains(&format!("flag-{f}=1")), "v2 lacks {f}:\n{top}");
        }
    }
    let (a, b) = (checksums(&v1), checksums(&top));
    assert_eq!(a.len(), 3, "{v1}");
    assert_eq!(a, b, "results differ between v1 and {model}");
}
