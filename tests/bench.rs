//! `janus bench` runs the demo guest on Janus and on the peer (QEMU, where installed) and
//! reports per-part timings. This checks that it runs and that both machines compute the
//! same results; it asserts nothing about speed (that is for the benchmark's readers).

mod common;
use common::*;
use serde_json::Value;

#[test]
fn bench_runs_and_the_peer_agrees() {
    let o = janus(&["bench", "--json", "--compute", "1000", "--loop", "1000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_str(&stdout(&o)).expect("json");
    let cols = r["columns"].as_array().expect("columns");
    let soft = cols
        .iter()
        .find(|c| c["name"] == "janus-soft")
        .expect("soft column");
    for part in ["console", "clock", "compute", "loop"] {
        assert!(soft["parts"][part]["guest_ns"].as_u64().is_some(), "{part}");
    }
    match cols.iter().find(|c| c["name"] == "qemu-tcg") {
        Some(q) => {
            for part in ["console", "clock", "compute", "loop"] {
                assert_eq!(
                    q["parts"][part]["checksum"], soft["parts"][part]["checksum"],
                    "{part}"
                );
            }
        }
        None => eprintln!(
            "qemu-system-x86_64 is not installed; the peer column was skipped: {}",
            r["skipped"]
        ),
    }
}
