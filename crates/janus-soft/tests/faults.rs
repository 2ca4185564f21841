//! Exceptions in 64-bit mode: page faults (error codes, CR2, restart after the handler fixes
//! the page table, accessed/dirty bits) and delivery of #DE, #UD, #BP, #GP, #DF through the
//! IDT, with IST stacks and triple faults.

mod common;
use common::*;
use iced_x86::code_asm::*;
use janus_soft::testing::{End, TestMachine, CODE};

const IDT: u64 = 0x6000;
/// Handler scratch: error code, CR2, count, vector, frame RIP.
const REC: u64 = 0x7000;
/// A 4 KiB page table for the 2 MiB region at 0x40_0000.
const PT: u64 = 0x5000;
const REGION: u64 = 0x40_0000;
const PD: u64 = 0x3000;
const HANDLERS: u64 = 0x30_0000;
const IST1_TOP: u64 = 0x38_0000;
const TSS: u64 = 0x9000;

/// Installs a 64-bit IDT with `handlers` (vector, address, ist) and a TSS for IST stacks.
fn install_idt(m: &mut TestMachine, handlers: &[(u8, u64, u8)]) {
    for &(v, h, ist) in handlers {
        put_u64s(m, IDT + v as u64 * 16, &gate64(h, 0x08, ist, 0, false));
    }
    m.write_u64(TSS + 0x24, IST1_TOP);
    let r = m.regs();
    r.idtr.base = IDT;
    r.idtr.limit = 0xfff;
    r.tr.base = TSS;
    r.tr.limit = 0x67;
}

/// Maps REGION with 4 KiB pages from PT, identity frames, all not present.
fn fine_region(m: &TestMachine) {
    m.write_u64(PD + (REGION >> 21) * 8, PT | 3);
    for i in 0..512 {
        m.write_u64(PT + i * 8, REGION + i * 0x1000);
    }
}

fn pte(m: &TestMachine, page: u64) -> u64 {
    m.read_u64(PT + ((page - REGION) >> 12) * 8)
}

/// #PF handler: records error code and CR2, makes the page present, writable and
/// executable, and returns to retry the access.
fn pf_handler() -> Vec<u8> {
    asm(64, HANDLERS, |a| {
        a.pop(rax)?;
        a.mov(qword_ptr(REC), rax)?;
        a.mov(rax, cr2)?;
        a.mov(qword_ptr(REC + 8), rax)?;
        a.inc(qword_ptr(REC + 16))?;
        a.mov(rbx, rax)?;
        a.sub(rbx, REGION as i32)?;
        a.shr(rbx, 12)?;
        a.lea(rbx, ptr(PT) + rbx * 8)?;
        a.or(qword_ptr(rbx), 3)?;
        a.btr(qword_ptr(rbx), 63)?;
        a.invlpg(ptr(rax))?;
        a.iretq()
    })
}

fn pf_machine(code: &[u8]) -> TestMachine {
    let mut m = TestMachine::long_mode(code);
    fine_region(&m);
    m.write(HANDLERS, &pf_handler());
    install_idt(&mut m, &[(14, HANDLERS, 0)]);
    m
}

#[test]
fn not_present_read_faults_then_restarts() {
    let code = asm(64, CODE, |a| {
        a.mov(rax, qword_ptr(REGION + 0x1008))?;
        a.hlt()
    });
    let mut m = pf_machine(&code);
    m.write_u64(REGION + 0x1008, 0xfeed_face);
    assert_eq!(m.run(), End::Halt);
    assert_eq!(
        m.read_u64(REC),
        0,
        "error code: not present, read, supervisor"
    );
    assert_eq!(m.read_u64(REC + 8), REGION + 0x1008, "CR2");
    assert_eq!(m.read_u64(REC + 16), 1, "one fault");
    assert_eq!(
        m.regs().gpr[0],
        0xfeed_face,
        "the load restarted and completed"
    );
    assert_ne!(pte(&m, REGION + 0x1000) & 0x20, 0, "accessed bit set");
    assert_eq!(pte(&m, REGION + 0x1000) & 0x40, 0, "not dirty after a read");
}

#[test]
fn write_to_read_only_page_with_wp() {
    let code = asm(64, CODE, |a| {
        a.mov(qword_ptr(REGION + 0x2010), rcx)?;
        a.hlt()
    });
    let mut m = pf_machine(&code);
    m.write_u64(PT + 2 * 8, (REGION + 0x2000) | 1); // present, read-only
    m.regs().gpr[1] = 0x77;
    assert_eq!(m.run(), End::Halt);
    assert_eq!(m.read_u64(REC), 3, "error code: present, write");
    assert_eq!(m.read_u64(REC + 8), REGION + 0x2010);
    assert_eq!(m.read_u64(REGION + 0x2010), 0x77);
    assert_ne!(
        pte(&m, REGION + 0x2000) & 0x40,
        0,
        "dirty bit set by the write"
    );
}

#[test]
fn supervisor_write_to_read_only_page_without_wp() {
    let code = asm(64, CODE, |a| {
        a.mov(qword_ptr(REGION + 0x2010), rcx)?;
        a.hlt()
    });
    let mut m = pf_machine(&code);
    m.write_u64(PT + 2 * 8, (REGION + 0x2000) | 1);
    m.regs().cr0 &= !(1 << 16); // CR0.WP off: supervisor may write read-only pages
    m.regs().gpr[1] = 0x55;
    assert_eq!(m.run(), End::Halt);
    assert_eq!(m.read_u64(REC + 16), 0, "no fault");
    assert_eq!(m.read_u64(REGION + 0x2010), 0x55);
}

#[test]
fn execute_from_no_execute_page() {
    let code = asm(64, CODE, |a| {
        a.mov(rax, REGION + 0x3000)?;
        a.call(rax)?;
        a.hlt()
    });
    let mut m = pf_machine(&code);
    m.write(REGION + 0x3000, &[0x48, 0xc7, 0xc2, 0x2a, 0, 0, 0, 0xc3]); // mov rdx, 42; ret
    m.write_u64(PT + 3 * 8, (REGION + 0x3000) | 3 | (1 << 63));
    assert_eq!(m.run(), End::Halt);
    assert_eq!(
        m.read_u64(REC),
        0x11,
        "error code: present, instruction fetch"
    );
    assert_eq!(m.read_u64(REC + 8), REGION + 0x3000);
    assert_eq!(m.regs().gpr[2], 42, "the code ran after the fix");
}

#[test]
fn fault_on_second_page_of_a_split_store_changes_nothing() {
    // An 8-byte store across 0x40_4ffc..0x40_5004: page 4 present, page 5 not.
    let code = asm(64, CODE, |a| {
        a.mov(rax, 0x1122_3344_5566_7788u64)?;
        a.mov(qword_ptr(REGION + 0x4ffc), rax)?;
        a.hlt()
    });
    let mut m = pf_machine(&code);
    m.write_u64(PT + 4 * 8, (REGION + 0x4000) | 3);
    m.write_u64(REGION + 0x4ff8, 0);
    // Stop at the fault: no handler installed for this one.
    m.regs().idtr.limit = 0;
    assert_eq!(m.run(), End::Shutdown, "no IDT: triple fault");
    assert_eq!(
        m.read_u64(REGION + 0x4ff8),
        0,
        "the first page was not written"
    );
    assert_eq!(m.regs().cr2, REGION + 0x5000);
}

/// A handler that records its vector and the frame's RIP (and error code where
/// `has_error`), then resumes at frame RIP + `skip`.
fn recording_handler(at: u64, vector: u8, has_error: bool, skip: i32) -> Vec<u8> {
    asm(64, at, |a| {
        if has_error {
            a.pop(rax)?;
            a.mov(qword_ptr(REC), rax)?;
        }
        a.mov(qword_ptr(REC + 24), vector as i32)?;
        a.mov(rax, qword_ptr(rsp))?;
        a.mov(qword_ptr(REC + 32), rax)?;
        a.add(qword_ptr(rsp), skip)?;
        a.iretq()
    })
}

#[test]
fn divide_error_reports_the_faulting_instruction() {
    let code = asm(64, CODE, |a| {
        a.xor(ecx, ecx)?;
        a.div(ecx)?; // at CODE + 2, 2 bytes
        a.mov(rsi, 1u64)?;
        a.hlt()
    });
    let mut m = TestMachine::long_mode(&code);
    m.write(HANDLERS, &recording_handler(HANDLERS, 0, false, 2));
    install_idt(&mut m, &[(0, HANDLERS, 0)]);
    assert_eq!(m.run(), End::Halt);
    assert_eq!(m.read_u64(REC + 24), 0);
    assert_eq!(
        m.read_u64(REC + 32),
        CODE + 2,
        "#DE is a fault: RIP of the DIV"
    );
    assert_eq!(m.regs().gpr[6], 1, "resumed after the DIV");
}

#[test]
fn invalid_opcode_and_breakpoint() {
    let code = asm(64, CODE, |a| {
        a.ud2()?; // fault at CODE
        a.int3()?; // trap: frame RIP after it
        a.hlt()
    });
    let mut m = TestMachine::long_mode(&code);
    m.write(HANDLERS, &recording_handler(HANDLERS, 6, false, 2));
    m.write(
        HANDLERS + 0x100,
        &recording_handler(HANDLERS + 0x100, 3, false, 0),
    );
    install_idt(&mut m, &[(6, HANDLERS, 0), (3, HANDLERS + 0x100, 0)]);
    assert_eq!(m.run(), End::Halt);
    assert_eq!(m.read_u64(REC + 24), 3, "the breakpoint came last");
    assert_eq!(m.read_u64(REC + 32), CODE + 3, "#BP returns after the INT3");
}

#[test]
fn general_protection_on_non_canonical_address() {
    let code = asm(64, CODE, |a| {
        a.mov(rax, 0x8000_0000_0000_0000u64)?;
        a.mov(qword_ptr(rax), rax)?; // 3 bytes at CODE + 10
        a.hlt()
    });
    let mut m = TestMachine::long_mode(&code);
    m.write(HANDLERS, &recording_handler(HANDLERS, 13, true, 3));
    install_idt(&mut m, &[(13, HANDLERS, 0)]);
    assert_eq!(m.run(), End::Halt);
    assert_eq!(m.read_u64(REC), 0, "#GP(0)");
    assert_eq!(m.read_u64(REC + 32), CODE + 10);
}

#[test]
fn double_fault_on_an_ist_stack() {
    // #GP's gate is not present (-> #NP) and #NP's gate is not present either: two
    // contributory faults make a double fault, delivered on IST1.
    let code = asm(64, CODE, |a| {
        a.mov(rax, 0x8000_0000_0000_0000u64)?;
        a.mov(qword_ptr(rax), rax)?;
        a.hlt()
    });
    let mut m = TestMachine::long_mode(&code);
    let df = asm(64, HANDLERS, |a| {
        a.pop(rax)?;
        a.mov(qword_ptr(REC), rax)?;
        a.mov(qword_ptr(REC + 40), rsp)?;
        a.hlt()
    });
    m.write(HANDLERS, &df);
    install_idt(&mut m, &[(8, HANDLERS, 1)]);
    assert_eq!(m.run(), End::Halt);
    assert_eq!(m.read_u64(REC), 0, "#DF error code is 0");
    let stack = m.read_u64(REC + 40);
    assert!(
        (IST1_TOP - 64..IST1_TOP).contains(&stack),
        "ran on the IST1 stack: rsp={stack:#x}"
    );
}

#[test]
fn triple_fault_shuts_down() {
    let code = asm(64, CODE, |a| a.ud2());
    let mut m = TestMachine::long_mode(&code);
    // An IDT with nothing present: #UD -> #NP -> #DF -> shutdown.
    install_idt(&mut m, &[]);
    assert_eq!(m.run(), End::Shutdown);
}
