//! The side-by-side table `janus demo` prints.

use janus_vmm::bench::BenchReport;
use janus_vmm::bench_io::IoBenchReport;
use janus_vmm::bench_linux::{LinuxBenchReport, LinuxColumn};
use janus_vmm::bench_suite::{Cell, SuiteReport};

/// A row of the Linux bench table: its label and the figure it shows for a machine.
type LinuxRow<'a> = (&'a str, fn(&LinuxColumn) -> f64);
use janus_vmm::demo::{DemoReport, ModeResult, PartResult};
use std::fmt::Write;

/// 1234567 -> "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How many fallbacks `janus run` names.
const TOP_FALLBACKS: usize = 8;

/// The soft engine's line in `janus run`'s report: of `total` instructions retired, how many
/// ran translated, how many the interpreter ran in untranslated blocks (by code size), and the
/// mnemonics translated code most often handed to the interpreter one by one.
pub fn exec_line(x: &janus_engine::ExecStats, total: u64) -> String {
    let interpreted: u64 = x.interpreted.iter().sum();
    let one_by_one: u64 = x.fallbacks.iter().map(|(_, n)| n).sum();
    let translated = total.saturating_sub(interpreted + one_by_one);
    let pct = |n: u64| 100.0 * n as f64 / total.max(1) as f64;
    let top: Vec<String> = x
        .fallbacks
        .iter()
        .take(TOP_FALLBACKS)
        .map(|(m, n)| format!("{m} {}", thousands(*n)))
        .collect();
    let [i16, i32, i64] = x.interpreted;
    let mut line = format!(
        "soft engine: {} blocks decoded ({} dropped by writes to their page); {:.1}% of instructions ran translated ({} blocks, {} bytes of host code, {} flushes); {:.1}% in the interpreter (16-bit {}, 32-bit {}, 64-bit {}); {:.1}% one by one from translated code",
        thousands(x.blocks_decoded),
        thousands(x.blocks_invalidated),
        pct(translated),
        thousands(x.translated_blocks),
        thousands(x.code_bytes),
        x.flushes,
        pct(interpreted),
        thousands(i16),
        thousands(i32),
        thousands(i64),
        pct(one_by_one),
    );
    if !top.is_empty() {
        line.push_str(&format!(": {}", top.join(", ")));
    }
    line
}

/// Nanoseconds in the unit that keeps three significant digits.
pub fn duration(ns: f64) -> String {
    match ns {
        x if x < 1e3 => format!("{x:.0} ns"),
        x if x < 1e6 => format!("{:.1} us", x / 1e3),
        x if x < 1e9 => format!("{:.2} ms", x / 1e6),
        x => format!("{:.2} s", x / 1e9),
    }
}

fn per_op(x: f64) -> String {
    match x {
        0.0 => "0".into(),
        x if x >= 100.0 => format!("{x:.0}"),
        x if x >= 0.01 => format!("{x:.2}"),
        x => format!("{x:.1e}"),
    }
}

fn cells(p: Option<&PartResult>) -> [String; 3] {
    match p {
        Some(p) if p.status == "ok" => [
            thousands(p.exits),
            per_op(p.exits_per_op),
            duration(p.ns_per_op),
        ],
        Some(p) => [p.status.to_string(), String::new(), String::new()],
        None => ["-".into(), String::new(), String::new()],
    }
}

fn kinds(by_kind: &std::collections::BTreeMap<&'static str, u64>) -> String {
    if by_kind.is_empty() {
        return "none".into();
    }
    by_kind
        .iter()
        .map(|(k, n)| format!("{k} {}", thousands(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fewer(full: u64, para: u64) -> String {
    match (full, para) {
        (f, 0) => format!("{} exits -> none", thousands(f)),
        (f, p) => format!(
            "{} -> {} exits, {:.0}x fewer",
            thousands(f),
            thousands(p),
            f as f64 / p as f64
        ),
    }
}

pub fn render(r: &DemoReport) -> String {
    let mut o = String::new();
    let full = &r.modes["full"];
    let para = &r.modes["para"];
    let _ = writeln!(
        o,
        "Janus demo: one guest, fully virtualized and para-virtualized"
    );
    let _ = writeln!(o, "engine: {} ({})", r.engine, r.engine_reason);
    if let Some(w) = &r.warning {
        let _ = writeln!(o, "note:   {w}");
    }
    let _ = writeln!(o, "full:   {}", full.description);
    let _ = writeln!(o, "para:   {}", para.description);
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<9}{:>11} | {:>8} {:>9} {:>10} | {:>8} {:>9} {:>10} | checksum",
        "", "", "full", "", "", "para", "", ""
    );
    let _ = writeln!(
        o,
        "{:<9}{:>11} | {:>8} {:>9} {:>10} | {:>8} {:>9} {:>10} |",
        "part", "ops", "exits", "exits/op", "time/op", "exits", "exits/op", "time/op"
    );
    for (f, p) in full.parts.iter().zip(&para.parts) {
        let ops = if p.ops > 0 { p.ops } else { f.ops };
        let [fe, fx, ft] = cells(Some(f));
        let [pe, px, pt] = cells(Some(p));
        let sum = match (f.status, p.status) {
            ("ok", "ok") if f.checksum == p.checksum => {
                format!("{} same", f.checksum.as_deref().unwrap_or(""))
            }
            ("ok", "ok") => "DIFFERENT".to_string(),
            (_, "ok") => format!("{} (para only)", p.checksum.as_deref().unwrap_or("")),
            ("ok", _) => format!("{} (full only)", f.checksum.as_deref().unwrap_or("")),
            _ => "-".into(),
        };
        let _ = writeln!(
            o,
            "{:<9}{:>11} | {fe:>8} {fx:>9} {ft:>10} | {pe:>8} {px:>9} {pt:>10} | {sum}",
            f.name,
            thousands(ops)
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "exits by kind, per part");
    for (f, p) in full.parts.iter().zip(&para.parts) {
        let show = |x: &PartResult| match x.status {
            "ok" => kinds(&x.exits_by_kind),
            s => s.to_string(),
        };
        let _ = writeln!(o, "  {:<9} full: {:<34} para: {}", f.name, show(f), show(p));
    }
    for m in [full, para] {
        for p in m.parts.iter().filter(|p| p.status != "ok") {
            if let Some(n) = &p.note {
                let _ = writeln!(o, "  {} {} {}: {n}", m.mode, p.name, p.status);
            }
        }
    }
    let _ = writeln!(o);
    for m in [full, para] {
        let _ = writeln!(
            o,
            "{}: {} exits in {} ({}); {}",
            m.mode,
            thousands(m.exits_total),
            duration(m.wall_ns as f64),
            kinds(&m.exits_by_kind),
            m.outcome
        );
    }
    let mips = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.1}"));
    let _ = writeln!(
        o,
        "guest MIPS: compute full {} para {} (instructions counted by the engine); loop full {} para {} (2 instructions per iteration)",
        mips(full.mips),
        mips(para.mips),
        mips(full.loop_mips),
        mips(para.loop_mips)
    );
    let part = |m: &ModeResult, n: &str| m.parts.iter().find(|p| p.name == n).map(|p| p.exits);
    for name in ["console", "clock"] {
        if let (Some(f), Some(p)) = (part(full, name), part(para, name)) {
            let _ = writeln!(o, "{name}: {}", fewer(f, p));
        }
    }
    let _ = writeln!(o);
    let failed: Vec<_> = full
        .checks
        .iter()
        .chain(&para.checks)
        .chain(&r.checks)
        .filter(|c| !c.ok)
        .collect();
    if failed.is_empty() {
        let n = full.checks.len() + para.checks.len() + r.checks.len();
        let _ = writeln!(o, "result: OK ({n} checks passed: checksums against the host's references and across modes, console text, time of day, fewer exits in para mode)");
    } else {
        let _ = writeln!(o, "result: FAILED");
        for c in failed {
            let _ = writeln!(o, "  {}: {}", c.name, c.detail);
        }
    }
    o
}

fn ratio(janus: f64, peer: f64) -> String {
    if janus <= 0.0 || peer <= 0.0 {
        return "-".into();
    }
    let r = janus / peer;
    if r >= 1.0 {
        format!("{r:.1}x slower")
    } else {
        format!("{:.1}x faster", 1.0 / r)
    }
}

pub fn render_bench(r: &BenchReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Janus bench: the demo guest, fully virtualized, timed by the guest's own clock"
    );
    for c in &r.columns {
        let _ = writeln!(o, "  {}: {}", c.name, c.detail);
    }
    for s in &r.skipped {
        let _ = writeln!(o, "  skipped {s}");
    }
    let _ = writeln!(o);
    let _ = write!(o, "{:<9}{:>12}", "part", "ops");
    for c in &r.columns {
        let _ = write!(o, " | {:>22}", c.name);
    }
    let peer = r.columns.iter().position(|c| c.name == "qemu-tcg");
    if peer.is_some() {
        let _ = write!(o, " | vs qemu-tcg");
    }
    let _ = writeln!(o);
    for part in ["console", "clock", "compute", "loop"] {
        let ops = r
            .columns
            .iter()
            .find_map(|c| c.parts.get(part).map(|p| p.ops))
            .unwrap_or(0);
        let _ = write!(o, "{part:<9}{:>12}", thousands(ops));
        for c in &r.columns {
            let cell = match c.parts.get(part) {
                Some(p) => {
                    let t = p.ns_per_op.map_or("-".into(), duration);
                    match p.mips {
                        Some(m) => format!("{t} ({m:.0} MIPS)"),
                        None => t,
                    }
                }
                None => "-".into(),
            };
            let _ = write!(o, " | {cell:>22}");
        }
        if let Some(pi) = peer {
            let peer_ns = r.columns[pi].parts.get(part).and_then(|p| p.ns_per_op);
            let cmp: Vec<String> = r
                .columns
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != pi)
                .map(|(_, c)| {
                    let j = c.parts.get(part).and_then(|p| p.ns_per_op);
                    format!(
                        "{} {}",
                        c.name,
                        j.zip(peer_ns).map_or("-".into(), |(a, b)| ratio(a, b))
                    )
                })
                .collect();
            let _ = write!(o, " | {}", cmp.join(", "));
        }
        let _ = writeln!(o);
    }
    o
}

pub fn render_bench_linux(r: &LinuxBenchReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Janus bench: a Linux guest fully virtualized ({}), timed from the host",
        r.kernel
    );
    for c in &r.columns {
        let _ = writeln!(o, "  {}: {}", c.name, c.detail);
    }
    for s in &r.skipped {
        let _ = writeln!(o, "  skipped {s}");
    }
    let _ = writeln!(o);
    let w = r.workload.len().max(24);
    let _ = write!(o, "{:<w$}", "");
    for c in &r.columns {
        let _ = write!(o, " | {:>12}", c.name);
    }
    let peer = r.columns.iter().position(|c| c.name == "qemu-tcg");
    if peer.is_some() {
        let _ = write!(o, " | vs qemu-tcg");
    }
    let _ = writeln!(o);
    let rows: [LinuxRow; 3] = [
        ("boot to init", |c| c.boot_to_init_s),
        (r.workload, |c| c.workload_s),
        ("whole run (to poweroff)", |c| c.total_s),
    ];
    for (name, get) in rows {
        let _ = write!(o, "{name:<w$}");
        for c in &r.columns {
            let _ = write!(o, " | {:>12}", duration(get(c) * 1e9));
        }
        if let Some(pi) = peer {
            let cmp: Vec<String> = r
                .columns
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != pi)
                .map(|(_, c)| format!("{} {}", c.name, ratio(get(c), get(&r.columns[pi]))))
                .collect();
            let _ = write!(o, " | {}", cmp.join(", "));
        }
        let _ = writeln!(o);
    }
    for c in &r.columns {
        if let Some(n) = c.instructions {
            let _ = writeln!(
                o,
                "{}: {} guest instructions, {:.0} MIPS over the whole run",
                c.name,
                thousands(n),
                n as f64 / c.total_s / 1e6
            );
        }
    }
    o
}

/// `janus bench --kernel K --initramfs I --io`: one row per boot, then the ratios against
/// QEMU for the same technique.
pub fn render_bench_io(r: &IoBenchReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Janus bench: I/O by technique, the Linux guest ({}) reading its whole {} MiB disk and pinging the host {} times; one boot each, same image, same run",
        r.kernel, r.disk_mib, r.pings
    );
    let _ = writeln!(o, "  janus-soft: --engine soft, --mode full or para");
    if let Some(q) = &r.qemu {
        let _ = writeln!(
            o,
            "  qemu-tcg: {q}, -M pc -accel tcg (its PIIX3 IDE and e1000; virtio-blk and virtio-net on PCI)"
        );
    }
    for s in &r.skipped {
        let _ = writeln!(o, "  skipped {s}");
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<10} {:<30} | {:>12} | {:>10} | {:>11} | {:>14} | {:>10} | ping avg (min-max)",
        "machine", "technique", "boot to init", "disk read", "MiB/s", "disk exits/MiB", "NIC exits"
    );
    for c in &r.columns {
        let opt = |v: Option<u64>| v.map_or("-".to_string(), thousands);
        let per_mib = c
            .disk_exits_per_mib()
            .map_or("-".to_string(), |x| thousands(x.round() as u64));
        let ping = c.rtt_ms.map_or("-".to_string(), |[min, avg, max]| {
            format!("{avg:.2} ms ({min:.2}-{max:.2})")
        });
        let _ = writeln!(
            o,
            "{:<10} {:<30} | {:>12} | {:>10} | {:>11.1} | {:>14} | {:>10} | {ping}",
            c.machine,
            c.technique.describe(),
            duration(c.boot_to_init_s * 1e9),
            duration(c.read_s * 1e9),
            c.read_mib_s,
            per_mib,
            opt(c.net_exits),
        );
    }
    let peer = |t| {
        r.columns
            .iter()
            .find(|c| c.machine == "qemu-tcg" && c.technique == t)
    };
    let mut lines = Vec::new();
    for c in r.columns.iter().filter(|c| c.machine != "qemu-tcg") {
        let Some(q) = peer(c.technique) else { continue };
        let mut parts = vec![format!("disk read {}", ratio(c.read_s, q.read_s))];
        if let (Some(a), Some(b)) = (c.rtt_ms, q.rtt_ms) {
            parts.push(format!("ping {}", ratio(a[1], b[1])));
        }
        parts.push(format!(
            "boot {}",
            ratio(c.boot_to_init_s, q.boot_to_init_s)
        ));
        lines.push(format!(
            "  {}: {}",
            c.technique.describe(),
            parts.join(", ")
        ));
    }
    if !lines.is_empty() {
        let _ = writeln!(o, "\njanus-soft against qemu-tcg, same technique:");
        for l in lines {
            let _ = writeln!(o, "{l}");
        }
    }
    o
}

/// A suite cell: the time, or why there is none.
fn suite_ms(c: Option<&Cell>) -> String {
    match c {
        Some(Cell { ms: Some(ms), .. }) => duration(ms * 1e6),
        Some(Cell { error: Some(_), .. }) => "FAILED".into(),
        _ => "-".into(),
    }
}

fn times(x: Option<f64>) -> String {
    match x {
        Some(x) if x >= 100.0 => format!("{x:.0}x"),
        Some(x) if x >= 10.0 => format!("{x:.1}x"),
        Some(x) => format!("{x:.2}x"),
        None => "-".into(),
    }
}

/// `janus bench --suite`: a row per workload with the three machines' times and the ratios.
pub fn render_bench_suite(r: &SuiteReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Janus bench suite ({} scale): the Linux guest ({}), one boot per machine, times measured inside each machine",
        r.scale.name(),
        r.kernel
    );
    for m in &r.machines {
        let boot = m
            .boot_to_init_s
            .map(|s| format!(", boot to init {}", duration(s * 1e9)))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "  {}: {} (whole run {}{boot})",
            m.name,
            m.detail,
            duration(m.total_s * 1e9)
        );
    }
    for s in &r.skipped {
        let _ = writeln!(o, "  skipped {s}");
    }
    let _ = writeln!(
        o,
        "  speed-up = QEMU time / Janus time: above 1 Janus is faster; x native = time / native time"
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<10} {:>9} | {:>10} {:>10} {:>10} | {:>8} | {:>8} {:>8} | sum",
        "workload", "size", "janus-soft", "qemu-tcg", "native", "speed-up", "Janus xN", "QEMU xN"
    );
    for row in &r.rows {
        let sum = row
            .janus
            .sum
            .as_deref()
            .or(row.native.as_ref().and_then(|c| c.sum.as_deref()))
            .unwrap_or("");
        let mark = match (row.sums_match, sum.is_empty()) {
            (false, _) => " MISMATCH",
            (true, false) => " same",
            _ => "",
        };
        let _ = writeln!(
            o,
            "{:<10} {:>9} | {:>10} {:>10} {:>10} | {:>8} | {:>8} {:>8} | {sum}{mark}",
            row.name,
            row.size.map(thousands).unwrap_or_default(),
            suite_ms(Some(&row.janus)),
            suite_ms(row.qemu.as_ref()),
            suite_ms(row.native.as_ref()),
            times(row.janus_speedup_vs_qemu),
            times(row.janus_x_native),
            times(row.qemu_x_native),
        );
    }
    let g = &r.geomean;
    let _ = writeln!(
        o,
        "{:<10} {:>9} | {:>10} {:>10} {:>10} | {:>8} | {:>8} {:>8} |",
        "geomean",
        "",
        "",
        "",
        "",
        times(g.janus_speedup_vs_qemu),
        times(g.janus_x_native),
        times(g.qemu_x_native),
    );
    if r.rounds > 1 {
        let each: Vec<String> = r
            .round_geomeans
            .iter()
            .map(|g| format!("{g:.2}x"))
            .collect();
        let _ = writeln!(
            o,
            "\n{} rounds (figures are medians); geometric mean per round: {}",
            r.rounds,
            each.join(", ")
        );
    }
    if !r.problems.is_empty() {
        let _ = writeln!(o);
        for p in &r.problems {
            let _ = writeln!(o, "PROBLEM: {p}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(100), "100");
        assert_eq!(duration(12.0), "12 ns");
        assert_eq!(duration(12_345.0), "12.3 us");
        assert_eq!(duration(2_500_000_000.0), "2.50 s");
        assert_eq!(per_op(2.0), "2.00");
        assert_eq!(per_op(0.000244), "2.4e-4");
    }
}
