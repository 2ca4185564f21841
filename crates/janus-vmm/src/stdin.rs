//! Host stdin to the guest's console (the UART, or the virtio console when the guest's
//! console is hvc0), with a console escape: Ctrl-A then `x` stops the VM (as in QEMU),
//! Ctrl-A Ctrl-A sends one Ctrl-A.

use janus_devices::bus::lock;
use janus_devices::uart16550::Uart16550;
use janus_devices::virtio::console::Console;
use janus_devices::virtio::MmioTransport;
use janus_devices::{StopRequest, VmControl};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ESCAPE: u8 = 0x01;

/// Filters the escape sequence out of host input; returns the bytes for the guest.
#[derive(Default)]
pub struct Escape {
    pending: bool,
}

impl Escape {
    /// Feeds one chunk; `quit` is set when the user typed the quit sequence.
    pub fn filter(&mut self, input: &[u8], quit: &mut bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.pending {
                self.pending = false;
                match b {
                    b'x' | b'X' => {
                        // Nothing after the quit sequence reaches the guest.
                        *quit = true;
                        return out;
                    }
                    ESCAPE => out.push(ESCAPE),
                    other => out.extend_from_slice(&[ESCAPE, other]),
                }
            } else if b == ESCAPE {
                self.pending = true;
            } else {
                out.push(b);
            }
        }
        out
    }
}

/// The device host input goes to.
pub enum ConsoleInput {
    Uart(Arc<Mutex<Uart16550>>),
    Virtio(Arc<Mutex<MmioTransport<Console>>>),
}

impl ConsoleInput {
    /// Hands `bytes` to the device; waits while the UART's FIFO is full (the guest reads it
    /// at its own pace). The virtio console holds what its driver has no buffers for yet.
    fn send(&self, bytes: &[u8]) {
        match self {
            ConsoleInput::Uart(uart) => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let taken = lock(uart).enqueue_input(rest);
                    rest = &rest[taken..];
                    if !rest.is_empty() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            ConsoleInput::Virtio(console) => {
                let mut t = lock(console);
                if t.with_device(|c, q| c.input(bytes, q)).is_none() {
                    t.device_mut().queue_input(bytes);
                }
            }
        }
    }
}

/// Copies stdin to `input` on a background thread until EOF.
pub fn forward(input: ConsoleInput, control: Arc<VmControl>) {
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 256];
            let mut escape = Escape::default();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut quit = false;
                let bytes = escape.filter(&buf[..n], &mut quit);
                if quit {
                    control.request(StopRequest::Quit { via: "Ctrl-A x" });
                    break;
                }
                input.send(&bytes);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("stdin is not forwarded to the guest: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences() {
        let mut e = Escape::default();
        let mut quit = false;
        assert_eq!(e.filter(b"ls\r", &mut quit), b"ls\r");
        assert_eq!(e.filter(&[ESCAPE], &mut quit), b"");
        assert_eq!(
            e.filter(&[ESCAPE], &mut quit),
            &[ESCAPE],
            "Ctrl-A Ctrl-A sends one"
        );
        assert_eq!(e.filter(&[ESCAPE, b'q'], &mut quit), &[ESCAPE, b'q']);
        assert!(!quit);
        assert_eq!(e.filter(&[b'a', ESCAPE, b'x', b'b'], &mut quit), b"a");
        assert!(quit);
    }
}
