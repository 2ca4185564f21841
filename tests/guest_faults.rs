//! A misbehaving guest stops the VM with a report naming the exit and RIP; nothing panics and
//! the process exits non-zero. Accesses where no device is mapped are open bus (all ones,
//! writes dropped), as on a PC, unless `--strict-io` asks for the stop.

mod common;
use common::*;

const ENTRY: u64 = 0x20_0000;

#[test]
fn write_to_unknown_port() {
    require_kvm!();
    // mov dx, 0x1234 ; mov al, 0x56 ; out dx, al ; hlt
    let code = [0x66, 0xba, 0x34, 0x12, 0xb0, 0x56, 0xee, 0xf4];
    let path = guest("unknown-port", &code);
    let o = janus(&[
        "run",
        "--engine",
        "kvm",
        "--strict-io",
        "--kernel",
        path.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("pio_out of 0x56 (1 byte) to port 0x1234, where no device is mapped"),
        "{err}"
    );
    // VT-x reports RIP on the OUT (entry + 6) until the exit completes; kvm_pvm has already
    // stepped past it (entry + 7). Either way the report names where the guest stopped.
    let at_out = format!("at rip={:#x}", ENTRY + 6);
    let after_out = format!("at rip={:#x}", ENTRY + 7);
    assert!(err.contains(&at_out) || err.contains(&after_out), "{err}");
    assert!(err.contains("vcpu state: rip="), "{err}");
}

#[test]
fn read_from_unknown_port() {
    require_kvm!();
    // in al, 0x99 ; hlt
    let path = guest("unknown-port-read", &[0xe4, 0x99, 0xf4]);
    let o = janus(&[
        "run",
        "--engine",
        "kvm",
        "--strict-io",
        "--kernel",
        path.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("pio_in of 1 byte from port 0x99"), "{err}");
    assert!(err.contains(&format!("at rip={ENTRY:#x}")), "{err}");
}

#[test]
fn triple_fault() {
    require_kvm!();
    // The entry IDT has limit 0, so #UD cannot be delivered: #GP, then #DF, then shutdown.
    let path = guest("triple-fault", &[0x0f, 0x0b]);
    let o = janus(&["run", "--engine", "kvm", "--kernel", path.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("shutdown: the guest triple-faulted"), "{err}");
    assert!(err.contains("at rip=0x"), "{err}");
}

#[test]
fn keyboard_controller_reset_ends_the_run_cleanly() {
    require_kvm!();
    // mov al, 0xfe ; out 0x64, al ; hlt
    let path = guest("kbd-reset", &[0xb0, 0xfe, 0xe6, 0x64, 0xf4]);
    let o = janus(&["run", "--engine", "kvm", "--kernel", path.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("guest reset the machine (i8042)"), "{err}");
}

#[test]
fn emulation_failure_executing_from_the_mmio_hole() {
    require_kvm!();
    // mov eax, 0xd0000000 ; jmp rax -- no RAM there, so KVM cannot fetch the instruction.
    let path = guest("jump-to-mmio", &[0xb8, 0x00, 0x00, 0x00, 0xd0, 0xff, 0xe0]);
    let o = janus(&["run", "--engine", "kvm", "--kernel", path.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("failed: KVM: instruction emulation failed"),
        "{err}"
    );
    assert!(err.contains("at rip=0xd0000000"), "{err}");
}

/// Without `--strict-io`, an unmapped port reads all ones and a write to it is dropped; the
/// guest goes on (here: checks the value and powers off through ACPI).
#[test]
fn unmapped_ports_and_mmio_are_open_bus() {
    #[rustfmt::skip]
    let code = [
        0x66, 0xba, 0x34, 0x12,             // mov dx, 0x1234
        0xec,                               // in al, dx
        0x3c, 0xff,                         // cmp al, 0xff
        0x75, 0x1c,                         // jne fail
        0xee,                               // out dx, al
        0xb8, 0x00, 0x00, 0x00, 0xd0,       // mov eax, 0xd0000000 (the MMIO hole)
        0x8b, 0x08,                         // mov ecx, [rax]
        0x83, 0xf9, 0xff,                   // cmp ecx, -1
        0x75, 0x0f,                         // jne fail
        0x89, 0x08,                         // mov [rax], ecx
        0x66, 0xba, 0x04, 0x06,             // mov dx, 0x604 (PM1a control)
        0x66, 0xb8, 0x00, 0x34,             // mov ax, SLP_TYP 5 | SLP_EN
        0x66, 0xef,                         // out dx, ax
        0xf4,                               // hlt
        0x90, 0x90,                         // (padding)
        0x0f, 0x0b,                         // fail: ud2
    ];
    let path = guest("open-bus", &code);
    let o = janus(&[
        "run",
        "--engine",
        "soft",
        "--kernel",
        path.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("guest powered off (ACPI S5)"), "{err}");
    assert!(err.contains("unmapped (open bus) 4"), "{err}");
    let strict = janus(&[
        "run",
        "--engine",
        "soft",
        "--strict-io",
        "--kernel",
        path.to_str().unwrap(),
    ]);
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
    assert!(stderr(&strict).contains("pio_in of 1 byte from port 0x1234"));
}
