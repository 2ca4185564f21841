//! SYSCALL/SYSRET between CPL 0 and CPL 3 with a Linux-shaped GDT and STAR/LSTAR/SFMASK.

mod common;
use common::*;
use iced_x86::code_asm::*;
use janus_soft::testing::{End, TestMachine, CODE};

const GDT: u64 = 0x8000;
const REC: u64 = 0x7000;
const KENTRY: u64 = 0x30_0000;
const USER: u64 = 0x40_0000;
const PD: u64 = 0x3000;

#[test]
fn syscall_into_the_kernel_and_sysret_back() {
    // GDT as Linux lays it out: 0x10 kernel code, 0x18 kernel data, 0x20 user code32,
    // 0x28 user data, 0x30 user code64.
    let kernel = asm(64, CODE, |a| {
        // STAR: SYSCALL CS = 0x10 (SS 0x18); SYSRET base 0x23 (CS 0x33, SS 0x2b).
        a.mov(ecx, 0xc000_0081u32)?;
        a.xor(eax, eax)?;
        a.mov(edx, 0x0023_0010)?;
        a.wrmsr()?;
        a.mov(ecx, 0xc000_0082u32)?; // LSTAR
        a.mov(eax, KENTRY as u32)?;
        a.xor(edx, edx)?;
        a.wrmsr()?;
        a.mov(ecx, 0xc000_0084u32)?; // SFMASK: clear IF and TF on entry
        a.mov(eax, 0x300)?;
        a.wrmsr()?;
        // Enter user mode with SYSRETQ: RIP from RCX, RFLAGS from R11.
        a.mov(rcx, USER)?;
        a.mov(r11, 0x202u64)?;
        a.sysretq()
    });
    let mut m = TestMachine::long_mode(&kernel);
    put_u64s(
        &m,
        GDT,
        &[
            0,
            0,
            descriptor(true, 0, true, false),
            descriptor(false, 0, false, true),
            descriptor(true, 3, false, true),
            descriptor(false, 3, false, true),
            descriptor(true, 3, true, false),
        ],
    );
    m.regs().gdtr.base = GDT;
    m.regs().gdtr.limit = 0x37;
    // Let user mode reach the 2 MiB page holding its code and data.
    m.write_u64(PD + (USER >> 21) * 8, USER | 0x87);
    let user = asm(64, USER, |a| {
        a.mov(rax, 60u64)?;
        a.mov(rdi, 7u64)?;
        a.syscall()?; // returns to USER + 17
        a.mov(qword_ptr(USER + 0x800), rax)?;
        a.mov(rax, 1u64)?;
        a.syscall()?;
        a.hlt() // never reached: the kernel halts on the second call
    });
    m.write(USER, &user);
    let entry = asm(64, KENTRY, |a| {
        a.mov(qword_ptr(REC), rcx)?; // return RIP
        a.mov(qword_ptr(REC + 8), r11)?; // user RFLAGS
        a.mov(qword_ptr(REC + 16), rdi)?;
        a.mov(rdx, cs)?;
        a.mov(qword_ptr(REC + 24), rdx)?;
        a.pushfq()?;
        a.pop(rdx)?;
        a.mov(qword_ptr(REC + 32), rdx)?; // flags inside the kernel
        a.cmp(rax, 1)?;
        let mut done = a.create_label();
        a.je(done)?;
        a.mov(rax, 99u64)?; // the call's result
        a.sysretq()?;
        a.set_label(&mut done)?;
        a.hlt()
    });
    m.write(KENTRY, &entry);
    assert_eq!(m.run(), End::Halt);
    assert_eq!(
        m.read_u64(USER + 0x800),
        99,
        "user mode got the result after SYSRET"
    );
    assert_eq!(m.read_u64(REC + 16), 7, "arguments pass in registers");
    assert_eq!(m.read_u64(REC + 24), 0x10, "kernel CS from STAR");
    assert_eq!(
        m.read_u64(REC + 8) & 0x3ff,
        0x202,
        "R11 holds the user's RFLAGS"
    );
    assert_eq!(
        m.read_u64(REC + 32) & 0x200,
        0,
        "SFMASK cleared IF in the kernel"
    );
    let second_call_ret = m.read_u64(REC);
    assert!(second_call_ret > USER && second_call_ret < USER + 64);
    let r = m.regs();
    assert_eq!(r.cpl(), 0, "halted in the kernel");
}

#[test]
fn user_mode_cannot_touch_supervisor_pages_or_halt() {
    let kernel = asm(64, CODE, |a| {
        a.mov(rcx, USER)?;
        a.mov(r11, 0x202u64)?;
        a.sysretq()
    });
    let mut m = TestMachine::long_mode(&kernel);
    put_u64s(
        &m,
        GDT,
        &[
            0,
            0,
            descriptor(true, 0, true, false),
            descriptor(false, 0, false, true),
            descriptor(true, 3, false, true),
            descriptor(false, 3, false, true),
            descriptor(true, 3, true, false),
        ],
    );
    m.regs().gdtr.base = GDT;
    m.regs().gdtr.limit = 0x37;
    m.regs().msr.star = 0x0023_0010 << 32;
    m.write_u64(PD + (USER >> 21) * 8, USER | 0x87);
    // A #PF handler (kernel) that records the error code and CPL-3 frame CS, then halts.
    let handler = asm(64, KENTRY, |a| {
        a.pop(rax)?;
        a.mov(qword_ptr(REC), rax)?;
        a.mov(rax, qword_ptr(rsp + 8))?;
        a.mov(qword_ptr(REC + 8), rax)?;
        a.hlt()
    });
    m.write(KENTRY, &handler);
    put_u64s(&m, 0x6000 + 14 * 16, &gate64(KENTRY, 0x10, 0, 0, false));
    m.regs().idtr.base = 0x6000;
    m.regs().idtr.limit = 0xfff;
    // The TSS gives the kernel stack for the privilege change.
    m.write_u64(0x9000 + 4, 0xe_0000);
    m.regs().tr.base = 0x9000;
    let user = asm(64, USER, |a| a.mov(rax, qword_ptr(0x10_0000u64)));
    m.write(USER, &user);
    assert_eq!(m.run(), End::Halt);
    assert_eq!(m.read_u64(REC), 5, "#PF: present, read, user");
    assert_eq!(m.read_u64(REC + 8), 0x33, "interrupted at CPL 3");
    assert_eq!(m.regs().gpr[4] & !0xfff, 0xd_f000, "on the TSS RSP0 stack");
}
