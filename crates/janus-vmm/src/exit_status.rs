//! The `janus` process's exit status: one table for every command (the README's "Exit
//! status" section shows it).
//!
//! | status | meaning |
//! |---|---|
//! | 0 | the guest powered off (ACPI S5, or the poweroff hypercall with code 0), reset the machine, or the user stopped it (Ctrl-A x); `demo`/`bench` finished and their checks passed |
//! | 1 | the VM stopped on a guest fault the engine cannot continue from (a report names it); `demo`/`bench` checks failed |
//! | 2 | bad command line or input: an option value, or a kernel, initramfs, disk or TAP interface that cannot be used (a one-line error) |
//! | 3 | host failure: KVM, guest memory, threads or devices failed on the host side |
//! | 4 | the guest panicked (it said so through the pvpanic device, para mode) |
//! | 32 + N | the guest powered off through the poweroff hypercall with its own code N (1 to 95; higher codes give 127) |
//! | (V << 1) \| 1 | the guest wrote V to `--device debug-exit` (QEMU's isa-debug-exit; the low 8 bits, always odd) |
//! | 128 + N | stopped by signal N (SIGHUP 129, SIGINT 130, SIGTERM 143), after the report |

use crate::run_loop::Outcome;
use crate::VmmError;

pub const SUCCESS: u8 = 0;
pub const GUEST_FAULT: u8 = 1;
pub const USAGE: u8 = 2;
pub const HOST: u8 = 3;
pub const GUEST_PANIC: u8 = 4;
pub const GUEST_CODE_BASE: u8 = 32;
pub const SIGNAL_BASE: u8 = 128;

/// The status for how a run ended.
pub fn of_outcome(o: &Outcome) -> u8 {
    match o {
        Outcome::Poweroff { code: 0, .. } | Outcome::Reset { .. } | Outcome::Quit { .. } => SUCCESS,
        Outcome::Poweroff { code, .. } => (GUEST_CODE_BASE as u32 + code).min(127) as u8,
        Outcome::Signal { signo, .. } => SIGNAL_BASE.saturating_add(*signo as u8),
        Outcome::Fault(_) => GUEST_FAULT,
        Outcome::Panic => GUEST_PANIC,
        Outcome::DebugExit { value } => ((value << 1) | 1) as u8,
    }
}

/// The status for an error that kept the VM from running.
pub fn of_error(e: &VmmError) -> u8 {
    match e {
        VmmError::Config(_) | VmmError::Boot(_) | VmmError::Disk(_) | VmmError::Net(_) => USAGE,
        VmmError::Engine(_) | VmmError::Bus(_) | VmmError::Memory(_) | VmmError::Host(_) => HOST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_the_table() {
        let off = |code| Outcome::Poweroff { code, via: "test" };
        assert_eq!(of_outcome(&off(0)), 0);
        assert_eq!(of_outcome(&off(2)), 34);
        assert_eq!(of_outcome(&off(1000)), 127);
        assert_eq!(of_outcome(&Outcome::Reset { via: "test" }), 0);
        assert_eq!(of_outcome(&Outcome::Panic), 4);
        assert_eq!(of_outcome(&Outcome::DebugExit { value: 0x10 }), 33);
        let sig = |signo| Outcome::Signal {
            signo,
            name: "test",
        };
        assert_eq!(of_outcome(&sig(libc::SIGTERM)), 143);
        assert_eq!(of_outcome(&sig(libc::SIGINT)), 130);
        assert_eq!(of_error(&VmmError::Config("x".into())), USAGE);
        assert_eq!(of_error(&VmmError::Memory("x".into())), HOST);
    }
}
