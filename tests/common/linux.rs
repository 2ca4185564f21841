//! The Linux test guest: Debian's stock kernel and a busybox initramfs from
//! `scripts/guest-assets.sh`, booted by `janus run`.
//!
//! Without the guest these tests skip and say why, unless `JANUS_REQUIRE_GUEST=1` (set by
//! scripts/test.sh), where a missing guest is a failure.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Generous: a boot takes about 40 s on the development machine.
pub const BOOT_LIMIT: Duration = Duration::from_secs(600);

pub struct Assets {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

/// The guest, or `None` (with the reason printed) where it has not been built.
pub fn assets() -> Option<Assets> {
    let dir = std::env::var_os("JANUS_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/guest"));
    let a = Assets {
        kernel: dir.join("vmlinuz"),
        initramfs: dir.join("initramfs.cpio.gz"),
    };
    if a.kernel.is_file() && a.initramfs.is_file() {
        return Some(a);
    }
    let why = format!(
        "no guest kernel and initramfs in {}; scripts/guest-assets.sh builds them",
        dir.display()
    );
    if std::env::var_os("JANUS_REQUIRE_GUEST").is_some_and(|v| v == "1") {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
}

/// `janus run` for the Linux guest on the soft engine, fully virtualized.
pub fn boot(a: &Assets, cmdline: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_janus"));
    boot_args(&mut c, a, cmdline);
    c
}

/// The same inside `netns`, with its TAP interface as `--net`.
pub fn boot_with_net(a: &Assets, cmdline: &str, netns: &super::netns::Netns) -> Command {
    let mut c = netns.command(env!("CARGO_BIN_EXE_janus"));
    boot_args(&mut c, a, cmdline);
    c.args(["--net", &format!("tap={}", super::netns::TAP)]);
    c
}

fn boot_args(c: &mut Command, a: &Assets, cmdline: &str) {
    c.args([
        "run",
        "--engine",
        "soft",
        "--mode",
        "full",
        "--memory",
        "size=512M",
    ])
    .arg("--kernel")
    .arg(&a.kernel)
    .arg("--initramfs")
    .arg(&a.initramfs)
    .args(["--cmdline", cmdline]);
}

/// Waits for `child` to exit; kills it and fails the test at `until`.
pub fn wait_exit(child: &mut Child, until: Instant) -> ExitStatus {
    loop {
        if let Some(s) = child.try_wait().expect("poll janus") {
            return s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("janus did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a finished `janus run` left.
pub struct Run {
    pub status: ExitStatus,
    /// The guest's console.
    pub console: String,
    pub stderr: String,
}

impl Run {
    /// Both outputs, for assertion messages.
    pub fn context(&self) -> String {
        format!("stderr:\n{}\nconsole:\n{}", self.stderr, self.console)
    }
}

/// Runs `command` to the end (killing it after [`BOOT_LIMIT`]), its output going through
/// files so a long console can never block it on a full pipe.
pub fn run_to_end(mut command: Command, name: &str) -> Run {
    let dir = std::env::temp_dir().join(format!("janus-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out_path = dir.join(format!("{name}.console"));
    let err_path = dir.join(format!("{name}.stderr"));
    let file = |p: &PathBuf| std::fs::File::create(p).expect("output file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file(&out_path))
        .stderr(file(&err_path))
        .spawn()
        .expect("run janus");
    let status = wait_exit(&mut child, Instant::now() + BOOT_LIMIT);
    let read =
        |p: &PathBuf| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Run {
        status,
        console: read(&out_path),
        stderr: read(&err_path),
    }
}
