//! Requests from devices to stop the VM (poweroff, reset), seen by the run loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Why a device asks the VM to stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopRequest {
    /// The guest powered off; `code` is the exit code it asked for (0 from ACPI S5).
    Poweroff { code: u32, via: &'static str },
    /// The guest asked for a reset (keyboard-controller reset line).
    Reset { via: &'static str },
    /// The user asked the VMM to stop the VM (the console escape).
    Quit { via: &'static str },
    /// A signal asked the VMM to stop (SIGINT, SIGTERM, SIGHUP).
    Signal { signo: i32, name: &'static str },
    /// The guest reported a panic (pvpanic).
    Panic,
    /// The guest wrote `value` to QEMU's isa-debug-exit port.
    DebugExit { value: u32 },
}

/// Shared between devices and the run loop. The first request wins.
#[derive(Debug, Default)]
pub struct VmControl {
    pending: AtomicBool,
    request: Mutex<Option<StopRequest>>,
    /// Set with each request, so that the vCPU leaves the guest to see it (the engine's
    /// kick flag, where it has one).
    kick: Mutex<Option<Arc<AtomicBool>>>,
}

impl VmControl {
    pub fn new() -> VmControl {
        VmControl::default()
    }

    pub fn request(&self, req: StopRequest) {
        let mut slot = self.request.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(req);
            self.pending.store(true, Ordering::Release);
            if let Some(k) = &*self.kick.lock().unwrap_or_else(|p| p.into_inner()) {
                k.store(true, Ordering::Release);
            }
        }
    }

    /// Makes every request also set `kick` (the vCPU's flag for leaving the guest).
    pub fn set_kick(&self, kick: Arc<AtomicBool>) {
        *self.kick.lock().unwrap_or_else(|p| p.into_inner()) = Some(kick);
    }

    /// Cheap check for the run loop's hot path.
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Forgets the request taken, so that a later one can be made (after a panic, when the VM
    /// stays paused until the user stops it).
    pub fn clear(&self) {
        *self.request.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.pending.store(false, Ordering::Release);
    }

    pub fn take(&self) -> Option<StopRequest> {
        self.request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_wins() {
        let c = VmControl::new();
        assert!(!c.pending());
        c.request(StopRequest::Reset { via: "i8042" });
        c.request(StopRequest::Poweroff {
            code: 0,
            via: "acpi",
        });
        assert!(c.pending());
        assert_eq!(c.take(), Some(StopRequest::Reset { via: "i8042" }));
    }
}
