//! Debian's stock kernel and a busybox initramfs, booted fully virtualized on the soft engine:
//! the guest runs a command and its output is checked, and an interactive shell on the UART
//! takes typed commands. The guest must not see a hypervisor.
//!
//! The guest comes from `scripts/guest-assets.sh` (the README's test command runs it); see
//! `common/linux.rs` for what happens without it.

mod common;

use common::linux::{assets, boot, wait_exit, BOOT_LIMIT};
use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Collects a child's stdout on a thread, so the test can wait for text while it runs.
struct Console {
    text: Arc<Mutex<String>>,
}

impl Console {
    fn attach(child: &mut Child) -> Console {
        let text = Arc::new(Mutex::new(String::new()));
        let mut out = child.stdout.take().expect("piped stdout");
        let sink = text.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Console { text }
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits until `needle` appears after byte `from` of the output; returns where it ends.
    fn wait_for(&self, child: &mut Child, needle: &str, from: usize, until: Instant) -> usize {
        loop {
            let t = self.text();
            if let Some(i) = t.get(from..).and_then(|s| s.find(needle)) {
                return from + i + needle.len();
            }
            let exited = child.try_wait().expect("poll janus");
            if exited.is_some() || Instant::now() > until {
                let _ = child.kill();
                panic!("waited for {needle:?} (janus exited: {exited:?}); console:\n{t}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn runs_a_command_unaware_of_the_hypervisor() {
    let Some(a) = assets() else { return };
    let script = "echo \"answer=$((6 * 7))\"\n\
                  echo \"cpuinfo-hypervisor=$(grep -c -w hypervisor /proc/cpuinfo)\"\n\
                  dmesg | grep -i 'hypervisor detected' || echo 'dmesg: no hypervisor detected line'\n\
                  grep -q '^flags.* sse2' /proc/cpuinfo && echo 'cpu: sse2'\n\
                  cat /proc/cmdline\n";
    let cmdline = format!(
        "console=ttyS0 janus.cmd={}",
        common::base64(script.as_bytes())
    );
    let mut child = boot(&a, &cmdline)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run janus");
    let console = Console::attach(&mut child);
    let status = wait_exit(&mut child, Instant::now() + BOOT_LIMIT);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let out = console.text();
    let ctx = format!("stderr:\n{err}\nconsole:\n{out}");
    assert!(status.success(), "janus failed ({status}); {ctx}");
    assert!(out.contains("Linux version 6."), "{ctx}");
    assert!(out.contains("janus-init: started"), "{ctx}");
    assert!(out.contains("answer=42"), "{ctx}");
    assert!(out.contains("cpuinfo-hypervisor=0"), "{ctx}");
    assert!(out.contains("dmesg: no hypervisor detected line"), "{ctx}");
    assert!(out.contains("cpu: sse2"), "{ctx}");
    assert!(out.contains("janus-cmd: end status=0"), "{ctx}");
    assert!(err.contains("guest powered off (ACPI S5)"), "{ctx}");
}

#[test]
fn interactive_shell_on_the_uart() {
    let Some(a) = assets() else { return };
    let until = Instant::now() + BOOT_LIMIT;
    let mut child = boot(&a, "console=ttyS0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run janus");
    let console = Console::attach(&mut child);
    let mut stdin = child.stdin.take().expect("piped stdin");
    let at = console.wait_for(&mut child, "janus-init: started", 0, until);
    let at = console.wait_for(&mut child, "# ", at, until);
    // Typed as a user would: the shell echoes the line, then runs it (only the output has
    // the sum).
    stdin.write_all(b"echo typed-$((40 + 2))\n").unwrap();
    let at = console.wait_for(&mut child, "typed-42", at, until);
    stdin.write_all(b"poweroff -f\n").unwrap();
    console.wait_for(&mut child, "Power down", at, until);
    let status = wait_exit(&mut child, until);
    assert!(
        status.success(),
        "janus failed ({status}); console:\n{}",
        console.text()
    );
}

/// A bzImage that says it is not relocatable loads and runs at its preferred address, as the
/// boot protocol says and QEMU does (here Debian's kernel with the header byte cleared; the
/// kernel itself does not read it).
#[test]
fn a_kernel_that_is_not_relocatable_boots() {
    let Some(a) = assets() else { return };
    let mut image = std::fs::read(&a.kernel).expect("read the kernel");
    image[0x234] = 0;
    let kernel = common::temp_file("not-relocatable.bzImage", &image);
    let patched = common::linux::Assets {
        kernel,
        initramfs: a.initramfs.clone(),
    };
    let cmdline = format!(
        "console=ttyS0 quiet janus.cmd={}",
        common::base64(b"echo fixed-address-ok\n")
    );
    let run = common::linux::run_to_end(boot(&patched, &cmdline), "not-relocatable");
    let ctx = run.context();
    assert!(run.status.success(), "{ctx}");
    assert!(run.console.contains("fixed-address-ok"), "{ctx}");
}
