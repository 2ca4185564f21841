//! The para-virtual hypercall doorbell (ABI in `janus_abi::hypercall`).
//!
//! Every field of a request block is guest-controlled. The block itself must be 8-byte aligned
//! and lie in guest RAM, or the VMM cannot even answer (the call is dropped and counted); every
//! address and length inside it is checked before any memory is touched, and a bad one is
//! answered with an error status, as a device would answer a bad command.

use crate::control::{StopRequest, VmControl};
use crate::disk::DiskImage;
use crate::pvclock::PvClock;
use crate::uart16550::ConsoleOut;
use crate::BusDevice;
use janus_abi::hypercall::{
    status, Call, BLOCK_MAX, CALL_COUNT, CONSOLE_MAX, REQUEST_ALIGN, SECTOR_SIZE,
};
use janus_engine::GuestMemory;
use std::io::Write;
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// Counters of what the doorbell did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HypercallStats {
    pub calls: [u64; CALL_COUNT as usize],
    /// Calls answered with an error status.
    pub errors: u64,
    /// Rings that could not be answered (bad request block address, wrong access width).
    pub dropped: u64,
    pub console_bytes: u64,
    pub block_bytes: u64,
}

pub struct Doorbell {
    mem: GuestMemory,
    console: ConsoleOut,
    disk: Option<Arc<DiskImage>>,
    pvclock: PvClock,
    control: Arc<VmControl>,
    stats: HypercallStats,
    scratch: Vec<u8>,
    warned: bool,
}

impl Doorbell {
    pub fn new(
        mem: GuestMemory,
        console: ConsoleOut,
        disk: Option<Arc<DiskImage>>,
        pvclock: PvClock,
        control: Arc<VmControl>,
    ) -> Doorbell {
        Doorbell {
            mem,
            console,
            disk,
            pvclock,
            control,
            stats: HypercallStats::default(),
            scratch: Vec::new(),
            warned: false,
        }
    }

    pub fn stats(&self) -> HypercallStats {
        self.stats
    }

    /// Logs the first guest misuse; later ones are only counted.
    fn misuse(&mut self, what: std::fmt::Arguments) {
        if !self.warned {
            tracing::warn!("hypercall: {what} (further misuse is counted, not logged)");
            self.warned = true;
        }
    }

    fn in_ram(&self, gpa: u64, len: u64) -> bool {
        len == 0
            || gpa
                .checked_add(len - 1)
                .is_some_and(|_| self.mem.check_range(GuestAddress(gpa), len as usize))
    }

    fn field<T: vm_memory::ByteValued + Default>(&self, req: u64, offset: u64) -> T {
        // The whole block was checked to be in RAM, so this read cannot fail; default if it did.
        self.mem
            .read_obj(GuestAddress(req + offset))
            .unwrap_or_default()
    }

    fn ring(&mut self, call: Call, req: u64) {
        if !req.is_multiple_of(REQUEST_ALIGN) || !self.in_ram(req, call.request_size() as u64) {
            self.stats.dropped += 1;
            self.misuse(format_args!(
                "{call:?} request block at {req:#x} is misaligned or outside guest RAM"
            ));
            return;
        }
        self.stats.calls[call as usize] += 1;
        let status = match call {
            Call::ConsoleWrite => self.console_write(req),
            Call::ClockInfo => self.clock_info(req),
            Call::BlockRead => self.block_read(req),
            Call::Poweroff => {
                let code: u32 = self.field(req, 0);
                self.control.request(StopRequest::Poweroff {
                    code,
                    via: "hypercall",
                });
                status::OK
            }
        };
        if status != status::OK {
            self.stats.errors += 1;
        }
        let at = GuestAddress(req + call.status_offset() as u64);
        // Checked in RAM above.
        let _ = self.mem.write_obj(status, at);
    }

    fn console_write(&mut self, req: u64) -> i32 {
        let buf: u64 = self.field(req, 0);
        let len: u32 = self.field(req, 8);
        if len > CONSOLE_MAX {
            return status::BAD_LENGTH;
        }
        if !self.in_ram(buf, len as u64) {
            return status::BAD_ADDRESS;
        }
        self.scratch.resize(len as usize, 0);
        if self
            .mem
            .read_slice(&mut self.scratch, GuestAddress(buf))
            .is_err()
        {
            return status::BAD_ADDRESS;
        }
        self.stats.console_bytes += len as u64;
        match self
            .console
            .write_all(&self.scratch)
            .and_then(|_| self.console.flush())
        {
            Ok(()) => status::OK,
            Err(_) => status::IO_ERROR,
        }
    }

    fn clock_info(&mut self, req: u64) -> i32 {
        let page: u64 = self.field(req, 0);
        if !page.is_multiple_of(32) || !self.in_ram(page, 32) {
            return status::BAD_ADDRESS;
        }
        if self.pvclock.write(&self.mem, page).is_err() {
            return status::BAD_ADDRESS;
        }
        let wall = self.pvclock.wall_base();
        let _ = self.mem.write_obj(wall.as_secs(), GuestAddress(req + 8));
        let _ = self
            .mem
            .write_obj(wall.subsec_nanos(), GuestAddress(req + 16));
        status::OK
    }

    fn block_read(&mut self, req: u64) -> i32 {
        let sector: u64 = self.field(req, 0);
        let buf: u64 = self.field(req, 8);
        let len: u32 = self.field(req, 16);
        let Some(disk) = self.disk.clone() else {
            return status::NO_DEVICE;
        };
        if len == 0 || len > BLOCK_MAX || !len.is_multiple_of(SECTOR_SIZE) {
            return status::BAD_LENGTH;
        }
        let offset = sector.checked_mul(SECTOR_SIZE as u64);
        if offset
            .and_then(|o| o.checked_add(len as u64))
            .is_none_or(|end| end > disk.size())
        {
            return status::BAD_LENGTH;
        }
        if !self.in_ram(buf, len as u64) {
            return status::BAD_ADDRESS;
        }
        self.scratch.resize(len as usize, 0);
        if disk
            .read_at(offset.unwrap_or(0), &mut self.scratch)
            .is_err()
        {
            return status::IO_ERROR;
        }
        if self
            .mem
            .write_slice(&self.scratch, GuestAddress(buf))
            .is_err()
        {
            return status::BAD_ADDRESS;
        }
        self.stats.block_bytes += len as u64;
        status::OK
    }
}

impl BusDevice for Doorbell {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff); // doorbells are write-only
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let call = u16::try_from(offset)
            .ok()
            .and_then(|o| Call::from_port(janus_abi::hypercall::DOORBELL_BASE.wrapping_add(o)));
        let Some(call) = call else {
            self.stats.dropped += 1;
            return;
        };
        let Ok(word) = <[u8; 4]>::try_from(data) else {
            self.stats.dropped += 1;
            self.misuse(format_args!(
                "{call:?} rung with a {}-byte write; a call is a 32-bit out",
                data.len()
            ));
            return;
        };
        self.ring(call, u32::from_le_bytes(word) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use janus_engine::GuestClock;
    use std::sync::Mutex;
    use std::time::Instant;

    struct FixedTsc;
    impl GuestClock for FixedTsc {
        fn guest_tsc(&self) -> u64 {
            1_000_000
        }
        fn tsc_hz(&self) -> u64 {
            2_000_000_000
        }
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const RAM: usize = 0x40_0000;
    const REQ: u64 = 0x1000;

    fn setup(disk: bool) -> (Doorbell, GuestMemory, Buf, Arc<VmControl>) {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
        let out = Buf::default();
        let control = Arc::new(VmControl::new());
        let d = Doorbell::new(
            mem.clone(),
            ConsoleOut::new(Box::new(out.clone())),
            disk.then(|| Arc::new(DiskImage::test_image())),
            PvClock::new(Arc::new(FixedTsc), Instant::now()),
            control.clone(),
        );
        (d, mem, out, control)
    }

    fn ring(d: &mut Doorbell, call: Call, req: u64) {
        d.write(call as u64, &(req as u32).to_le_bytes());
    }

    fn status_of(mem: &GuestMemory, call: Call) -> i32 {
        mem.read_obj(GuestAddress(REQ + call.status_offset() as u64))
            .unwrap()
    }

    #[test]
    fn console_write_reaches_output() {
        let (mut d, mem, out, _) = setup(false);
        mem.write_slice(b"hello\n", GuestAddress(0x2000)).unwrap();
        mem.write_obj(0x2000u64, GuestAddress(REQ)).unwrap();
        mem.write_obj(6u32, GuestAddress(REQ + 8)).unwrap();
        ring(&mut d, Call::ConsoleWrite, REQ);
        assert_eq!(status_of(&mem, Call::ConsoleWrite), status::OK);
        assert_eq!(&*out.0.lock().unwrap(), b"hello\n");
        assert_eq!(d.stats().console_bytes, 6);
    }

    #[test]
    fn console_write_rejects_bad_buffers() {
        let (mut d, mem, out, _) = setup(false);
        for (buf, len, want) in [
            (RAM as u64 - 2, 6u32, status::BAD_ADDRESS),
            (u64::MAX - 1, 6, status::BAD_ADDRESS),
            (0x2000, CONSOLE_MAX + 1, status::BAD_LENGTH),
        ] {
            mem.write_obj(buf, GuestAddress(REQ)).unwrap();
            mem.write_obj(len, GuestAddress(REQ + 8)).unwrap();
            ring(&mut d, Call::ConsoleWrite, REQ);
            assert_eq!(
                status_of(&mem, Call::ConsoleWrite),
                want,
                "buf {buf:#x} len {len}"
            );
        }
        assert!(out.0.lock().unwrap().is_empty());
        assert_eq!(d.stats().errors, 3);
    }

    #[test]
    fn unanswerable_rings_are_dropped() {
        let (mut d, _, _, _) = setup(false);
        ring(&mut d, Call::ConsoleWrite, REQ + 4); // misaligned
        ring(&mut d, Call::ConsoleWrite, RAM as u64 - 8); // block runs past RAM
        d.write(Call::ConsoleWrite as u64, &[1, 2]); // 16-bit ring
        d.write(99, &[0, 0, 0, 0]); // not a call
        assert_eq!(d.stats().dropped, 4);
        assert_eq!(d.stats().calls, [0; CALL_COUNT as usize]);
    }

    #[test]
    fn block_read_checks_range_and_copies() {
        let (mut d, mem, _, _) = setup(true);
        let set = |sector: u64, buf: u64, len: u32| {
            mem.write_obj(sector, GuestAddress(REQ)).unwrap();
            mem.write_obj(buf, GuestAddress(REQ + 8)).unwrap();
            mem.write_obj(len, GuestAddress(REQ + 16)).unwrap();
        };
        set(8, 0x10_0000, 4096);
        ring(&mut d, Call::BlockRead, REQ);
        assert_eq!(status_of(&mem, Call::BlockRead), status::OK);
        let mut got = [0u8; 4096];
        mem.read_slice(&mut got, GuestAddress(0x10_0000)).unwrap();
        let want: Vec<u8> = (4096..8192).map(janus_abi::demo::test_image_byte).collect();
        assert_eq!(&got[..], &want[..]);
        for (sector, buf, len, want) in [
            (0, 0x10_0000, 0, status::BAD_LENGTH),
            (0, 0x10_0000, 100, status::BAD_LENGTH),
            (0, 0x10_0000, BLOCK_MAX + 512, status::BAD_LENGTH),
            (4095, 0x10_0000, 1024, status::BAD_LENGTH), // past the 2 MiB image
            (u64::MAX / 2, 0x10_0000, 512, status::BAD_LENGTH),
            (0, RAM as u64 - 512, 1024, status::BAD_ADDRESS),
        ] {
            set(sector, buf, len);
            ring(&mut d, Call::BlockRead, REQ);
            assert_eq!(
                status_of(&mem, Call::BlockRead),
                want,
                "sector {sector} len {len}"
            );
        }
        assert_eq!(d.stats().block_bytes, 4096);
    }

    #[test]
    fn block_read_without_disk() {
        let (mut d, mem, _, _) = setup(false);
        mem.write_obj(512u32, GuestAddress(REQ + 16)).unwrap();
        ring(&mut d, Call::BlockRead, REQ);
        assert_eq!(status_of(&mem, Call::BlockRead), status::NO_DEVICE);
    }

    #[test]
    fn clock_info_writes_page_and_wall_base() {
        let (mut d, mem, _, _) = setup(false);
        mem.write_obj(0x3000u64, GuestAddress(REQ)).unwrap();
        ring(&mut d, Call::ClockInfo, REQ);
        assert_eq!(status_of(&mem, Call::ClockInfo), status::OK);
        let ts: u64 = mem.read_obj(GuestAddress(0x3008)).unwrap();
        assert_eq!(ts, 1_000_000);
        let wall: u64 = mem.read_obj(GuestAddress(REQ + 8)).unwrap();
        assert!(wall > 1_700_000_000);
        mem.write_obj(0x3010u64, GuestAddress(REQ)).unwrap();
        ring(&mut d, Call::ClockInfo, REQ);
        assert_eq!(
            status_of(&mem, Call::ClockInfo),
            status::BAD_ADDRESS,
            "misaligned page"
        );
    }

    #[test]
    fn poweroff_requests_stop() {
        let (mut d, mem, _, control) = setup(false);
        mem.write_obj(3u32, GuestAddress(REQ)).unwrap();
        ring(&mut d, Call::Poweroff, REQ);
        assert_eq!(
            control.take(),
            Some(StopRequest::Poweroff {
                code: 3,
                via: "hypercall"
            })
        );
    }
}
