//! SIGTERM, SIGINT and SIGHUP stop `janus run` the documented way: the VM stops, the final
//! report is printed, and the exit status is 128 + the signal's number. A second signal
//! exits at once. While the guest runs, no mapping of the VMM is writable and executable.
//!
//! The guest is the Linux test guest (`scripts/guest-assets.sh`), sleeping; see
//! `common/linux.rs` for what happens without it.

mod common;

use common::linux::{assets, boot, wait_exit};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Boots the guest into `sleep`, sends `sig` (twice if `twice`), returns (status, stderr).
fn stop_with(sig: i32, twice: bool) -> (Option<i32>, String) {
    let a = assets().expect("checked by the caller");
    let cmdline = format!(
        "console=ttyS0 quiet janus.cmd={}",
        common::base64(b"sleep 600\n")
    );
    let dir = std::env::temp_dir().join(format!("janus-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join(format!("signal-{sig}-{twice}.console"));
    let err = dir.join(format!("signal-{sig}-{twice}.stderr"));
    let mut child = boot(&a, &cmdline)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("console file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("run janus");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !std::fs::read_to_string(&out)
        .unwrap_or_default()
        .contains("janus-cmd: begin")
    {
        assert!(
            Instant::now() < deadline,
            "the guest did not start its command"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // W^X: with the guest booted (the translator and the host stubs in use), no mapping of
    // the VMM is writable and executable at once.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", child.id())).unwrap_or_default();
    let rwx: Vec<&str> = maps
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|p| p.starts_with("rwx"))
        })
        .collect();
    assert!(
        !maps.is_empty() && rwx.is_empty(),
        "writable and executable: {rwx:?}"
    );
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe { libc::kill(child.id() as i32, sig) };
    if twice {
        // SAFETY: as above.
        unsafe { libc::kill(child.id() as i32, sig) };
    }
    let status = wait_exit(&mut child, Instant::now() + Duration::from_secs(60));
    (
        status.code(),
        std::fs::read_to_string(&err).unwrap_or_default(),
    )
}

#[test]
fn sigterm_and_sigint_stop_the_vm_with_a_report() {
    if assets().is_none() {
        return;
    }
    let (code, err) = stop_with(libc::SIGTERM, false);
    assert_eq!(code, Some(143), "{err}");
    assert!(err.contains("janus: stopped by SIGTERM after"), "{err}");
    assert!(err.contains("janus: exits by device:"), "{err}");
    let (code, err) = stop_with(libc::SIGINT, false);
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("janus: stopped by SIGINT after"), "{err}");
}

#[test]
fn sighup_twice_exits_at_once() {
    if assets().is_none() {
        return;
    }
    let (code, err) = stop_with(libc::SIGHUP, true);
    assert_eq!(code, Some(129), "{err}");
}

/// A guest spinning with interrupts off makes no exits; the signal still stops it (the soft
/// engine's vCPU is kicked out of the guest).
#[test]
fn a_guest_that_never_exits_still_stops() {
    // cli; jmp $
    let image = common::guest("spin", &[0xfa, 0xeb, 0xfe]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_janus"))
        .args(["run", "--engine", "soft", "--kernel"])
        .arg(&image)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run janus");
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_exit(&mut child, Instant::now() + Duration::from_secs(30));
    let mut err = String::new();
    use std::io::Read;
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(err.contains("stopped by SIGTERM"), "{err}");
}
