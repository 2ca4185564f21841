//! `janus bench --suite`: the benchmark suite of issue 10. One Linux guest (the same kernel,
//! initramfs and command line) boots once on Janus's soft engine (`--mode full`) and once on
//! QEMU (`-M pc -accel tcg`) and runs every workload in sequence; the host then runs the same
//! static programs natively.
//!
//! The workloads are the project's own C programs (`guests/bench`, built by
//! `scripts/guest-assets.sh` into the initramfs's `/bench` and, for the host, into
//! `.cache/guest/bench` with the very busybox the initramfs has). Each times its own work with
//! CLOCK_MONOTONIC inside the machine it runs on and prints one line,
//! `janus-bench: NAME ms=12.345 sum=0123456789abcdef`; the sum must be the same on every
//! machine, or the suite fails. Boot to init is timed from the host, as `bench_linux` does.

use crate::bench_linux::{
    base64, janus_command, parse_instructions, qemu_command, qemu_version, run_timed_within,
    Transcript, INIT_MARKER,
};
use crate::{Result, VmmError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What every workload line starts with.
const PREFIX: &str = "janus-bench: ";
/// Longest a machine may take for the whole suite (the full scale takes minutes on an
/// emulator).
const LIMIT: Duration = Duration::from_secs(3600);
/// The longest command line Linux takes on x86 (COMMAND_LINE_SIZE, less the final NUL).
const CMDLINE_MAX: usize = 2047;
/// The name of the row that is the boot, not a program.
pub const BOOT: &str = "boot";

/// The workload sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Small sizes, for tests: seconds on an emulator.
    Quick,
    /// The sizes issue 10 names (64 MiB sha256, 32 MiB gzip, 1,000 fork+exec, 1M syscalls).
    Full,
}

/// One workload: commands with placeholders `{jb}`, `{jb32}`, `{bb}` (busybox), `{tmp}` and
/// `{n}` (the size), which each machine fills in with its own paths.
#[derive(Debug)]
pub struct Workload {
    pub name: &'static str,
    pub what: &'static str,
    pub quick: u64,
    pub full: u64,
    /// Run before, untimed (the gzip input).
    setup: &'static [&'static [&'static str]],
    /// The command that prints the workload's line.
    run: &'static [&'static str],
    /// Run after, untimed.
    cleanup: &'static [&'static [&'static str]],
}

impl Scale {
    pub fn name(self) -> &'static str {
        match self {
            Scale::Quick => "quick",
            Scale::Full => "full",
        }
    }
}

impl Workload {
    pub fn size(&self, scale: Scale) -> u64 {
        match scale {
            Scale::Quick => self.quick,
            Scale::Full => self.full,
        }
    }
}

const SHELL_LOOP: &str = "i=0; s=0; while [ $i -lt {n} ]; do s=$(( (s * 31 + i) % 1000003 )); \
                          i=$((i + 1)); done; echo $s";

/// The suite, in the order it runs (the boot comes first and is not listed).
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "sha256",
        what: "busybox dd | sha256sum of N MiB of zeros",
        quick: 1,
        full: 64,
        setup: &[],
        run: &[
            "{jb}",
            "time",
            "sha256",
            "--",
            "{bb}",
            "sh",
            "-c",
            "{bb} dd if=/dev/zero bs=1M count={n} 2>/dev/null | {bb} sha256sum",
        ],
        cleanup: &[],
    },
    Workload {
        name: "shell",
        what: "busybox sh arithmetic loop, N iterations",
        quick: 1_000,
        full: 100_000,
        setup: &[],
        run: &[
            "{jb}", "time", "shell", "--", "{bb}", "sh", "-c", SHELL_LOOP,
        ],
        cleanup: &[],
    },
    Workload {
        name: "fp-scalar",
        what: "n-body in scalar doubles (SSE2), N steps",
        quick: 10_000,
        full: 1_000_000,
        setup: &[],
        run: &["{jb}", "fp-scalar", "{n}"],
        cleanup: &[],
    },
    Workload {
        name: "fp-packed",
        what: "vectorized loops (packed SSE2 doubles and floats), N passes over 2,048",
        quick: 300,
        full: 20_000,
        setup: &[],
        run: &["{jb}", "fp-packed", "{n}"],
        cleanup: &[],
    },
    Workload {
        name: "string",
        what: "glibc strlen/memcpy/memcmp/strchr/strcmp, N passes over 256 buffers",
        quick: 20,
        full: 2_000,
        setup: &[],
        run: &["{jb}", "string", "{n}"],
        cleanup: &[],
    },
    Workload {
        name: "int",
        what: "branchy integer code: sieve to 64N, switch interpreter, sorts",
        quick: 2_000,
        full: 100_000,
        setup: &[],
        run: &["{jb}", "int", "{n}"],
        cleanup: &[],
    },
    Workload {
        name: "indirect",
        what: "qsort with a comparator and 64N calls through a function table",
        quick: 200,
        full: 20_000,
        setup: &[],
        run: &["{jb}", "indirect", "{n}"],
        cleanup: &[],
    },
    Workload {
        name: "malloc",
        what: "8 rounds of N mallocs, list walks and frees",
        quick: 500,
        full: 50_000,
        setup: &[],
        run: &["{jb}", "malloc", "{n}"],
        cleanup: &[],
    },
    Workload {
        name: "fork-exec",
        what: "N fork + exec of busybox true + wait",
        quick: 10,
        full: 1_000,
        setup: &[],
        run: &["{jb}", "fork-exec", "{n}", "{bb}", "true"],
        cleanup: &[],
    },
    Workload {
        name: "gzip",
        what: "busybox gzip -9 of N MiB of generated text",
        quick: 1,
        full: 32,
        setup: &[&["{jb}", "gen", "{tmp}/jb-gzip.in", "{n}"]],
        run: &[
            "{jb}",
            "time",
            "gzip",
            "-f",
            "{tmp}/jb-gzip.out",
            "--",
            "{bb}",
            "sh",
            "-c",
            "{bb} gzip -9 < {tmp}/jb-gzip.in > {tmp}/jb-gzip.out",
        ],
        cleanup: &[&["{bb}", "rm", "-f", "{tmp}/jb-gzip.in", "{tmp}/jb-gzip.out"]],
    },
    Workload {
        name: "syscall",
        what: "N system calls: getppid and 1-byte reads of /dev/zero",
        quick: 10_000,
        full: 1_000_000,
        setup: &[],
        run: &["{jb}", "syscall", "{n}"],
        cleanup: &[],
    },
    Workload {
        name: "int-i386",
        what: "the int workload as a 32-bit (i386) program",
        quick: 2_000,
        full: 100_000,
        setup: &[],
        run: &["{jb32}", "int", "{n}"],
        cleanup: &[],
    },
    Workload {
        name: "fp-scalar-i386",
        what: "the fp-scalar n-body as a 32-bit (i386) program: x87 floating point, N steps",
        quick: 2_000,
        full: 200_000,
        setup: &[],
        run: &["{jb32}", "fp-scalar", "{n}"],
        cleanup: &[],
    },
];

/// The names `--only` accepts: the boot and every workload.
pub fn names() -> Vec<&'static str> {
    std::iter::once(BOOT)
        .chain(WORKLOADS.iter().map(|w| w.name))
        .collect()
}

#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// The janus binary (the running one), started as a child like QEMU.
    pub janus: PathBuf,
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// The host's copies of the guest's programs: jb, jb32, busybox.
    pub bench_dir: PathBuf,
    pub memory_mib: u64,
    pub scale: Scale,
    /// Workload names to run (all when empty). The boot is always measured.
    pub only: Vec<String>,
    /// `janus run --cpu` for the soft engine (`host`, `v1`, ...).
    pub cpu: String,
    /// Rounds of Janus, QEMU and native runs, one after the other (each workload's figure is
    /// the median over the rounds, so a noisy moment of the host hits both VMMs alike).
    pub rounds: u32,
}

/// Where a machine finds the programs.
struct Paths {
    jb: String,
    jb32: String,
    bb: String,
    tmp: String,
}

impl Paths {
    /// Inside the guest: the initramfs's /bench and busybox.
    fn guest() -> Paths {
        Paths {
            jb: "/bench/jb".into(),
            jb32: "/bench/jb32".into(),
            bb: "/bin/busybox".into(),
            tmp: "/tmp".into(),
        }
    }

    fn fill(&self, arg: &str, n: u64) -> String {
        arg.replace("{jb32}", &self.jb32)
            .replace("{jb}", &self.jb)
            .replace("{bb}", &self.bb)
            .replace("{tmp}", &self.tmp)
            .replace("{n}", &n.to_string())
    }

    fn argv(&self, template: &[&str], n: u64) -> Vec<String> {
        template.iter().map(|a| self.fill(a, n)).collect()
    }
}

/// One word for the guest's shell, quoted where it needs it.
fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=,:+".contains(&b))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_word(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The workloads `only` selects, in suite order; an unknown name is an error.
pub fn select(only: &[String]) -> std::result::Result<Vec<&'static Workload>, String> {
    let known = names();
    if let Some(bad) = only.iter().find(|n| !known.contains(&n.as_str())) {
        return Err(format!(
            "unknown workload {bad:?} (known: {})",
            known.join(", ")
        ));
    }
    Ok(WORKLOADS
        .iter()
        .filter(|w| only.is_empty() || only.iter().any(|n| n == w.name))
        .collect())
}

/// The guest's script: every selected workload in turn.
pub fn guest_script(workloads: &[&Workload], scale: Scale) -> String {
    let p = Paths::guest();
    let mut s = String::from("cd /tmp\n");
    for w in workloads {
        let n = w.size(scale);
        let mut steps: Vec<String> = w.setup.iter().map(|t| shell_line(&p.argv(t, n))).collect();
        steps.push(shell_line(&p.argv(w.run, n)));
        s.push_str(&format!(
            "{} || echo '{PREFIX}{} failed'\n",
            steps.join(" && "),
            w.name
        ));
        for c in w.cleanup {
            s.push_str(&shell_line(&p.argv(c, n)));
            s.push('\n');
        }
    }
    s
}

/// The kernel command line both machines boot with.
pub fn cmdline(workloads: &[&Workload], scale: Scale) -> String {
    format!(
        "console=ttyS0 janus.cmd={}",
        base64(guest_script(workloads, scale).as_bytes())
    )
}

/// What one workload line says.
#[derive(Clone, Debug, PartialEq)]
enum Line {
    Done { ms: f64, sum: String },
    Failed,
}

/// `janus-bench: NAME ms=.. sum=..` or `janus-bench: NAME failed`, anywhere in a console
/// line (a kernel message may share it).
fn parse_line(line: &str) -> Option<(String, Line)> {
    let rest = &line[line.find(PREFIX)? + PREFIX.len()..];
    let mut words = rest.split_whitespace();
    let name = words.next()?.to_string();
    let second = words.next()?;
    if second == "failed" {
        return Some((name, Line::Failed));
    }
    let ms = second.strip_prefix("ms=")?.parse().ok()?;
    let sum = words.next()?.strip_prefix("sum=")?;
    if sum.is_empty() || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((
        name,
        Line::Done {
            ms,
            sum: sum.to_string(),
        },
    ))
}

/// One machine's run of the suite.
#[derive(Clone, Debug, Serialize)]
pub struct MachineRun {
    /// "janus-soft", "qemu-tcg" or "native".
    pub name: String,
    pub detail: String,
    /// Spawn to the first line /init prints (the VMs only).
    pub boot_to_init_s: Option<f64>,
    /// Spawn to exit.
    pub total_s: f64,
    /// Guest instructions retired over the whole run, where the engine counts them.
    pub instructions: Option<u64>,
    #[serde(skip)]
    results: BTreeMap<String, std::result::Result<(f64, String), String>>,
}

/// The results of a guest's transcript, by workload.
fn guest_results(
    t: &Transcript,
    workloads: &[&Workload],
) -> BTreeMap<String, std::result::Result<(f64, String), String>> {
    let mut seen = BTreeMap::new();
    for (_, l) in &t.lines {
        if let Some((name, line)) = parse_line(l) {
            seen.entry(name).or_insert(line);
        }
    }
    workloads
        .iter()
        .map(|w| {
            let r = match seen.get(w.name) {
                Some(Line::Done { ms, sum }) => Ok((*ms, sum.clone())),
                Some(Line::Failed) => Err("failed in the guest".to_string()),
                None => Err("printed no result".to_string()),
            };
            (w.name.to_string(), r)
        })
        .collect()
}

fn guest_run(
    name: &str,
    detail: String,
    cmd: Command,
    workloads: &[&Workload],
) -> std::result::Result<MachineRun, String> {
    let t = run_timed_within(cmd, LIMIT)?;
    let init = t
        .at(INIT_MARKER)
        .ok_or_else(|| format!("/init never started; last lines: {}", t.tail()))?;
    Ok(MachineRun {
        name: name.into(),
        detail,
        boot_to_init_s: Some(init.as_secs_f64()),
        total_s: t.total.as_secs_f64(),
        instructions: parse_instructions(&t.stderr),
        results: guest_results(&t, workloads),
    })
}

fn janus_run(
    opts: &SuiteOptions,
    workloads: &[&Workload],
) -> std::result::Result<MachineRun, String> {
    let mut cmd = janus_command(
        &opts.janus,
        opts.memory_mib,
        &opts.kernel,
        &opts.initramfs,
        &cmdline(workloads, opts.scale),
    );
    cmd.args(["--cpu", &opts.cpu]);
    guest_run(
        "janus-soft",
        format!("--engine soft --mode full --cpu {}", opts.cpu),
        cmd,
        workloads,
    )
}

fn qemu_run(
    opts: &SuiteOptions,
    workloads: &[&Workload],
) -> std::result::Result<MachineRun, String> {
    let version = qemu_version(&opts.qemu)?;
    let cmd = qemu_command(
        &opts.qemu,
        opts.memory_mib,
        &opts.kernel,
        &opts.initramfs,
        &cmdline(workloads, opts.scale),
    );
    guest_run(
        "qemu-tcg",
        format!("{version}, -M pc -accel tcg"),
        cmd,
        workloads,
    )
}

/// Runs one native command to its end; its standard output, or why it failed.
fn native_command(argv: &[String]) -> std::result::Result<String, String> {
    let (prog, args) = argv.split_first().ok_or("an empty command")?;
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {prog}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{} exited with {}: {}",
            shell_line(argv),
            out.status,
            err.lines().last().unwrap_or("")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn native_workload(p: &Paths, w: &Workload, n: u64) -> std::result::Result<(f64, String), String> {
    for s in w.setup {
        native_command(&p.argv(s, n))?;
    }
    let out = native_command(&p.argv(w.run, n));
    for c in w.cleanup {
        let _ = native_command(&p.argv(c, n));
    }
    match out?.lines().find_map(parse_line) {
        Some((name, Line::Done { ms, sum })) if name == w.name => Ok((ms, sum)),
        _ => Err("printed no result".into()),
    }
}

fn native_run(
    opts: &SuiteOptions,
    workloads: &[&Workload],
) -> std::result::Result<MachineRun, String> {
    let dir = opts
        .bench_dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", opts.bench_dir.display()))?;
    let tmp = std::env::temp_dir().join(format!("janus-bench-suite-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let path = |f: &str| dir.join(f).display().to_string();
    let p = Paths {
        jb: path("jb"),
        jb32: path("jb32"),
        bb: path("busybox"),
        tmp: tmp.display().to_string(),
    };
    let start = std::time::Instant::now();
    let results = workloads
        .iter()
        .map(|w| {
            (
                w.name.to_string(),
                native_workload(&p, w, w.size(opts.scale)),
            )
        })
        .collect();
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(MachineRun {
        name: "native".into(),
        detail: format!(
            "the same static programs on the host, from {}",
            dir.display()
        ),
        boot_to_init_s: None,
        total_s: start.elapsed().as_secs_f64(),
        instructions: None,
        results,
    })
}

/// One machine's figure for one workload.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub ms: Option<f64>,
    pub sum: Option<String>,
    /// Why there is no figure.
    pub error: Option<String>,
}

/// One row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub what: String,
    pub size: Option<u64>,
    pub janus: Cell,
    pub qemu: Option<Cell>,
    pub native: Option<Cell>,
    /// QEMU's time over Janus's: above 1 Janus is faster.
    pub janus_speedup_vs_qemu: Option<f64>,
    /// Janus's time over native.
    pub janus_x_native: Option<f64>,
    /// QEMU's time over native.
    pub qemu_x_native: Option<f64>,
    /// Every machine that printed a sum printed the same one.
    pub sums_match: bool,
}

/// Geometric means over the rows that have both figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Means {
    pub janus_speedup_vs_qemu: Option<f64>,
    pub janus_x_native: Option<f64>,
    pub qemu_x_native: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SuiteReport {
    pub kernel: String,
    pub initramfs: String,
    pub scale: Scale,
    pub machines: Vec<MachineRun>,
    pub rows: Vec<Row>,
    pub geomean: Means,
    /// Rounds run, and each round's geometric mean of the Janus/QEMU ratios (the spread the
    /// host's noise makes).
    pub rounds: u32,
    pub round_geomeans: Vec<f64>,
    /// Checksum mismatches and workloads that failed on a machine that ran: any makes `ok` false.
    pub problems: Vec<String>,
    /// Machines that could not run at all (QEMU not installed).
    pub skipped: Vec<String>,
    pub ok: bool,
}

fn cell(m: &MachineRun, name: &str) -> Cell {
    match m.results.get(name) {
        Some(Ok((ms, sum))) => Cell {
            ms: Some(*ms),
            sum: Some(sum.clone()),
            error: None,
        },
        Some(Err(e)) => Cell {
            ms: None,
            sum: None,
            error: Some(e.clone()),
        },
        None => Cell {
            ms: None,
            sum: None,
            error: Some("not run".into()),
        },
    }
}

fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    num.zip(den)
        .filter(|(n, d)| *n > 0.0 && *d > 0.0)
        .map(|(n, d)| n / d)
}

fn geomean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let logs: Vec<f64> = values.flatten().map(f64::ln).collect();
    (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp())
}

fn boot_cell(m: &MachineRun) -> Cell {
    Cell {
        ms: m.boot_to_init_s.map(|s| s * 1e3),
        sum: None,
        error: None,
    }
}

/// The rows, the means and the problems, from the machines' runs.
fn report(
    opts: &SuiteOptions,
    workloads: &[&Workload],
    janus: MachineRun,
    qemu: Option<MachineRun>,
    native: MachineRun,
    skipped: Vec<String>,
) -> SuiteReport {
    let mut rows = vec![{
        let j = boot_cell(&janus);
        let q = qemu.as_ref().map(boot_cell);
        Row {
            name: BOOT.into(),
            what: "spawn to /init's first line, timed from the host".into(),
            size: None,
            janus_speedup_vs_qemu: ratio(q.as_ref().and_then(|q| q.ms), j.ms),
            janus: j,
            qemu: q,
            native: None,
            janus_x_native: None,
            qemu_x_native: None,
            sums_match: true,
        }
    }];
    let mut problems = Vec::new();
    for w in workloads {
        let j = cell(&janus, w.name);
        let q = qemu.as_ref().map(|m| cell(m, w.name));
        let n = cell(&native, w.name);
        let named: Vec<(&str, &Cell)> = [
            ("janus-soft", Some(&j)),
            ("qemu-tcg", q.as_ref()),
            ("native", Some(&n)),
        ]
        .into_iter()
        .filter_map(|(m, c)| c.map(|c| (m, c)))
        .collect();
        for (m, c) in &named {
            if let Some(e) = &c.error {
                problems.push(format!("{}: {m}: {e}", w.name));
            }
        }
        let sums: Vec<(&str, &String)> = named
            .iter()
            .filter_map(|(m, c)| c.sum.as_ref().map(|s| (*m, s)))
            .collect();
        let sums_match = sums.windows(2).all(|p| p[0].1 == p[1].1);
        if !sums_match {
            let each: Vec<String> = sums.iter().map(|(m, s)| format!("{m} {s}")).collect();
            problems.push(format!(
                "{}: CHECKSUM MISMATCH: {}",
                w.name,
                each.join(", ")
            ));
        }
        let qms = q.as_ref().and_then(|q| q.ms);
        rows.push(Row {
            name: w.name.into(),
            what: w.what.into(),
            size: Some(w.size(opts.scale)),
            janus_speedup_vs_qemu: ratio(qms, j.ms),
            janus_x_native: ratio(j.ms, n.ms),
            qemu_x_native: ratio(qms, n.ms),
            janus: j,
            qemu: q,
            native: Some(n),
            sums_match,
        });
    }
    let geomean = Means {
        janus_speedup_vs_qemu: geomean(rows.iter().map(|r| r.janus_speedup_vs_qemu)),
        janus_x_native: geomean(rows.iter().map(|r| r.janus_x_native)),
        qemu_x_native: geomean(rows.iter().map(|r| r.qemu_x_native)),
    };
    let mut machines = vec![janus];
    machines.extend(qemu);
    machines.push(native);
    SuiteReport {
        kernel: opts.kernel.display().to_string(),
        initramfs: opts.initramfs.display().to_string(),
        scale: opts.scale,
        machines,
        ok: problems.is_empty(),
        rows,
        geomean,
        rounds: 1,
        round_geomeans: Vec::new(),
        problems,
        skipped,
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// One machine's rounds as one run: each workload's median time (a failure in any round
/// stands, as does a checksum that changed between rounds), the median boot, the total time.
fn combine(runs: Vec<MachineRun>) -> MachineRun {
    let mut first = runs[0].clone();
    first.boot_to_init_s = median(runs.iter().filter_map(|r| r.boot_to_init_s).collect());
    first.total_s = runs.iter().map(|r| r.total_s).sum();
    for (name, result) in first.results.iter_mut() {
        let each: Vec<_> = runs.iter().map(|r| r.results.get(name)).collect();
        if let Some(Some(Err(e))) = each.iter().find(|r| matches!(r, Some(Err(_)) | None)) {
            *result = Err(e.clone());
            continue;
        }
        let oks: Vec<&(f64, String)> = each
            .iter()
            .filter_map(|r| r.and_then(|x| x.as_ref().ok()))
            .collect();
        if oks.len() != runs.len() {
            *result = Err("missing in a round".into());
        } else if oks.iter().any(|(_, s)| *s != oks[0].1) {
            *result = Err("its checksum changed between rounds".into());
        } else if let Some(ms) = median(oks.iter().map(|(ms, _)| *ms).collect()) {
            *result = Ok((ms, oks[0].1.clone()));
        }
    }
    first
}

fn check_files(opts: &SuiteOptions) -> Result<()> {
    let config = |m: String| VmmError::Config(format!("janus bench --suite: {m}"));
    for (what, p) in [("kernel", &opts.kernel), ("initramfs", &opts.initramfs)] {
        if !p.is_file() {
            return Err(config(format!("{what} {} is not a file", p.display())));
        }
    }
    for f in ["jb", "jb32", "busybox"] {
        if !opts.bench_dir.join(f).is_file() {
            return Err(config(format!(
                "no {f} in {} (scripts/guest-assets.sh builds the bench programs there; --bench-dir names another place)",
                opts.bench_dir.display()
            )));
        }
    }
    Ok(())
}

/// The default place of the host's copies: `bench/` beside the initramfs.
pub fn default_bench_dir(initramfs: &Path) -> PathBuf {
    initramfs
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("bench")
}

pub fn run(opts: &SuiteOptions) -> Result<SuiteReport> {
    let config = |m: String| VmmError::Config(format!("janus bench --suite: {m}"));
    let workloads = select(&opts.only).map_err(config)?;
    check_files(opts)?;
    let line = cmdline(&workloads, opts.scale);
    if line.len() > CMDLINE_MAX {
        return Err(config(format!(
            "the guest command line would be {} bytes, more than Linux takes ({CMDLINE_MAX}); run fewer workloads with --only",
            line.len()
        )));
    }
    let rounds = opts.rounds.max(1);
    let (mut js, mut qs, mut ns) = (Vec::new(), Vec::new(), Vec::new());
    let mut skipped = Vec::new();
    let mut round_geomeans = Vec::new();
    for _ in 0..rounds {
        let janus = janus_run(opts, &workloads)
            .map_err(|why| config(format!("the Linux guest failed on Janus: {why}")))?;
        let qemu = match qemu_run(opts, &workloads) {
            Ok(m) => Some(m),
            Err(why) => {
                skipped.push(format!("qemu-tcg: {why}"));
                None
            }
        };
        let native =
            native_run(opts, &workloads).map_err(|why| config(format!("native: {why}")))?;
        let one = report(
            opts,
            &workloads,
            janus.clone(),
            qemu.clone(),
            native.clone(),
            Vec::new(),
        );
        round_geomeans.extend(one.geomean.janus_speedup_vs_qemu);
        js.push(janus);
        qs.extend(qemu);
        ns.push(native);
        if !skipped.is_empty() {
            break;
        }
    }
    let qemu = (!qs.is_empty() && skipped.is_empty()).then(|| combine(qs));
    let mut r = report(opts, &workloads, combine(js), qemu, combine(ns), skipped);
    r.rounds = round_geomeans.len().max(1) as u32;
    r.round_geomeans = round_geomeans;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_result_and_failure_lines() {
        assert_eq!(
            parse_line("janus-bench: int ms=12.5 sum=00ff"),
            Some((
                "int".into(),
                Line::Done {
                    ms: 12.5,
                    sum: "00ff".into()
                }
            ))
        );
        assert_eq!(
            parse_line("[ 3.1] x janus-bench: gzip failed"),
            Some(("gzip".into(), Line::Failed))
        );
        assert_eq!(parse_line("janus-bench: work-begin"), None);
        assert_eq!(parse_line("janus-bench: int ms=1 sum=xyz"), None);
        assert_eq!(parse_line("janus-init: started"), None);
    }

    #[test]
    fn the_full_script_fits_on_the_command_line() {
        let all = select(&[]).unwrap();
        for scale in [Scale::Quick, Scale::Full] {
            assert!(cmdline(&all, scale).len() <= CMDLINE_MAX);
        }
    }

    #[test]
    fn rounds_combine_into_medians() {
        let run = |boot: f64, ms: &[(&str, f64, &str)]| MachineRun {
            name: "m".into(),
            detail: String::new(),
            boot_to_init_s: Some(boot),
            total_s: 1.0,
            instructions: None,
            results: ms
                .iter()
                .map(|&(n, t, s)| (n.to_string(), Ok((t, s.to_string()))))
                .collect(),
        };
        let c = combine(vec![
            run(3.0, &[("a", 10.0, "x"), ("b", 1.0, "y")]),
            run(1.0, &[("a", 30.0, "x"), ("b", 2.0, "z")]),
            run(2.0, &[("a", 20.0, "x"), ("b", 3.0, "y")]),
        ]);
        assert_eq!(c.boot_to_init_s, Some(2.0));
        assert_eq!(c.total_s, 3.0);
        assert_eq!(c.results["a"], Ok((20.0, "x".to_string())));
        assert!(c.results["b"].is_err(), "a checksum that changed");
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn quotes_shell_words() {
        assert_eq!(shell_word("/bench/jb"), "/bench/jb");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn only_selects_in_suite_order_and_rejects_unknown_names() {
        let w = select(&["int-i386".into(), "sha256".into()]).unwrap();
        let names: Vec<&str> = w.iter().map(|w| w.name).collect();
        assert_eq!(names, ["sha256", "int-i386"]);
        assert!(select(&["boot".into()]).unwrap().is_empty());
        assert!(select(&["nope".into()]).unwrap_err().contains("nope"));
    }

    #[test]
    fn geomean_and_ratios() {
        let g = geomean([Some(2.0), None, Some(8.0)].into_iter()).unwrap();
        assert!((g - 4.0).abs() < 1e-12);
        assert_eq!(geomean([None].into_iter()), None);
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
    }
}
