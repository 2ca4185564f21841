//! A host TAP interface (`/dev/net/tun`), the backend of the guest's network card: Ethernet
//! frames the guest sends are written to it, frames the host routes to it are read from it.
//!
//! Written by hand: attaching is one ioctl (TUNSETIFF), and the TAP crates on crates.io bring
//! an async runtime or are unmaintained. Janus attaches to an interface that already exists
//! (`ip tuntap add NAME mode tap`), so whoever created it decides its addresses and routes.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use vmm_sys_util::eventfd::EventFd;

/// Longest interface name (IFNAMSIZ less the terminating zero).
pub const NAME_MAX: usize = 15;
/// `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("'{0}' is not an interface name (1 to 15 letters, digits, '-', '_' or '.')")]
    BadName(String),
    #[error("no network interface '{0}' on the host (create it with: ip tuntap add {0} mode tap)")]
    Missing(String),
    #[error("cannot open /dev/net/tun: {0}")]
    Open(std::io::Error),
    #[error("cannot attach to TAP interface '{name}': {source}")]
    Attach {
        name: String,
        source: std::io::Error,
    },
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags in the union.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _union_rest: [u8; 22],
}

/// An open TAP interface in non-blocking mode, without packet information headers.
pub struct Tap {
    file: File,
    name: String,
}

/// Checks an interface name the way the kernel will take it.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl Tap {
    /// Attaches to the existing TAP interface `name`.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        if !valid_name(name) {
            return Err(TapError::BadName(name.into()));
        }
        // TUNSETIFF would create a missing interface, down and without addresses: say so
        // instead.
        if !Path::new("/sys/class/net").join(name).exists() {
            return Err(TapError::Missing(name.into()));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(TapError::Open)?;
        let mut req = IfReq {
            name: [0; 16],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
            _union_rest: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: the fd is open, and `req` is a live, correctly laid out `struct ifreq` that
        // the kernel reads and writes for the duration of the call only.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) };
        if r < 0 {
            return Err(TapError::Attach {
                name: name.into(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Tap {
            file,
            name: name.into(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame; `WouldBlock` when none is waiting.
    pub fn read_frame(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one frame.
    pub fn write_frame(&self, frame: &[u8]) -> std::io::Result<()> {
        let n = (&self.file).write(frame)?;
        if n != frame.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "short write to the TAP interface",
            ));
        }
        Ok(())
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// Where a network card's frames go and come from: a TAP interface (or, in tests, a datagram
/// socket). Reads do not block.
pub trait Backend: Send + Sync {
    fn name(&self) -> &str;
    fn read_frame(&self, buf: &mut [u8]) -> std::io::Result<usize>;
    fn write_frame(&self, frame: &[u8]) -> std::io::Result<()>;
    /// Readable when a frame waits.
    fn fd(&self) -> RawFd;
}

impl Backend for Tap {
    fn name(&self) -> &str {
        Tap::name(self)
    }
    fn read_frame(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        Tap::read_frame(self, buf)
    }
    fn write_frame(&self, frame: &[u8]) -> std::io::Result<()> {
        Tap::write_frame(self, frame)
    }
    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

/// Waits until `wake` or (if given) `tap` is readable, for a card's receive thread; false if
/// polling failed for good (logged once, naming `device`).
fn wait_readable(device: &str, wake: RawFd, tap: Option<RawFd>) -> bool {
    let mut fds = [
        libc::pollfd {
            fd: wake,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: tap.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a live array of two pollfd structures (a negative fd is ignored).
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if r >= 0 {
            return true;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            tracing::warn!("{device}: poll: {e}; receiving stops");
            return false;
        }
    }
}

/// A network card's receive thread: runs `poll` whenever the card's `wake` event fires or,
/// while the last `poll` asked for it (returned true), the backend has a frame. Stops when
/// dropped.
pub struct RxThread {
    stop: Arc<AtomicBool>,
    wake: EventFd,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RxThread {
    pub fn spawn(
        name: &'static str,
        backend: Arc<dyn Backend>,
        wake: &EventFd,
        mut poll: impl FnMut() -> bool + Send + 'static,
    ) -> std::io::Result<RxThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, w) = (stop.clone(), wake.try_clone()?);
        let thread = std::thread::Builder::new()
            .name(format!("{name}-rx"))
            .spawn(move || {
                let mut watch = false;
                while !s.load(Ordering::Acquire) {
                    if !wait_readable(name, w.as_raw_fd(), watch.then(|| backend.fd())) {
                        return;
                    }
                    let _ = w.read();
                    watch = poll();
                }
            })?;
        Ok(RxThread {
            stop,
            wake: wake.try_clone()?,
            thread: Some(thread),
        })
    }
}

impl Drop for RxThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_the_kernel_sees_them() {
        assert!(valid_name("tap0"));
        assert!(valid_name("janus-tap.1_x"));
        assert!(!valid_name(""));
        assert!(!valid_name("a-name-far-too-long"));
        assert!(!valid_name("../etc"));
        assert!(!valid_name("tap 0"));
        assert!(matches!(Tap::open("x/y"), Err(TapError::BadName(_))));
        assert!(matches!(
            Tap::open("janus-nonexist"),
            Err(TapError::Missing(_))
        ));
    }
}
