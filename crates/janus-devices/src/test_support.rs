//! Recorders for unit tests: an interrupt line and a DMA observer that remember what they saw,
//! and a socket standing in for a TAP interface.

use crate::tap::Backend;
use janus_engine::{DmaObserver, IrqLine};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;

/// An interrupt line that records every level driven.
#[derive(Default)]
pub struct Line(pub Mutex<Vec<bool>>);

impl IrqLine for Line {
    fn set_level(&self, high: bool) -> janus_engine::Result<()> {
        self.0.lock().unwrap().push(high);
        Ok(())
    }
}

/// A DMA observer that records every range reported written.
#[derive(Default)]
pub struct Written(pub Mutex<Vec<(u64, u64)>>);

impl DmaObserver for Written {
    fn dma_written(&self, gpa: u64, len: u64) {
        self.0.lock().unwrap().push((gpa, len));
    }
}

/// One end of a datagram socket pair stands in for the TAP interface.
pub struct Socket(pub UnixDatagram);

impl Backend for Socket {
    fn name(&self) -> &str {
        "socket"
    }
    fn read_frame(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.recv(buf)
    }
    fn write_frame(&self, frame: &[u8]) -> std::io::Result<()> {
        self.0.send(frame).map(|_| ())
    }
    fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
