//! The PIIX3 IDE controller (8086:7010), function 1 of the PIIX3 at 00:01.1, as on the PCs
//! Linux's `ata_piix` drives (and QEMU's `pc` machine).
//!
//! The controller is in legacy ("compatibility") mode, programming interface 0x80: the primary
//! channel at ports 0x1f0-0x1f7 and 0x3f6 on IRQ 14, the secondary at 0x170-0x177 and 0x376 on
//! IRQ 15 (edge-triggered ISA interrupts), BARs 0-3 unused. BAR 4 is the bus-master block (16
//! ports, 8 per channel), which the guest may move like any BAR. The legacy ports answer only
//! while the command register's I/O space bit and the channel's IDE decode enable bit (bit 15
//! of IDETIM, config 0x40/0x42, which `ata_piix` checks before probing a channel) are set;
//! Janus sets both as firmware would. The timing registers (0x40-0x4f) are stored and have no
//! effect.
//!
//! A DMA transfer runs when both halves are ready, whichever comes second: the device has a DMA
//! command (READ/WRITE DMA) and the bus master is started with bus mastering enabled in the
//! command register. It runs to completion on the vCPU thread, then the device interrupts.

use super::ata::SECTOR;
use super::bmdma::{BusMaster, DmaFault, PrdCursor, Transfer};
use super::channel::{reg, Channel, DmaEnd, DmaRequest};
use super::drive::Drive;
use super::IdeStats;
use crate::bus::{BusDevice, BusError};
use crate::disk::DiskImage;
use crate::pci::{self, ConfigSpace, PciBus, PciFunction, COMMAND_BUS_MASTER, COMMAND_IO};
use crate::Bus;
use janus_engine::{DmaObserver, GuestMemory, IrqLine};
use std::sync::{Arc, Mutex};

/// Vendor and device ID of the PIIX3 IDE function.
pub const PIIX3_IDE: (u16, u16) = (0x8086, 0x7010);
/// Class: mass storage, IDE; programming interface 0x80: bus-master capable, both channels in
/// legacy mode and not switchable to native mode.
const CLASS: u32 = 0x01_0180;

/// The legacy resources of one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegacyChannel {
    /// Command block: 8 ports.
    pub command: u16,
    /// Device control / alternate status: 1 port.
    pub control: u16,
    pub irq: u32,
}

pub const PRIMARY: LegacyChannel = LegacyChannel {
    command: 0x1f0,
    control: 0x3f6,
    irq: 14,
};
pub const SECONDARY: LegacyChannel = LegacyChannel {
    command: 0x170,
    control: 0x376,
    irq: 15,
};

/// The bus-master BAR: BAR 4, 16 ports.
pub const BMDMA_BAR: u8 = 4;
const BMDMA_PORTS: u32 = 16;
/// Where Janus, as firmware, places the bus-master BAR (Linux keeps firmware's assignment).
pub const BMDMA_DEFAULT_BASE: u16 = 0xc000;

/// IDE timing registers, primary and secondary; bit 15 enables the channel's legacy decode.
const IDETIM: [u8; 2] = [0x40, 0x42];
const IDETIM_DECODE_ENABLE: u32 = 0x8000;

/// Offsets the legacy ports map to on this device: channel * 0x10, then the command block
/// (0-7) or the control port (8).
const CHANNEL_STRIDE: u64 = 0x10;
const CONTROL: u64 = 8;

/// Sectors a DMA transfer moves per step between the image and guest memory.
const DMA_CHUNK_SECTORS: u64 = 256;

struct PiixChannel {
    ata: Channel,
    bm: BusMaster,
}

impl PiixChannel {
    /// The bus master's interrupt bit follows each rising edge of the device's interrupt.
    fn sync_interrupt(&mut self) {
        if self.ata.take_irq_event() {
            self.bm.set_interrupt();
        }
    }
}

/// The PIIX3 IDE function: PCI configuration, two channels, bus-master DMA.
pub struct PiixIde {
    config: ConfigSpace,
    channels: [PiixChannel; 2],
    mem: GuestMemory,
    dma_observer: Arc<dyn DmaObserver>,
    scratch: Vec<u8>,
}

/// Drives to attach: `[channel][device]`.
pub type Drives = [[Option<Arc<DiskImage>>; 2]; 2];

impl PiixIde {
    /// A controller with `drives`, DMA into `mem` (writes reported to `dma_observer`), and the
    /// channels' interrupt lines (IRQ 14 and 15 on a PC).
    pub fn new(
        mem: GuestMemory,
        dma_observer: Arc<dyn DmaObserver>,
        irqs: [Option<Arc<dyn IrqLine>>; 2],
        drives: Drives,
    ) -> PiixIde {
        let mut config = ConfigSpace::new(PIIX3_IDE.0, PIIX3_IDE.1, CLASS, 0);
        config.set_bar(
            BMDMA_BAR as usize,
            BMDMA_PORTS,
            true,
            BMDMA_DEFAULT_BASE as u32,
        );
        config.set_command(COMMAND_IO);
        for offset in (0x40..0x50).step_by(4) {
            config.set_writable(offset, u32::MAX);
        }
        *config.reg_mut(IDETIM[0]) = IDETIM_DECODE_ENABLE | IDETIM_DECODE_ENABLE << 16;
        let [irq0, irq1] = irqs;
        let [d0, d1] = drives;
        let channel = |ch: usize, disks: [Option<Arc<DiskImage>>; 2], irq| {
            let [a, b] = disks;
            let unit = |dev: usize| (ch * 2 + dev) as u8;
            let drives = [
                a.map(|d| Drive::new(d, unit(0))),
                b.map(|d| Drive::new(d, unit(1))),
            ];
            PiixChannel {
                ata: Channel::new(drives, irq),
                bm: BusMaster::new(),
            }
        };
        PiixIde {
            config,
            channels: [channel(0, d0, irq0), channel(1, d1, irq1)],
            mem,
            dma_observer,
            scratch: Vec::new(),
        }
    }

    /// Puts a CD-ROM drive at `device` (0 or 1) of `channel` (0 primary, 1 secondary), a
    /// position without a disk.
    pub fn attach_cdrom(&mut self, channel: usize, device: usize, cdrom: super::atapi::Cdrom) {
        if let Some(c) = self.channels.get_mut(channel) {
            c.ata.attach_cdrom(device & 1, cdrom);
        }
    }

    /// Puts the PIIX3 on the machine: its ISA bridge at 00:01.0 and `ide` at 00:01.1 on `pci`,
    /// and the legacy ports of both channels on `bus`.
    pub fn install(
        ide: &Arc<Mutex<PiixIde>>,
        bus: &mut Bus,
        pci: &mut PciBus,
    ) -> Result<(), BusError> {
        for (ch, legacy) in [PRIMARY, SECONDARY].iter().enumerate() {
            let base = ch as u64 * CHANNEL_STRIDE;
            bus.insert_pio_at(legacy.command, 8, base, "piix-ide", ide.clone())?;
            bus.insert_pio_at(legacy.control, 1, base + CONTROL, "piix-ide", ide.clone())?;
        }
        pci.add(1, 0, Arc::new(Mutex::new(pci::piix3_isa_bridge())));
        pci.add(1, 1, ide.clone());
        Ok(())
    }

    /// Counters of both channels.
    pub fn stats(&self) -> IdeStats {
        let mut s = self.channels[0].ata.stats;
        s.add(&self.channels[1].ata.stats);
        s
    }

    /// Whether channel `ch`'s legacy ports decode.
    fn decodes(&self, ch: usize) -> bool {
        let idetim = self.config.reg(IDETIM[0]) >> (16 * ch);
        self.config.command() & COMMAND_IO != 0 && idetim & IDETIM_DECODE_ENABLE != 0
    }

    /// Runs channel `ch`'s DMA command if the bus master is ready for it.
    fn run_dma(&mut self, ch: usize) {
        let mastering = self.config.command() & COMMAND_BUS_MASTER != 0;
        let c = &mut self.channels[ch];
        let Some(request) = c.ata.dma_request() else {
            return;
        };
        if !mastering || !c.bm.active() {
            return;
        }
        c.ata.stats.dma_transfers += 1;
        let mut cursor = c.bm.cursor();
        let outcome = if request.to_memory != c.bm.to_memory() {
            // The guest programmed the bus master for the other direction.
            Err(DmaFault::TableEnd)
        } else {
            let mut mover = Mover {
                mem: &self.mem,
                observer: &*self.dma_observer,
                cursor: &mut cursor,
                scratch: &mut self.scratch,
                moved: 0,
            };
            let end = mover.run(&c.ata, request);
            c.ata.stats.dma_bytes += mover.moved;
            end
        };
        let (end, fault) = match outcome {
            Ok(end) => (end, false),
            Err(DmaFault::Memory { addr }) => {
                tracing::debug!("ide: DMA master abort at {addr:#x}");
                (DmaEnd::Aborted, true)
            }
            Err(DmaFault::TableEnd) => (DmaEnd::Aborted, false),
        };
        let left = end == DmaEnd::Done && cursor.regions_left();
        c.bm.finish(fault, left);
        c.ata.finish_dma(end);
        c.sync_interrupt();
    }

    fn legacy_read(&mut self, ch: usize, r: u64, data: &mut [u8]) {
        let c = &mut self.channels[ch].ata;
        if r == CONTROL {
            c.stats.register_exits += 1;
            data.fill(0);
            data[0] = c.alt_status();
        } else if r == reg::DATA as u64 {
            c.stats.data_exits += 1;
            c.read_data(data);
        } else {
            c.stats.register_exits += 1;
            for (i, b) in data.iter_mut().enumerate() {
                let r = r + i as u64;
                *b = if r <= reg::STATUS as u64 {
                    c.read_register(r as u8)
                } else {
                    0xff
                };
            }
        }
    }

    fn legacy_write(&mut self, ch: usize, r: u64, data: &[u8]) {
        let c = &mut self.channels[ch].ata;
        if r == CONTROL {
            c.stats.register_exits += 1;
            c.write_control(data[0]);
        } else if r == reg::DATA as u64 {
            c.stats.data_exits += 1;
            c.write_data(data);
        } else {
            c.stats.register_exits += 1;
            for (i, &b) in data.iter().enumerate() {
                let r = r + i as u64;
                if r <= reg::STATUS as u64 {
                    c.write_register(r as u8, b);
                }
            }
            // A DMA command may have arrived after its bus master was started.
            self.run_dma(ch);
        }
    }
}

/// Moves a DMA command's sectors between the image and guest memory through the PRD table.
struct Mover<'a> {
    mem: &'a GuestMemory,
    observer: &'a dyn DmaObserver,
    cursor: &'a mut PrdCursor,
    scratch: &'a mut Vec<u8>,
    /// Bytes moved between the image and memory.
    moved: u64,
}

impl Mover<'_> {
    fn run(&mut self, ata: &Channel, req: DmaRequest) -> Result<DmaEnd, DmaFault> {
        let Some(drive) = ata.dma_drive() else {
            return Ok(DmaEnd::Aborted);
        };
        let end = req.lba + req.sectors;
        let mut lba = req.lba;
        while lba < end {
            let n = (end - lba).min(DMA_CHUNK_SECTORS);
            let len = n as usize * SECTOR;
            self.scratch.resize(len, 0);
            let buf = &mut self.scratch[..len];
            if req.to_memory {
                if drive.read(lba, buf).is_err() {
                    return Ok(DmaEnd::Disk { lba });
                }
                self.cursor
                    .transfer(self.mem, self.observer, Transfer::ToMemory(buf))?;
            } else {
                self.cursor
                    .transfer(self.mem, self.observer, Transfer::FromMemory(buf))?;
                if drive.write(lba, buf).is_err() {
                    return Ok(DmaEnd::Disk { lba });
                }
            }
            self.moved += len as u64;
            lba += n;
        }
        Ok(DmaEnd::Done)
    }
}

impl BusDevice for PiixIde {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let ch = (offset / CHANNEL_STRIDE) as usize & 1;
        let r = offset % CHANNEL_STRIDE;
        if !self.decodes(ch) {
            // Not decoded: the ISA bus floats high.
            self.channels[ch].ata.stats.register_exits += 1;
            data.fill(0xff);
            return;
        }
        self.legacy_read(ch, r, data);
        self.channels[ch].sync_interrupt();
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let ch = (offset / CHANNEL_STRIDE) as usize & 1;
        let r = offset % CHANNEL_STRIDE;
        if data.is_empty() || !self.decodes(ch) {
            self.channels[ch].ata.stats.register_exits += 1;
            return;
        }
        self.legacy_write(ch, r, data);
        self.channels[ch].sync_interrupt();
    }
}

impl PciFunction for PiixIde {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }

    fn write_config(&mut self, offset: u8, value: u32, mask: u32) {
        self.config.write(offset, value, mask);
        // Bus mastering may just have been enabled under a started bus master.
        for ch in 0..2 {
            self.run_dma(ch);
        }
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if bar != BMDMA_BAR {
            return;
        }
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset + i as u64;
            if let Some(c) = self.channels.get_mut((at / 8) as usize) {
                if i == 0 {
                    c.ata.stats.bmdma_exits += 1;
                }
                *b = c.bm.read(at % 8);
            }
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if bar != BMDMA_BAR {
            return;
        }
        let mut touched = [false; 2];
        for (i, &b) in data.iter().enumerate() {
            let at = offset + i as u64;
            let ch = (at / 8) as usize;
            if let Some(c) = self.channels.get_mut(ch) {
                if i == 0 {
                    c.ata.stats.bmdma_exits += 1;
                }
                c.bm.write(at % 8, b);
                touched[ch] = true;
            }
        }
        for (ch, &t) in touched.iter().enumerate() {
            if t {
                // The bus master may just have been started under a waiting DMA command.
                self.run_dma(ch);
            }
        }
    }

    fn name(&self) -> &'static str {
        "piix-ide"
    }
}
