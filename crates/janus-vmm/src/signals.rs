//! SIGHUP, SIGINT and SIGTERM during `janus run`. The first one asks the run loop to stop
//! (`StopRequest::Signal`): the report is printed, disks are flushed, the terminal is
//! restored and the process exits with 128 + the signal's number. A second one, if the VM has
//! not stopped yet, restores the terminal and exits at once.
//!
//! The signals are blocked in every thread (`block`, before any thread starts, so all of them
//! inherit the mask) and taken by one thread with sigwait, so no handler runs at an arbitrary
//! point of the VMM.

use janus_devices::control::{StopRequest, VmControl};
use std::sync::Arc;

/// The signals that stop a VM.
pub const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGHUP, libc::SIGINT, libc::SIGTERM];

pub fn name(signo: libc::c_int) -> &'static str {
    match signo {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset initializes the set it is given; sigaddset adds valid signals.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for sig in STOP_SIGNALS {
            libc::sigaddset(&mut s, sig);
        }
        s
    }
}

/// Blocks the stop signals in the calling thread and in the threads it starts from now on.
pub fn block() -> std::io::Result<()> {
    let s = set();
    // SAFETY: `s` is an initialized signal set; the old mask is not wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Takes the stop signals on a thread of its own (call [`block`] first): the first asks
/// `control` to stop the VM; a second runs `last_words` and exits with 128 + its number.
pub fn watch(
    control: Arc<VmControl>,
    last_words: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let s = set();
            let mut first = true;
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `s` is an initialized set of signals blocked in this thread; `sig`
                // is a valid place for the result.
                if unsafe { libc::sigwait(&s, &mut sig) } != 0 {
                    continue;
                }
                if first {
                    first = false;
                    control.request(StopRequest::Signal {
                        signo: sig,
                        name: name(sig),
                    });
                } else {
                    last_words();
                    eprintln!(
                        "janus: {} again: exiting without waiting for the VM",
                        name(sig)
                    );
                    std::process::exit(128 + sig);
                }
            }
        })?;
    Ok(())
}
