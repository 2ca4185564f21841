//! The embedded demo guest on the kvm engine, in both modes: what the guest printed, the
//! checksums, and the exit counts.

mod common;
use common::*;
use serde_json::Value;

fn part<'a>(mode: &'a Value, name: &str) -> &'a Value {
    mode["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no part {name}"))
}

#[test]
fn demo_json_on_kvm() {
    require_kvm!();
    let o = janus(&["demo", "--engine", "kvm", "--json", "--compute", "20000"]);
    let out = stdout(&o);
    assert!(o.status.success(), "demo failed: {out}\n{}", stderr(&o));
    let d: Value = serde_json::from_str(&out).expect("demo --json prints one JSON object");
    assert_eq!(d["engine"], "kvm");
    assert_eq!(d["ok"], true);
    let full = &d["modes"]["full"];
    let para = &d["modes"]["para"];
    for m in [full, para] {
        assert_eq!(m["ok"], true, "{m}");
        assert!(m["exits_total"].as_u64().unwrap() > 0);
        assert!(m["exits_by_kind"].is_object());
        for p in m["parts"].as_array().unwrap() {
            for key in ["name", "ops", "exits", "ns", "checksum"] {
                assert!(p.get(key).is_some(), "part lacks {key}: {p}");
            }
        }
    }
    // The same work gives the same answers in both modes.
    for name in ["console", "clock", "compute", "block"] {
        assert_eq!(
            part(full, name)["checksum"],
            part(para, name)["checksum"],
            "{name}"
        );
        assert_eq!(
            part(full, name)["checksum"],
            part(full, name)["expected_checksum"]
        );
    }
    for m in [full, para] {
        assert_eq!(part(m, "block")["status"], "ok");
    }
    // Full mode traps on every device access; para mode batches or avoids them.
    let exits = |m: &Value, n: &str| part(m, n)["exits"].as_u64().unwrap();
    assert_eq!(
        exits(full, "console"),
        2 * 4096,
        "LSR poll + THR write per byte"
    );
    assert_eq!(exits(para, "console"), 1, "one hypercall for the buffer");
    assert!(
        exits(full, "clock") >= 16 * 1000,
        "16 CMOS accesses per read"
    );
    assert_eq!(exits(para, "clock"), 0, "the PV clock page needs no exits");
    // The IDE disk by PIO: a data-port read per 4 bytes, against 16 block hypercalls.
    assert!(exits(full, "block") >= (1 << 20) / 4, "PIO data-port reads");
    assert_eq!(exits(para, "block"), 16);
    assert_eq!(exits(full, "compute"), 0);
    assert_eq!(exits(para, "compute"), 0);
    assert_eq!(exits(para, "block"), 16, "one hypercall per 64 KiB");
    assert_eq!(full["exits_by_kind"].get("hypercall"), None);
    assert!(para["exits_by_kind"]["hypercall"].as_u64().unwrap() >= 17);
}

#[test]
fn demo_table_on_kvm() {
    require_kvm!();
    let o = janus(&["demo", "--engine", "kvm", "--compute", "1000"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("result: OK"), "{out}");
    for word in [
        "console", "clock", "compute", "block", "exits/op", "time/op", "same",
    ] {
        assert!(out.contains(word), "table lacks {word}: {out}");
    }
}

#[test]
fn run_embedded_guest_in_each_mode() {
    require_kvm!();
    for (mode, via, clock) in [
        ("full", "ACPI S5", "tsc-calibrated-by-pit"),
        ("para", "hypercall", "pvclock"),
    ] {
        let o = janus(&[
            "run",
            "--engine",
            "kvm",
            "--mode",
            mode,
            "--cmdline",
            "compute=1000",
        ]);
        let out = stdout(&o);
        let err = stderr(&o);
        assert!(o.status.success(), "{mode}: {err}");
        assert!(
            out.contains(&format!("janus-demo: mode={mode} clock={clock}")),
            "{out}"
        );
        assert!(out.contains("cmdline=\"compute=1000\""), "{out}");
        assert!(out.contains("janus-demo: part=compute ops=1000"), "{out}");
        assert!(out.contains("janus-demo: done"), "{out}");
        assert!(err.contains(&format!("guest powered off ({via})")), "{err}");
    }
}

#[test]
fn para_guest_reads_a_disk_file() {
    require_kvm!();
    let image: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 251) as u8).collect();
    let path = temp_file("disk.img", &image);
    let spec = format!("path={}", path.display());
    let o = janus(&[
        "demo",
        "--engine",
        "kvm",
        "--json",
        "--compute",
        "100",
        "--disk",
        &spec,
    ]);
    let d: Value = serde_json::from_str(&stdout(&o)).expect("json");
    let block = part(&d["modes"]["para"], "block");
    assert_eq!(block["status"], "ok");
    assert_eq!(block["checksum"], block["expected_checksum"]);
    // Computed here, independently of Janus: the guest read this file's first MiB.
    let want = janus_abi::demo::fnv1a_words(janus_abi::demo::FNV_OFFSET, &image[..1 << 20]);
    assert_eq!(block["checksum"], format!("{want:#018x}"));
}
