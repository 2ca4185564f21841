//! End-to-end check of the Linux loader and the ACPI tables against a real kernel, on QEMU.
//!
//! Janus's own engines cannot run a Linux boot on this host yet, so this test hands the memory
//! image that `load_linux` builds to QEMU (TCG) instead of QEMU's own loader and firmware:
//!
//! - low memory (0..0xa0000: BIOS data area, GDT, zero page, page tables, command line), the
//!   protected-mode kernel at 1 MiB and the initramfs go in with `-device loader`;
//! - the BIOS area 0xe0000..0x100000 (the ACPI tables) becomes a 128 KiB `-bios` image whose
//!   reset vector runs a small stub. The stub points QEMU's PIIX4 PM block at 0x600 (so the FADT's
//!   PM1a/PM timer ports are live there, as on Janus) and then puts the CPU into exactly the
//!   state `load_linux` returned (CR0/CR3/CR4/EFER, the GDT and selectors, RSI, RSP, RIP).
//!
//! The guest is Debian's kernel and the busybox initramfs from `scripts/guest-assets.sh`; it
//! runs a command and powers off. The test reads the serial console: the kernel must find the
//! RSDP, the tables, our e820 map, both CPUs and the I/O APIC, start /init from the initramfs,
//! and power off through `\_S5` (QEMU's PIIX4 calls S5 sleep type 0, not Janus's 5, so it does
//! not actually switch off: the test stops it).
//!
//! It takes 5 to 15 seconds and skips (with a printed reason) where QEMU or the guest assets are
//! missing. `--nocapture` shows the console; the files and `console.log` stay in
//! `target/tmp/qemu_boot/`.

use janus_boot::{layout, load_linux, AcpiConfig, LinuxBoot};
use janus_engine::cpu::gpr;
use janus_engine::{CpuState, GuestMemory};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress};

const MIB: u64 = 1 << 20;
const BIOS_SIZE: usize = 128 * 1024;
/// Where the stub lives: linear 0xffff_f000 (the top-of-4G ROM alias), real-mode CS:IP f000:f000.
const STUB_OFFSET: usize = 0x1_f000;
const STUB_LINEAR: u32 = 0xffff_f000;
const GDT_PTR_OFFSET: usize = 0x1_f400;

fn guest_dir() -> PathBuf {
    std::env::var_os("JANUS_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/guest"))
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Machine code that goes from the reset state to `s` and jumps to the kernel.
fn stub(s: &CpuState) -> (Vec<u8>, [u8; 6]) {
    let mut c: Vec<u8> = Vec::new();
    let d32 = |c: &mut Vec<u8>, v: u32| c.extend_from_slice(&v.to_le_bytes());
    // 16-bit real mode, CS base 0xffff0000.
    c.push(0xfa); // cli
    c.extend_from_slice(&[0x2e, 0x66, 0x0f, 0x01, 0x16]); // lgdt dword cs:[GDT_PTR]
    c.extend_from_slice(&((GDT_PTR_OFFSET - 0x1_0000) as u16).to_le_bytes());
    c.extend_from_slice(&[0x0f, 0x20, 0xc0]); // mov eax, cr0
    c.extend_from_slice(&[0x66, 0x83, 0xc8, 0x01]); // or eax, 1
    c.extend_from_slice(&[0x0f, 0x22, 0xc0]); // mov cr0, eax
    c.extend_from_slice(&[0x66, 0xea]); // jmp far 0x08:pm32
    let pm32_fixup = c.len();
    d32(&mut c, 0);
    c.extend_from_slice(&0x08u16.to_le_bytes());

    // 32-bit protected mode (selector 0x08 is Linux's flat CODE32 in our GDT).
    let pm32 = c.len();
    c[pm32_fixup..pm32_fixup + 4].copy_from_slice(&(STUB_LINEAR + pm32 as u32).to_le_bytes());
    c.extend_from_slice(&[0x66, 0xb8]); // mov ax, ds selector
    c.extend_from_slice(&s.ds.selector.to_le_bytes());
    c.extend_from_slice(&[0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0]); // mov ds/es/ss, ax
                                                                // PIIX4 PM (00:01.3): PMBA = 0x600, PMIOSE = 1; then SCI_EN, as Janus's PM block starts.
    for (reg, val, byte) in [(0x40u32, 0x601u32, false), (0x80, 1, true)] {
        c.extend_from_slice(&[0x66, 0xba, 0xf8, 0x0c]); // mov dx, 0xcf8
        c.push(0xb8);
        d32(&mut c, 0x8000_0000 | (1 << 11) | (3 << 8) | reg);
        c.push(0xef); // out dx, eax
        c.extend_from_slice(&[0x66, 0xba, 0xfc, 0x0c]); // mov dx, 0xcfc
        if byte {
            c.extend_from_slice(&[0xb0, val as u8, 0xee]); // mov al, val; out dx, al
        } else {
            c.push(0xb8);
            d32(&mut c, val);
            c.push(0xef);
        }
    }
    c.extend_from_slice(&[0x66, 0xba]); // mov dx, PM1a_CNT
    c.extend_from_slice(&janus_abi::pc::PM1A_CNT_BLK.to_le_bytes());
    c.extend_from_slice(&[0x66, 0xb8, 0x01, 0x00, 0x66, 0xef]); // mov ax, 1 (SCI_EN); out dx, ax
    c.push(0xb8);
    d32(&mut c, s.cr4 as u32);
    c.extend_from_slice(&[0x0f, 0x22, 0xe0]); // mov cr4, eax
    c.push(0xb8);
    d32(&mut c, s.cr3 as u32);
    c.extend_from_slice(&[0x0f, 0x22, 0xd8]); // mov cr3, eax
    c.push(0xb9);
    d32(&mut c, 0xc000_0080); // mov ecx, IA32_EFER
    c.push(0xb8);
    d32(&mut c, (s.efer & !janus_engine::cpu::bits::EFER_LMA) as u32);
    c.extend_from_slice(&[0x31, 0xd2, 0x0f, 0x30]); // xor edx, edx; wrmsr
    c.push(0xb8);
    d32(&mut c, s.cr0 as u32);
    c.extend_from_slice(&[0x0f, 0x22, 0xc0]); // mov cr0, eax (paging on: long mode active)
    c.push(0xea); // jmp far cs:long64
    let lm_fixup = c.len();
    d32(&mut c, 0);
    c.extend_from_slice(&s.cs.selector.to_le_bytes());

    // 64-bit mode.
    let lm = c.len();
    c[lm_fixup..lm_fixup + 4].copy_from_slice(&(STUB_LINEAR + lm as u32).to_le_bytes());
    c.extend_from_slice(&[0x66, 0xb8]);
    c.extend_from_slice(&s.ds.selector.to_le_bytes());
    c.extend_from_slice(&[0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0x8e, 0xe0, 0x8e, 0xe8]);
    for (op, v) in [
        (0xbe, s.gprs[gpr::RSI]),
        (0xbc, s.gprs[gpr::RSP]),
        (0xb8, s.rip),
    ] {
        c.extend_from_slice(&[0x48, op]); // mov r64, imm64
        c.extend_from_slice(&v.to_le_bytes());
    }
    c.extend_from_slice(&[0xff, 0xe0]); // jmp rax

    let mut gdt_ptr = [0u8; 6];
    gdt_ptr[..2].copy_from_slice(&s.gdt.limit.to_le_bytes());
    gdt_ptr[2..].copy_from_slice(&(s.gdt.base as u32).to_le_bytes());
    (c, gdt_ptr)
}

fn dump(mem: &GuestMemory, at: u64, len: usize, path: &Path) {
    let mut b = vec![0u8; len];
    mem.read_slice(&mut b, GuestAddress(at)).unwrap();
    std::fs::write(path, b).unwrap();
}

#[test]
fn debian_kernel_boots_on_qemu_with_janus_tables() {
    let qemu = "qemu-system-x86_64";
    if Command::new(qemu).arg("--version").output().is_err() {
        eprintln!("skipped: {qemu} is not installed");
        return;
    }
    let dir = guest_dir();
    let (Ok(kernel), Ok(initrd)) = (
        std::fs::read(dir.join("vmlinuz")),
        std::fs::read(dir.join("initramfs.cpio.gz")),
    ) else {
        eprintln!(
            "skipped: no guest assets in {}; run scripts/guest-assets.sh",
            dir.display()
        );
        return;
    };

    let vcpus = 2;
    let mem_size = 512 * MIB;
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), mem_size as usize)]).unwrap();
    let script = "echo cpus=$(grep -c ^processor /proc/cpuinfo); \
                  echo tables: $(ls /sys/firmware/acpi/tables); \
                  echo clocksources: $(cat /sys/devices/system/clocksource/clocksource0/available_clocksource); \
                  grep -E ' (IO-APIC|XT-PIC) ' /proc/interrupts | head -n 4\n";
    let cmdline = format!(
        "console=ttyS0 panic=-1 loglevel=7 janus.cmd={}",
        base64(script.as_bytes())
    );
    let acpi = AcpiConfig::new(vcpus);
    let state = load_linux(
        &mem,
        &LinuxBoot {
            kernel: &kernel,
            initramfs: Some(&initrd),
            cmdline: &cmdline,
            acpi: &acpi,
        },
    )
    .unwrap();
    let zp = layout::ZERO_PAGE;
    let rd_at: u32 = mem.read_obj(GuestAddress(zp + 0x218)).unwrap();
    let rd_len: u32 = mem.read_obj(GuestAddress(zp + 0x21c)).unwrap();
    assert_eq!(rd_len as usize, initrd.len());

    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("qemu_boot");
    std::fs::create_dir_all(&out).unwrap();
    dump(&mem, 0, 0xa_0000, &out.join("low.bin"));
    dump(&mem, MIB, kernel.len(), &out.join("kernel.bin"));
    dump(&mem, rd_at.into(), initrd.len(), &out.join("initrd.bin"));
    let mut bios = vec![0u8; BIOS_SIZE];
    mem.read_slice(&mut bios, GuestAddress(0xe_0000)).unwrap();
    assert!(
        bios[STUB_OFFSET..].iter().all(|&b| b == 0),
        "ACPI tables reach the stub's page"
    );
    let (code, gdt_ptr) = stub(&state);
    bios[STUB_OFFSET..STUB_OFFSET + code.len()].copy_from_slice(&code);
    bios[GDT_PTR_OFFSET..GDT_PTR_OFFSET + 6].copy_from_slice(&gdt_ptr);
    // Reset vector (f000:fff0): jmp near f000:f000.
    let rel = (0xf000i32 - 0xfff3) as i16;
    bios[0x1_fff0] = 0xe9;
    bios[0x1_fff1..0x1_fff3].copy_from_slice(&rel.to_le_bytes());
    std::fs::write(out.join("bios.bin"), &bios).unwrap();

    let loader = |f: &str, addr: u64| {
        format!(
            "loader,file={},addr={addr:#x},force-raw=on",
            out.join(f).display()
        )
    };
    let mut child = Command::new(qemu)
        .args(["-machine", "pc,accel=tcg", "-nodefaults", "-no-user-config"])
        .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
        .args(["-m", &format!("{}M", mem_size >> 20)])
        .args(["-smp", &vcpus.to_string()])
        .arg("-bios")
        .arg(out.join("bios.bin"))
        .args(["-device", &loader("low.bin", 0)])
        .args(["-device", &loader("kernel.bin", MIB)])
        .args(["-device", &loader("initrd.bin", rd_at.into())])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    let done = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                println!("guest: {line}");
                let end = line.contains("reboot: Power down") || line.contains("Kernel panic");
                log.push(line);
                if end {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    // Let the last lines out, then stop QEMU (S5 with sleep type 5 means nothing to PIIX4).
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    log.extend(rx.try_iter());
    std::fs::write(out.join("console.log"), log.join("\n")).unwrap();
    assert!(
        done,
        "no poweroff within the time limit; see {}",
        out.display()
    );

    let has = |s: &str| log.iter().any(|l| l.contains(s));
    let must = [
        "ACPI: RSDP 0x00000000000E0000",
        "ACPI: XSDT",
        "ACPI: FACP",
        "ACPI: DSDT",
        "ACPI: FACS",
        "ACPI: APIC",
        "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
        "BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved",
        "BIOS-e820: [mem 0x0000000000100000-0x000000001fffffff] usable",
        "BIOS-e820: [mem 0x00000000fec00000-0x00000000fec00fff] reserved",
        "BIOS-e820: [mem 0x00000000fee00000-0x00000000fee00fff] reserved",
        "Setting APIC routing to physical flat",
        "IOAPIC[0]: apic_id 2",
        "INT_SRC_OVR (bus 0 bus_irq 0 global_irq 2 high edge)",
        "INT_SRC_OVR (bus 0 bus_irq 9 global_irq 9 high level)",
        "ACPI: PM-Timer IO Port: 0x608",
        "ACPI: PM: (supports S0 S5)",
        "i8042: Probing ports directly",
        "Trying to unpack rootfs image as initramfs",
        "janus-init: started",
        "cpus=2",
        "tables: APIC DSDT FACP FACS",
        "acpi_pm",
        "janus-cmd: end status=0",
        "Preparing to enter system sleep state S5",
    ];
    let missing: Vec<_> = must.iter().filter(|m| !has(m)).collect();
    assert!(
        missing.is_empty(),
        "missing from the console: {missing:?}; see {}",
        out.join("console.log").display()
    );
    for bad in [
        "Kernel panic",
        "Initramfs unpacking failed",
        "ACPI BIOS",
        "ACPI Error",
    ] {
        assert!(!has(bad), "{bad:?} on the console");
    }
}
