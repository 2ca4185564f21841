//! Time-driven devices and the wake-up that lets a timer thread serve them.
//!
//! A device whose interrupts depend on time (PIT channel 0, the RTC's periodic and alarm
//! interrupts, the local APIC timer) implements [`Timed`]. The VMM's timer thread calls
//! `tick` when the earliest `next_deadline` comes, so an idle guest (halted, no exits) still
//! gets its timer interrupts on time. When the guest reprograms a timer, the device calls
//! [`Wakeup::kick`] so the thread recomputes its sleep instead of oversleeping.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A device with deadlines on the platform's monotonic clock (ns since VM start).
pub trait Timed: Send {
    /// When the device next needs `tick`, if it has anything scheduled.
    fn next_deadline(&self) -> Option<u64>;
    /// Brings the device up to `now`, raising whatever interrupts are due.
    fn tick(&mut self, now: u64);
}

/// A kickable sleep for the timer thread.
#[derive(Default)]
pub struct Wakeup {
    kicked: Mutex<bool>,
    cv: Condvar,
}

impl Wakeup {
    pub fn new() -> Wakeup {
        Wakeup::default()
    }

    /// A deadline changed: wake the sleeper.
    pub fn kick(&self) {
        let mut k = self.kicked.lock().unwrap_or_else(|p| p.into_inner());
        *k = true;
        self.cv.notify_one();
    }

    /// Sleeps up to `timeout` or until kicked; returns whether it was kicked.
    pub fn sleep(&self, timeout: Duration) -> bool {
        let k = self.kicked.lock().unwrap_or_else(|p| p.into_inner());
        let (mut k, _) = self
            .cv
            .wait_timeout_while(k, timeout, |kicked| !*kicked)
            .unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn kick_cuts_the_sleep_short() {
        let w = Arc::new(Wakeup::new());
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w2.kick();
        });
        let start = Instant::now();
        assert!(w.sleep(Duration::from_secs(10)));
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
        assert!(
            !w.sleep(Duration::from_millis(1)),
            "a kick is consumed once"
        );
    }
}
