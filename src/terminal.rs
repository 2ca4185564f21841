//! Raw mode for an interactive console: keystrokes (Ctrl-C included) go to the guest
//! unprocessed; the terminal's settings come back when the guard drops, on any exit path.

use std::os::unix::io::AsRawFd;

pub struct RawMode {
    fd: i32,
    saved: libc::termios,
}

impl RawMode {
    /// Switches stdin to raw mode if it is a terminal.
    pub fn enable() -> Option<RawMode> {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(fd) } != 1 {
            return None;
        }
        // SAFETY: an all-zero termios is a valid value for tcgetattr to overwrite.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is a terminal and `saved` a valid termios to fill.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the struct in place.
        unsafe { libc::cfmakeraw(&mut raw) };
        // Keep output processing so the host's newlines still render sensibly.
        raw.c_oflag = saved.c_oflag;
        // SAFETY: fd is a terminal; `raw` is a valid termios derived from the current one.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(RawMode { fd, saved })
    }
}

impl RawMode {
    /// Puts the terminal back, from any thread (for an exit that does not unwind to the
    /// guard's drop).
    pub fn restorer(&self) -> impl Fn() + Send + 'static {
        let (fd, saved) = (self.fd, self.saved);
        move || {
            // SAFETY: restores settings read from this terminal in `enable`.
            unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read from this terminal in `enable`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}
