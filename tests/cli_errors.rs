//! Bad user input gets a one-line error naming the problem and a non-zero exit.

mod common;
use common::*;

#[test]
fn missing_kernel_file() {
    let o = janus(&["run", "--kernel", "/nonexistent/vmlinux"]);
    assert_one_line_error(&o, "cannot read kernel /nonexistent/vmlinux");
}

#[test]
fn kernel_that_is_not_elf() {
    let path = temp_file(
        "not-elf",
        b"this is a text file, not a kernel image at all......................",
    );
    let o = janus(&["run", "--kernel", path.to_str().unwrap()]);
    assert_one_line_error(&o, "not an ELF file");
}

#[test]
fn kernel_elf_that_does_not_fit() {
    // A segment of 8 MiB at 2 MiB in 4 MiB of RAM.
    let image = janus_boot::elf::image_from_code(0x20_0000, &[0xf4], 8 << 20);
    let path = temp_file("too-big", &image);
    let o = janus(&[
        "run",
        "--memory",
        "size=4M",
        "--kernel",
        path.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, "does not fit in guest RAM");
}

#[test]
fn broken_bzimage_is_reported() {
    let mut image = vec![0u8; 0x400];
    image[0x202..0x206].copy_from_slice(b"HdrS");
    let path = temp_file("bzimage", &image);
    let o = janus(&["run", "--kernel", path.to_str().unwrap()]);
    assert_one_line_error(&o, "kernel image: bad boot flag");
}

#[test]
fn truncated_bzimage_is_reported() {
    // A valid header that claims more setup sectors than the file holds.
    let mut image = vec![0u8; 0x400];
    image[0x1f1] = 30; // setup_sects
    image[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    image[0x200..0x202].copy_from_slice(&[0xeb, 0x66]); // the jump past the header
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    image[0x211] = 1; // loadflags: LOADED_HIGH
    image[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes()); // kernel_alignment
    image[0x234] = 1; // relocatable
    image[0x236] = 1; // xloadflags: XLF_KERNEL_64
    let path = temp_file("bzimage-short", &image);
    let o = janus(&["run", "--kernel", path.to_str().unwrap()]);
    assert_one_line_error(
        &o,
        "kernel image: truncated: the setup code alone is 15872 bytes",
    );
}

#[test]
fn unreadable_disk() {
    let o = janus(&["run", "--disk", "path=/nonexistent/disk.img"]);
    assert_one_line_error(&o, "cannot open disk /nonexistent/disk.img");
}

#[test]
fn disk_that_is_a_directory() {
    let dir = std::env::temp_dir();
    let spec = format!("path={}", dir.display());
    let o = janus(&["run", "--disk", &spec]);
    assert_one_line_error(&o, "disk");
}

#[test]
fn unknown_option_values() {
    assert_one_line_error(&janus(&["run", "--mode", "half"]), "invalid value 'half'");
    assert_one_line_error(&janus(&["run", "--engine", "qemu"]), "invalid value 'qemu'");
    assert_one_line_error(&janus(&["demo", "--engine", "x"]), "possible values");
    assert_one_line_error(&janus(&["run", "--memory", "size=lots"]), "not a size");
    assert_one_line_error(
        &janus(&["run", "--memory", "hugepages=on"]),
        "unknown key 'hugepages'",
    );
    assert_one_line_error(&janus(&["run", "--cpus", "boot=zero"]), "not a vCPU count");
    assert_one_line_error(&janus(&["run", "--cpu", "v9"]), "invalid value 'v9'");
    assert_one_line_error(
        &janus(&["run", "--disk", "path=x.img,cache=none"]),
        "unknown key 'cache'",
    );
    assert_one_line_error(&janus(&["run", "--disk", "readonly=on"]), "no path given");
    assert_one_line_error(&janus(&["frobnicate"]), "unrecognized subcommand");
}

#[test]
fn limits_are_explained() {
    assert_one_line_error(&janus(&["run", "--memory", "size=1M"]), "too small");
    assert_one_line_error(&janus(&["run", "--memory", "size=1024G"]), "more than");
    assert_one_line_error(&janus(&["run", "--cpus", "boot=2"]), "1 vCPU");
    // x86-64 levels are the soft engine's model; kvm presents the host's CPU.
    if std::path::Path::new("/dev/kvm").exists() {
        assert_one_line_error(
            &janus(&["run", "--engine", "kvm", "--cpu", "v1"]),
            "--cpu v1: the kvm engine presents the host's CPU",
        );
    }
}

#[test]
fn help_works() {
    let o = janus(&["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("demo"));
    let o = janus(&["run", "--help"]);
    assert!(stdout(&o).contains("--kernel"));
}

#[test]
fn bench_with_a_missing_kernel() {
    let o = janus(&[
        "bench",
        "--kernel",
        "/nonexistent/vmlinuz",
        "--initramfs",
        "/nonexistent/initrd",
    ]);
    assert_one_line_error(&o, "kernel /nonexistent/vmlinuz is not a file");
}

#[test]
fn bench_kernel_needs_an_initramfs() {
    let o = janus(&["bench", "--kernel", "/nonexistent/vmlinuz"]);
    assert_one_line_error(&o, "--initramfs");
}

#[test]
fn the_demo_guest_runs_without_a_note_on_the_test_image() {
    // No --disk: the demo guest reads the built-in test image, which is read-only by design;
    // that is no news to the user.
    let o = janus(&["run", "--engine", "soft"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("read-only"), "{err}");
}

#[test]
fn a_closed_console_gives_a_plain_warning() {
    // stdout closed before the guest prints: the UART's output fails with EPIPE, and the
    // warning says so in words, without terminal colour codes (stderr is a pipe here).
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_janus"))
        .args(["run", "--engine", "soft"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("janus starts");
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("janus ends");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("uart: console output failed"), "{err}");
    assert!(err.contains("Broken pipe"), "{err}");
    assert!(!err.contains("Os {"), "a Rust debug form: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escape in piped stderr: {err}"
    );
}

#[test]
fn kernel_and_initramfs_that_are_not_regular_files_or_too_big() {
    // A device and a FIFO are refused before they are read (reading /dev/zero would never
    // end, opening a FIFO would block); a sparse file larger than the guest's RAM is refused
    // without reading it.
    let o = janus(&["run", "--kernel", "/dev/zero"]);
    assert_one_line_error(&o, "kernel /dev/zero is not a regular file");
    let dir = std::env::temp_dir().join(format!("janus-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let o = janus(&["run", "--kernel", fifo.to_str().unwrap()]);
        assert_one_line_error(&o, "is not a regular file");
    }
    let big = dir.join("sparse");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(20 << 30).unwrap();
    let o = janus(&[
        "run",
        "--memory",
        "size=64M",
        "--kernel",
        big.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, "more than the guest's 67108864 bytes of RAM");
    // The initramfs is checked the same way (the kernel here only needs to look like a
    // bzImage: the initramfs is read before the kernel is parsed).
    let mut header = vec![0u8; 0x400];
    header[0x202..0x206].copy_from_slice(b"HdrS");
    let kernel = temp_file("kernel-for-initramfs", &header);
    let o = janus(&[
        "run",
        "--kernel",
        kernel.to_str().unwrap(),
        "--initramfs",
        big.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, "is 21474836480 bytes, more than the guest's");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A disk image another process has open (here QEMU, which locks its images) is refused with
/// a one-line error, unless `locking=off`.
#[test]
fn a_disk_in_use_elsewhere_is_refused() {
    use std::process::{Command, Stdio};
    let qemu = "qemu-system-x86_64";
    if Command::new(qemu).arg("--version").output().is_err() {
        eprintln!("skipped: {qemu} is not installed (the README's test command installs it)");
        return;
    }
    let img = common::temp_file("locked.img", &[0u8; 1 << 20]);
    let mut holder = Command::new(qemu)
        .args([
            "-M",
            "pc",
            "-accel",
            "tcg",
            "-S",
            "-display",
            "none",
            "-nodefaults",
        ])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=ide", img.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qemu");
    // QEMU takes its locks while it starts: wait until /proc/locks shows one on the image.
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(&img).expect("image").ino();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            l.split_whitespace()
                .nth(5)
                .is_some_and(|id| id.ends_with(&format!(":{ino}")))
        })
    {
        assert!(
            std::time::Instant::now() < deadline,
            "QEMU did not lock the image"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let spec = format!("path={}", img.display());
    let o = janus(&["run", "--engine", "soft", "--disk", &spec]);
    // The demo guest (not the firmware a disk alone boots) reads the image and ends.
    let off = janus(&[
        "run",
        "--engine",
        "soft",
        "--firmware",
        "none",
        "--disk",
        &format!("{spec},locking=off"),
    ]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_one_line_error(&o, "is in use");
    assert!(off.status.success(), "locking=off: {}", stderr(&off));
}
