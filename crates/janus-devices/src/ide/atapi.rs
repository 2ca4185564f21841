//! An ATAPI CD-ROM drive backed by an ISO image: what IDENTIFY PACKET DEVICE reports, and the
//! SCSI (MMC) commands firmware and Linux's `sr` driver send it in PACKET commands: TEST UNIT
//! READY, REQUEST SENSE, INQUIRY, READ CAPACITY, READ(10)/READ(12), READ TOC, MODE SENSE(10),
//! GET CONFIGURATION, GET EVENT STATUS NOTIFICATION, MECHANISM STATUS, PREVENT ALLOW MEDIUM
//! REMOVAL, START STOP UNIT (eject). The medium is read-only; after an eject the drive is
//! empty until the VM restarts.
//!
//! References: ATA/ATAPI-7 volume 2 (the PACKET protocol), SPC-3 (sense data, INQUIRY),
//! MMC-5 (the CD commands).

use crate::disk::DiskImage;
use std::sync::Arc;

/// Bytes in a CD block.
pub const BLOCK: usize = 2048;

/// Sense key, additional sense code and qualifier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    const NONE: Sense = Sense {
        key: 0,
        asc: 0,
        ascq: 0,
    };
    const fn new(key: u8, asc: u8, ascq: u8) -> Sense {
        Sense { key, asc, ascq }
    }
}

const NOT_READY: u8 = 2;
const MEDIUM_ERROR: u8 = 3;
const ILLEGAL_REQUEST: u8 = 5;
const UNIT_ATTENTION: u8 = 6;
/// MEDIUM NOT PRESENT.
const NO_MEDIUM: Sense = Sense::new(NOT_READY, 0x3a, 0);
/// NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED.
const MEDIUM_CHANGED: Sense = Sense::new(UNIT_ATTENTION, 0x28, 0);
const INVALID_OPCODE: Sense = Sense::new(ILLEGAL_REQUEST, 0x20, 0);
const INVALID_FIELD: Sense = Sense::new(ILLEGAL_REQUEST, 0x24, 0);
const LBA_OUT_OF_RANGE: Sense = Sense::new(ILLEGAL_REQUEST, 0x21, 0);
/// MEDIUM REMOVAL PREVENTED.
const REMOVAL_PREVENTED: Sense = Sense::new(ILLEGAL_REQUEST, 0x53, 2);
/// UNRECOVERED READ ERROR.
const READ_ERROR: Sense = Sense::new(MEDIUM_ERROR, 0x11, 0);

/// What a packet command produces.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Bytes for the host (possibly none).
    Data(Vec<u8>),
    /// `blocks` 2048-byte blocks from `lba` (READ(10)/READ(12)), read as the host drains them.
    Read { lba: u64, blocks: u64 },
}

pub struct Cdrom {
    image: Option<Arc<DiskImage>>,
    sense: Sense,
    /// A UNIT ATTENTION is due (a new medium since the host last looked).
    changed: bool,
    locked: bool,
    /// GET EVENT STATUS NOTIFICATION has not reported the medium yet.
    new_media_event: bool,
}

fn be16(b: &[u8]) -> u64 {
    u16::from_be_bytes([b[0], b[1]]) as u64
}

fn be32(b: &[u8]) -> u64 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64
}

/// LBA as minutes, seconds, frames (the 2-second lead-in counted).
fn msf(lba: u64) -> [u8; 4] {
    let f = lba + 150;
    [
        0,
        (f / (75 * 60)) as u8,
        (f / 75 % 60) as u8,
        (f % 75) as u8,
    ]
}

impl Cdrom {
    pub fn new(image: Arc<DiskImage>) -> Cdrom {
        Cdrom {
            image: Some(image),
            sense: Sense::NONE,
            changed: true,
            locked: false,
            new_media_event: true,
        }
    }

    /// 2048-byte blocks on the medium (0 without one).
    pub fn blocks(&self) -> u64 {
        self.image.as_ref().map_or(0, |i| i.size() / BLOCK as u64)
    }

    pub fn has_medium(&self) -> bool {
        self.image.is_some()
    }

    /// Reads block `lba` into `buf` (BLOCK bytes).
    pub fn read_block(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Sense> {
        let image = self.image.as_ref().ok_or(NO_MEDIUM)?;
        image
            .read_at(lba * BLOCK as u64, buf)
            .map_err(|_| READ_ERROR)
            .inspect_err(|s| self.sense = *s)
    }

    /// The 512 bytes of IDENTIFY PACKET DEVICE.
    pub fn identify(&self, unit: u8) -> [u8; 512] {
        let mut w = [0u16; 256];
        // ATAPI, CD-ROM device (type 5), removable, 12-byte packets, DRQ within 3 ms.
        w[0] = 0x85c0;
        put_string(&mut w[10..20], &format!("JANUS-CD{unit:012}"));
        put_string(&mut w[23..27], "1.0");
        put_string(&mut w[27..47], "JANUS DVD-ROM");
        // LBA (and no DMA: the drive moves data by PIO).
        w[49] = 1 << 9;
        // Words 64-70 and 88 are valid; PIO modes 3 and 4; cycle times.
        w[53] = 0x0006;
        w[64] = 0x0003;
        w[65] = 120;
        w[66] = 120;
        w[67] = 120;
        w[68] = 120;
        // ATA/ATAPI-4 to 7.
        w[80] = 0x00f0;
        let mut out = [0u8; 512];
        for (i, v) in w.iter().enumerate() {
            out[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Runs the packet command `p`. An error leaves its sense for REQUEST SENSE.
    pub fn command(&mut self, p: &[u8; 12]) -> Result<Reply, Sense> {
        let r = self.run(p);
        match &r {
            Ok(_) => {
                if p[0] != 0x03 {
                    self.sense = Sense::NONE;
                }
            }
            Err(s) => self.sense = *s,
        }
        r
    }

    fn run(&mut self, p: &[u8; 12]) -> Result<Reply, Sense> {
        let data = |v: Vec<u8>, alloc: u64| {
            let mut v = v;
            v.truncate(alloc as usize);
            Ok(Reply::Data(v))
        };
        // Commands that report on the drive answer even with a medium change pending.
        match p[0] {
            0x03 => return data(self.request_sense(), p[4] as u64),
            0x12 => return data(inquiry(), be16(&p[3..5])),
            0x4a => return data(self.event_status(p), be16(&p[7..9])),
            0x46 => return data(self.configuration(), be16(&p[7..9])),
            0xbd => return data(vec![0, 0, 0, 0, 0, 0, 0, 0], be16(&p[8..10])),
            0x1e => {
                self.locked = p[4] & 1 != 0;
                return Ok(Reply::Data(Vec::new()));
            }
            _ => {}
        }
        if self.changed && self.image.is_some() {
            self.changed = false;
            return Err(MEDIUM_CHANGED);
        }
        match p[0] {
            0x00 => self.need_medium().map(|_| Reply::Data(Vec::new())),
            0x1b => self.start_stop(p),
            0x25 => {
                self.need_medium()?;
                let mut v = ((self.blocks().max(1) - 1) as u32).to_be_bytes().to_vec();
                v.extend_from_slice(&(BLOCK as u32).to_be_bytes());
                Ok(Reply::Data(v))
            }
            0x28 | 0xa8 => {
                self.need_medium()?;
                let lba = be32(&p[2..6]);
                let blocks = if p[0] == 0x28 {
                    be16(&p[7..9])
                } else {
                    be32(&p[6..10])
                };
                if lba
                    .checked_add(blocks)
                    .is_none_or(|end| end > self.blocks())
                {
                    return Err(LBA_OUT_OF_RANGE);
                }
                Ok(Reply::Read { lba, blocks })
            }
            0x43 => {
                self.need_medium()?;
                let v = self.toc(p)?;
                data(v, be16(&p[7..9]))
            }
            0x5a => {
                let v = self.mode_sense(p)?;
                data(v, be16(&p[7..9]))
            }
            _ => Err(INVALID_OPCODE),
        }
    }

    fn need_medium(&self) -> Result<(), Sense> {
        if self.image.is_some() {
            Ok(())
        } else {
            Err(NO_MEDIUM)
        }
    }

    /// Fixed-format sense data for the last error (then cleared).
    fn request_sense(&mut self) -> Vec<u8> {
        let s = std::mem::take(&mut self.sense);
        let mut v = vec![0u8; 18];
        v[0] = 0x70;
        v[2] = s.key;
        v[7] = 10;
        v[12] = s.asc;
        v[13] = s.ascq;
        v
    }

    /// START STOP UNIT: with LoEj, stop ejects the medium (unless the host prevented
    /// removal) and start loads it (there is nothing to load once ejected).
    fn start_stop(&mut self, p: &[u8; 12]) -> Result<Reply, Sense> {
        let (start, eject) = (p[4] & 1 != 0, p[4] & 2 != 0);
        if eject && !start {
            if self.locked {
                return Err(REMOVAL_PREVENTED);
            }
            self.image = None;
            self.new_media_event = true;
        }
        Ok(Reply::Data(Vec::new()))
    }

    /// READ TOC/PMA/ATIP: formats 0 (the TOC: one data track and the lead-out) and 1
    /// (session information), in LBA or MSF form.
    fn toc(&self, p: &[u8; 12]) -> Result<Vec<u8>, Sense> {
        let msf_form = p[1] & 2 != 0;
        let format = match p[2] & 0xf {
            0 => p[9] >> 6,
            f => f,
        };
        let addr = |lba: u64| {
            if msf_form {
                msf(lba)
            } else {
                (lba as u32).to_be_bytes()
            }
        };
        let mut v = vec![0, 0, 1, 1];
        match format {
            0 => {
                let track = p[6];
                if track > 1 && track != 0xaa {
                    return Err(INVALID_FIELD);
                }
                if track <= 1 {
                    // Track 1: data, digital copy permitted, at LBA 0.
                    v.extend_from_slice(&[0, 0x14, 1, 0]);
                    v.extend_from_slice(&addr(0));
                }
                v.extend_from_slice(&[0, 0x14, 0xaa, 0]);
                v.extend_from_slice(&addr(self.blocks()));
            }
            1 => {
                v.extend_from_slice(&[0, 0x14, 1, 0]);
                v.extend_from_slice(&addr(0));
            }
            _ => return Err(INVALID_FIELD),
        }
        let len = (v.len() - 2) as u16;
        v[..2].copy_from_slice(&len.to_be_bytes());
        Ok(v)
    }

    /// MODE SENSE(10): the CD capabilities page (0x2A), or all pages (0x3F, which is it).
    fn mode_sense(&self, p: &[u8; 12]) -> Result<Vec<u8>, Sense> {
        let page = p[2] & 0x3f;
        if page != 0x2a && page != 0x3f {
            return Err(INVALID_FIELD);
        }
        // Header: mode data length, medium type (120 mm data CD, or none), no block
        // descriptors.
        let mut v = vec![
            0,
            0,
            if self.has_medium() { 1 } else { 0x70 },
            0,
            0,
            0,
            0,
            0,
        ];
        // Reads CD-R/RW media (no writing); eject; tray loading; lock state reported.
        let lock = if self.locked { 0x02 } else { 0 };
        v.extend_from_slice(&[
            0x2a,
            0x12,
            0x03,
            0x00,
            0x71,
            0x60,
            0x29 | lock,
            0x00,
            0x02,
            0xc2,
            0x00,
            0x02,
            0x02,
            0x00,
            0x02,
            0xc2,
            0x00,
            0x00,
            0x00,
            0x00,
        ]);
        let len = (v.len() - 2) as u16;
        v[..2].copy_from_slice(&len.to_be_bytes());
        Ok(v)
    }

    /// GET CONFIGURATION: the header, with CD-ROM (0x0008) as the current profile when a
    /// medium is in.
    fn configuration(&self) -> Vec<u8> {
        let profile: u16 = if self.has_medium() { 0x0008 } else { 0 };
        let mut v = vec![0, 0, 0, 4, 0, 0];
        v.extend_from_slice(&profile.to_be_bytes());
        v
    }

    /// GET EVENT STATUS NOTIFICATION (polled): the media class, with "new media" once after
    /// the medium arrived (or "media removal" once after an eject).
    fn event_status(&mut self, p: &[u8; 12]) -> Vec<u8> {
        const MEDIA_CLASS: u8 = 1 << 4;
        if p[1] & 1 == 0 || p[4] & MEDIA_CLASS == 0 {
            // Only polling, and only the media class: "no event class supported".
            return vec![0, 2, 0x80, MEDIA_CLASS];
        }
        let event = if std::mem::take(&mut self.new_media_event) {
            if self.has_medium() {
                2
            } else {
                3
            }
        } else {
            0
        };
        let status = if self.has_medium() { 2 } else { 0 };
        vec![0, 6, 4, MEDIA_CLASS, event, status, 0, 0]
    }
}

/// Standard INQUIRY data: a removable CD/DVD device (type 5).
fn inquiry() -> Vec<u8> {
    let mut v = vec![5, 0x80, 0x05, 0x02, 31, 0, 0, 0];
    v.extend_from_slice(b"JANUS   ");
    v.extend_from_slice(b"DVD-ROM         ");
    v.extend_from_slice(b"1.0 ");
    v
}

fn put_string(words: &mut [u16], s: &str) {
    let mut b = vec![b' '; words.len() * 2];
    let n = s.len().min(b.len());
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    for (i, w) in words.iter_mut().enumerate() {
        *w = (b[2 * i] as u16) << 8 | b[2 * i + 1] as u16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(blocks: usize) -> Cdrom {
        let bytes: Vec<u8> = (0..blocks * BLOCK).map(|i| (i / BLOCK) as u8).collect();
        Cdrom::new(Arc::new(DiskImage::from_bytes(bytes, "test.iso")))
    }

    fn packet(b: &[u8]) -> [u8; 12] {
        let mut p = [0u8; 12];
        p[..b.len()].copy_from_slice(b);
        p
    }

    #[test]
    fn unit_attention_first_then_reads() {
        let mut c = drive(8);
        assert_eq!(c.command(&packet(&[0x00])), Err(MEDIUM_CHANGED));
        let Ok(Reply::Data(s)) = c.command(&packet(&[0x03, 0, 0, 0, 18])) else {
            panic!("sense")
        };
        assert_eq!((s[2], s[12]), (UNIT_ATTENTION, 0x28));
        assert_eq!(c.command(&packet(&[0x00])), Ok(Reply::Data(vec![])));
        let Ok(Reply::Data(cap)) = c.command(&packet(&[0x25])) else {
            panic!("capacity")
        };
        assert_eq!(cap, [0, 0, 0, 7, 0, 0, 8, 0]);
        assert_eq!(
            c.command(&packet(&[0x28, 0, 0, 0, 0, 6, 0, 0, 2])),
            Ok(Reply::Read { lba: 6, blocks: 2 })
        );
        assert_eq!(
            c.command(&packet(&[0x28, 0, 0, 0, 0, 7, 0, 0, 2])),
            Err(LBA_OUT_OF_RANGE)
        );
        let mut b = [0u8; BLOCK];
        c.read_block(5, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 5));
    }

    #[test]
    fn toc_inquiry_and_identify() {
        let mut c = drive(100);
        let _ = c.command(&packet(&[0x00]));
        let Ok(Reply::Data(t)) = c.command(&packet(&[0x43, 0, 0, 0, 0, 0, 0, 0, 100])) else {
            panic!("toc")
        };
        assert_eq!(t.len(), 20);
        assert_eq!(&t[..4], &[0, 18, 1, 1]);
        assert_eq!(
            &t[16..20],
            &100u32.to_be_bytes(),
            "lead-out at the capacity"
        );
        let Ok(Reply::Data(t)) = c.command(&packet(&[0x43, 2, 0, 0, 0, 0, 0, 0, 100])) else {
            panic!("toc msf")
        };
        assert_eq!(&t[8..12], &[0, 0, 2, 0], "track 1 at 00:02:00");
        let Ok(Reply::Data(i)) = c.command(&packet(&[0x12, 0, 0, 0, 36])) else {
            panic!("inquiry")
        };
        assert_eq!((i[0], i[1], i.len()), (5, 0x80, 36));
        let id = c.identify(2);
        assert_eq!(u16::from_le_bytes([id[0], id[1]]), 0x85c0);
        assert_eq!(c.command(&packet(&[0xff])), Err(INVALID_OPCODE));
    }

    #[test]
    fn eject_unless_locked() {
        let mut c = drive(4);
        let _ = c.command(&packet(&[0x00]));
        assert_eq!(
            c.command(&packet(&[0x1e, 0, 0, 0, 1])),
            Ok(Reply::Data(vec![]))
        );
        assert_eq!(
            c.command(&packet(&[0x1b, 0, 0, 0, 2])),
            Err(REMOVAL_PREVENTED)
        );
        let _ = c.command(&packet(&[0x1e, 0, 0, 0, 0]));
        assert_eq!(
            c.command(&packet(&[0x1b, 0, 0, 0, 2])),
            Ok(Reply::Data(vec![]))
        );
        assert_eq!(c.command(&packet(&[0x00])), Err(NO_MEDIUM));
        let Ok(Reply::Data(e)) = c.command(&packet(&[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8])) else {
            panic!("event")
        };
        assert_eq!((e[4], e[5]), (3, 0), "media removal, no medium");
    }
}
