//! The para-virtual hypercall doorbell.
//!
//! A hypercall is a 32-bit `out` to the doorbell port of call N (`DOORBELL_BASE + N`), with EAX
//! holding the guest-physical address of the call's request block. The VMM reads the block,
//! performs the call, and writes the result into the block's `status` field before the guest's
//! `out` instruction retires. Port I/O rather than `vmcall`: KVM answers unknown `vmcall`s in the
//! kernel and never shows them to the VMM, while a port write exits to the VMM on every engine.
//! One exit per call. (Solo5's hvt monitor uses the same convention.)
//!
//! Request blocks are `#[repr(C)]`, little-endian, 8-byte aligned, and must lie entirely in
//! guest RAM; the VMM rejects anything else without touching memory.

/// First doorbell port. Call N rings port `DOORBELL_BASE + N`.
pub const DOORBELL_BASE: u16 = 0x0500;

/// Request blocks must be aligned to this many bytes.
pub const REQUEST_ALIGN: u64 = 8;

/// The calls, numbered by their offset from [`DOORBELL_BASE`].
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// Write a buffer to the console. Request: [`ConsoleWrite`].
    ConsoleWrite = 0,
    /// Place the PV clock page and read the wall clock. Request: [`ClockInfo`].
    ClockInfo = 1,
    /// Read sectors from the block device. Request: [`BlockRead`].
    BlockRead = 2,
    /// Power the VM off. Request: [`Poweroff`].
    Poweroff = 3,
}

/// Number of calls; ports `DOORBELL_BASE .. DOORBELL_BASE + CALL_COUNT` are the doorbell.
pub const CALL_COUNT: u16 = 4;

impl Call {
    /// The call rung at `port`, if `port` is a doorbell port.
    pub const fn from_port(port: u16) -> Option<Call> {
        match port.wrapping_sub(DOORBELL_BASE) {
            0 => Some(Call::ConsoleWrite),
            1 => Some(Call::ClockInfo),
            2 => Some(Call::BlockRead),
            3 => Some(Call::Poweroff),
            _ => None,
        }
    }

    /// The doorbell port of this call.
    pub const fn port(self) -> u16 {
        DOORBELL_BASE + self as u16
    }

    /// Size in bytes of this call's request block.
    pub const fn request_size(self) -> usize {
        match self {
            Call::ConsoleWrite => core::mem::size_of::<ConsoleWrite>(),
            Call::ClockInfo => core::mem::size_of::<ClockInfo>(),
            Call::BlockRead => core::mem::size_of::<BlockRead>(),
            Call::Poweroff => core::mem::size_of::<Poweroff>(),
        }
    }

    /// Byte offset of the `status` field the VMM writes back.
    pub const fn status_offset(self) -> usize {
        match self {
            Call::ConsoleWrite => core::mem::offset_of!(ConsoleWrite, status),
            Call::ClockInfo => core::mem::offset_of!(ClockInfo, status),
            Call::BlockRead => core::mem::offset_of!(BlockRead, status),
            Call::Poweroff => core::mem::offset_of!(Poweroff, status),
        }
    }
}

/// Result codes written to a request's `status` field.
pub mod status {
    /// The call succeeded.
    pub const OK: i32 = 0;
    /// A guest-physical address in the request is outside guest RAM or misaligned.
    pub const BAD_ADDRESS: i32 = -1;
    /// A length or sector number is out of range (zero, too large, not a sector multiple,
    /// past the end of the disk).
    pub const BAD_LENGTH: i32 = -2;
    /// The backend failed (host I/O error).
    pub const IO_ERROR: i32 = -3;
    /// The VMM has no backend for this call (for example no disk).
    pub const NO_DEVICE: i32 = -4;
    /// Value the guest stores before ringing, so it can tell the VMM never answered.
    pub const PENDING: i32 = i32::MIN;
}

/// Largest buffer one [`ConsoleWrite`] may carry.
pub const CONSOLE_MAX: u32 = 64 * 1024;
/// Sector size of the block device.
pub const SECTOR_SIZE: u32 = 512;
/// Largest transfer one [`BlockRead`] may carry.
pub const BLOCK_MAX: u32 = 1024 * 1024;

/// Console write: `len` bytes at guest-physical `buf_gpa`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsoleWrite {
    pub buf_gpa: u64,
    pub len: u32,
    pub status: i32,
}

/// Clock setup and read: the VMM places a [`crate::pvclock::PvclockVcpuTimeInfo`] at
/// `pvclock_gpa` (32 bytes, 32-byte aligned) and keeps it valid, and returns the wall-clock time
/// (Unix epoch) at which the PV clock's system time was zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockInfo {
    pub pvclock_gpa: u64,
    pub wall_sec: u64,
    pub wall_nsec: u32,
    pub status: i32,
}

/// Block read: `len` bytes (a multiple of [`SECTOR_SIZE`], at most [`BLOCK_MAX`]) from sector
/// `sector` into guest-physical `buf_gpa`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockRead {
    pub sector: u64,
    pub buf_gpa: u64,
    pub len: u32,
    pub status: i32,
}

/// Power off with an exit code the VMM reports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Poweroff {
    pub code: u32,
    pub status: i32,
}

// The layouts are part of the ABI: no padding, fixed sizes.
const _: () = assert!(core::mem::size_of::<ConsoleWrite>() == 16);
const _: () = assert!(core::mem::size_of::<ClockInfo>() == 24);
const _: () = assert!(core::mem::size_of::<BlockRead>() == 24);
const _: () = assert!(core::mem::size_of::<Poweroff>() == 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_round_trip() {
        for call in [
            Call::ConsoleWrite,
            Call::ClockInfo,
            Call::BlockRead,
            Call::Poweroff,
        ] {
            assert_eq!(Call::from_port(call.port()), Some(call));
        }
        assert_eq!(Call::from_port(DOORBELL_BASE + CALL_COUNT), None);
        assert_eq!(Call::from_port(DOORBELL_BASE - 1), None);
    }

    #[test]
    fn status_is_last_field() {
        assert_eq!(Call::ConsoleWrite.status_offset(), 12);
        assert_eq!(Call::ClockInfo.status_offset(), 20);
        assert_eq!(Call::BlockRead.status_offset(), 20);
        assert_eq!(Call::Poweroff.status_offset(), 4);
    }
}
