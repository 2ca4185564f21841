//! External interrupts from an interrupt controller, delivered in real, protected and long
//! mode; the STI interrupt shadow; HLT woken by an interrupt.

mod common;
use common::*;
use iced_x86::code_asm::*;
use janus_engine::{CpuState, InterruptController};
use janus_soft::testing::{End, TestMachine, CODE};
use std::sync::{Arc, Mutex};

/// Raises `vector` once the guest has written a non-zero value to `ARM`... simplified: it is
/// pending from the start, acknowledged once.
struct OneShot(Mutex<Option<u8>>);

impl InterruptController for OneShot {
    fn has_interrupt(&self) -> bool {
        self.0.lock().unwrap().is_some()
    }
    fn acknowledge(&self) -> Option<u8> {
        self.0.lock().unwrap().take()
    }
}

fn controller(vector: u8) -> Arc<OneShot> {
    Arc::new(OneShot(Mutex::new(Some(vector))))
}

const IDT: u64 = 0x6000;
const REC: u64 = 0x7000;
const HANDLER: u64 = 0x30_0000;

#[test]
fn long_mode_interrupt_waits_for_sti_and_its_shadow() {
    // IF is clear at first: the pending interrupt must wait. After STI it is taken only once
    // the next instruction (the shadow) has run.
    let code = asm(64, CODE, |a| {
        a.mov(qword_ptr(REC), 1)?;
        a.sti()?;
        a.mov(qword_ptr(REC), 2)?; // in the shadow: runs before the interrupt
        a.mov(qword_ptr(REC), 3)?;
        a.hlt()
    });
    let mut m = TestMachine::long_mode(&code);
    let handler = asm(64, HANDLER, |a| {
        a.mov(rax, qword_ptr(REC))?;
        a.mov(qword_ptr(REC + 8), rax)?; // what the interrupted code had done
        a.inc(qword_ptr(REC + 16))?;
        a.iretq()
    });
    m.write(HANDLER, &handler);
    put_u64s(&m, IDT + 0x40 * 16, &gate64(HANDLER, 0x08, 0, 0, false));
    m.regs().idtr.base = IDT;
    m.regs().idtr.limit = 0xfff;
    m.vcpu.set_interrupt_controller(controller(0x40));
    assert_eq!(m.run(), End::Halt);
    assert_eq!(m.read_u64(REC + 16), 1, "delivered once");
    assert_eq!(
        m.read_u64(REC + 8),
        2,
        "after the instruction in the STI shadow"
    );
    assert_eq!(m.read_u64(REC), 3, "and the code resumed");
}

#[test]
fn halt_is_woken_by_an_interrupt() {
    let code = asm(64, CODE, |a| {
        a.sti()?;
        a.hlt()?; // the classic STI; HLT: the interrupt wakes the HLT
        a.mov(qword_ptr(REC), 7)?;
        a.cli()?;
        a.hlt()
    });
    let mut m = TestMachine::long_mode(&code);
    m.write(
        HANDLER,
        &asm(64, HANDLER, |a| {
            a.inc(qword_ptr(REC + 16))?;
            a.iretq()
        }),
    );
    put_u64s(&m, IDT + 0x40 * 16, &gate64(HANDLER, 0x08, 0, 0, false));
    m.regs().idtr.base = IDT;
    m.regs().idtr.limit = 0xfff;
    m.vcpu.set_interrupt_controller(controller(0x40));
    assert_eq!(m.run(), End::Halt);
    assert_eq!(m.read_u64(REC + 16), 1);
    assert_eq!(m.read_u64(REC), 7, "execution continued after the HLT");
}

#[test]
fn real_mode_interrupt_through_the_ivt() {
    let mut state = CpuState::power_on();
    state.cs.selector = 0;
    state.cs.base = 0;
    state.rip = 0x7c00;
    let mut m = TestMachine::new(&state, 1 << 20);
    // IVT entry 0x20 -> 0000:0x8000.
    m.write(0x20 * 4, &[0x00, 0x80, 0x00, 0x00]);
    let handler = asm(16, 0x8000, |a| {
        a.mov(word_ptr(0x500), 0x5a5a)?;
        a.iret()
    });
    m.write(0x8000, &handler);
    let code = asm(16, 0x7c00, |a| {
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.mov(ss, ax)?;
        a.mov(sp, 0x7000)?;
        a.sti()?;
        a.nop()?;
        a.mov(word_ptr(0x502), 0x1234)?;
        a.cli()?;
        a.hlt()
    });
    m.write(0x7c00, &code);
    m.vcpu.set_interrupt_controller(controller(0x20));
    assert_eq!(m.run(), End::Halt);
    assert_eq!(&m.read(0x500, 4), &[0x5a, 0x5a, 0x34, 0x12]);
    assert_eq!(m.regs().gpr[4] & 0xffff, 0x7000, "IRET restored the stack");
}

#[test]
fn protected_mode_interrupt_gate() {
    let mut state = CpuState::power_on();
    state.cs.selector = 0;
    state.cs.base = 0;
    state.rip = 0x7c00;
    let mut m = TestMachine::new(&state, 4 << 20);
    put_u64s(
        &m,
        0x8000,
        &[
            0,
            descriptor(true, 0, false, true),
            descriptor(false, 0, false, true),
        ],
    );
    m.write(0x8100, &[0x17, 0, 0x00, 0x80, 0, 0]);
    // IDT at 0x9000 with vector 0x30 -> 0x08:0xa000; IDTR image at 0x8200.
    m.write_u64(0x9000 + 0x30 * 8, gate32(0xa000, 0x08));
    m.write(0x8200, &[0xff, 0x01, 0x00, 0x90, 0, 0]);
    let real = asm(16, 0x7c00, |a| {
        a.cli()?;
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.lgdt(ptr(0x8100))?;
        a.lidt(ptr(0x8200))?;
        a.mov(eax, cr0)?;
        a.or(eax, 1)?;
        a.mov(cr0, eax)?;
        a.db(&[0x66, 0xea, 0x00, 0x90, 0x01, 0x00, 0x08, 0x00]) // jmp 0x08:0x19000
    });
    let pm = asm(32, 0x19000, |a| {
        a.mov(ax, 0x10)?;
        a.mov(ds, ax)?;
        a.mov(ss, ax)?;
        a.mov(esp, 0x7000)?;
        a.sti()?;
        a.nop()?;
        a.mov(dword_ptr(0x504), 0xcafe)?;
        a.cli()?;
        a.hlt()
    });
    let handler = asm(32, 0xa000, |a| {
        a.pushfd()?;
        a.pop(eax)?;
        a.mov(dword_ptr(0x508), eax)?; // IF is clear inside an interrupt gate
        a.mov(dword_ptr(0x500), 0xbeef)?;
        a.iretd()
    });
    m.write(0x7c00, &real);
    m.write(0x19000, &pm);
    m.write(0xa000, &handler);
    m.vcpu.set_interrupt_controller(controller(0x30));
    let end = m.run();
    let why = m.vcpu.cpu.stop_reason.clone();
    let state = m.regs().to_state().summary();
    assert_eq!(end, End::Halt, "{why} {state}");
    assert_eq!(read_u32(&m, 0x500), 0xbeef);
    assert_eq!(read_u32(&m, 0x504), 0xcafe);
    assert_eq!(
        read_u32(&m, 0x508) & 0x200,
        0,
        "IF cleared by the interrupt gate"
    );
}

/// Pending only once armed (by a device write, in the test).
struct Armed(Mutex<(bool, Option<u8>)>);

impl InterruptController for Armed {
    fn has_interrupt(&self) -> bool {
        let s = self.0.lock().unwrap();
        s.0 && s.1.is_some()
    }
    fn acknowledge(&self) -> Option<u8> {
        let mut s = self.0.lock().unwrap();
        if s.0 {
            s.1.take()
        } else {
            None
        }
    }
}

#[test]
fn an_interrupt_raised_by_an_mmio_write_comes_after_it() {
    // The write raises the interrupt (as a NIC's interrupt cause set register does): the
    // handler must run once, after the write, and the write must not be repeated.
    const MMIO: u64 = 0xfeb0_0000;
    let code = asm(64, CODE, |a| {
        a.sti()?;
        a.nop()?;
        a.mov(eax, 4)?;
        a.mov(dword_ptr(MMIO), eax)?;
        // The engine takes interrupts between blocks: end this one.
        let mut next = a.create_label();
        a.jmp(next)?;
        a.set_label(&mut next)?;
        a.mov(qword_ptr(REC), 5)?;
        a.cli()?;
        a.hlt()
    });
    let mut m = TestMachine::long_mode(&code);
    m.write(
        HANDLER,
        &asm(64, HANDLER, |a| {
            a.mov(rax, qword_ptr(REC))?;
            a.mov(qword_ptr(REC + 8), rax)?;
            a.inc(qword_ptr(REC + 16))?;
            a.iretq()
        }),
    );
    put_u64s(&m, IDT + 0x40 * 16, &gate64(HANDLER, 0x08, 0, 0, false));
    m.regs().idtr.base = IDT;
    m.regs().idtr.limit = 0xfff;
    let chip = Arc::new(Armed(Mutex::new((false, Some(0x40)))));
    m.vcpu.set_interrupt_controller(chip.clone());
    let mut writes = 0;
    let end = m.run_with(100, |access| {
        if let janus_soft::testing::Access::MmioWrite { addr: MMIO, .. } = access {
            writes += 1;
            chip.0.lock().unwrap().0 = true;
        }
        0
    });
    assert_eq!(end, End::Halt);
    assert_eq!(writes, 1, "the write happened once");
    assert_eq!(m.read_u64(REC + 16), 1, "the interrupt was taken once");
    assert_eq!(m.read_u64(REC + 8), 0, "before the code after the write");
    assert_eq!(m.read_u64(REC), 5, "and the code went on");
}
