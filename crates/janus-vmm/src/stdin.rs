//! Host stdin to the guest's UART.

use janus_devices::uart16550::Uart16550;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Copies stdin into the UART's receive FIFO on a background thread until EOF, waiting while
/// the FIFO is full (the guest reads it at its own pace).
pub fn forward(uart: Arc<Mutex<Uart16550>>) {
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 256];
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut rest = &buf[..n];
                while !rest.is_empty() {
                    let taken = uart
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .enqueue_input(rest);
                    rest = &rest[taken..];
                    if !rest.is_empty() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("stdin is not forwarded to the guest: {e}");
    }
}
