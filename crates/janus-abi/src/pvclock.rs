//! The PV clock page, in the pvclock layout Linux and KVM use (`pvclock_vcpu_time_info`).
//!
//! Guest time in nanoseconds is `system_time + scale(tsc - tsc_timestamp)`, where
//! `scale(d) = ((d << shift or >> -shift) * mul) >> 32`. The writer makes `version` odd while it
//! updates the page and even when done; a reader retries while the version is odd or changed.

/// `pvclock_vcpu_time_info`, 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PvclockVcpuTimeInfo {
    pub version: u32,
    pub pad0: u32,
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    pub flags: u8,
    pub pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<PvclockVcpuTimeInfo>() == 32);

/// The TSC is stable and synchronized: the guest may skip its monotonicity fix-ups.
pub const PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;

/// Converts a TSC delta to nanoseconds with the page's multiplier and shift.
pub fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let shifted = if shift < 0 {
        delta >> (-(shift as i32)) as u32
    } else {
        delta << shift as u32
    };
    ((shifted as u128 * mul as u128) >> 32) as u64
}

/// Multiplier and shift so that `scale_delta(d, mul, shift)` turns `d` ticks of a `tsc_hz`
/// counter into nanoseconds (the algorithm of Linux's `kvm_get_time_scale`).
pub fn time_scale(tsc_hz: u64) -> (u32, i8) {
    const NSEC_PER_SEC: u64 = 1_000_000_000;
    let mut shift: i32 = 0;
    let mut tps64 = tsc_hz.max(1);
    let mut scaled64 = NSEC_PER_SEC;
    let mut tps32: u32;
    while tps64 > scaled64 * 2 || tps64 & 0xffff_ffff_0000_0000 != 0 {
        tps64 >>= 1;
        shift -= 1;
    }
    tps32 = tps64 as u32;
    while tps32 as u64 <= scaled64 || scaled64 & 0xffff_ffff_0000_0000 != 0 {
        if scaled64 & 0xffff_ffff_0000_0000 != 0 || tps32 & 0x8000_0000 != 0 {
            scaled64 >>= 1;
        } else {
            tps32 <<= 1;
            shift += 1;
        }
    }
    let mul = ((scaled64 << 32) / tps32 as u64) as u32;
    (mul, shift as i8)
}

impl PvclockVcpuTimeInfo {
    /// Guest time in nanoseconds at TSC value `tsc`.
    pub fn nanos_at(&self, tsc: u64) -> u64 {
        let delta = tsc.wrapping_sub(self.tsc_timestamp);
        self.system_time
            .wrapping_add(scale_delta(delta, self.tsc_to_system_mul, self.tsc_shift))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_matches_frequency() {
        for hz in [
            1_000_000u64,
            1_193_182,
            2_596_150_000,
            3_000_000_000,
            5_000_000_000,
        ] {
            let (mul, shift) = time_scale(hz);
            // One second of ticks is one second of nanoseconds, to within rounding.
            let ns = scale_delta(hz, mul, shift);
            assert!(ns.abs_diff(1_000_000_000) < 2, "{hz} Hz -> {ns} ns");
            // And a long run (an hour) stays within a microsecond per second.
            let ns = scale_delta(hz * 3600, mul, shift);
            assert!(
                ns.abs_diff(3_600_000_000_000) < 3_600_000,
                "{hz} Hz -> {ns} ns"
            );
        }
    }

    #[test]
    fn nanos_at_counts_from_timestamp() {
        let (mul, shift) = time_scale(2_000_000_000);
        let p = PvclockVcpuTimeInfo {
            tsc_timestamp: 1000,
            system_time: 5_000,
            tsc_to_system_mul: mul,
            tsc_shift: shift,
            ..Default::default()
        };
        assert_eq!(p.nanos_at(1000), 5_000);
        assert!(p.nanos_at(3000).abs_diff(6_000) <= 1);
    }
}
