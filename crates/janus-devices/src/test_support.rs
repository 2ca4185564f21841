//! Recorders for unit tests: an interrupt line and a DMA observer that remember what they saw.

use janus_engine::{DmaObserver, IrqLine};
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
