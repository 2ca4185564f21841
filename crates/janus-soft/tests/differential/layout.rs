//! Addresses shared by the native run and the guest: the data buffer, the test stack, the code
//! and the native harness's control block all sit at the same low addresses in the host
//! process and in the test machine's identity-mapped RAM, so one encoding of an instruction
//! (memory operands, RIP-relative operands, pushed return addresses) means the same on both.

/// Each test thread (family) gets its own region: the host mappings and the guest RAM are
/// separate per region, so families run in parallel.
pub const REGION0: u64 = 0x0200_0000;
pub const REGION_STRIDE: u64 = 0x0010_0000;

/// The data area (memory operands) and the stack area follow each other; both are compared.
pub const DATA_LEN: u64 = 0x1000;
pub const STACK_LEN: u64 = 0x1000;
pub const CMP_LEN: usize = (DATA_LEN + STACK_LEN) as usize;
/// The host's read-write mapping of the compared area.
pub const DATA_MAP_LEN: usize = CMP_LEN;
/// After the compared area, a page mapped neither natively nor in the guest: accesses that
/// run into it fault (#PF) on both sides.
pub const HOLE_LEN: u64 = 0x1000;
/// The host's read-write mapping of the control block (after the hole).
pub const CTRL_MAP_LEN: usize = 0x1000;
/// The host's executable mapping (after the control block).
pub const CODE_MAP_LEN: usize = 0x1000;

/// Control block offsets (native harness only).
pub mod ctrl {
    pub const HOST_RSP: u64 = 0x00;
    pub const IN_FLAGS: u64 = 0x08;
    pub const FAULTED: u64 = 0x10;
    pub const TRAPNO: u64 = 0x18;
    pub const SIGNO: u64 = 0x20;
    pub const FAULT_RIP: u64 = 0x28;
    pub const BODY_PTR: u64 = 0x30;
    pub const OUT_FLAGS: u64 = 0x38;
    pub const IN_GPR: u64 = 0x40;
    pub const OUT_GPR: u64 = 0xc0;
    pub const HOST_FX: u64 = 0x200;
    pub const IN_FX: u64 = 0x400;
    pub const OUT_FX: u64 = 0x600;
    /// Upper halves of YMM0-15 in and out (hosts with AVX).
    pub const IN_YMMH: u64 = 0x800;
    pub const OUT_YMMH: u64 = 0x900;
}

#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub base: u64,
}

impl Layout {
    pub fn new(index: u64) -> Layout {
        Layout {
            base: REGION0 + index * REGION_STRIDE,
        }
    }

    /// Start of the compared area (the data buffer).
    pub fn data(&self) -> u64 {
        self.base
    }
    /// The test stack area (compared too).
    pub fn stack(&self) -> u64 {
        self.base + DATA_LEN
    }
    /// Default RSP of a test state, in the middle of the stack area.
    pub fn stack_top(&self) -> u64 {
        self.stack() + STACK_LEN / 2
    }
    /// A byte the branch bodies write to say which path they took.
    pub fn mark(&self) -> u64 {
        self.data() + DATA_LEN - 8
    }
    /// The unmapped page after the stack area.
    pub fn hole(&self) -> u64 {
        self.base + CMP_LEN as u64
    }
    pub fn ctrl(&self) -> u64 {
        self.hole() + HOLE_LEN
    }
    pub fn code(&self) -> u64 {
        self.ctrl() + CTRL_MAP_LEN as u64
    }
    /// Native harness: where a faulting run resumes.
    pub fn recover(&self) -> u64 {
        self.code() + 0x280
    }
    /// Native harness: saves the results (the body ends with a jump here).
    pub fn epilogue(&self) -> u64 {
        self.code() + 0x400
    }
    /// Where bodies usually start (the same address natively and in the guest).
    pub fn body(&self) -> u64 {
        self.code() + 0x600
    }
    /// The end of the code page; the page after it is unmapped on both sides, so an
    /// instruction placed across the end faults on fetch.
    pub fn code_end(&self) -> u64 {
        self.code() + CODE_MAP_LEN as u64
    }
    /// Room for bodies: from `body()` to `code_end()`.
    pub const BODY_MAX: usize = 0xa00;
}
