//! The platform timer thread: delivers time-driven device interrupts (PIT, RTC, local APIC
//! timer) on time even while the guest sits in HLT and makes no exits.

use janus_devices::timer::{Timed, Wakeup};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest sleep between checks, so a missed kick costs at most this much latency.
const MAX_SLEEP: Duration = Duration::from_millis(50);

pub type TimedDevice = Arc<Mutex<dyn Timed>>;

/// The running timer thread; stops when dropped.
pub struct Timers {
    stop: Arc<AtomicBool>,
    wakeup: Arc<Wakeup>,
    thread: Option<JoinHandle<()>>,
}

impl Timers {
    /// Starts serving `devices` on `clock` (platform monotonic ns), sleeping on `wakeup`.
    pub fn spawn(
        devices: Vec<TimedDevice>,
        clock: Box<dyn Fn() -> u64 + Send>,
        wakeup: Arc<Wakeup>,
    ) -> std::io::Result<Timers> {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, w) = (stop.clone(), wakeup.clone());
        let thread = std::thread::Builder::new()
            .name("timers".into())
            .spawn(move || serve(&devices, &*clock, &w, &s))?;
        Ok(Timers {
            stop,
            wakeup,
            thread: Some(thread),
        })
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.wakeup.kick();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(devices: &[TimedDevice], clock: &dyn Fn() -> u64, wakeup: &Wakeup, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        let mut next: Option<u64> = None;
        for d in devices {
            let mut dev = d.lock().unwrap_or_else(|p| p.into_inner());
            if dev.next_deadline().is_some_and(|t| t <= clock()) {
                dev.tick(clock());
            }
            if let Some(t) = dev.next_deadline() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        let now = clock();
        tracing::trace!("timers: now {now} next {next:?} devices {}", devices.len());
        let sleep = next.map_or(MAX_SLEEP, |t| {
            Duration::from_nanos(t.saturating_sub(now)).min(MAX_SLEEP)
        });
        if !sleep.is_zero() {
            wakeup.sleep(sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Fires every `period` ns from the first deadline.
    struct Ticker {
        next: u64,
        period: u64,
        ticks: Arc<Mutex<u32>>,
    }
    impl Timed for Ticker {
        fn next_deadline(&self) -> Option<u64> {
            Some(self.next)
        }
        fn tick(&mut self, now: u64) {
            *self.ticks.lock().unwrap() += 1;
            while self.next <= now {
                self.next += self.period;
            }
        }
    }

    #[test]
    fn ticks_devices_at_their_deadlines() {
        let ticks = Arc::new(Mutex::new(0));
        let start = Instant::now();
        let dev: TimedDevice = Arc::new(Mutex::new(Ticker {
            next: 5_000_000,
            period: 5_000_000,
            ticks: ticks.clone(),
        }));
        let t = Timers::spawn(
            vec![dev],
            Box::new(move || start.elapsed().as_nanos() as u64),
            Arc::new(Wakeup::new()),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(t);
        let n = *ticks.lock().unwrap();
        // 100 ms of a 5 ms period; scheduling on a loaded machine may coalesce some.
        assert!((5..=21).contains(&n), "{n} ticks");
    }
}
