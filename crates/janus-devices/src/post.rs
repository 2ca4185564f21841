//! The POST diagnostic port 0x80: a write records a progress code, as a POST card shows it.
//! Linux also writes here as an I/O delay. The run loop timestamps the codes (see janus-vmm).

use crate::bus::BusDevice;

#[derive(Default)]
pub struct PostCode {
    last: Option<u8>,
    writes: u64,
}

impl PostCode {
    pub fn new() -> PostCode {
        PostCode::default()
    }

    pub fn last(&self) -> Option<u8> {
        self.last
    }

    pub fn writes(&self) -> u64 {
        self.writes
    }
}

impl BusDevice for PostCode {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff); // a POST card is write-only
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(&code) = data.first() {
            self.last = Some(code);
            self.writes += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_last_code() {
        let mut p = PostCode::new();
        p.write(0, &[0x11]);
        p.write(0, &[0x21]);
        assert_eq!((p.last(), p.writes()), (Some(0x21), 2));
        let mut d = [0];
        p.read(0, &mut d);
        assert_eq!(d[0], 0xff);
    }
}
