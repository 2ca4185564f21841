//! `janus bench`: the demo guest, fully virtualized, on Janus's engines and on QEMU (TCG, the
//! peer), in the same run.
//!
//! Both run the same ELF (QEMU boots it through its PVH note), so the fair common measure is
//! the guest's own timing of each part: its TSC, calibrated against the PIT of whichever
//! machine it runs on. QEMU's guest instructions per second use the instruction count the soft
//! engine measured for the same code (the compute loop's instruction count does not depend on
//! the machine).

use crate::config::{EngineChoice, Mode};
use crate::demo::{self, DemoOptions, ModeResult};
use crate::{Result, VmmError};
use janus_abi::demo::{Part, LINE_PREFIX};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub engines: Vec<EngineChoice>,
    pub compute_iters: u64,
    pub loop_iters: u64,
    /// The QEMU binary to compare with (skipped if it cannot be run).
    pub qemu: PathBuf,
}

/// One machine's timing of one part.
#[derive(Clone, Debug, Serialize)]
pub struct PartTiming {
    pub ops: u64,
    /// The guest's own measurement of the part.
    pub guest_ns: Option<u64>,
    pub ns_per_op: Option<f64>,
    pub mips: Option<f64>,
    pub checksum: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Column {
    /// "janus-soft", "janus-kvm" or "qemu-tcg".
    pub name: String,
    pub detail: String,
    pub parts: BTreeMap<&'static str, PartTiming>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub compute_iters: u64,
    pub loop_iters: u64,
    pub columns: Vec<Column>,
    /// Why a column is missing (for example QEMU not installed).
    pub skipped: Vec<String>,
}

const PARTS: [Part; 4] = [Part::Console, Part::Clock, Part::Compute, Part::Loop];

fn timing(
    ops: u64,
    guest_ns: Option<u64>,
    instructions: Option<u64>,
    checksum: Option<String>,
) -> PartTiming {
    PartTiming {
        ops,
        guest_ns,
        ns_per_op: guest_ns
            .filter(|_| ops > 0)
            .map(|ns| ns as f64 / ops as f64),
        mips: guest_ns
            .zip(instructions)
            .filter(|(ns, _)| *ns > 0)
            .map(|(ns, n)| n as f64 * 1000.0 / ns as f64),
        checksum,
    }
}

fn janus_column(opts: &BenchOptions, engine: EngineChoice) -> Result<(Column, ModeResult)> {
    let demo_opts = DemoOptions {
        engine,
        compute_iters: opts.compute_iters,
        loop_iters: opts.loop_iters,
        ..Default::default()
    };
    let (sel, m) = demo::run_one(&demo_opts, Mode::Full)?;
    if !m.ok {
        return Err(VmmError::Config(format!(
            "janus bench: the demo guest failed on the {} engine: {}",
            sel.kind.name(),
            m.outcome
        )));
    }
    let mut parts = BTreeMap::new();
    for p in PARTS {
        if let Some(r) = m.parts.iter().find(|r| r.name == p.name()) {
            let instructions = if p == Part::Loop {
                Some(r.ops * janus_abi::demo::LOOP_INSNS_PER_ITER)
            } else {
                r.instructions
            };
            parts.insert(
                p.name(),
                timing(r.ops, r.guest_ns, instructions, r.checksum.clone()),
            );
        }
    }
    let col = Column {
        name: format!("janus-{}", sel.kind.name()),
        detail: sel.reason.clone(),
        parts,
    };
    Ok((col, m))
}

/// Runs QEMU on the demo guest and returns what the guest printed, or why it could not.
fn run_qemu(qemu: &PathBuf, cmdline: &str) -> std::result::Result<(String, String), String> {
    let version = Command::new(qemu)
        .arg("--version")
        .output()
        .map_err(|e| format!("{}: {e}", qemu.display()))?;
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let image = std::env::temp_dir().join(format!("janus-demo-{}.elf", std::process::id()));
    std::fs::write(&image, janus_guests::DEMO_ELF)
        .map_err(|e| format!("{}: {e}", image.display()))?;
    let mut child = Command::new(qemu)
        .args([
            "-M",
            "pc",
            "-accel",
            "tcg",
            "-m",
            "128",
            "-nographic",
            "-no-reboot",
        ])
        .args(["-nodefaults", "-serial", "stdio", "-kernel"])
        .arg(&image)
        .args(["-append", cmdline])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", qemu.display()))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => break None,
        }
    };
    let _ = std::fs::remove_file(&image);
    if status.is_none() {
        let _ = child.kill();
        return Err("QEMU did not finish within 120 s".into());
    }
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    Ok((out, version))
}

fn qemu_column(
    opts: &BenchOptions,
    soft: Option<&ModeResult>,
) -> std::result::Result<Column, String> {
    let cmdline = format!("compute={} loop={}", opts.compute_iters, opts.loop_iters);
    let (out, version) = run_qemu(&opts.qemu, &cmdline)?;
    let lines: Vec<BTreeMap<String, String>> = out
        .lines()
        .filter_map(|l| l.find(LINE_PREFIX).map(|i| &l[i + LINE_PREFIX.len()..]))
        .map(demo::parse_fields)
        .collect();
    if !out.contains("janus-demo: done") {
        return Err("the demo guest did not finish under QEMU".into());
    }
    let mut parts = BTreeMap::new();
    for p in PARTS {
        let Some(f) = lines
            .iter()
            .find(|f| f.get("part").map(String::as_str) == Some(p.name()))
        else {
            continue;
        };
        let ops = f.get("ops").and_then(|v| v.parse().ok()).unwrap_or(0);
        let guest_ns = f.get("guest_ns").and_then(|v| v.parse().ok());
        let instructions = if p == Part::Loop {
            Some(ops * janus_abi::demo::LOOP_INSNS_PER_ITER)
        } else {
            // The same code and input retire the same instructions: the soft engine's count.
            soft.and_then(|m| m.parts.iter().find(|r| r.name == p.name()))
                .and_then(|r| r.instructions)
                .filter(|_| p == Part::Compute)
        };
        parts.insert(
            p.name(),
            timing(ops, guest_ns, instructions, f.get("checksum").cloned()),
        );
    }
    Ok(Column {
        name: "qemu-tcg".into(),
        detail: format!("{version}, -M pc -accel tcg"),
        parts,
    })
}

pub fn run(opts: &BenchOptions) -> Result<BenchReport> {
    let mut columns = Vec::new();
    let mut skipped = Vec::new();
    let mut soft = None;
    for &e in &opts.engines {
        let (col, m) = janus_column(opts, e)?;
        if col.name == "janus-soft" {
            soft = Some(m);
        }
        columns.push(col);
    }
    match qemu_column(opts, soft.as_ref()) {
        Ok(c) => columns.push(c),
        Err(why) => skipped.push(format!("qemu-tcg: {why}")),
    }
    Ok(BenchReport {
        compute_iters: opts.compute_iters,
        loop_iters: opts.loop_iters,
        columns,
        skipped,
    })
}
