//! Multiboot v1 kernels as QEMU's `-kernel` takes them: small test kernels written here (one
//! with the a.out kludge, one ELF32) print their command line and module through the UART
//! and report the checks they made on the Multiboot information through
//! `--device debug-exit`, whose value becomes the exit status.

mod common;

use common::{stderr, stdout, temp_file};
use iced_x86::code_asm::*;

const LOAD: u32 = 0x10_0000;
const MAGIC: u32 = 0x1bad_b002;
/// debug-exit values: every check passed, or which one failed.
const PASS: u8 = 0x10;
const PORT: u16 = 0xf4;

/// 32-bit code at `at`: checks EAX and the information's flags, memory size and memory map,
/// prints the command line and the module, and writes PASS (or 0x20 + the failed check) to
/// the debug-exit port.
fn kernel_code(at: u32) -> Vec<u8> {
    let mut a = CodeAssembler::new(32).unwrap();
    let mut fails: Vec<CodeLabel> = (0..5).map(|_| a.create_label()).collect();
    let mut print = a.create_label();
    let mut printed = a.create_label();
    let mut done = a.create_label();
    a.cmp(eax, 0x2bad_b002u32 as i32).unwrap();
    a.jne(fails[0]).unwrap();
    // flags: memory, cmdline, mods, mmap, loader name.
    a.mov(ecx, dword_ptr(ebx)).unwrap();
    a.and(ecx, 0x24d).unwrap();
    a.cmp(ecx, 0x24d).unwrap();
    a.jne(fails[1]).unwrap();
    // mem_upper at least 64 MiB (in KiB), and a memory map.
    a.cmp(dword_ptr(ebx + 8), 64 * 1024).unwrap();
    a.jb(fails[2]).unwrap();
    a.cmp(dword_ptr(ebx + 44), 0).unwrap();
    a.je(fails[3]).unwrap();
    // One module.
    a.cmp(dword_ptr(ebx + 20), 1).unwrap();
    a.jne(fails[4]).unwrap();
    a.mov(dx, 0x3f8u32).unwrap();
    // The command line, then the module's bytes.
    a.mov(esi, dword_ptr(ebx + 16)).unwrap();
    a.set_label(&mut print).unwrap();
    a.mov(al, byte_ptr(esi)).unwrap();
    a.test(al, al).unwrap();
    a.jz(printed).unwrap();
    a.out(dx, al).unwrap();
    a.inc(esi).unwrap();
    a.jmp(print).unwrap();
    a.set_label(&mut printed).unwrap();
    a.mov(edi, dword_ptr(ebx + 24)).unwrap();
    a.mov(esi, dword_ptr(edi)).unwrap();
    a.mov(ecx, dword_ptr(edi + 4)).unwrap();
    a.sub(ecx, esi).unwrap();
    a.rep().outsb().unwrap();
    a.mov(al, PASS as u32).unwrap();
    a.set_label(&mut done).unwrap();
    a.mov(dx, PORT as u32).unwrap();
    a.out(dx, al).unwrap();
    a.hlt().unwrap();
    for (k, l) in fails.iter_mut().enumerate() {
        a.set_label(l).unwrap();
        a.mov(al, 0x20 + k as u32).unwrap();
        a.jmp(done).unwrap();
    }
    a.assemble(at as u64).unwrap()
}

fn header(flags: u32, addrs: &[u32]) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [MAGIC, flags, 0u32.wrapping_sub(MAGIC.wrapping_add(flags))]
        .iter()
        .chain(addrs)
    {
        v.extend_from_slice(&w.to_le_bytes());
    }
    v
}

/// An a.out-kludge kernel: the header at the start of the file, loaded at 1 MiB.
fn aout_kernel() -> Vec<u8> {
    let entry = LOAD + 48;
    let mut image = header(1 << 16 | 1 << 1, &[LOAD, LOAD, 0, LOAD + 0x1000, entry]);
    image.resize(48, 0);
    image.extend(kernel_code(entry));
    image
}

/// An ELF32 kernel: one loadable segment at 1 MiB holding the header and the code.
fn elf32_kernel() -> Vec<u8> {
    let body_at = 0x60u32;
    let entry = LOAD + 16;
    let mut body = header(1 << 1, &[]);
    body.resize(16, 0);
    body.extend(kernel_code(entry));
    let mut e = vec![0u8; body_at as usize];
    e[..4].copy_from_slice(b"\x7fELF");
    (e[4], e[5], e[6]) = (1, 1, 1);
    let put16 = |e: &mut Vec<u8>, o: usize, v: u16| e[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |e: &mut Vec<u8>, o: usize, v: u32| e[o..o + 4].copy_from_slice(&v.to_le_bytes());
    put16(&mut e, 16, 2); // ET_EXEC
    put16(&mut e, 18, 3); // EM_386
    put32(&mut e, 20, 1);
    put32(&mut e, 24, entry);
    put32(&mut e, 28, 52); // program headers right after the ELF header
    put16(&mut e, 40, 52);
    put16(&mut e, 42, 32);
    put16(&mut e, 44, 1);
    // PT_LOAD: offset, vaddr, paddr, filesz, memsz, flags (RWX), align.
    for (k, v) in [1, body_at, LOAD, LOAD, body.len() as u32, 0x2000, 7, 0x1000]
        .iter()
        .enumerate()
    {
        put32(&mut e, 52 + 4 * k, *v);
    }
    e.extend(body);
    e
}

fn boot(name: &str, image: &[u8]) -> std::process::Output {
    let kernel = temp_file(name, image);
    let module = temp_file(&format!("{name}.mod"), b"[module bytes]");
    common::janus(&[
        "run",
        "--engine",
        "soft",
        "--kernel",
        kernel.to_str().unwrap(),
        "--initramfs",
        module.to_str().unwrap(),
        "--cmdline",
        "mb-test cmdline=ok ",
        "--device",
        &format!("debug-exit,iobase={PORT:#x}"),
    ])
}

/// Boots `image` and checks it passed its checks and printed its command line and module.
fn passes(name: &str, image: &[u8]) {
    let o = boot(name, image);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(
        o.status.code(),
        Some(((PASS << 1) | 1) as i32),
        "{out}\n{err}"
    );
    assert!(out.contains("mb-test cmdline=ok [module bytes]"), "{out}");
    assert!(err.contains("guest wrote 0x10 to debug-exit"), "{err}");
}

#[test]
fn aout_kludge_kernel_gets_its_information() {
    passes("mb-aout", &aout_kernel());
}

#[test]
fn elf32_kernel_gets_its_information() {
    passes("mb-elf32", &elf32_kernel());
}

#[test]
fn a_kernel_asking_for_what_janus_lacks_is_refused() {
    // Flag bit 3 is a requirement no loader defines.
    let mut image = header(1 << 16 | 1 << 3, &[LOAD, LOAD, 0, 0, LOAD + 48]);
    image.resize(64, 0);
    let kernel = temp_file("mb-bad", &image);
    let o = common::janus(&[
        "run",
        "--engine",
        "soft",
        "--kernel",
        kernel.to_str().unwrap(),
    ]);
    common::assert_one_line_error(&o, "requires features Janus does not provide");
}
