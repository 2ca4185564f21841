//! `janus demo`: the embedded guest, fully virtualized and then para-virtualized, compared.
//!
//! Exits and wall time per part are measured by the host between the guest's POST codes, so
//! they do not depend on the guest's honesty; the guest's checksums are checked against
//! references the host computes itself, and against each other across modes.

use crate::config::{EngineChoice, Mode, VmConfig};
use crate::engine::Selection;
use crate::machine::Machine;
use crate::run_loop::{Outcome, PostEvent, RunReport};
use crate::Result;
use janus_abi::demo::{self, Part, LINE_PREFIX};
use janus_devices::disk::DiskImage;
use janus_devices::uart16550::ConsoleOut;
use janus_engine::{ExitCounters, ExitKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// How far the guest's time of day may be from the host's, in seconds (the RTC has one-second
/// resolution and the run takes a few seconds).
const TIME_SLACK_SECS: u64 = 10;

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub engine: EngineChoice,
    pub compute_iters: u64,
    pub loop_iters: u64,
    pub disk: Option<PathBuf>,
    pub memory_bytes: u64,
}

impl Default for DemoOptions {
    fn default() -> DemoOptions {
        DemoOptions {
            engine: EngineChoice::Auto,
            compute_iters: demo::DEFAULT_COMPUTE_ITERS,
            loop_iters: demo::DEFAULT_LOOP_ITERS,
            disk: None,
            memory_bytes: 64 << 20,
        }
    }
}

/// One check the demo makes, with what it saw.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

fn check(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok,
        detail: detail.into(),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PartResult {
    pub name: &'static str,
    /// "ok", "skipped", "error" or "missing".
    pub status: &'static str,
    pub ops: u64,
    /// Exits between the part's POST codes, measured by the host.
    pub exits: u64,
    pub exits_by_kind: BTreeMap<&'static str, u64>,
    pub exits_per_op: f64,
    /// Host wall time between the part's POST codes.
    pub ns: u64,
    pub ns_per_op: f64,
    /// Guest instructions the part retired, where the engine counts them.
    pub instructions: Option<u64>,
    /// Guest instructions per microsecond over the part (millions per second): counted by the
    /// engine, or for the loop part known by construction (two per iteration).
    pub mips: Option<f64>,
    /// The guest's own measurement of the part, by its clock.
    pub guest_ns: Option<u64>,
    pub checksum: Option<String>,
    pub expected_checksum: Option<String>,
    /// Why the part was skipped or failed.
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModeResult {
    pub mode: &'static str,
    pub description: &'static str,
    pub ok: bool,
    pub outcome: String,
    pub exits_total: u64,
    pub exits_by_kind: BTreeMap<&'static str, u64>,
    pub wall_ns: u64,
    pub instructions: Option<u64>,
    /// Guest MIPS over the compute part, where the engine counts instructions.
    pub mips: Option<f64>,
    /// Guest MIPS over the two-instruction loop (known on every engine).
    pub loop_mips: Option<f64>,
    pub parts: Vec<PartResult>,
    pub checks: Vec<Check>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    pub engine: &'static str,
    pub engine_reason: String,
    pub warning: Option<String>,
    pub compute_iters: u64,
    pub loop_iters: u64,
    pub modes: BTreeMap<&'static str, ModeResult>,
    pub checks: Vec<Check>,
    pub ok: bool,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `key=value` and `key="quoted value"` pairs of one guest line.
pub(crate) fn parse_fields(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = line.trim();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().to_string();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(' ') {
                Some(sp) => (&after[..sp], &after[sp..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_string());
        rest = next.trim_start();
    }
    out
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

fn by_kind(c: &ExitCounters) -> BTreeMap<&'static str, u64> {
    c.nonzero().map(|(k, n)| (k.name(), n)).collect()
}

fn hex(v: u64) -> String {
    format!("{v:#018x}")
}

/// The host's own answer for each part's checksum.
struct References {
    console: u64,
    compute: u64,
    block: Option<u64>,
    loop_iters: u64,
}

impl References {
    fn new(opts: &DemoOptions) -> Result<References> {
        let disk = match &opts.disk {
            Some(p) => DiskImage::open_read_only(p)?,
            None => DiskImage::test_image(),
        };
        let mut buf = vec![0u8; demo::BLOCK_BYTES];
        let block = disk
            .read_at(0, &mut buf)
            .ok()
            .map(|_| demo::fnv1a_words(demo::FNV_OFFSET, &buf));
        Ok(References {
            console: demo::console_checksum(),
            compute: demo::compute(opts.compute_iters),
            block,
            loop_iters: opts.loop_iters.max(1),
        })
    }

    fn expected(&self, part: Part) -> Option<u64> {
        match part {
            Part::Console => Some(self.console),
            Part::Clock => Some(demo::CLOCK_READS as u64),
            Part::Compute => Some(self.compute),
            Part::Block => self.block,
            Part::Loop => Some(self.loop_iters),
        }
    }
}

/// What the host measured between a part's POST codes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Span {
    exits: ExitCounters,
    ns: u64,
    instructions: Option<u64>,
}

/// Exits, host time and instructions between a part's POST codes. Each snapshot is taken just
/// before its own marker exit is counted and before its OUT retires, so the span includes the
/// begin marker's exit and instruction; both are taken back out.
fn measure(post: &[PostEvent], part: Part) -> Option<Span> {
    let begin = post.iter().find(|e| e.code == part.begin_code())?;
    let end = post.iter().find(|e| e.code == part.end_code())?;
    let mut exits = end.exits_before.since(&begin.exits_before);
    exits.discount(ExitKind::PioOut, 1);
    let instructions = end
        .instructions
        .zip(begin.instructions)
        .map(|(e, b)| e.saturating_sub(b).saturating_sub(1));
    Some(Span {
        exits,
        ns: end.at.saturating_sub(begin.at).as_nanos() as u64,
        instructions,
    })
}

fn part_result(
    part: Part,
    line: Option<&BTreeMap<String, String>>,
    post: &[PostEvent],
    refs: &References,
) -> PartResult {
    let measured = measure(post, part);
    let Span {
        exits,
        ns,
        instructions,
    } = measured.unwrap_or_default();
    let mut r = PartResult {
        name: part.name(),
        status: "missing",
        ops: 0,
        exits: exits.total(),
        exits_by_kind: by_kind(&exits),
        exits_per_op: 0.0,
        ns,
        ns_per_op: 0.0,
        instructions,
        mips: None,
        guest_ns: None,
        checksum: None,
        expected_checksum: refs.expected(part).map(hex),
        note: None,
    };
    let Some(f) = line else {
        r.note = Some("the guest printed no result for this part".into());
        return r;
    };
    if let Some(why) = f.get("skipped") {
        r.status = "skipped";
        r.note = Some(why.clone());
        return r;
    }
    if let Some(err) = f.get("error") {
        r.status = "error";
        r.note = Some(err.clone());
        return r;
    }
    r.ops = f.get("ops").and_then(|v| v.parse().ok()).unwrap_or(0);
    r.guest_ns = f.get("guest_ns").and_then(|v| v.parse().ok());
    let sum = f.get("checksum").and_then(|v| parse_hex(v));
    r.checksum = sum.map(hex);
    r.status = if measured.is_some() && sum.is_some() {
        "ok"
    } else {
        "error"
    };
    if measured.is_none() {
        r.note = Some("the guest did not mark the part with POST codes".into());
    }
    if r.ops > 0 {
        r.exits_per_op = r.exits as f64 / r.ops as f64;
        r.ns_per_op = r.ns as f64 / r.ops as f64;
    }
    let known = if part == Part::Loop {
        Some(r.ops * demo::LOOP_INSNS_PER_ITER)
    } else {
        r.instructions
    };
    r.mips = known
        .filter(|_| r.ns > 0 && r.status == "ok")
        .map(|n| n as f64 * 1000.0 / r.ns as f64);
    r
}

/// Runs the demo guest once in `mode` and evaluates it.
pub fn run_one(opts: &DemoOptions, mode: Mode) -> Result<(Selection, ModeResult)> {
    let refs = References::new(opts)?;
    run_mode(opts, mode, &refs)
}

fn run_mode(opts: &DemoOptions, mode: Mode, refs: &References) -> Result<(Selection, ModeResult)> {
    let config = VmConfig {
        engine: opts.engine,
        mode,
        cmdline: format!("compute={} loop={}", opts.compute_iters, opts.loop_iters),
        memory_bytes: opts.memory_bytes,
        disk: opts.disk.clone().map(|path| crate::config::DiskConfig {
            path,
            read_only: true,
            locking: true,
        }),
        ..Default::default()
    };
    let capture = Capture::default();
    let mut machine = Machine::build(&config, ConsoleOut::new(Box::new(capture.clone())))?;
    let selection = machine.selection.clone();
    let report = machine.run();
    let text = capture.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok((selection, evaluate(mode, &report, &text, refs)))
}

fn evaluate(mode: Mode, report: &RunReport, console: &[u8], refs: &References) -> ModeResult {
    let text = String::from_utf8_lossy(console);
    let lines: Vec<BTreeMap<String, String>> = text
        .lines()
        .filter_map(|l| l.strip_prefix(LINE_PREFIX))
        .map(parse_fields)
        .collect();
    let part_line = |p: Part| {
        lines
            .iter()
            .find(|f| f.get("part").map(String::as_str) == Some(p.name()))
    };
    let parts: Vec<PartResult> = Part::ALL
        .into_iter()
        .map(|p| part_result(p, part_line(p), &report.post, refs))
        .collect();

    let mut checks = vec![check(
        format!("{}: clean poweroff", mode.name()),
        matches!(report.outcome, Outcome::Poweroff { code: 0, .. }),
        report.outcome.to_string(),
    )];
    let done = text
        .lines()
        .any(|l| l.strip_prefix(LINE_PREFIX) == Some("done"));
    checks.push(check(
        format!("{}: guest finished", mode.name()),
        done,
        if done { "printed done" } else { "no done line" },
    ));
    for p in &parts {
        match p.status {
            "ok" => {
                let same = p.checksum == p.expected_checksum;
                checks.push(check(
                    format!("{}: {} checksum", mode.name(), p.name),
                    same,
                    format!(
                        "guest {} host {}",
                        p.checksum.as_deref().unwrap_or("-"),
                        p.expected_checksum.as_deref().unwrap_or("-")
                    ),
                ));
            }
            "skipped" => {}
            _ => checks.push(check(
                format!("{}: {} ran", mode.name(), p.name),
                false,
                p.note.clone().unwrap_or_default(),
            )),
        }
    }
    let reference_text: Vec<u8> = (0..demo::CONSOLE_BYTES).map(demo::console_byte).collect();
    let seen = console
        .windows(reference_text.len())
        .any(|w| w == reference_text.as_slice());
    checks.push(check(
        format!("{}: console text reached the host intact", mode.name()),
        seen,
        format!("{} bytes expected", reference_text.len()),
    ));
    let host_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let guest_time = lines
        .iter()
        .find_map(|f| f.get("time_of_day").and_then(|v| v.parse::<u64>().ok()));
    // The guest read its clock somewhere during the run, which may have been long (kvm_pvm):
    // its time must fall between the run's start and now, give or take the slack.
    let started = host_now.saturating_sub(report.wall.as_secs());
    checks.push(check(
        format!("{}: guest time of day matches the host", mode.name()),
        guest_time
            .is_some_and(|t| t + TIME_SLACK_SECS >= started && t <= host_now + TIME_SLACK_SECS),
        format!(
            "guest {} host {host_now}",
            guest_time.map_or("-".into(), |t| t.to_string())
        ),
    ));

    let part_mips = |p: Part| {
        parts
            .iter()
            .find(|r| r.name == p.name())
            .and_then(|r| r.mips)
    };
    let mips = part_mips(Part::Compute).filter(|_| report.instructions.is_some());
    let loop_mips = part_mips(Part::Loop);
    ModeResult {
        mode: mode.name(),
        description: crate::policy::ModePolicy::new(mode).describe(),
        ok: checks.iter().all(|c| c.ok),
        outcome: report.outcome.to_string(),
        exits_total: report.exits.total(),
        exits_by_kind: by_kind(&report.exits),
        wall_ns: report.wall.as_nanos() as u64,
        instructions: report.instructions,
        mips,
        loop_mips,
        parts,
        checks,
    }
}

fn cross_checks(full: &ModeResult, para: &ModeResult) -> Vec<Check> {
    let mut checks = Vec::new();
    for (f, p) in full.parts.iter().zip(&para.parts) {
        if f.status == "ok" && p.status == "ok" {
            checks.push(check(
                format!("{}: same checksum in both modes", f.name),
                f.checksum == p.checksum,
                format!(
                    "full {} para {}",
                    f.checksum.as_deref().unwrap_or("-"),
                    p.checksum.as_deref().unwrap_or("-")
                ),
            ));
        }
    }
    for part in [Part::Console, Part::Clock, Part::Block] {
        let name = part.name();
        let f = full.parts.iter().find(|x| x.name == name);
        let p = para.parts.iter().find(|x| x.name == name);
        // The block part needs a disk in both modes; the others always run.
        let both_ran = f
            .zip(p)
            .is_some_and(|(f, p)| f.status == "ok" && p.status == "ok");
        if part == Part::Block && !both_ran {
            continue;
        }
        if let (Some(f), Some(p)) = (f, p) {
            checks.push(check(
                format!("{name}: fewer exits in para mode"),
                f.status == "ok" && p.status == "ok" && p.exits < f.exits,
                format!("full {} para {}", f.exits, p.exits),
            ));
        }
    }
    checks
}

/// Runs the demo guest in full mode, then in para mode, and compares.
pub fn run(opts: &DemoOptions) -> Result<DemoReport> {
    let refs = References::new(opts)?;
    let (selection, full) = run_mode(opts, Mode::Full, &refs)?;
    let (_, para) = run_mode(opts, Mode::Para, &refs)?;
    let checks = cross_checks(&full, &para);
    let ok = full.ok && para.ok && checks.iter().all(|c| c.ok);
    let mut modes = BTreeMap::new();
    modes.insert("full", full);
    modes.insert("para", para);
    Ok(DemoReport {
        engine: selection.kind.name(),
        engine_reason: selection.reason,
        warning: selection.warning,
        compute_iters: opts.compute_iters,
        loop_iters: opts.loop_iters,
        modes,
        checks,
        ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_guest_fields() {
        let f = parse_fields(r#"part=block skipped="no IDE yet" ops=3"#);
        assert_eq!(f["part"], "block");
        assert_eq!(f["skipped"], "no IDE yet");
        assert_eq!(f["ops"], "3");
        assert!(parse_fields("done").is_empty());
        assert_eq!(parse_hex("0x00ff"), Some(255));
        assert_eq!(parse_hex("ff"), None);
    }

    fn event(code: u8, ms: u64, pio_out: u64, pio_in: u64) -> PostEvent {
        event_at(code, ms, pio_out, pio_in, None)
    }

    fn event_at(code: u8, ms: u64, pio_out: u64, pio_in: u64, insns: Option<u64>) -> PostEvent {
        let mut c = ExitCounters::default();
        for _ in 0..pio_out {
            c.record(ExitKind::PioOut);
        }
        for _ in 0..pio_in {
            c.record(ExitKind::PioIn);
        }
        PostEvent {
            code,
            at: Duration::from_millis(ms),
            exits_before: c,
            instructions: insns,
        }
    }

    #[test]
    fn measures_between_post_codes_without_the_marker() {
        // Begin marker seen with 10 outs so far; the part does 5 outs and 5 ins; the end
        // marker sees 10 + 1 (begin marker) + 5 outs.
        let post = [event(0x11, 100, 10, 0), event(0x21, 300, 16, 5)];
        let span = measure(&post, Part::Console).unwrap();
        assert_eq!(span.exits.get(ExitKind::PioOut), 5);
        assert_eq!(span.exits.get(ExitKind::PioIn), 5);
        assert_eq!(span.ns, 200_000_000);
        assert_eq!(span.instructions, None);
        assert!(measure(&post, Part::Clock).is_none());
        // The begin marker's OUT retires inside the span and is taken back out.
        let post = [
            event_at(0x15, 0, 0, 0, Some(100)),
            event_at(0x25, 1, 1, 0, Some(2101)),
        ];
        assert_eq!(measure(&post, Part::Loop).unwrap().instructions, Some(2000));
    }

    #[test]
    fn part_results_from_lines() {
        let refs = References {
            console: 1,
            compute: 2,
            block: Some(3),
            loop_iters: 4,
        };
        let post = [event(0x13, 0, 0, 0), event(0x23, 10, 1, 0)];
        let line = parse_fields("part=compute ops=100 checksum=0x0000000000000002 guest_ns=9");
        let r = part_result(Part::Compute, Some(&line), &post, &refs);
        assert_eq!(r.status, "ok");
        assert_eq!(r.checksum, r.expected_checksum);
        assert_eq!(r.exits, 0);
        assert_eq!(r.ns_per_op, 100_000.0);
        let skipped = parse_fields(r#"part=block skipped="later""#);
        assert_eq!(
            part_result(Part::Block, Some(&skipped), &[], &refs).status,
            "skipped"
        );
        assert_eq!(part_result(Part::Clock, None, &[], &refs).status, "missing");
    }
}
