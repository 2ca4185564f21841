//! Helpers for the integration tests, which drive the `janus` binary like a user does.

#![allow(dead_code)]

pub mod linux;
pub mod netns;

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn janus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_janus"))
        .args(args)
        .output()
        .expect("run janus")
}

/// The count just before `what` (one or more words) on janus's report line for `device`
/// (`janus: e1000: ... 1,372 frames in ...` gives 1372 for "frames in").
pub fn reported(stderr: &str, device: &str, what: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("janus: {device}:")))
        .unwrap_or_else(|| panic!("no {device} report in:\n{stderr}"));
    // Counts carry thousands separators: drop those before splitting on punctuation.
    let b = line.as_bytes();
    let plain: String = line
        .char_indices()
        .filter(|&(i, c)| {
            let digit = |j: Option<usize>| j.and_then(|j| b.get(j)).is_some_and(u8::is_ascii_digit);
            !(c == ',' && digit(i.checked_sub(1)) && digit(Some(i + 1)))
        })
        .map(|(_, c)| c)
        .collect();
    let words: Vec<&str> = plain
        .split([' ', ',', ';', ':', '(', ')'])
        .filter(|w| !w.is_empty())
        .collect();
    let n = what.split(' ').count();
    let at = words
        .windows(n)
        .position(|w| w.join(" ") == what)
        .unwrap_or_else(|| panic!("no '{what}' in {line}"));
    words[at.checked_sub(1).expect("a count before it")]
        .parse()
        .expect("a count")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Why kvm tests cannot run here, if they cannot.
pub fn kvm_missing() -> Option<&'static str> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => None,
        Err(_) => Some("/dev/kvm is absent or not accessible"),
    }
}

/// Skips the calling test (returns early) with a reason when /dev/kvm is not usable.
#[macro_export]
macro_rules! require_kvm {
    () => {
        if let Some(why) = common::kvm_missing() {
            eprintln!("skipped: {why}; this test runs guests on the kvm engine");
            return;
        }
    };
}

/// Writes `bytes` to a fresh file in the temp directory and returns its path.
pub fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("janus-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write temp file");
    path
}

/// A test guest: `code` at 2 MiB, entered in 64-bit mode.
pub fn guest(name: &str, code: &[u8]) -> PathBuf {
    temp_file(
        name,
        &janus_boot::elf::image_from_code(0x20_0000, code, 0x1000),
    )
}

/// Asserts a failure was reported as one line, without a panic or backtrace, with the exit
/// status of a usage error (2: bad command line or input).
pub fn assert_one_line_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected the usage-error status; stderr: {err}"
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("janus: "), "{err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
}

/// Standard base64 (with padding), for passing scripts on a kernel command line.
pub fn base64(data: &[u8]) -> String {
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
