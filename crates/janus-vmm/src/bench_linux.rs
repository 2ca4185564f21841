//! `janus bench --kernel K --initramfs I`: the Linux guest fully virtualized on Janus's soft
//! engine and on QEMU (TCG, `-M pc`), one after the other in the same run, with the same
//! kernel, initramfs and command line.
//!
//! Both are timed the same way, from the host: the moment each marker line reaches the
//! console. Boot to init is spawn to "janus-init: started" (the first line /init prints); the
//! workload is `dd if=/dev/zero bs=1M count=64 | sha256sum` between two echoed markers. The
//! guest's digest is checked against the known one, so a fast wrong answer cannot win.

use crate::{Result, VmmError};
use serde::Serialize;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The guest-run workload, as the issue states it.
pub const WORKLOAD: &str = "dd if=/dev/zero bs=1M count=64 | sha256sum";
/// SHA-256 of 64 MiB of zeros.
pub const EXPECTED_SHA256: &str =
    "3b6a07d0d404fab4e23b6d34bc6696a6a312dd92821332385e5af7c01c421351";

pub(crate) const INIT_MARKER: &str = "janus-init: started";
const BEGIN_MARKER: &str = "janus-bench: work-begin";
const END_MARKER: &str = "janus-bench: work-end";
/// Longest a single machine may take for the whole run.
const LIMIT: Duration = Duration::from_secs(600);

#[derive(Clone, Debug)]
pub struct LinuxBenchOptions {
    /// The janus binary (the running one), started as a child like QEMU.
    pub janus: PathBuf,
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub memory_mib: u64,
}

/// One machine's figures.
#[derive(Clone, Debug, Serialize)]
pub struct LinuxColumn {
    /// "janus-soft" or "qemu-tcg".
    pub name: String,
    pub detail: String,
    pub boot_to_init_s: f64,
    pub workload_s: f64,
    /// Spawn to exit (the guest powers off after the workload).
    pub total_s: f64,
    pub sha256: String,
    /// Guest instructions retired over the whole run, where the engine counts them.
    pub instructions: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LinuxBenchReport {
    pub kernel: String,
    pub workload: &'static str,
    pub columns: Vec<LinuxColumn>,
    pub skipped: Vec<String>,
}

/// The guest script: the workload between two markers.
fn script() -> String {
    format!("echo {BEGIN_MARKER}\n{WORKLOAD}\necho {END_MARKER}\n")
}

pub(crate) fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn cmdline() -> String {
    format!("console=ttyS0 janus.cmd={}", base64(script().as_bytes()))
}

/// What a machine printed, each line with when it arrived, and its stderr.
pub(crate) struct Transcript {
    pub(crate) lines: Vec<(Duration, String)>,
    pub(crate) stderr: String,
    pub(crate) total: Duration,
}

impl Transcript {
    pub(crate) fn at(&self, needle: &str) -> Option<Duration> {
        self.lines
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
    }

    /// The guest's digest: the 64-hex-digit word between the markers (dd's record counts
    /// are printed there too).
    fn sha256(&self) -> Option<String> {
        let i = self
            .lines
            .iter()
            .position(|(_, l)| l.contains(BEGIN_MARKER))?;
        self.lines[i + 1..]
            .iter()
            .take_while(|(_, l)| !l.contains(END_MARKER))
            .flat_map(|(_, l)| l.split_whitespace())
            .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_string)
    }

    pub(crate) fn tail(&self) -> String {
        let n = self.lines.len();
        self.lines[n.saturating_sub(5)..]
            .iter()
            .map(|(_, l)| l.trim_end())
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

/// Runs `cmd` to the end, timestamping each console line from the spawn.
pub(crate) fn run_timed(cmd: Command) -> std::result::Result<Transcript, String> {
    run_timed_within(cmd, LIMIT)
}

/// [`run_timed`], killing `cmd` after `limit`.
pub(crate) fn run_timed_within(
    mut cmd: Command,
    limit: Duration,
) -> std::result::Result<Transcript, String> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(|l| l.ok()) {
            let text = String::from_utf8_lossy(&line).into_owned();
            if tx.send((start.elapsed(), text)).is_err() {
                break;
            }
        }
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {} s", limit.as_secs()));
            }
        }
    };
    let total = start.elapsed();
    let stderr = err_thread.join().unwrap_or_default();
    let lines: Vec<(Duration, String)> = rx.iter().collect();
    if !status.success() {
        return Err(format!(
            "exited with {status}: {}",
            stderr.lines().last().unwrap_or("")
        ));
    }
    Ok(Transcript {
        lines,
        stderr,
        total,
    })
}

fn column(name: &str, detail: String, t: &Transcript) -> std::result::Result<LinuxColumn, String> {
    let init = t
        .at(INIT_MARKER)
        .ok_or_else(|| format!("/init never started; last lines: {}", t.tail()))?;
    let (begin, end) = t
        .at(BEGIN_MARKER)
        .zip(t.at(END_MARKER))
        .ok_or_else(|| format!("the workload did not run; last lines: {}", t.tail()))?;
    let sha256 = t.sha256().unwrap_or_default();
    if sha256 != EXPECTED_SHA256 {
        return Err(format!(
            "the guest computed sha256 {sha256:?}, not the digest of 64 MiB of zeros"
        ));
    }
    Ok(LinuxColumn {
        name: name.into(),
        detail,
        boot_to_init_s: init.as_secs_f64(),
        workload_s: (end - begin).as_secs_f64(),
        total_s: t.total.as_secs_f64(),
        sha256,
        instructions: parse_instructions(&t.stderr),
    })
}

/// The instruction count from `janus run`'s summary line ("...; N instructions (M MIPS)").
pub(crate) fn parse_instructions(stderr: &str) -> Option<u64> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains(" instructions ("))?;
    let before = &line[..line.find(" instructions (")?];
    let digits: String = before
        .rsplit(' ')
        .next()?
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The Linux guest (`kernel`, `initramfs`, `cmdline`, `memory_mib` MiB) fully virtualized on
/// Janus's soft engine, with `janus` the janus binary.
pub(crate) fn janus_command(
    janus: &Path,
    memory_mib: u64,
    kernel: &Path,
    initramfs: &Path,
    cmdline: &str,
) -> Command {
    let mut cmd = Command::new(janus);
    cmd.args(["run", "--engine", "soft", "--mode", "full"])
        .arg("--memory")
        .arg(format!("size={memory_mib}M"))
        .arg("--kernel")
        .arg(kernel)
        .arg("--initramfs")
        .arg(initramfs)
        .args(["--cmdline", cmdline]);
    cmd
}

/// The same guest on QEMU's TCG (`-M pc`), with `qemu` the emulator.
pub(crate) fn qemu_command(
    qemu: &Path,
    memory_mib: u64,
    kernel: &Path,
    initramfs: &Path,
    cmdline: &str,
) -> Command {
    let mut cmd = Command::new(qemu);
    cmd.args(["-M", "pc", "-accel", "tcg", "-m"])
        .arg(memory_mib.to_string())
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(kernel)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", cmdline]);
    cmd
}

fn janus_column(opts: &LinuxBenchOptions) -> std::result::Result<LinuxColumn, String> {
    let cmd = janus_command(
        &opts.janus,
        opts.memory_mib,
        &opts.kernel,
        &opts.initramfs,
        &cmdline(),
    );
    let t = run_timed(cmd)?;
    column("janus-soft", "--engine soft --mode full".into(), &t)
}

pub(crate) fn qemu_version(qemu: &PathBuf) -> std::result::Result<String, String> {
    let out = Command::new(qemu)
        .arg("--version")
        .output()
        .map_err(|e| format!("{}: {e}", qemu.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

fn qemu_column(opts: &LinuxBenchOptions) -> std::result::Result<LinuxColumn, String> {
    let version = qemu_version(&opts.qemu)?;
    let cmd = qemu_command(
        &opts.qemu,
        opts.memory_mib,
        &opts.kernel,
        &opts.initramfs,
        &cmdline(),
    );
    let t = run_timed(cmd)?;
    column("qemu-tcg", format!("{version}, -M pc -accel tcg"), &t)
}

pub fn run(opts: &LinuxBenchOptions) -> Result<LinuxBenchReport> {
    for (what, p) in [("kernel", &opts.kernel), ("initramfs", &opts.initramfs)] {
        if !p.is_file() {
            return Err(VmmError::Config(format!(
                "janus bench: {what} {} is not a file",
                p.display()
            )));
        }
    }
    let mut columns = Vec::new();
    let mut skipped = Vec::new();
    let janus = janus_column(opts).map_err(|why| {
        VmmError::Config(format!(
            "janus bench: the Linux guest failed on Janus: {why}"
        ))
    })?;
    columns.push(janus);
    match qemu_column(opts) {
        Ok(c) => columns.push(c),
        Err(why) => skipped.push(format!("qemu-tcg: {why}")),
    }
    Ok(LinuxBenchReport {
        kernel: opts.kernel.display().to_string(),
        workload: WORKLOAD,
        columns,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn instruction_count_from_the_summary() {
        let s = "janus: engine soft\njanus: guest powered off (ACPI S5) after 39.34 s; 56,426 \
                 exits (pio_in 29,948); 6,187,923,546 instructions (157 MIPS)\n";
        assert_eq!(parse_instructions(s), Some(6_187_923_546));
        assert_eq!(parse_instructions("janus: guest powered off"), None);
    }

    #[test]
    fn transcript_finds_markers_and_digest() {
        let ms = Duration::from_millis;
        let t = Transcript {
            lines: vec![
                (ms(10), "[ 0.1] Linux version".into()),
                (ms(20), INIT_MARKER.into()),
                (ms(30), BEGIN_MARKER.into()),
                (ms(80), "64+0 records in".into()),
                (ms(90), format!("{EXPECTED_SHA256}  -")),
                (ms(95), END_MARKER.into()),
            ],
            stderr: String::new(),
            total: ms(100),
        };
        let c = column("x", String::new(), &t).unwrap();
        assert_eq!(c.boot_to_init_s, 0.02);
        assert!((c.workload_s - 0.065).abs() < 1e-9);
        let mut bad = t;
        bad.lines[4].1 = "0000  -".into();
        assert!(column("x", String::new(), &bad)
            .unwrap_err()
            .contains("sha256"));
    }
}
