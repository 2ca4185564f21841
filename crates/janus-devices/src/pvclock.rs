//! Writes the PV clock page (pvclock layout) for a para-virtualized guest.
//!
//! System time counts from VM creation. The guest TSC is read from outside the vCPU through the
//! engine's [`GuestClock`]; with a stable TSC one write is enough, and the guest extrapolates.

use janus_abi::pvclock::{time_scale, PvclockVcpuTimeInfo, PVCLOCK_TSC_STABLE_BIT};
use janus_engine::{GuestClock, GuestMemory};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vm_memory::{Bytes, GuestAddress};

pub struct PvClock {
    clock: Arc<dyn GuestClock>,
    /// Host monotonic time when guest system time was zero.
    start: Instant,
    /// Wall-clock time at `start`.
    wall_at_start: Duration,
}

impl PvClock {
    pub fn new(clock: Arc<dyn GuestClock>, start: Instant) -> PvClock {
        let wall_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        PvClock {
            clock,
            start,
            wall_at_start: wall_now.saturating_sub(start.elapsed()),
        }
    }

    /// Wall-clock time at which system time was zero.
    pub fn wall_base(&self) -> Duration {
        self.wall_at_start
    }

    /// A consistent snapshot: the guest TSC and system time read at the same moment.
    pub fn snapshot(&self, version: u32) -> PvclockVcpuTimeInfo {
        let (mul, shift) = time_scale(self.clock.tsc_hz());
        let tsc = self.clock.guest_tsc();
        let system_time = self.start.elapsed().as_nanos() as u64;
        PvclockVcpuTimeInfo {
            version,
            tsc_timestamp: tsc,
            system_time,
            tsc_to_system_mul: mul,
            tsc_shift: shift,
            flags: PVCLOCK_TSC_STABLE_BIT,
            ..Default::default()
        }
    }

    /// Writes the page at `gpa` with the version protocol (odd while writing, then even).
    /// `gpa` must have been checked to hold 32 bytes of guest RAM.
    pub fn write(&self, mem: &GuestMemory, gpa: u64) -> vm_memory::GuestMemoryResult<()> {
        let old: u32 = mem.read_obj(GuestAddress(gpa))?;
        let writing = old | 1;
        mem.write_obj(writing, GuestAddress(gpa))?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let p = self.snapshot(writing);
        mem.write_obj(p.tsc_timestamp, GuestAddress(gpa + 8))?;
        mem.write_obj(p.system_time, GuestAddress(gpa + 16))?;
        mem.write_obj(p.tsc_to_system_mul, GuestAddress(gpa + 24))?;
        mem.write_obj(p.tsc_shift as u8, GuestAddress(gpa + 28))?;
        mem.write_obj(p.flags, GuestAddress(gpa + 29))?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        mem.write_obj(writing.wrapping_add(1), GuestAddress(gpa))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guest TSC at 1 GHz that reads host nanoseconds since `start`.
    struct NanoTsc(Instant);
    impl GuestClock for NanoTsc {
        fn guest_tsc(&self) -> u64 {
            self.0.elapsed().as_nanos() as u64
        }
        fn tsc_hz(&self) -> u64 {
            1_000_000_000
        }
    }

    #[test]
    fn page_tracks_host_time_and_versions_are_even() {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let start = Instant::now();
        let pv = PvClock::new(Arc::new(NanoTsc(start)), start);
        pv.write(&mem, 0x1000).unwrap();
        let version: u32 = mem.read_obj(GuestAddress(0x1000)).unwrap();
        assert_eq!(version % 2, 0);
        pv.write(&mem, 0x1000).unwrap();
        let v2: u32 = mem.read_obj(GuestAddress(0x1000)).unwrap();
        assert_eq!(v2, version + 2);
        let tsc_ts: u64 = mem.read_obj(GuestAddress(0x1008)).unwrap();
        let sys: u64 = mem.read_obj(GuestAddress(0x1010)).unwrap();
        let mul: u32 = mem.read_obj(GuestAddress(0x1018)).unwrap();
        let shift: u8 = mem.read_obj(GuestAddress(0x101c)).unwrap();
        let page = PvclockVcpuTimeInfo {
            tsc_timestamp: tsc_ts,
            system_time: sys,
            tsc_to_system_mul: mul,
            tsc_shift: shift as i8,
            ..Default::default()
        };
        // Extrapolating from the page gives host time since start, to within a millisecond.
        let guest_now = page.nanos_at(start.elapsed().as_nanos() as u64);
        let host_now = start.elapsed().as_nanos() as u64;
        assert!(
            guest_now.abs_diff(host_now) < 1_000_000,
            "{guest_now} vs {host_now}"
        );
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let guest_wall = pv.wall_base() + Duration::from_nanos(guest_now);
        assert!(guest_wall.abs_diff(wall) < Duration::from_millis(50));
    }
}
