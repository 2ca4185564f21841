//! String port I/O: a forward REP INS/OUTS over RAM leaves the engine once per page with all
//! its elements, as KVM reports string I/O, and gives the same result as one exit per element.

use janus_soft::testing::{Access, End, TestMachine, DATA};

#[test]
fn rep_insd_takes_one_exit_per_page() {
    // mov edx, 0x1f0 ; mov edi, DATA + 0x800 ; mov ecx, 1000 ; rep insd ; hlt
    let code = [
        0xba, 0xf0, 0x01, 0x00, 0x00, 0xbf, 0x00, 0x08, 0x20, 0x00, 0xb9, 0xe8, 0x03, 0x00, 0x00,
        0xf3, 0x6d, 0xf4,
    ];
    let mut m = TestMachine::long_mode(&code);
    let mut next = 0u64;
    let end = m.run_with(10, |a| {
        assert_eq!(
            a,
            Access::PioIn {
                port: 0x1f0,
                size: 4
            }
        );
        next += 1;
        next
    });
    assert_eq!(end, End::Halt);
    assert_eq!(next, 1000, "every element read once, in order");
    // 4,000 bytes from 0x800 into the page: 512 elements to the page's end, then 488.
    assert_eq!(m.io_exits, 2);
    let got = m.read(DATA + 0x800, 4000);
    for (i, w) in got.chunks(4).enumerate() {
        assert_eq!(u32::from_le_bytes(w.try_into().unwrap()), i as u32 + 1);
    }
    assert_eq!(m.regs().gpr[1], 0, "RCX counted down");
    assert_eq!(m.regs().gpr[7], DATA + 0x800 + 4000, "RDI past the data");
}

#[test]
fn rep_outsb_sends_the_bytes_in_order() {
    // mov edx, 0x3f8 ; mov esi, DATA ; mov ecx, 100 ; rep outsb ; hlt
    let code = [
        0xba, 0xf8, 0x03, 0x00, 0x00, 0xbe, 0x00, 0x00, 0x20, 0x00, 0xb9, 0x64, 0x00, 0x00, 0x00,
        0xf3, 0x6e, 0xf4,
    ];
    let mut m = TestMachine::long_mode(&code);
    let text: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(7)).collect();
    m.write(DATA, &text);
    let mut out = Vec::new();
    let end = m.run_with(10, |a| match a {
        Access::PioOut {
            port: 0x3f8,
            size: 1,
            value,
        } => {
            out.push(value as u8);
            0
        }
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(end, End::Halt);
    assert_eq!(out, text);
    assert_eq!(m.io_exits, 1);
    assert_eq!(m.regs().gpr[6], DATA + 100);
}

#[test]
fn backward_rep_ins_goes_element_by_element() {
    // std ; mov edx, 0x60 ; mov edi, DATA + 10 ; mov ecx, 5 ; rep insb ; cld ; hlt
    let code = [
        0xfd, 0xba, 0x60, 0x00, 0x00, 0x00, 0xbf, 0x0a, 0x00, 0x20, 0x00, 0xb9, 0x05, 0x00, 0x00,
        0x00, 0xf3, 0x6c, 0xfc, 0xf4,
    ];
    let mut m = TestMachine::long_mode(&code);
    let mut next = 0u64;
    let end = m.run_with(10, |_| {
        next += 1;
        next
    });
    assert_eq!(end, End::Halt);
    assert_eq!(m.io_exits, 5);
    assert_eq!(m.read(DATA + 6, 5), vec![5, 4, 3, 2, 1]);
}
