//! The device bus: port I/O and MMIO address ranges mapped to devices.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device on the bus. Offsets are relative to the start of the range the device was
/// registered at (plus the range's first offset, see [`Bus::insert_pio_at`]).
pub trait BusDevice: Send {
    /// Fills `data` with the device's answer to a read of `data.len()` bytes at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Handles a write of `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and whoever else drives it (a stdin thread, a timer).
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("{space} range {base:#x}+{len:#x} for {name} overlaps {other}")]
    Overlap {
        space: &'static str,
        base: u64,
        len: u64,
        name: &'static str,
        other: &'static str,
    },
    #[error("{space} range {base:#x}+{len:#x} for {name} is empty or wraps")]
    BadRange {
        space: &'static str,
        base: u64,
        len: u64,
        name: &'static str,
    },
}

#[derive(Clone)]
struct Entry {
    len: u64,
    first_offset: u64,
    name: &'static str,
    device: SharedDevice,
}

/// One address space (ports or MMIO).
#[derive(Default, Clone)]
struct Space {
    ranges: BTreeMap<u64, Entry>,
}

impl Space {
    fn insert(&mut self, space: &'static str, base: u64, entry: Entry) -> Result<(), BusError> {
        let end = base.checked_add(entry.len).filter(|_| entry.len > 0);
        let Some(end) = end else {
            return Err(BusError::BadRange {
                space,
                base,
                len: entry.len,
                name: entry.name,
            });
        };
        let clash = self
            .ranges
            .range(..end)
            .next_back()
            .filter(|(b, e)| **b + e.len > base);
        if let Some((_, other)) = clash {
            return Err(BusError::Overlap {
                space,
                base,
                len: entry.len,
                name: entry.name,
                other: other.name,
            });
        }
        self.ranges.insert(base, entry);
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(&Entry, u64)> {
        let (base, e) = self.ranges.range(..=addr).next_back()?;
        let off = addr - base;
        (off < e.len).then_some((e, off + e.first_offset))
    }
}

/// Where a guest access went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A device answered; its name.
    Device(&'static str),
    /// Nothing is mapped at the address.
    Unmapped,
}

/// Port I/O and MMIO ranges of one VM.
#[derive(Default, Clone)]
pub struct Bus {
    pio: Space,
    mmio: Space,
}

impl Bus {
    pub fn new() -> Bus {
        Bus::default()
    }

    /// Maps ports `base..base+len` to `device`.
    pub fn insert_pio(
        &mut self,
        base: u16,
        len: u16,
        name: &'static str,
        device: SharedDevice,
    ) -> Result<(), BusError> {
        self.insert_pio_at(base, len, 0, name, device)
    }

    /// Maps ports `base..base+len` to `device` at device offsets starting from `first_offset`
    /// (for devices whose registers are not contiguous, like the i8042 at 0x60 and 0x64).
    pub fn insert_pio_at(
        &mut self,
        base: u16,
        len: u16,
        first_offset: u64,
        name: &'static str,
        device: SharedDevice,
    ) -> Result<(), BusError> {
        if base as u32 + len as u32 > 0x1_0000 {
            return Err(BusError::BadRange {
                space: "port",
                base: base as u64,
                len: len as u64,
                name,
            });
        }
        let entry = Entry {
            len: len as u64,
            first_offset,
            name,
            device,
        };
        self.pio.insert("port", base as u64, entry)
    }

    /// Maps guest-physical `base..base+len` to `device`.
    pub fn insert_mmio(
        &mut self,
        base: u64,
        len: u64,
        name: &'static str,
        device: SharedDevice,
    ) -> Result<(), BusError> {
        let entry = Entry {
            len,
            first_offset: 0,
            name,
            device,
        };
        self.mmio.insert("MMIO", base, entry)
    }

    fn dispatch(space: &Space, addr: u64, op: impl FnOnce(&mut dyn BusDevice, u64)) -> Access {
        match space.find(addr) {
            Some((e, off)) => {
                // A poisoned lock means another thread panicked mid-access; the device state is
                // still memory-safe, so keep serving the guest.
                let mut dev = e.device.lock().unwrap_or_else(|p| p.into_inner());
                op(&mut *dev, off);
                Access::Device(e.name)
            }
            None => Access::Unmapped,
        }
    }

    pub fn pio_read(&self, port: u16, data: &mut [u8]) -> Access {
        Self::dispatch(&self.pio, port as u64, |d, off| d.read(off, data))
    }

    pub fn pio_write(&self, port: u16, data: &[u8]) -> Access {
        Self::dispatch(&self.pio, port as u64, |d, off| d.write(off, data))
    }

    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) -> Access {
        Self::dispatch(&self.mmio, addr, |d, off| d.read(off, data))
    }

    pub fn mmio_write(&self, addr: u64, data: &[u8]) -> Access {
        Self::dispatch(&self.mmio, addr, |d, off| d.write(off, data))
    }

    /// Name of the device mapped at `port`, if any.
    pub fn pio_owner(&self, port: u16) -> Option<&'static str> {
        self.pio.find(port as u64).map(|(e, _)| e.name)
    }

    /// Every port range: (base, len, name), in address order.
    pub fn pio_ranges(&self) -> Vec<(u16, u16, &'static str)> {
        self.pio
            .ranges
            .iter()
            .map(|(b, e)| (*b as u16, e.len as u16, e.name))
            .collect()
    }
}

/// Locks a device. A poisoned lock means another thread panicked mid-access; the device state
/// is still memory-safe, so keep serving the guest.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wraps a device for the bus.
pub fn shared<D: BusDevice + 'static>(device: D) -> Arc<Mutex<D>> {
    Arc::new(Mutex::new(device))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records accesses; reads return the offset.
    #[derive(Default)]
    struct Probe {
        writes: Vec<(u64, Vec<u8>)>,
    }
    impl BusDevice for Probe {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn routes_by_range_with_offsets() {
        let mut bus = Bus::new();
        let a = shared(Probe::default());
        bus.insert_pio(0x3f8, 8, "uart", a.clone()).unwrap();
        let mut d = [0u8; 1];
        assert_eq!(bus.pio_read(0x3fd, &mut d), Access::Device("uart"));
        assert_eq!(d[0], 5);
        assert_eq!(bus.pio_write(0x3f8, &[0x41]), Access::Device("uart"));
        assert_eq!(a.lock().unwrap().writes, vec![(0, vec![0x41])]);
        assert_eq!(bus.pio_read(0x400, &mut d), Access::Unmapped);
        assert_eq!(bus.pio_read(0x3f7, &mut d), Access::Unmapped);
    }

    #[test]
    fn aliases_share_one_device() {
        let mut bus = Bus::new();
        let dev = shared(Probe::default());
        bus.insert_pio_at(0x60, 1, 0, "i8042", dev.clone()).unwrap();
        bus.insert_pio_at(0x64, 1, 4, "i8042", dev.clone()).unwrap();
        bus.pio_write(0x64, &[0xfe]);
        bus.pio_write(0x60, &[0x01]);
        assert_eq!(
            dev.lock().unwrap().writes,
            vec![(4, vec![0xfe]), (0, vec![0x01])]
        );
        assert_eq!(bus.pio_owner(0x61), None);
    }

    #[test]
    fn rejects_overlaps_and_bad_ranges() {
        let mut bus = Bus::new();
        bus.insert_pio(0x40, 4, "pit", shared(Probe::default()))
            .unwrap();
        let err = bus
            .insert_pio(0x43, 2, "other", shared(Probe::default()))
            .unwrap_err();
        assert!(matches!(err, BusError::Overlap { other: "pit", .. }));
        assert!(bus
            .insert_pio(0x3c, 4, "below", shared(Probe::default()))
            .is_ok());
        assert!(matches!(
            bus.insert_pio(0xfffe, 4, "wrap", shared(Probe::default())),
            Err(BusError::BadRange { .. })
        ));
        assert!(matches!(
            bus.insert_mmio(0x1000, 0, "empty", shared(Probe::default())),
            Err(BusError::BadRange { .. })
        ));
        assert!(matches!(
            bus.insert_mmio(u64::MAX - 1, 4, "wrap", shared(Probe::default())),
            Err(BusError::BadRange { .. })
        ));
    }

    #[test]
    fn mmio_routes() {
        let mut bus = Bus::new();
        bus.insert_mmio(0xd000_0000, 0x1000, "dev", shared(Probe::default()))
            .unwrap();
        let mut d = [0u8; 4];
        assert_eq!(bus.mmio_read(0xd000_0010, &mut d), Access::Device("dev"));
        assert_eq!(d, [0x10; 4]);
        assert_eq!(bus.mmio_read(0xd000_1000, &mut d), Access::Unmapped);
    }
}
