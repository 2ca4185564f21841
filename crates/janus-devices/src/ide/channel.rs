//! One IDE channel (one cable): two device positions, the task-file registers each device
//! keeps, the ATA command protocols (PIO data-in and data-out, non-data, DMA) and INTRQ.
//!
//! Commands run to completion when they are written, on the vCPU thread: a PIO read has its
//! first block ready (DRQ and INTRQ) before the OUT that issued it retires, and a DMA command
//! waits only for the bus master (see `piix.rs`). Guests cannot tell, since a real disk is
//! merely slower, and it keeps the model free of threads and timers.
//!
//! Rules followed where the host misbehaves, as ATA devices and QEMU do: a command written
//! while BSY or DRQ is set is ignored; a command to an absent device goes nowhere; an address
//! beyond the medium ends the command with IDNF, an unsupported command or parameter with
//! ABRT, and a failed read of the host image with UNC, the address registers naming the
//! sector. Reads of an absent device's registers return 0, so probes find nothing there.

use super::ata::{control, device, error, status, Command, Protocol, Taskfile, SECTOR};
use super::atapi::{Cdrom, Reply, BLOCK};
use super::drive::Drive;
use super::IdeStats;
use janus_engine::IrqLine;
use std::sync::Arc;

/// Command block register offsets (0x1f0-0x1f7 on the primary channel).
pub mod reg {
    pub const DATA: u8 = 0;
    /// Error when read, features when written.
    pub const ERROR: u8 = 1;
    pub const NSECT: u8 = 2;
    pub const LBAL: u8 = 3;
    pub const LBAM: u8 = 4;
    pub const LBAH: u8 = 5;
    pub const DEVICE: u8 = 6;
    /// Status when read (acknowledging INTRQ), command when written.
    pub const STATUS: u8 = 7;
}

/// A DMA command waiting for, or being served by, the bus master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaRequest {
    /// Device to memory (READ DMA) or memory to device (WRITE DMA).
    pub to_memory: bool,
    pub lba: u64,
    pub sectors: u64,
}

/// How the bus master ended a DMA command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaEnd {
    /// Every sector moved.
    Done,
    /// The host image failed at `lba`.
    Disk { lba: u64 },
    /// The bus master could not move the data (memory fault, PRD table too short, direction
    /// not the command's): the device aborts the command.
    Aborted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PioKind {
    /// IDENTIFY DEVICE: one block from the buffer, no medium access.
    Identify,
    Read,
    Write,
    /// ATAPI: the host writes the 12-byte command packet.
    PacketCommand,
    /// ATAPI: the host reads a chunk of the packet command's data.
    PacketData,
}

impl PioKind {
    /// The host writes the data port in this phase (else it reads it).
    fn host_writes(self) -> bool {
        matches!(self, PioKind::Write | PioKind::PacketCommand)
    }
}

/// Where an ATAPI packet command's data comes from.
enum PacketSource {
    Bytes {
        data: Vec<u8>,
        pos: usize,
    },
    /// Blocks of the medium not yet read, and bytes read but not yet handed over.
    Blocks {
        lba: u64,
        left: u64,
        pending: Vec<u8>,
    },
}

/// An ATAPI packet command in progress.
struct Packet {
    drive: usize,
    /// Most bytes per DRQ chunk (the byte count limit the host wrote), even.
    limit: usize,
    source: Option<PacketSource>,
}

/// ATAPI interrupt reason (the sector count register during a packet command).
mod reason {
    /// Command (packet) transfer, or the end of the command.
    pub const COD: u8 = 1;
    /// Device to host.
    pub const IO: u8 = 2;
}

/// A PIO command in its data phase.
#[derive(Clone, Copy, Debug)]
struct Pio {
    kind: PioKind,
    drive: usize,
    ext: bool,
    /// The next sector to read into, or write from, the buffer.
    lba: u64,
    /// Sectors not yet in the buffer (reads) or not yet written (writes, counting the block
    /// being filled).
    remaining: u64,
    /// Sectors per DRQ block.
    block: u64,
    /// Bytes of the current block moved so far, and its length.
    pos: usize,
    len: usize,
}

impl Pio {
    /// A transfer of `len` bytes of the channel's buffer (no medium access): IDENTIFY data, a
    /// command packet, a packet command's data.
    fn buffer(kind: PioKind, drive: usize, len: usize) -> Pio {
        Pio {
            kind,
            drive,
            ext: false,
            lba: 0,
            remaining: 0,
            block: 1,
            pos: 0,
            len,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Dma {
    drive: usize,
    ext: bool,
    request: DmaRequest,
}

pub struct Channel {
    drives: [Option<Drive>; 2],
    /// ATAPI CD-ROM drives, at positions that have no disk.
    cdroms: [Option<Cdrom>; 2],
    packet: Option<Packet>,
    /// Each device's copy of the command block (writes go to both, reads come from the
    /// selected one).
    regs: [Taskfile; 2],
    status: [u8; 2],
    error: [u8; 2],
    /// The device control register (nIEN, SRST, HOB).
    control: u8,
    selected: usize,
    pio: Option<Pio>,
    dma: Option<Dma>,
    buffer: Vec<u8>,
    /// INTRQ as the device asserts it, before nIEN.
    intrq: bool,
    /// The level on the interrupt line.
    line: bool,
    irq: Option<Arc<dyn IrqLine>>,
    /// A rising edge on the line since the bus master last looked.
    irq_event: bool,
    pub stats: IdeStats,
}

impl Channel {
    /// A channel with `drives` (device 0, device 1) and its interrupt line.
    pub fn new(drives: [Option<Drive>; 2], irq: Option<Arc<dyn IrqLine>>) -> Channel {
        let mut c = Channel {
            drives,
            cdroms: [None, None],
            packet: None,
            regs: [Taskfile::default(); 2],
            status: [0; 2],
            error: [0; 2],
            control: 0,
            selected: 0,
            pio: None,
            dma: None,
            buffer: Vec::new(),
            intrq: false,
            line: false,
            irq,
            irq_event: false,
            stats: IdeStats::default(),
        };
        c.end_reset();
        c
    }

    pub fn drive(&self, n: usize) -> Option<&Drive> {
        self.drives.get(n)?.as_ref()
    }

    /// Puts a CD-ROM drive at position `n` (which must have no disk).
    pub fn attach_cdrom(&mut self, n: usize, cdrom: Cdrom) {
        if self.drives[n].is_none() {
            self.cdroms[n] = Some(cdrom);
            self.end_reset();
        }
    }

    /// Whether a device sits at position `d`.
    fn present(&self, d: usize) -> bool {
        self.drives[d].is_some() || self.cdroms[d].is_some()
    }

    /// Whether the device's interrupt line is asserted now.
    pub fn irq_level(&self) -> bool {
        self.line
    }

    /// Whether the line rose since the last call (the bus master's interrupt bit follows it).
    pub fn take_irq_event(&mut self) -> bool {
        std::mem::take(&mut self.irq_event)
    }

    /// Reads the command block register `r` (not the data port).
    pub fn read_register(&mut self, r: u8) -> u8 {
        let d = self.selected;
        if !self.present(d) {
            return 0;
        }
        let hob = self.control & control::HOB != 0;
        let tf = &self.regs[d];
        match r {
            reg::ERROR => self.error[d],
            reg::NSECT => tf.nsect.read(hob),
            reg::LBAL => tf.lbal.read(hob),
            reg::LBAM => tf.lbam.read(hob),
            reg::LBAH => tf.lbah.read(hob),
            reg::DEVICE => tf.device,
            reg::STATUS => {
                let s = self.status[d];
                self.set_intrq(false);
                s
            }
            _ => 0xff,
        }
    }

    /// The alternate status register: status without acknowledging INTRQ.
    pub fn alt_status(&self) -> u8 {
        let d = self.selected;
        if !self.present(d) {
            0
        } else {
            self.status[d]
        }
    }

    /// Writes the command block register `r` (not the data port).
    pub fn write_register(&mut self, r: u8, v: u8) {
        self.control &= !control::HOB;
        if r == reg::STATUS {
            self.execute(v);
            return;
        }
        for tf in &mut self.regs {
            match r {
                reg::ERROR => tf.feature.write(v),
                reg::NSECT => tf.nsect.write(v),
                reg::LBAL => tf.lbal.write(v),
                reg::LBAM => tf.lbam.write(v),
                reg::LBAH => tf.lbah.write(v),
                reg::DEVICE => tf.device = v,
                _ => {}
            }
        }
        if r == reg::DEVICE {
            self.selected = usize::from(v & device::DEV != 0);
        }
    }

    /// Writes the device control register: SRST resets both devices while set, nIEN
    /// releases INTRQ, HOB selects the previous bytes of the LBA48 registers for reading.
    pub fn write_control(&mut self, v: u8) {
        let was = self.control;
        self.control = v;
        if v & control::SRST != 0 && was & control::SRST == 0 {
            self.begin_reset();
        } else if v & control::SRST == 0 && was & control::SRST != 0 {
            self.end_reset();
        }
        self.update_line();
    }

    fn begin_reset(&mut self) {
        self.pio = None;
        self.dma = None;
        self.packet = None;
        self.intrq = false;
        for d in 0..2 {
            if self.present(d) {
                self.status[d] = status::BSY;
            }
        }
    }

    fn end_reset(&mut self) {
        for d in 0..2 {
            self.set_signature(d);
            if self.present(d) {
                self.status[d] = status::READY;
                self.error[d] = error::DIAGNOSTIC_PASSED;
            }
        }
        self.selected = 0;
    }

    /// The signature a device leaves in its registers after reset: ATA, or ATAPI (LBA mid
    /// and high 0x14 and 0xEB), which is how hosts tell a CD-ROM drive from a disk.
    fn set_signature(&mut self, d: usize) {
        self.regs[d].set_signature();
        if self.cdroms[d].is_some() {
            self.regs[d].lbam.cur = 0x14;
            self.regs[d].lbah.cur = 0xeb;
        }
    }

    /// A data port read: the next bytes of a PIO data-in block, or all ones outside one.
    pub fn read_data(&mut self, out: &mut [u8]) {
        let Some(p) = self.pio.as_mut().filter(|p| !p.kind.host_writes()) else {
            out.fill(0xff);
            return;
        };
        let n = out.len().min(p.len - p.pos);
        out[..n].copy_from_slice(&self.buffer[p.pos..p.pos + n]);
        out[n..].fill(0xff);
        p.pos += n;
        self.stats.pio_bytes += n as u64;
        if p.pos == p.len {
            if p.kind == PioKind::PacketData {
                self.next_packet_chunk();
            } else {
                self.read_block_done();
            }
        }
    }

    /// A data port write: the next bytes of a PIO data-out block; ignored outside one.
    pub fn write_data(&mut self, data: &[u8]) {
        let Some(p) = self.pio.as_mut().filter(|p| p.kind.host_writes()) else {
            return;
        };
        let n = data.len().min(p.len - p.pos);
        self.buffer[p.pos..p.pos + n].copy_from_slice(&data[..n]);
        p.pos += n;
        self.stats.pio_bytes += n as u64;
        if p.pos == p.len {
            if p.kind == PioKind::PacketCommand {
                self.run_packet();
            } else {
                self.write_block_done();
            }
        }
    }

    /// The DMA command waiting for the bus master, if any.
    pub fn dma_request(&self) -> Option<DmaRequest> {
        self.dma.map(|d| d.request)
    }

    /// The drive the waiting DMA command is for.
    pub fn dma_drive(&self) -> Option<&Drive> {
        self.drive(self.dma?.drive)
    }

    /// Ends the waiting DMA command as the bus master saw it.
    pub fn finish_dma(&mut self, end: DmaEnd) {
        let Some(dma) = self.dma.take() else {
            return;
        };
        let DmaRequest {
            to_memory,
            lba,
            sectors,
        } = dma.request;
        match end {
            DmaEnd::Done => {
                self.set_address(dma.drive, lba + sectors - 1, dma.ext);
                self.complete(dma.drive);
            }
            DmaEnd::Disk { lba } => {
                self.set_address(dma.drive, lba, dma.ext);
                let bits = if to_memory { error::UNC } else { error::ABRT };
                self.fail(dma.drive, bits);
            }
            DmaEnd::Aborted => self.fail(dma.drive, error::ABRT),
        }
    }

    /// Runs the command `opcode` on the selected device.
    fn execute(&mut self, opcode: u8) {
        let command = Command::decode(opcode);
        // EXECUTE DEVICE DIAGNOSTIC is addressed to both devices, whichever is selected;
        // device 0 answers for them.
        let d = if command == Command::ExecuteDeviceDiagnostic {
            0
        } else {
            self.selected
        };
        if !self.present(d) {
            return;
        }
        if self.status[d] & (status::BSY | status::DRQ) != 0 {
            self.stats.ignored_commands += 1;
            return;
        }
        self.stats.commands += 1;
        self.error[d] = 0;
        if self.cdroms[d].is_some() && command != Command::ExecuteDeviceDiagnostic {
            self.atapi_execute(d, opcode);
            return;
        }
        match command {
            Command::ExecuteDeviceDiagnostic => {
                self.end_reset();
                self.raise_intrq();
            }
            Command::Identify => self.identify(d),
            Command::Read { protocol, ext } => self.start_transfer(d, protocol, ext, false),
            Command::Write { protocol, ext } => self.start_transfer(d, protocol, ext, true),
            Command::Verify { ext } => {
                if self.checked_range(d, ext).is_some() {
                    self.complete(d);
                }
            }
            Command::Flush => self.flush(d),
            Command::SetFeatures => {
                let (feature, count) = (self.regs[d].feature.cur, self.regs[d].nsect.cur);
                let ok = self.drives[d]
                    .as_mut()
                    .is_some_and(|drv| drv.set_feature(feature, count));
                self.complete_if(d, ok);
            }
            Command::SetMultipleMode => {
                let count = self.regs[d].nsect.cur;
                let ok = self.drives[d]
                    .as_mut()
                    .is_some_and(|drv| drv.set_multiple(count));
                self.complete_if(d, ok);
            }
            Command::InitializeDeviceParameters => {
                let heads = (self.regs[d].device & device::HEAD_MASK) + 1;
                let sectors = self.regs[d].nsect.cur;
                let ok = self.drives[d]
                    .as_mut()
                    .is_some_and(|drv| drv.initialize_parameters(heads, sectors));
                self.complete_if(d, ok);
            }
            Command::CheckPowerMode => {
                // Active or idle.
                self.regs[d].nsect.cur = 0xff;
                self.complete(d);
            }
            Command::NoData => self.complete(d),
            Command::Unsupported => self.fail(d, error::ABRT),
        }
    }

    /// A command to the CD-ROM drive at `d`.
    fn atapi_execute(&mut self, d: usize, opcode: u8) {
        use super::ata::op;
        const PACKET: u8 = 0xa0;
        const DEVICE_RESET: u8 = 0x08;
        let unit = d as u8;
        match opcode {
            op::IDENTIFY_PACKET_DEVICE => {
                let Some(cd) = &self.cdroms[d] else { return };
                self.buffer.clear();
                self.buffer.extend_from_slice(&cd.identify(unit));
                self.pio = Some(Pio::buffer(PioKind::Identify, d, SECTOR));
                self.status[d] = status::READY | status::DRQ;
                self.raise_intrq();
            }
            // A packet device aborts IDENTIFY DEVICE and shows its signature.
            op::IDENTIFY_DEVICE => {
                self.set_signature(d);
                self.fail(d, error::ABRT);
            }
            PACKET => {
                // Data moves by PIO only (IDENTIFY PACKET DEVICE offers no DMA).
                if self.regs[d].feature.cur & 1 != 0 {
                    self.fail(d, error::ABRT);
                    return;
                }
                let tf = &self.regs[d];
                let limit = (tf.lbam.cur as usize | (tf.lbah.cur as usize) << 8) & !1;
                self.packet = Some(Packet {
                    drive: d,
                    limit: if limit == 0 { 0xfffe } else { limit },
                    source: None,
                });
                self.buffer.clear();
                self.buffer.resize(12, 0);
                self.pio = Some(Pio::buffer(PioKind::PacketCommand, d, 12));
                self.regs[d].nsect.cur = reason::COD;
                self.status[d] = status::READY | status::DRQ;
            }
            DEVICE_RESET => {
                self.set_signature(d);
                self.status[d] = status::READY;
            }
            op::SET_FEATURES
            | op::CHECK_POWER_MODE
            | op::IDLE
            | op::IDLE_IMMEDIATE
            | op::STANDBY
            | op::STANDBY_IMMEDIATE => self.complete(d),
            _ => self.fail(d, error::ABRT),
        }
    }

    /// The packet is in: run it, then hand its data over (or end it).
    fn run_packet(&mut self) {
        let Some(d) = self.packet.as_ref().map(|p| p.drive) else {
            return;
        };
        let mut p = [0u8; 12];
        p.copy_from_slice(&self.buffer[..12]);
        self.pio = None;
        let Some(cd) = self.cdroms[d].as_mut() else {
            return;
        };
        let source = match cd.command(&p) {
            Err(sense) => {
                self.packet_error(d, sense.key);
                return;
            }
            Ok(Reply::Data(data)) => PacketSource::Bytes { data, pos: 0 },
            Ok(Reply::Read { lba, blocks }) => PacketSource::Blocks {
                lba,
                left: blocks,
                pending: Vec::new(),
            },
        };
        if let Some(pk) = self.packet.as_mut() {
            pk.source = Some(source);
        }
        self.next_packet_chunk();
    }

    /// Offers the next chunk of the packet command's data (byte count in LBA mid/high,
    /// interrupt reason "data to host"), or ends the command when all of it went.
    fn next_packet_chunk(&mut self) {
        let Some(pk) = self.packet.as_mut() else {
            return;
        };
        let d = pk.drive;
        let limit = pk.limit;
        let chunk: Result<Vec<u8>, u8> = match pk.source.as_mut() {
            None => Ok(Vec::new()),
            Some(PacketSource::Bytes { data, pos }) => {
                let n = (data.len() - *pos).min(limit);
                let c = data[*pos..*pos + n].to_vec();
                *pos += n;
                Ok(c)
            }
            Some(PacketSource::Blocks { lba, left, pending }) => {
                let want = (pending.len() as u64 + *left * BLOCK as u64).min(limit as u64);
                let mut err = None;
                while (pending.len() as u64) < want {
                    let Some(cd) = self.cdroms[d].as_mut() else {
                        break;
                    };
                    let mut block = vec![0u8; BLOCK];
                    if let Err(sense) = cd.read_block(*lba, &mut block) {
                        err = Some(sense.key);
                        break;
                    }
                    pending.extend_from_slice(&block);
                    *lba += 1;
                    *left -= 1;
                }
                match err {
                    Some(key) => Err(key),
                    None => Ok(pending.drain(..want as usize).collect()),
                }
            }
        };
        match chunk {
            Err(key) => self.packet_error(d, key),
            Ok(c) if c.is_empty() => self.packet_complete(d),
            Ok(c) => {
                let n = c.len();
                self.buffer = c;
                self.pio = Some(Pio::buffer(PioKind::PacketData, d, n));
                let tf = &mut self.regs[d];
                tf.lbam.cur = n as u8;
                tf.lbah.cur = (n >> 8) as u8;
                tf.nsect.cur = reason::IO;
                self.status[d] = status::READY | status::DRQ;
                self.raise_intrq();
            }
        }
    }

    /// Ends the packet command: status without DRQ, interrupt reason "command done".
    fn packet_complete(&mut self, d: usize) {
        self.packet = None;
        self.pio = None;
        self.regs[d].nsect.cur = reason::IO | reason::COD;
        self.status[d] = status::READY;
        self.raise_intrq();
    }

    /// Ends the packet command with CHECK CONDITION: ERR, the sense key in the error
    /// register's upper half (REQUEST SENSE gives the rest).
    fn packet_error(&mut self, d: usize, key: u8) {
        self.packet = None;
        self.pio = None;
        self.regs[d].nsect.cur = reason::IO | reason::COD;
        self.error[d] = key << 4 | error::ABRT;
        self.status[d] = status::READY | status::ERR;
        self.stats.errors += 1;
        self.raise_intrq();
    }

    fn identify(&mut self, d: usize) {
        let Some(drive) = &self.drives[d] else { return };
        self.buffer.clear();
        self.buffer.extend_from_slice(&drive.identify());
        self.pio = Some(Pio::buffer(PioKind::Identify, d, SECTOR));
        self.status[d] = status::READY | status::DRQ;
        self.raise_intrq();
    }

    /// The first sector and count of a read, write or verify command, if they are on the
    /// medium; otherwise the command ends with IDNF.
    fn checked_range(&mut self, d: usize, ext: bool) -> Option<(u64, u64)> {
        let drive = self.drives[d].as_ref()?;
        let tf = &self.regs[d];
        let count = tf.count(ext);
        let range = tf
            .address(ext, &drive.geometry())
            .filter(|&lba| drive.in_range(lba, count));
        if range.is_none() {
            self.fail(d, error::IDNF);
        }
        range.map(|lba| (lba, count))
    }

    fn start_transfer(&mut self, d: usize, protocol: Protocol, ext: bool, write: bool) {
        let Some(drive) = &self.drives[d] else { return };
        let block = match protocol {
            Protocol::PioMultiple => drive.multiple() as u64,
            Protocol::Pio | Protocol::Dma => 1,
        };
        // READ/WRITE MULTIPLE before SET MULTIPLE MODE, or a write to a read-only image.
        if block == 0 || (write && drive.read_only()) {
            self.fail(d, error::ABRT);
            return;
        }
        let Some((lba, count)) = self.checked_range(d, ext) else {
            return;
        };
        if protocol == Protocol::Dma {
            self.dma = Some(Dma {
                drive: d,
                ext,
                request: DmaRequest {
                    to_memory: !write,
                    lba,
                    sectors: count,
                },
            });
            self.status[d] = status::READY | status::DRQ;
            return;
        }
        let kind = if write { PioKind::Write } else { PioKind::Read };
        self.pio = Some(Pio {
            kind,
            drive: d,
            ext,
            lba,
            remaining: count,
            block,
            pos: 0,
            len: 0,
        });
        if write {
            // The host sends the first block without waiting for an interrupt.
            self.next_write_block();
        } else {
            self.next_read_block();
        }
    }

    /// Reads the next block of a PIO read into the buffer and offers it (DRQ, INTRQ).
    fn next_read_block(&mut self) {
        let Some(p) = self.pio.as_mut() else { return };
        let Some(drive) = &self.drives[p.drive] else {
            return;
        };
        let n = p.remaining.min(p.block);
        let len = n as usize * SECTOR;
        self.buffer.resize(len, 0);
        let (d, lba, ext) = (p.drive, p.lba, p.ext);
        if drive.read(lba, &mut self.buffer[..len]).is_err() {
            self.set_address(d, lba, ext);
            self.fail(d, error::UNC);
            return;
        }
        p.lba += n;
        p.remaining -= n;
        p.pos = 0;
        p.len = len;
        self.set_address(d, lba + n - 1, ext);
        self.status[d] = status::READY | status::DRQ;
        self.raise_intrq();
    }

    /// The host has read a whole block: offer the next, or end the command (no interrupt:
    /// the host reads the status once the last block is in).
    fn read_block_done(&mut self) {
        let Some(p) = self.pio else { return };
        if p.remaining > 0 {
            self.next_read_block();
        } else {
            self.pio = None;
            self.status[p.drive] = status::READY;
        }
    }

    /// Asks the host for the next block of a PIO write (DRQ).
    fn next_write_block(&mut self) {
        let Some(p) = self.pio.as_mut() else { return };
        p.pos = 0;
        p.len = p.remaining.min(p.block) as usize * SECTOR;
        self.buffer.resize(p.len, 0);
        self.status[p.drive] = status::READY | status::DRQ;
    }

    /// The host has written a whole block: put it on the medium, then ask for the next one
    /// or end the command; either way with an interrupt.
    fn write_block_done(&mut self) {
        let Some(p) = self.pio.as_mut() else { return };
        let Some(drive) = &self.drives[p.drive] else {
            return;
        };
        let n = (p.len / SECTOR) as u64;
        let (d, lba, ext) = (p.drive, p.lba, p.ext);
        if drive.write(lba, &self.buffer[..p.len]).is_err() {
            self.set_address(d, lba, ext);
            self.fail(d, error::ABRT);
            return;
        }
        p.lba += n;
        p.remaining -= n;
        let more = p.remaining > 0;
        self.set_address(d, lba + n - 1, ext);
        if more {
            self.next_write_block();
            self.raise_intrq();
        } else {
            self.complete(d);
        }
    }

    fn flush(&mut self, d: usize) {
        let Some(drive) = &self.drives[d] else { return };
        self.stats.flushes += 1;
        let ok = drive.flush().is_ok();
        self.complete_if(d, ok);
    }

    fn set_address(&mut self, d: usize, lba: u64, ext: bool) {
        if let Some(drive) = &self.drives[d] {
            let g = drive.geometry();
            self.regs[d].set_address(lba, ext, &g);
        }
    }

    /// Ends the command on device `d` successfully, with an interrupt.
    fn complete(&mut self, d: usize) {
        self.pio = None;
        self.status[d] = status::READY;
        self.raise_intrq();
    }

    fn complete_if(&mut self, d: usize, ok: bool) {
        if ok {
            self.complete(d);
        } else {
            self.fail(d, error::ABRT);
        }
    }

    /// Ends the command on device `d` with ERR and `bits` in the error register.
    fn fail(&mut self, d: usize, bits: u8) {
        self.pio = None;
        self.dma = None;
        self.packet = None;
        self.error[d] = bits;
        self.status[d] = status::READY | status::ERR;
        self.stats.errors += 1;
        self.raise_intrq();
    }

    fn raise_intrq(&mut self) {
        self.set_intrq(true);
    }

    fn set_intrq(&mut self, level: bool) {
        self.intrq = level;
        self.update_line();
    }

    /// Drives the interrupt line from INTRQ and nIEN.
    fn update_line(&mut self) {
        let level = self.intrq && self.control & control::NIEN == 0;
        if level == self.line {
            return;
        }
        self.line = level;
        self.irq_event |= level;
        if let Some(irq) = &self.irq {
            if let Err(e) = irq.set_level(level) {
                tracing::warn!("ide: cannot drive the interrupt line: {e}");
            }
        }
    }
}
