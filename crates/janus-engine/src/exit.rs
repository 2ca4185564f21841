//! The one exit enum every engine returns, and the counters the run loop keeps.

use std::fmt;

/// Why [`crate::Vcpu::run`] returned.
#[derive(Debug)]
pub enum VmExit<'a> {
    /// Port input. `data.len()` is `size * count` (count > 1 for string I/O); the caller fills
    /// `data` element by element.
    PioIn {
        port: u16,
        size: u8,
        data: &'a mut [u8],
    },
    /// Port output of `data` (`size * count` bytes).
    PioOut { port: u16, size: u8, data: &'a [u8] },
    /// Memory-mapped read; the caller fills `data`.
    MmioRead { addr: u64, data: &'a mut [u8] },
    /// Memory-mapped write.
    MmioWrite { addr: u64, data: &'a [u8] },
    /// The vCPU executed HLT with nothing to wake it inside the engine.
    Halt,
    /// The CPU shut down (triple fault).
    Shutdown,
    /// The host interrupted the run (a signal); nothing happened in the guest.
    Interrupted,
    /// The engine could not continue the guest: an emulation failure, an entry failure, an
    /// instruction it cannot execute. The VM must stop.
    Failed { reason: String },
}

/// Kinds of exits, as counted and reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExitKind {
    PioIn,
    PioOut,
    MmioRead,
    MmioWrite,
    Hypercall,
    Halt,
    Shutdown,
    Interrupted,
    Failed,
}

impl ExitKind {
    pub const ALL: [ExitKind; 9] = [
        ExitKind::PioIn,
        ExitKind::PioOut,
        ExitKind::MmioRead,
        ExitKind::MmioWrite,
        ExitKind::Hypercall,
        ExitKind::Halt,
        ExitKind::Shutdown,
        ExitKind::Interrupted,
        ExitKind::Failed,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn name(self) -> &'static str {
        match self {
            ExitKind::PioIn => "pio_in",
            ExitKind::PioOut => "pio_out",
            ExitKind::MmioRead => "mmio_read",
            ExitKind::MmioWrite => "mmio_write",
            ExitKind::Hypercall => "hypercall",
            ExitKind::Halt => "halt",
            ExitKind::Shutdown => "shutdown",
            ExitKind::Interrupted => "interrupted",
            ExitKind::Failed => "failed",
        }
    }
}

impl fmt::Display for ExitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Exit counts by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitCounters {
    counts: [u64; ExitKind::COUNT],
}

impl ExitCounters {
    pub fn record(&mut self, kind: ExitKind) {
        self.counts[kind as usize] += 1;
    }

    pub fn get(&self, kind: ExitKind) -> u64 {
        self.counts[kind as usize]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Counts accumulated since `earlier` (kind by kind).
    pub fn since(&self, earlier: &ExitCounters) -> ExitCounters {
        ExitCounters {
            counts: std::array::from_fn(|i| self.counts[i].saturating_sub(earlier.counts[i])),
        }
    }

    /// Takes `n` exits of `kind` back out (for example a marker exit that belongs to no part).
    pub fn discount(&mut self, kind: ExitKind, n: u64) {
        let c = &mut self.counts[kind as usize];
        *c = c.saturating_sub(n);
    }

    /// The kinds with a non-zero count, in [`ExitKind::ALL`] order.
    pub fn nonzero(&self) -> impl Iterator<Item = (ExitKind, u64)> + '_ {
        ExitKind::ALL
            .into_iter()
            .map(|k| (k, self.get(k)))
            .filter(|&(_, n)| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_difference_by_kind() {
        let mut a = ExitCounters::default();
        a.record(ExitKind::PioIn);
        let snap = a;
        a.record(ExitKind::PioIn);
        a.record(ExitKind::Hypercall);
        let d = a.since(&snap);
        assert_eq!(d.get(ExitKind::PioIn), 1);
        assert_eq!(d.get(ExitKind::Hypercall), 1);
        assert_eq!(d.total(), 2);
        assert_eq!(
            d.nonzero().collect::<Vec<_>>(),
            vec![(ExitKind::PioIn, 1), (ExitKind::Hypercall, 1)]
        );
    }
}
