//! kvmclock on engines without a hypervisor to provide it (the soft engine): the MSRs through
//! which a Linux guest places its pvclock page and asks for the wall clock.
//!
//! KVM's behaviour is the model. The system time MSR holds the guest-physical address of the
//! vCPU's `pvclock_vcpu_time_info` with bit 0 as "enable"; while enabled, the page is written
//! at once and again whenever the guest TSC it is derived from changes. The wall clock MSR is
//! a command: the hypervisor writes the wall-clock time at which system time was zero into the
//! 12 bytes at the address. Both MSRs accept any value, as KVM's do; an address the clock page
//! cannot be written at leaves the page alone (logged once and counted), as in KVM.

use crate::pvclock::PvClock;
use janus_abi::kvm_para::{
    PvclockWallClock, MSR_ENABLED, MSR_SYSTEM_TIME, MSR_SYSTEM_TIME_NEW, MSR_WALL_CLOCK,
    MSR_WALL_CLOCK_NEW,
};
use janus_abi::pvclock::PvclockVcpuTimeInfo;
use janus_engine::{DmaObserver, GuestMemory, MsrHandler};
use std::sync::{Arc, Mutex, MutexGuard};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

const PAGE: u64 = 4096;
const TIME_INFO_LEN: u64 = std::mem::size_of::<PvclockVcpuTimeInfo>() as u64;
const WALL_CLOCK_LEN: u64 = std::mem::size_of::<PvclockWallClock>() as u64;

/// What the guest did with the clock MSRs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmClockStats {
    /// Times the pvclock page was written.
    pub page_writes: u64,
    /// Times the wall clock was written.
    pub wall_clock_writes: u64,
    /// Addresses the guest gave that lie outside RAM or cross a page.
    pub bad_addresses: u64,
}

#[derive(Default)]
struct State {
    /// The system time MSR as last written (either number: they are one register).
    system_time: u64,
    /// The wall clock MSR as last written.
    wall_clock: u64,
    stats: KvmClockStats,
    warned: bool,
}

/// The kvmclock MSRs of one vCPU.
pub struct KvmClock {
    mem: GuestMemory,
    pvclock: PvClock,
    dma: Arc<dyn DmaObserver>,
    state: Mutex<State>,
}

impl KvmClock {
    pub fn new(mem: GuestMemory, pvclock: PvClock, dma: Arc<dyn DmaObserver>) -> KvmClock {
        KvmClock {
            mem,
            pvclock,
            dma,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> KvmClockStats {
        self.lock().stats
    }

    /// `len` bytes at `gpa` are guest RAM within one page (KVM maps such structures through a
    /// single-page cache and refuses ones that cross a page).
    fn placeable(&self, gpa: u64, len: u64) -> bool {
        gpa % PAGE + len <= PAGE && self.mem.check_range(GuestAddress(gpa), len as usize)
    }

    fn bad_address(&self, state: &mut State, what: &str, gpa: u64) {
        state.stats.bad_addresses += 1;
        if !state.warned {
            state.warned = true;
            tracing::warn!(
                "kvmclock: the guest placed its {what} at {gpa:#x}, outside RAM or across a page; ignored (further ones are counted, not logged)"
            );
        }
    }

    /// Writes the clock page if the system time MSR enables it.
    fn refresh(&self, state: &mut State) {
        if state.system_time & MSR_ENABLED == 0 {
            return;
        }
        let gpa = state.system_time & !MSR_ENABLED;
        if !self.placeable(gpa, TIME_INFO_LEN) {
            return self.bad_address(state, "clock page", gpa);
        }
        if self.pvclock.write(&self.mem, gpa).is_ok() {
            self.dma.dma_written(gpa, TIME_INFO_LEN);
            state.stats.page_writes += 1;
        }
    }

    fn write_wall_clock(&self, state: &mut State, gpa: u64) {
        if !self.placeable(gpa, WALL_CLOCK_LEN) {
            return self.bad_address(state, "wall clock", gpa);
        }
        let at = GuestAddress(gpa);
        // The version protocol, as KVM writes it: the next odd number while the fields
        // change (an odd value found there is junk from before), the even one after it when
        // done.
        let old: u32 = self.mem.read_obj(at).unwrap_or(0);
        let version = old.wrapping_add(if old & 1 == 1 { 2 } else { 1 });
        let base = self.pvclock.wall_base();
        let wc = PvclockWallClock {
            version,
            sec: base.as_secs() as u32, // wraps in 2106, as the ABI does
            nsec: base.subsec_nanos(),
        };
        let written = self.mem.write_obj(version, at).is_ok()
            && self.mem.write_obj(wc.sec, GuestAddress(gpa + 4)).is_ok()
            && self.mem.write_obj(wc.nsec, GuestAddress(gpa + 8)).is_ok()
            && self.mem.write_obj(version.wrapping_add(1), at).is_ok();
        if written {
            self.dma.dma_written(gpa, WALL_CLOCK_LEN);
            state.stats.wall_clock_writes += 1;
        }
    }
}

impl MsrHandler for KvmClock {
    fn read_msr(&self, index: u32) -> Option<u64> {
        let state = self.lock();
        match index {
            MSR_SYSTEM_TIME | MSR_SYSTEM_TIME_NEW => Some(state.system_time),
            MSR_WALL_CLOCK | MSR_WALL_CLOCK_NEW => Some(state.wall_clock),
            _ => None,
        }
    }

    fn write_msr(&self, index: u32, value: u64) -> Option<bool> {
        let mut state = self.lock();
        match index {
            MSR_SYSTEM_TIME | MSR_SYSTEM_TIME_NEW => {
                state.system_time = value;
                self.refresh(&mut state);
            }
            MSR_WALL_CLOCK | MSR_WALL_CLOCK_NEW => {
                state.wall_clock = value;
                self.write_wall_clock(&mut state, value);
            }
            _ => return None,
        }
        Some(true)
    }

    fn tsc_changed(&self) {
        let mut state = self.lock();
        self.refresh(&mut state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use janus_engine::{GuestClock, NoDmaObserver};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    /// A 1 GHz guest TSC counting host nanoseconds since `start`.
    struct NanoTsc(Instant);
    impl GuestClock for NanoTsc {
        fn guest_tsc(&self) -> u64 {
            self.0.elapsed().as_nanos() as u64
        }
        fn tsc_hz(&self) -> u64 {
            1_000_000_000
        }
    }

    fn clock() -> (KvmClock, GuestMemory, Instant) {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x10_000)]).unwrap();
        let start = Instant::now();
        let pv = PvClock::new(Arc::new(NanoTsc(start)), start);
        (
            KvmClock::new(mem.clone(), pv, Arc::new(NoDmaObserver)),
            mem,
            start,
        )
    }

    #[test]
    fn enabling_writes_a_page_that_tracks_host_time() {
        let (kc, mem, start) = clock();
        assert_eq!(
            kc.write_msr(MSR_SYSTEM_TIME_NEW, 0x2000 | MSR_ENABLED),
            Some(true)
        );
        assert_eq!(kc.read_msr(MSR_SYSTEM_TIME_NEW), Some(0x2001));
        let read = |off: u64| mem.read_obj::<u64>(GuestAddress(0x2000 + off)).unwrap();
        let p = PvclockVcpuTimeInfo {
            version: read(0) as u32,
            tsc_timestamp: read(8),
            system_time: read(16),
            tsc_to_system_mul: read(24) as u32,
            tsc_shift: (read(24) >> 32) as i8,
            ..Default::default()
        };
        assert_eq!(p.version % 2, 0);
        assert_ne!(p.tsc_to_system_mul, 0);
        let now = start.elapsed().as_nanos() as u64;
        assert!(p.nanos_at(now).abs_diff(now) < 1_000_000);
        // Disabling stops updates; the old MSR number is the same register.
        kc.write_msr(MSR_SYSTEM_TIME, 0x2000);
        kc.tsc_changed();
        assert_eq!(kc.stats().page_writes, 1);
    }

    #[test]
    fn tsc_writes_refresh_the_page() {
        let (kc, mem, _) = clock();
        kc.write_msr(MSR_SYSTEM_TIME_NEW, 0x2001);
        let v1: u32 = mem.read_obj(GuestAddress(0x2000)).unwrap();
        kc.tsc_changed();
        let v2: u32 = mem.read_obj(GuestAddress(0x2000)).unwrap();
        assert_eq!(v2, v1 + 2);
    }

    #[test]
    fn wall_clock_is_boot_time() {
        let (kc, mem, start) = clock();
        kc.write_msr(MSR_WALL_CLOCK_NEW, 0x3000);
        let read = |off: u64| mem.read_obj::<u32>(GuestAddress(0x3000 + off)).unwrap();
        assert_eq!(read(0) % 2, 0);
        let boot = Duration::new(read(4) as u64, read(8));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let expect = now - start.elapsed();
        assert!(boot.abs_diff(expect) < Duration::from_millis(50));
    }

    #[test]
    fn bad_addresses_are_ignored_and_counted() {
        let (kc, mem, _) = clock();
        for gpa in [0x10_000u64, 0xfff0, !1] {
            assert_eq!(kc.write_msr(MSR_SYSTEM_TIME_NEW, gpa | 1), Some(true));
        }
        assert_eq!(kc.write_msr(MSR_WALL_CLOCK_NEW, 0xfffc), Some(true));
        assert_eq!(kc.stats().bad_addresses, 4);
        assert_eq!(kc.stats().page_writes, 0);
        let untouched: u64 = mem.read_obj(GuestAddress(0xfff0)).unwrap();
        assert_eq!(untouched, 0);
        assert_eq!(kc.read_msr(0x10), None, "not a kvmclock MSR");
        assert_eq!(kc.write_msr(0x10, 0), None);
    }
}
