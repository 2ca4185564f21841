//! Booting through firmware: Debian's SeaBIOS (`--firmware seabios`) starts from the reset
//! vector on the soft engine (and on the kvm engine where /dev/kvm is usable), finds the IDE disk, loads its boot sector and runs it; the boot
//! sector prints through the BIOS (`int 10h`, which SeaBIOS's serial console puts on COM1)
//! and ends the run through `--device debug-exit`. Without a bootable disk SeaBIOS says so.

mod common;

use common::linux::{assets, boot, run_to_end, Assets};
use common::{assert_one_line_error, janus, stderr, stdout, temp_file};
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";
/// What the boot sector writes to the debug-exit port (exit status (V << 1) | 1).
const DONE: u8 = 0x21;

/// Whether SeaBIOS is installed; the test command installs it (package `seabios`), so there
/// a missing image fails instead of skipping.
fn seabios() -> bool {
    if std::path::Path::new(SEABIOS).exists() {
        return true;
    }
    assert!(
        std::env::var_os("JANUS_REQUIRE_GUEST").is_none(),
        "{SEABIOS} is missing (Debian package seabios)"
    );
    eprintln!("skipped: {SEABIOS} is missing (install the Debian package seabios)");
    false
}

/// A 1 MiB disk (file `name`) whose boot sector prints `message` through INT 10h, then writes
/// DONE to the debug-exit port.
fn disk(name: &str, message: &str) -> std::path::PathBuf {
    let code = boot_code(message, DONE);
    let mut image = vec![0u8; 1 << 20];
    image[..code.len()].copy_from_slice(&code);
    image[510] = 0x55;
    image[511] = 0xaa;
    temp_file(name, &image)
}

/// Code loaded at 0000:7C00 that prints `message` through INT 10h, then writes `exit` to the
/// debug-exit port.
fn boot_code(message: &str, exit: u8) -> Vec<u8> {
    let mut a = CodeAssembler::new(16).unwrap();
    let mut text = a.create_label();
    let mut next = a.create_label();
    let mut done = a.create_label();
    a.xor(ax, ax).unwrap();
    a.mov(ds, ax).unwrap();
    a.mov(si, 0).unwrap(); // patched below: the text's address
    a.set_label(&mut next).unwrap();
    a.lodsb().unwrap();
    a.test(al, al).unwrap();
    a.jz(done).unwrap();
    a.mov(ah, 0x0e).unwrap();
    a.mov(bx, 7).unwrap();
    a.int(0x10).unwrap();
    a.jmp(next).unwrap();
    a.set_label(&mut done).unwrap();
    a.mov(dx, 0x501).unwrap();
    a.mov(al, exit as u32).unwrap();
    a.out(dx, al).unwrap();
    a.hlt().unwrap();
    a.set_label(&mut text).unwrap();
    a.db(message.as_bytes()).unwrap();
    a.db(&[0]).unwrap();
    let r = a
        .assemble_options(0x7c00, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .unwrap();
    let mut code = r.inner.code_buffer.clone();
    let at = r.label_ip(&text).unwrap() as u16;
    // `mov si, imm16` (opcode BE) follows xor ax, ax and mov ds, ax (2 bytes each).
    assert_eq!(code[4], 0xbe);
    code[5..7].copy_from_slice(&at.to_le_bytes());
    assert!(code.len() <= 510);
    code
}

/// Boots the test disk through SeaBIOS on `engine` (named with `--firmware`, or by default:
/// a disk and no kernel) and checks what it printed.
fn boot_the_disk(engine: &str, named: bool) {
    let img = disk(
        &format!("boot-{engine}.img"),
        "Hello from the boot sector, through the BIOS\r\n",
    );
    let disk = format!("path={}", img.display());
    let mut args = vec!["run", "--engine", engine, "--disk", &disk];
    args.extend(["--device", "debug-exit"]);
    if named {
        args.extend(["--firmware", "seabios"]);
    }
    let o = janus(&args);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(((DONE as i32) << 1) | 1),
        "{out}\n{}",
        stderr(&o)
    );
    assert!(out.contains("SeaBIOS (version"), "{out}");
    assert!(out.contains("Booting from Hard Disk..."), "{out}");
    // SeaBIOS's serial console may still hold the last few characters when the run ends.
    assert!(out.contains("Hello from the boot sector"), "{out}");
    let err = stderr(&o);
    assert!(err.contains("fw_cfg"), "fw_cfg was used: {err}");
}

/// `janus run --disk IMAGE` alone boots the image through SeaBIOS.
#[test]
fn seabios_boots_the_disk_and_runs_its_boot_sector() {
    if seabios() {
        boot_the_disk("soft", false);
    }
}

#[test]
fn seabios_boots_the_disk_on_the_kvm_engine() {
    if !seabios() {
        return;
    }
    if let Some(why) = common::kvm_missing() {
        eprintln!("skipped: {why}");
        return;
    }
    boot_the_disk("kvm", true);
}

#[test]
fn seabios_without_a_bootable_disk_says_so() {
    if !seabios() {
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_janus"))
        .args(["run", "--engine", "soft", "--firmware", "seabios"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn janus");
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&seen).contains("No bootable device") {
                break;
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    // SeaBIOS retries after 60 s: stop it once it has spoken (or after a minute).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reader.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = reader.join().expect("reader");
    assert!(seen.contains("SeaBIOS (version"), "{seen}");
    assert!(seen.contains("No bootable device"), "{seen}");
}

#[test]
fn bad_firmware_options_get_one_line_errors() {
    let small = temp_file("tiny.rom", &[0x90; 1000]);
    assert_one_line_error(
        &janus(&["run", "--firmware", small.to_str().unwrap()]),
        "not a whole number of 64 KiB blocks",
    );
    assert_one_line_error(
        &janus(&["run", "--firmware", "/nonexistent/bios.bin"]),
        "/nonexistent/bios.bin",
    );
    assert_one_line_error(
        &janus(&["run", "--firmware", "seabios", "--kernel", "/bin/true"]),
        "--firmware and --kernel",
    );
    assert_one_line_error(&janus(&["run", "--firmware", ""]), "--firmware");
}

/// The Linux test guest (`common::linux::assets`) and grub-mkrescue with GRUB's PC modules,
/// if present (the test command installs them all, so there their absence fails).
fn grub_inputs() -> Option<Assets> {
    let a = assets()?;
    let grub = Command::new("grub-mkrescue")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && std::path::Path::new("/usr/lib/grub/i386-pc").is_dir();
    if grub {
        return Some(a);
    }
    let why = "needs grub-mkrescue (grub-pc-bin, xorriso, mtools)";
    assert!(
        std::env::var_os("JANUS_REQUIRE_GUEST").is_none_or(|v| v != "1"),
        "{why}"
    );
    eprintln!("skipped: {why}");
    None
}

/// Makes, under a fresh directory `root`, an image grub-mkrescue builds (a hybrid ISO 9660
/// image, bootable from a CD by El Torito and from a hard disk through its MBR) holding GRUB
/// on the serial console, Debian's kernel and the test initramfs, which runs `cmd`.
fn grub_image(
    root: &std::path::Path,
    kernel: &std::path::Path,
    initramfs: &std::path::Path,
    cmd: &str,
) -> std::path::PathBuf {
    let _ = std::fs::remove_dir_all(root);
    let boot = root.join("tree/boot");
    std::fs::create_dir_all(boot.join("grub")).expect("mkdir");
    std::fs::copy(kernel, boot.join("vmlinuz")).expect("copy kernel");
    std::fs::copy(initramfs, boot.join("initrd.gz")).expect("copy initramfs");
    let b64 = common::base64(cmd.as_bytes());
    std::fs::write(
        boot.join("grub/grub.cfg"),
        format!(
            "serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n\
             set timeout=0\nmenuentry linux {{\n  linux /boot/vmlinuz console=ttyS0 quiet \
             janus.cmd={b64}\n  initrd /boot/initrd.gz\n}}\n"
        ),
    )
    .expect("grub.cfg");
    let image = root.join("grub.iso");
    let mk = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&image)
        .arg(root.join("tree"))
        .output()
        .expect("grub-mkrescue");
    assert!(
        mk.status.success(),
        "grub-mkrescue: {}",
        String::from_utf8_lossy(&mk.stderr)
    );
    image
}

/// Boots the GRUB image through SeaBIOS from `medium` (`--disk` or `--cdrom`) and checks that
/// Linux ran the command and powered off through the ACPI tables SeaBIOS installed.
fn boot_grub(medium: &str) {
    if !seabios() {
        return;
    }
    let Some(a) = grub_inputs() else {
        return;
    };
    let root = std::env::temp_dir().join(format!("janus-grub-{}{medium}", std::process::id()));
    // The guest command: a marker, the kernel's release and the ACPI tables it found.
    let cmd = "echo GUEST-VIA-GRUB; uname -r; ls /sys/firmware/acpi/tables\n";
    let image = grub_image(&root, &a.kernel, &a.initramfs, cmd);
    let spec = if medium == "--disk" {
        format!("path={},readonly=on", image.display())
    } else {
        format!("path={}", image.display())
    };
    let mut c = Command::new(env!("CARGO_BIN_EXE_janus"));
    c.args(["run", "--engine", "soft", medium, &spec]);
    let r = run_to_end(c, &format!("grub{medium}"));
    let (status, out, err) = (r.status.code(), r.console, r.stderr);
    let _ = std::fs::remove_dir_all(&root);
    // The guest's init powers off when its command is done: ACPI S5, status 0.
    assert_eq!(status, Some(0), "{out}\n{err}");
    assert!(err.contains("guest powered off (ACPI S5)"), "{err}");
    assert!(out.contains("SeaBIOS (version"), "{out}");
    let from = if medium == "--disk" {
        "Booting from Hard Disk"
    } else {
        "Booting from DVD/CD"
    };
    assert!(out.contains(from), "{out}");
    assert!(out.contains("GRUB"), "{out}");
    assert!(out.contains("GUEST-VIA-GRUB"), "{out}");
    assert!(out.contains("-amd64"), "uname -r: {out}");
    for table in ["APIC", "DSDT", "FACP", "FACS"] {
        assert!(out.contains(table), "ACPI table {table}: {out}");
    }
}

/// A PC booting from its own disk: the GRUB image on the IDE disk; SeaBIOS boots GRUB through
/// the MBR, GRUB loads Linux and the initramfs through the BIOS, Linux finds the ACPI tables
/// SeaBIOS installed from fw_cfg's table loader, runs the command and powers off.
#[test]
fn seabios_boots_linux_through_grub_from_a_disk_image() {
    boot_grub("--disk");
}

/// The same image as a CD: SeaBIOS boots it by El Torito from the ATAPI drive.
#[test]
fn seabios_boots_linux_through_grub_from_a_cd() {
    boot_grub("--cdrom");
}

/// Linux's ata_piix and sr_mod find the ATAPI drive and read an ISO 9660 image on it (a
/// kernel Janus loads itself, so no firmware is involved).
#[test]
fn linux_reads_the_cd() {
    let Some(a) = grub_inputs() else {
        return;
    };
    let root = std::env::temp_dir().join(format!("janus-cd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("tree")).expect("mkdir");
    std::fs::write(root.join("tree/hello.txt"), "hello from the CD\n").expect("write");
    let iso = root.join("data.iso");
    let mk = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-o"])
        .arg(&iso)
        .arg(root.join("tree"))
        .output()
        .expect("xorriso");
    assert!(
        mk.status.success(),
        "xorriso: {}",
        String::from_utf8_lossy(&mk.stderr)
    );
    let cmd = "mkdir -p /mnt; mount -t iso9660 -o ro /dev/sr0 /mnt && cat /mnt/hello.txt; \
               dd if=/dev/sr0 bs=2048 skip=16 count=1 2>/dev/null | head -c 6 | tail -c 5; echo\n";
    let cmdline = format!(
        "console=ttyS0 quiet janus.modules=ata_piix,sr_mod,isofs janus.cmd={}",
        common::base64(cmd.as_bytes())
    );
    let mut c = boot(&a, &cmdline);
    c.arg("--cdrom").arg(format!("path={}", iso.display()));
    let r = run_to_end(c, "cdrom");
    let (status, out, err) = (r.status.code(), r.console, r.stderr);
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!(status, Some(0), "{out}\n{err}");
    assert!(out.contains("hello from the CD"), "{out}");
    // The primary volume descriptor's identifier, read from the raw device.
    assert!(out.contains("CD001"), "{out}");
    let ide = err
        .lines()
        .find(|l| l.starts_with("janus: ide:"))
        .unwrap_or("");
    assert!(!ide.is_empty(), "{err}");
}

/// `--boot` decides between a bootable disk and a bootable CD (an El Torito no-emulation
/// image), through fw_cfg's `bootorder`.
#[test]
fn the_boot_order_picks_the_cd_or_the_disk() {
    if !seabios() || grub_inputs().is_none() {
        return;
    }
    const FROM_CD: u8 = 0x31;
    let root = std::env::temp_dir().join(format!("janus-boot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("tree")).expect("mkdir");
    let mut boot = boot_code("Hello from the CD\r\n", FROM_CD);
    boot.resize(2048, 0);
    std::fs::write(root.join("tree/boot.bin"), &boot).expect("boot.bin");
    let iso = root.join("cd.iso");
    let mk = Command::new("xorriso")
        .args([
            "-as",
            "mkisofs",
            "-quiet",
            "-b",
            "boot.bin",
            "-no-emul-boot",
        ])
        .args(["-boot-load-size", "4", "-o"])
        .arg(&iso)
        .arg(root.join("tree"))
        .output()
        .expect("xorriso");
    assert!(
        mk.status.success(),
        "xorriso: {}",
        String::from_utf8_lossy(&mk.stderr)
    );
    let img = disk("order.img", "Hello from the disk\r\n");
    let run = |order: &str| {
        janus(&[
            "run",
            "--engine",
            "soft",
            "--disk",
            &format!("path={},readonly=on", img.display()),
            "--cdrom",
            &format!("path={}", iso.display()),
            "--boot",
            order,
            "--device",
            "debug-exit",
        ])
    };
    // Each order boots its first device: the exit value and SeaBIOS's line say which.
    for (order, value, banner) in [
        ("cdrom,disk", FROM_CD, "Booting from DVD/CD"),
        ("disk,cdrom", DONE, "Booting from Hard Disk"),
    ] {
        let o = run(order);
        let out = stdout(&o);
        assert_eq!(
            o.status.code(),
            Some(((value as i32) << 1) | 1),
            "{order}: {out}"
        );
        assert!(out.contains(banner), "{order}: {out}");
    }
    let _ = std::fs::remove_dir_all(&root);
    // Orders that cannot be: a device without its option, a kernel, an unknown name.
    assert_one_line_error(
        &janus(&[
            "run",
            "--disk",
            &format!("path={}", img.display()),
            "--boot",
            "cdrom",
        ]),
        "there is no --cdrom",
    );
    assert_one_line_error(
        &janus(&["run", "--kernel", "/bin/true", "--boot", "disk"]),
        "--boot",
    );
    assert_one_line_error(
        &janus(&["run", "--boot", "floppy"]),
        "unknown device 'floppy'",
    );
}
