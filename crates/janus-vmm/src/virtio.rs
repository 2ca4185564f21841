//! The virtio devices of a para-mode VM: which ones it gets, where each one's register page
//! and interrupt are, how Linux is told about them, and their reports.
//!
//! Each kind of device has a fixed slot (page and GSI, see `janus_abi::pc`), so a device keeps
//! its address whatever else is attached: console, block (`--disk`), network (`--net`),
//! entropy. Linux learns of them from the ACPI DSDT (`LNRO0005` devices), not from
//! `virtio_mmio.device=` on its command line: Debian's kernel is built without that
//! parameter (CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is off), and the DSDT can declare
//! level-triggered interrupts above the ISA range, which the command line cannot.

use crate::Result;
use janus_abi::pc::{VIRTIO_MMIO_BASE, VIRTIO_MMIO_GSIS, VIRTIO_MMIO_STRIDE};
use janus_boot::acpi::VirtioMmio;
use janus_devices::bus::{lock, Bus};
use janus_devices::disk::DiskImage;
use janus_devices::tap::Tap;
use janus_devices::uart16550::ConsoleOut;
use janus_devices::virtio::blk::Block;
use janus_devices::virtio::console::Console;
use janus_devices::virtio::mmio::{VirtioReport, MMIO_SIZE};
use janus_devices::virtio::net::{self, Net, RxThread};
use janus_devices::virtio::rng::Rng;
use janus_devices::virtio::{MmioTransport, Queues, VirtioDevice};
use janus_engine::{GuestMemory, Vm};
use std::sync::{Arc, Mutex};

/// The slots, in page order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Console = 0,
    Block = 1,
    Net = 2,
    Rng = 3,
}

impl Slot {
    fn base(self) -> u64 {
        VIRTIO_MMIO_BASE + self as u64 * VIRTIO_MMIO_STRIDE
    }

    fn gsi(self) -> u32 {
        VIRTIO_MMIO_GSIS[self as usize]
    }

    /// The device as the DSDT declares it.
    fn acpi(self) -> VirtioMmio {
        VirtioMmio {
            base: self.base() as u32,
            size: MMIO_SIZE as u32,
            gsi: self.gsi(),
        }
    }
}

/// What the host attaches beyond the console and entropy source, which every para VM has.
pub struct Backends {
    pub disk: Option<Arc<DiskImage>>,
    pub net: Option<(Arc<Tap>, [u8; 6])>,
}

impl Backends {
    fn slots(&self) -> Vec<Slot> {
        let mut s = vec![Slot::Console];
        if self.disk.is_some() {
            s.push(Slot::Block);
        }
        if self.net.is_some() {
            s.push(Slot::Net);
        }
        s.push(Slot::Rng);
        s
    }

    /// The devices as the DSDT declares them to Linux.
    pub fn acpi(&self) -> Vec<VirtioMmio> {
        self.slots().into_iter().map(Slot::acpi).collect()
    }
}

/// The devices of one VM, kept for their reports and their threads.
pub struct VirtioDevices {
    reports: Vec<Arc<Mutex<dyn VirtioReport>>>,
    console: Arc<Mutex<MmioTransport<Console>>>,
    /// Stops with the VM.
    _net_rx: Option<RxThread>,
}

/// Puts `device` in `slot` on the bus.
fn attach<D: VirtioDevice + 'static>(
    slot: Slot,
    device: D,
    vm: &dyn Vm,
    mem: &GuestMemory,
    bus: &mut Bus,
) -> Result<Arc<Mutex<MmioTransport<D>>>> {
    let queues = Queues::new(
        device.name(),
        device.queue_sizes(),
        mem.clone(),
        vm.dma_observer(),
        vm.irq_line(slot.gsi())?,
    );
    let name = device.name();
    let transport = Arc::new(Mutex::new(MmioTransport::new(device, queues)));
    bus.insert_mmio(slot.base(), MMIO_SIZE, name, transport.clone())?;
    Ok(transport)
}

/// The name get-id answers for a disk: its file name, as much as fits in 20 bytes.
fn serial(disk: &DiskImage) -> String {
    let name = std::path::Path::new(disk.name())
        .file_name()
        .map_or_else(|| disk.name().to_string(), |n| n.to_string_lossy().into());
    name.chars().take(20).collect()
}

impl VirtioDevices {
    /// Builds the devices `backends` calls for and maps them on `bus`.
    pub fn build(
        backends: Backends,
        console: ConsoleOut,
        vm: &dyn Vm,
        mem: &GuestMemory,
        bus: &mut Bus,
    ) -> Result<VirtioDevices> {
        let mut reports: Vec<Arc<Mutex<dyn VirtioReport>>> = Vec::new();
        let console = attach(Slot::Console, Console::new(console), vm, mem, bus)?;
        reports.push(console.clone());
        if let Some(disk) = backends.disk {
            let id = serial(&disk);
            reports.push(attach(Slot::Block, Block::new(disk, &id), vm, mem, bus)?);
        }
        let mut net_rx = None;
        if let Some((tap, mac)) = backends.net {
            let net = Net::new(tap, mac).map_err(|e| {
                crate::VmmError::Config(format!("--net: cannot create an event file: {e}"))
            })?;
            let net = attach(Slot::Net, net, vm, mem, bus)?;
            net_rx = Some(net::receive_thread(net.clone()).map_err(|e| {
                crate::VmmError::Config(format!("--net: cannot start the receive thread: {e}"))
            })?);
            reports.push(net);
        }
        reports.push(attach(Slot::Rng, Rng::new(), vm, mem, bus)?);
        Ok(VirtioDevices {
            reports,
            console,
            _net_rx: net_rx,
        })
    }

    /// One line per device: its name and what it did.
    pub fn report(&self) -> Vec<String> {
        self.reports
            .iter()
            .map(|r| {
                let r = lock(r);
                format!("{}: {}", r.name(), r.report())
            })
            .collect()
    }

    /// The virtio console, for host input.
    pub fn console(&self) -> Arc<Mutex<MmioTransport<Console>>> {
        self.console.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_keep_their_pages_and_gsis() {
        let none = Backends {
            disk: None,
            net: None,
        };
        let page = |base, gsi| VirtioMmio {
            base,
            size: 0x1000,
            gsi,
        };
        assert_eq!(
            none.acpi(),
            vec![page(0xfed0_0000, 20), page(0xfed0_3000, 23)]
        );
        let disk = Backends {
            disk: Some(Arc::new(DiskImage::test_image())),
            net: None,
        };
        assert_eq!(disk.acpi()[1], page(0xfed0_1000, 21));
    }

    #[test]
    fn serial_is_the_file_name() {
        let d = DiskImage::from_bytes(vec![0; 512], "/some/dir/a-rather-long-image-name.img");
        assert_eq!(serial(&d), "a-rather-long-image-");
    }
}
