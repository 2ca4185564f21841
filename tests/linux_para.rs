//! Debian's stock kernel para-virtualized on the soft engine: it finds a hypervisor (KVM's
//! interface, implemented by Janus), uses kvmclock, and drives virtio devices for the same
//! `--disk` and `--net` that full mode gets; the checks run inside the guest and on the host.
//! Booted fully virtualized with the same options, the guest finds none of it.
//!
//! Each test is one boot (about 40-60 s here). The network part needs a TAP interface in a
//! network namespace the test makes (root and /dev/net/tun); without them that part is
//! skipped and says why. Without the guest (scripts/guest-assets.sh) the tests skip, unless
//! `JANUS_REQUIRE_GUEST=1`.

mod common;

use common::netns::{Netns, GUEST_IP, HOST_IP, TAP};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BOOT_LIMIT: Duration = Duration::from_secs(600);
/// Where the block test writes in the image, and how much.
const BLK_OFFSET: u64 = 4096;
const BLK_LINES: usize = 150;

struct Assets {
    kernel: PathBuf,
    initramfs: PathBuf,
}

fn assets() -> Option<Assets> {
    let dir = std::env::var_os("JANUS_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/guest"));
    let (kernel, initramfs) = (dir.join("vmlinuz"), dir.join("initramfs.cpio.gz"));
    if kernel.is_file() && initramfs.is_file() {
        return Some(Assets { kernel, initramfs });
    }
    let why = format!(
        "no guest kernel and initramfs in {}; scripts/guest-assets.sh builds them",
        dir.display()
    );
    assert!(
        std::env::var_os("JANUS_REQUIRE_GUEST").is_none_or(|v| v != "1"),
        "{why}"
    );
    eprintln!("skipped: {why}");
    None
}

/// `janus run` for the Linux guest on the soft engine, inside `netns` when given.
fn janus(mode: &str, a: &Assets, cmdline: &str, disk: &Path, netns: Option<&Netns>) -> Command {
    let janus = env!("CARGO_BIN_EXE_janus");
    let mut c = match netns {
        Some(ns) => ns.command(janus),
        None => Command::new(janus),
    };
    c.args([
        "run",
        "--engine",
        "soft",
        "--mode",
        mode,
        "--memory",
        "size=512M",
    ])
    .arg("--kernel")
    .arg(&a.kernel)
    .arg("--initramfs")
    .arg(&a.initramfs)
    .arg("--disk")
    .arg(format!("path={}", disk.display()))
    .args(["--cmdline", cmdline]);
    if netns.is_some() {
        c.args(["--net", &format!("tap={TAP}")]);
    }
    c
}

/// A finished run: exit status, console, stderr, and when /init started.
struct Boot {
    status: ExitStatus,
    console: String,
    stderr: String,
    boot_to_init: Option<Duration>,
}

impl Boot {
    fn context(&self) -> String {
        format!("stderr:\n{}\nconsole:\n{}", self.stderr, self.console)
    }

    /// The value printed on a `key=value` line of the console.
    fn value(&self, key: &str) -> Option<&str> {
        self.console
            .lines()
            .find_map(|l| l.trim_end().strip_prefix(&format!("{key}=")))
    }
}

/// Runs `command` to the end, noting when the guest's /init announces itself.
fn boot(mut command: Command) -> Boot {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run janus");
    let console = Arc::new(Mutex::new((String::new(), None::<Duration>)));
    let mut out = child.stdout.take().expect("piped stdout");
    let sink = console.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut c = sink.lock().unwrap();
            c.0.push_str(&String::from_utf8_lossy(&buf[..n]));
            if c.1.is_none() && c.0.contains("janus-init: started") {
                c.1 = Some(started.elapsed());
            }
        }
    });
    let mut err = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let until = started + BOOT_LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("poll janus") {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("janus did not exit within {BOOT_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    reader.join().expect("console reader");
    let (console, boot_to_init) = console.lock().unwrap().clone();
    Boot {
        status,
        console,
        stderr: err_reader.join().expect("stderr reader"),
        boot_to_init,
    }
}

/// A fresh, zeroed disk image.
fn disk_image(name: &str) -> PathBuf {
    common::temp_file(name, &vec![0u8; 8 << 20])
}

/// The lines the guest writes to the disk, as the host expects to find them.
fn blk_payload() -> String {
    (0..BLK_LINES)
        .map(|i| format!("janus-virtio-blk line {i}\n"))
        .collect()
}

/// The shell script the guest runs: prints what the host checks, as `key=value` lines.
fn script(net: bool) -> String {
    let mut s = String::from(
        "echo \"clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)\"\n\
         echo \"detected=$(dmesg | grep -o 'Hypervisor detected: .*')\"\n\
         echo \"cpuinfo-hypervisor=$(grep -c -w hypervisor /proc/cpuinfo)\"\n\
         echo \"virtio=$(cat /sys/bus/virtio/devices/*/device 2>/dev/null | sort | tr '\\n' ' ')\"\n\
         echo \"hwrng=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)\"\n\
         echo \"rng=$(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | od -An -tx1 | tr -d ' \\n')\"\n\
         echo \"vda-serial=$(cat /sys/block/vda/serial 2>/dev/null)\"\n",
    );
    s.push_str(&format!(
        "i=0; while [ $i -lt {BLK_LINES} ]; do echo \"janus-virtio-blk line $i\"; i=$((i+1)); done > /tmp/f\n\
         [ -e /dev/vda ] && dd if=/tmp/f of=/dev/vda bs=4096 seek={} conv=fsync 2>/dev/null && sync && echo blk=written\n\
         [ -e /dev/hvc0 ] && echo janus-hvc0-ok > /dev/hvc0\n",
        BLK_OFFSET / 4096
    ));
    if net {
        s.push_str(&format!(
            "ip addr add {GUEST_IP}/24 dev eth0 && ip link set eth0 up && ping -c 3 -W 10 {HOST_IP}\n"
        ));
    }
    // What is absent shows in the values; the script itself succeeds.
    s.push_str("true\n");
    s
}

fn cmdline(net: bool) -> String {
    format!(
        "console=ttyS0 quiet janus.modules=virtio_mmio,virtio_blk,virtio_net,virtio_console,virtio-rng janus.cmd={}",
        common::base64(script(net).as_bytes())
    )
}

#[test]
fn para_guest_uses_kvmclock_and_virtio_devices() {
    let Some(a) = assets() else { return };
    let netns = Netns::create("para")
        .map_err(|why| eprintln!("skipped (the network part): {why}"))
        .ok();
    let disk = disk_image("para.img");
    let net = netns.is_some();
    let b = boot(janus("para", &a, &cmdline(net), &disk, netns.as_ref()));
    let ctx = b.context();
    assert!(b.status.success(), "janus failed ({}); {ctx}", b.status);
    assert!(b.console.contains("janus-cmd: end status=0"), "{ctx}");
    eprintln!(
        "boot-to-init, para mode: {:.1} s",
        b.boot_to_init.expect("init started").as_secs_f64()
    );

    // Found a hypervisor, KVM's interface, and uses its clock.
    assert_eq!(b.value("clocksource"), Some("kvm-clock"), "{ctx}");
    assert_eq!(
        b.value("detected"),
        Some("Hypervisor detected: KVM"),
        "{ctx}"
    );
    assert_eq!(b.value("cpuinfo-hypervisor"), Some("1"), "{ctx}");
    assert!(
        common::reported(&b.stderr, "kvmclock", "clock") >= 1,
        "{ctx}"
    );
    assert!(common::reported(&b.stderr, "kvmclock", "EOIs") > 0, "{ctx}");

    // The devices: console 3, block 2, network 1, entropy 4.
    let want = if net {
        "0x0001 0x0002 0x0003 0x0004"
    } else {
        "0x0002 0x0003 0x0004"
    };
    assert_eq!(b.value("virtio").map(str::trim), Some(want), "{ctx}");

    // The file the guest wrote and synced is on the host image, byte for byte.
    assert_eq!(b.value("blk"), Some("written"), "{ctx}");
    assert_eq!(b.value("vda-serial"), Some("para.img"), "{ctx}");
    let image = std::fs::read(&disk).expect("read the image");
    let payload = blk_payload();
    let at = BLK_OFFSET as usize;
    assert_eq!(
        &image[at..at + payload.len()],
        payload.as_bytes(),
        "image contents; {ctx}"
    );
    assert!(
        common::reported(&b.stderr, "virtio-blk", "writes") >= 1,
        "{ctx}"
    );
    assert!(
        common::reported(&b.stderr, "virtio-blk", "flushes") >= 1,
        "{ctx}"
    );

    // virtio-rng feeds /dev/hwrng.
    assert_eq!(b.value("hwrng"), Some("virtio_rng.0"), "{ctx}");
    let rng = b.value("rng").unwrap_or_default();
    assert_eq!(rng.len(), 32, "16 bytes from /dev/hwrng; {ctx}");
    assert_ne!(rng, "0".repeat(32), "{ctx}");
    assert!(
        common::reported(&b.stderr, "virtio-rng", "bytes") >= 16,
        "{ctx}"
    );

    // What the guest wrote to hvc0 reached the host console.
    assert!(b.console.contains("janus-hvc0-ok"), "{ctx}");

    if net {
        assert!(
            b.console
                .contains("3 packets transmitted, 3 packets received"),
            "ping over virtio-net; {ctx}"
        );
        assert!(
            common::reported(&b.stderr, "virtio-net", "frames") >= 3,
            "{ctx}"
        );
    }
}

#[test]
fn full_guest_sees_none_of_it() {
    let Some(a) = assets() else { return };
    let netns = Netns::create("full")
        .map_err(|why| eprintln!("skipped (the network part): {why}"))
        .ok();
    let disk = disk_image("full.img");
    // The same options; the virtio drivers are loaded, and find nothing to drive.
    let b = boot(janus("full", &a, &cmdline(false), &disk, netns.as_ref()));
    let ctx = b.context();
    assert!(b.status.success(), "janus failed ({}); {ctx}", b.status);
    assert!(b.console.contains("janus-cmd: end status=0"), "{ctx}");
    eprintln!(
        "boot-to-init, full mode: {:.1} s",
        b.boot_to_init.expect("init started").as_secs_f64()
    );
    assert_ne!(b.value("clocksource"), Some("kvm-clock"), "{ctx}");
    assert_eq!(b.value("detected"), Some(""), "{ctx}");
    assert_eq!(b.value("cpuinfo-hypervisor"), Some("0"), "{ctx}");
    assert_eq!(b.value("virtio").map(str::trim), Some(""), "{ctx}");
    assert_ne!(b.value("hwrng"), Some("virtio_rng.0"), "{ctx}");
    assert_eq!(b.value("blk"), None, "no /dev/vda; {ctx}");
    assert!(!b.console.contains("janus-hvc0-ok"), "{ctx}");
    assert!(!b.stderr.contains("kvmclock"), "{ctx}");
    assert!(!b.stderr.contains("virtio-"), "{ctx}");
    // With a TAP interface, --net is the e1000, which no driver here binds: it reports nothing.
    assert!(!b.stderr.contains("is not attached"), "{ctx}");
    assert!(!b.stderr.contains("janus: e1000:"), "{ctx}");
    let image = std::fs::read(&disk).expect("read the image");
    assert!(image.iter().all(|&b| b == 0), "the image is untouched");
}
