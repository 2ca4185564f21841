//! virtio-blk on a raw image (virtio 1.x, section 5.2): read, write, flush (fsync on the host)
//! and get-id, with an optional read-only mode. One request queue; requests complete before
//! the notify that carried them returns.
//!
//! A request is a readable 16-byte header (type, reserved, sector), data buffers (writable for
//! a read, readable for a write) and a writable status byte at the very end. [`parse`] checks
//! that layout against the chain and the image before anything is read or written: a request
//! with its data in the wrong direction, a length that is not whole sectors, or a range past
//! the end of the image is answered with VIRTIO_BLK_S_IOERR (an unknown type with _UNSUPP);
//! a chain with no writable byte for the status cannot be answered and is returned empty.

use super::queue::{Chain, Queues, Stream};
use super::VirtioDevice;
use crate::disk::DiskImage;
use janus_engine::GuestMemory;
use std::sync::Arc;
use virtio_bindings::bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_ID_BYTES,
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;

pub const SECTOR: u64 = 512;
/// Size of the request header (`virtio_blk_outhdr`).
const HEADER: u64 = 16;
const QUEUE_SIZES: &[u16] = &[256];
/// Data segments per request: the queue size less the header and status descriptors, as QEMU
/// advertises (the driver uses indirect tables for more than fit in the ring).
const SEG_MAX: u32 = 254;
/// Bytes moved between the image and guest memory at a time.
const CHUNK: u64 = 64 << 10;

/// A request, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `len` bytes at byte `offset` of the image into the writable buffers.
    Read {
        offset: u64,
        len: u64,
    },
    /// `len` bytes from the readable buffers after the header to byte `offset`.
    Write {
        offset: u64,
        len: u64,
    },
    Flush,
    GetId,
    /// Answered with `status` without touching the image.
    Reject {
        status: u8,
        why: &'static str,
    },
}

/// A request and where its status byte goes (an offset in the writable stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub request: Request,
    pub status_at: u64,
}

const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
const UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

fn reject(status: u8, why: &'static str) -> Request {
    Request::Reject { status, why }
}

/// Checks a request's layout against the chain and an image of `capacity` bytes. `Err` when
/// there is no status byte to answer in.
pub fn parse(
    chain: &Chain,
    mem: &GuestMemory,
    capacity: u64,
    read_only: bool,
) -> Result<Parsed, &'static str> {
    let (out, inp) = (Stream::new(&chain.readable), Stream::new(&chain.writable));
    let status_at = inp.len().checked_sub(1).ok_or("no writable status byte")?;
    let request = match header(&out, mem) {
        None => reject(IOERR, "header shorter than 16 bytes or unreadable"),
        Some((kind, sector)) => {
            let data_out = out.len() - HEADER;
            let data_in = status_at;
            classify(kind, sector, data_out, data_in, capacity, read_only)
        }
    };
    Ok(Parsed { request, status_at })
}

/// The header's type and sector.
fn header(out: &Stream, mem: &GuestMemory) -> Option<(u32, u64)> {
    let mut h = [0u8; HEADER as usize];
    if out.len() < HEADER || !out.read(mem, 0, &mut h) {
        return None;
    }
    let kind = u32::from_le_bytes(h[0..4].try_into().ok()?);
    let sector = u64::from_le_bytes(h[8..16].try_into().ok()?);
    Some((kind, sector))
}

fn classify(
    kind: u32,
    sector: u64,
    data_out: u64,
    data_in: u64,
    capacity: u64,
    read_only: bool,
) -> Request {
    let range = |len: u64| -> Result<u64, Request> {
        if len == 0 || !len.is_multiple_of(SECTOR) {
            return Err(reject(IOERR, "data length is not whole sectors"));
        }
        let offset = sector.checked_mul(SECTOR);
        match offset.and_then(|o| o.checked_add(len)) {
            Some(end) if end <= capacity => Ok(sector * SECTOR),
            _ => Err(reject(IOERR, "range past the end of the disk")),
        }
    };
    match kind {
        VIRTIO_BLK_T_IN if data_out != 0 => reject(IOERR, "read request with readable data"),
        VIRTIO_BLK_T_IN => range(data_in).map_or_else(
            |r| r,
            |offset| Request::Read {
                offset,
                len: data_in,
            },
        ),
        VIRTIO_BLK_T_OUT if data_in != 0 => reject(IOERR, "write request with writable data"),
        VIRTIO_BLK_T_OUT if read_only => reject(IOERR, "write to a read-only disk"),
        VIRTIO_BLK_T_OUT => range(data_out).map_or_else(
            |r| r,
            |offset| Request::Write {
                offset,
                len: data_out,
            },
        ),
        VIRTIO_BLK_T_FLUSH if data_out + data_in != 0 => reject(IOERR, "flush with data"),
        VIRTIO_BLK_T_FLUSH => Request::Flush,
        VIRTIO_BLK_T_GET_ID if data_out != 0 => reject(IOERR, "get-id with readable data"),
        VIRTIO_BLK_T_GET_ID => Request::GetId,
        _ => reject(UNSUPP, "unsupported request type"),
    }
}

/// What the device did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkStats {
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub get_ids: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Requests answered with an error status (bad layout, unsupported, host I/O error).
    pub errors: u64,
    /// Chains without a status byte, returned unanswered.
    pub unanswerable: u64,
}

pub struct Block {
    disk: Arc<DiskImage>,
    /// The get-id answer: up to 20 bytes, zero-padded.
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
    stats: BlkStats,
    scratch: Vec<u8>,
}

impl Block {
    /// A block device on `disk`; `serial` is what get-id answers (cut to 20 bytes).
    pub fn new(disk: Arc<DiskImage>, serial: &str) -> Block {
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        let n = serial.len().min(id.len());
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);
        Block {
            disk,
            id,
            stats: BlkStats::default(),
            scratch: Vec::new(),
        }
    }

    pub fn stats(&self) -> BlkStats {
        self.stats
    }

    fn capacity(&self) -> u64 {
        self.disk.size() / SECTOR * SECTOR
    }

    /// Serves one chain; returns the bytes written into it.
    fn serve(&mut self, queues: &Queues, chain: &Chain) -> u32 {
        let parsed = match parse(chain, queues.mem(), self.capacity(), self.disk.read_only()) {
            Ok(p) => p,
            Err(_) => {
                self.stats.unanswerable += 1;
                return 0;
            }
        };
        let inp = Stream::new(&chain.writable);
        let (status, written) = self.execute(parsed.request, queues, chain);
        if status != VIRTIO_BLK_S_OK as u8 {
            self.stats.errors += 1;
        }
        inp.write(queues, parsed.status_at, &[status]);
        (written + 1).min(u32::MAX as u64) as u32
    }

    /// Carries out a request: its status and the data bytes written into the chain.
    fn execute(&mut self, request: Request, queues: &Queues, chain: &Chain) -> (u8, u64) {
        let ok = VIRTIO_BLK_S_OK as u8;
        let (out, inp) = (Stream::new(&chain.readable), Stream::new(&chain.writable));
        match request {
            Request::Read { offset, len } => match self.read(queues, &inp, offset, len) {
                Ok(()) => {
                    self.stats.reads += 1;
                    self.stats.bytes_read += len;
                    (ok, len)
                }
                Err(done) => (IOERR, done),
            },
            Request::Write { offset, len } => match self.write(queues.mem(), &out, offset, len) {
                true => {
                    self.stats.writes += 1;
                    self.stats.bytes_written += len;
                    (ok, 0)
                }
                false => (IOERR, 0),
            },
            Request::Flush => {
                self.stats.flushes += 1;
                match self.disk.flush() {
                    Ok(()) => (ok, 0),
                    Err(e) => {
                        tracing::warn!("virtio-blk: flush of {}: {e}", self.disk.name());
                        (IOERR, 0)
                    }
                }
            }
            Request::GetId => {
                self.stats.get_ids += 1;
                let n = (inp.len() - 1).min(self.id.len() as u64) as usize;
                inp.write(queues, 0, &self.id[..n]);
                (ok, n as u64)
            }
            Request::Reject { status, .. } => (status, 0),
        }
    }

    /// Image to guest, a chunk at a time; on failure, the bytes written so far.
    fn read(&mut self, queues: &Queues, inp: &Stream, offset: u64, len: u64) -> Result<(), u64> {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK) as usize;
            self.scratch.resize(n, 0);
            if let Err(e) = self.disk.read_at(offset + done, &mut self.scratch) {
                tracing::warn!("virtio-blk: read of {}: {e}", self.disk.name());
                return Err(done);
            }
            if !inp.write(queues, done, &self.scratch) {
                return Err(done);
            }
            done += n as u64;
        }
        Ok(())
    }

    /// Guest to image, a chunk at a time.
    fn write(&mut self, mem: &GuestMemory, out: &Stream, offset: u64, len: u64) -> bool {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK) as usize;
            self.scratch.resize(n, 0);
            if !out.read(mem, HEADER + done, &mut self.scratch) {
                return false;
            }
            if let Err(e) = self.disk.write_at(offset + done, &self.scratch) {
                tracing::warn!("virtio-blk: write of {}: {e}", self.disk.name());
                return false;
            }
            done += n as u64;
        }
        true
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn name(&self) -> &'static str {
        "virtio-blk"
    }

    fn queue_sizes(&self) -> &'static [u16] {
        QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        let ro = if self.disk.read_only() {
            1 << VIRTIO_BLK_F_RO
        } else {
            0
        };
        1 << VIRTIO_BLK_F_FLUSH | 1 << VIRTIO_BLK_F_SEG_MAX | ro
    }

    /// `virtio_blk_config`: capacity in sectors, then size_max (not offered) and seg_max.
    fn config(&self) -> Vec<u8> {
        let mut c = vec![0u8; 60];
        c[0..8].copy_from_slice(&(self.capacity() / SECTOR).to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        c
    }

    fn notify(&mut self, index: usize, queues: &mut Queues) {
        queues.process(index, |q, chain| self.serve(q, chain));
    }

    fn activity(&self) -> String {
        let s = &self.stats;
        format!(
            "{} reads ({} KiB), {} writes ({} KiB), {} flushes, {} get-ids, {} errors",
            s.reads,
            s.bytes_read >> 10,
            s.writes,
            s.bytes_written >> 10,
            s.flushes,
            s.get_ids,
            s.errors + s.unanswerable
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::mmio::tests::Mmio;
    use super::super::queue::tests::{Driver, Line, NEXT, WRITE};
    use super::super::F_VERSION_1;
    use super::*;
    use virtio_bindings::bindings::virtio_mmio::VIRTIO_MMIO_QUEUE_NOTIFY;
    use vm_memory::{Bytes, GuestAddress};

    const HDR: u64 = 0x8000;
    const DATA: u64 = 0x9000;
    const STATUS: u64 = 0xb000;

    struct Rig {
        d: Driver,
        m: Mmio<Block>,
        disk: Arc<DiskImage>,
        head: u16,
    }

    fn rig(read_only: bool) -> Rig {
        let d = Driver::new(8);
        let image: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        let disk = Arc::new(if read_only {
            DiskImage::test_image()
        } else {
            DiskImage::from_bytes(image, "test")
        });
        let mut m = Mmio::new(
            Block::new(disk.clone(), "janus-test-disk"),
            &d,
            Arc::new(Line::default()),
        );
        m.bring_up(F_VERSION_1, &[(0, 8)]);
        Rig {
            d,
            m,
            disk,
            head: 0,
        }
    }

    impl Rig {
        fn header(&self, kind: u32, sector: u64) {
            self.d.mem.write_obj(kind, GuestAddress(HDR)).unwrap();
            self.d.mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
        }

        /// Submits descriptors `descs` (addr, len, write) as one chain; returns the status
        /// byte and the used length.
        fn submit(&mut self, descs: &[(u64, u32, bool)]) -> (u8, u32) {
            let base = self.head;
            for (i, &(addr, len, write)) in descs.iter().enumerate() {
                let last = i + 1 == descs.len();
                let flags = if write { WRITE } else { 0 } | if last { 0 } else { NEXT };
                let idx = (base + i as u16) % 8;
                self.d.desc(idx, addr, len, flags, (idx + 1) % 8);
            }
            self.head = (base + descs.len() as u16) % 8;
            self.d.mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
            self.d.offer(base);
            self.m.w(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
            let used = self.d.used(self.d.used_idx() - 1);
            assert_eq!(used.0, base as u32);
            (self.d.mem.read_obj(GuestAddress(STATUS)).unwrap(), used.1)
        }

        fn request(&mut self, kind: u32, sector: u64, data: Option<(u32, bool)>) -> (u8, u32) {
            self.header(kind, sector);
            let mut descs = vec![(HDR, 16, false)];
            if let Some((len, write)) = data {
                descs.push((DATA, len, write));
            }
            descs.push((STATUS, 1, true));
            self.submit(&descs)
        }
    }

    #[test]
    fn reads_writes_flushes_and_identifies() {
        let mut r = rig(false);
        assert_eq!(r.request(VIRTIO_BLK_T_IN, 2, Some((1024, true))), (0, 1025));
        let mut got = vec![0u8; 1024];
        r.d.mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
        let want: Vec<u8> = (1024..2048u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(got, want);

        r.d.mem
            .write_slice(&[0x5a; 512], GuestAddress(DATA))
            .unwrap();
        assert_eq!(r.request(VIRTIO_BLK_T_OUT, 15, Some((512, false))), (0, 1));
        let mut back = [0u8; 512];
        r.disk.read_at(15 * 512, &mut back).unwrap();
        assert_eq!(back, [0x5a; 512]);

        assert_eq!(r.request(VIRTIO_BLK_T_FLUSH, 0, None), (0, 1));
        assert_eq!(r.request(VIRTIO_BLK_T_GET_ID, 0, Some((20, true))), (0, 21));
        let mut id = [0u8; 20];
        r.d.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id[..15], b"janus-test-disk");

        let s = r.m.t.device().stats();
        assert_eq!((s.reads, s.writes, s.flushes, s.get_ids), (1, 1, 1, 1));
        assert_eq!((s.bytes_read, s.bytes_written, s.errors), (1024, 512, 0));
        let report = r.m.t.report();
        assert!(
            report.contains(" register accesses; 1 reads (1 KiB), 1 writes (0 KiB)"),
            "{report}"
        );
    }

    #[test]
    fn capacity_and_features() {
        let r = rig(true);
        let b = r.m.t.device();
        let sectors = crate::disk::TEST_IMAGE_BYTES as u64 / SECTOR;
        assert_eq!(&b.config()[0..8], &sectors.to_le_bytes());
        assert_ne!(b.features() & 1 << VIRTIO_BLK_F_RO, 0);
        assert_ne!(b.features() & 1 << VIRTIO_BLK_F_FLUSH, 0);
    }

    #[test]
    fn data_split_across_descriptors() {
        let mut r = rig(false);
        r.header(VIRTIO_BLK_T_IN, 0);
        let (status, used) = r.submit(&[
            (HDR, 16, false),
            (DATA, 100, true),
            (DATA + 0x1000, 412, true),
            (STATUS, 1, true),
        ]);
        assert_eq!((status, used), (0, 513));
        let mut b = [0u8; 2];
        r.d.mem
            .read_slice(&mut b, GuestAddress(DATA + 0x1000))
            .unwrap();
        assert_eq!(b, [100, 101]);
    }

    #[test]
    fn bad_requests_get_an_error_status() {
        let mut r = rig(false);
        let e = IOERR;
        for (kind, sector, data, want) in [
            (VIRTIO_BLK_T_IN, 0, Some((100, true)), e), // not whole sectors
            (VIRTIO_BLK_T_IN, 15, Some((1024, true)), e), // past the end
            (VIRTIO_BLK_T_IN, u64::MAX / 2, Some((512, true)), e), // overflowing
            (VIRTIO_BLK_T_IN, 0, Some((512, false)), e), // data in the wrong direction
            (VIRTIO_BLK_T_OUT, 0, Some((512, true)), e), // ditto
            (VIRTIO_BLK_T_IN, 0, None, e),              // no data
            (VIRTIO_BLK_T_FLUSH, 0, Some((512, false)), e), // flush with data
            (99, 0, None, UNSUPP),
        ] {
            assert_eq!(
                r.request(kind, sector, data).0,
                want,
                "type {kind} sector {sector} data {data:?}"
            );
        }
        // A header cut short.
        let (status, _) = r.submit(&[(HDR, 8, false), (STATUS, 1, true)]);
        assert_eq!(status, IOERR);
        assert_eq!(r.m.t.device().stats().errors, 9);
        // No status byte: nothing can be answered, the chain comes back empty.
        r.header(VIRTIO_BLK_T_FLUSH, 0);
        let (status, used) = r.submit(&[(HDR, 16, false)]);
        assert_eq!((status, used), (0xee, 0));
        assert_eq!(r.m.t.device().stats().unanswerable, 1);
        // The image is untouched.
        let mut b = [0u8; 4];
        r.disk.read_at(0, &mut b).unwrap();
        assert_eq!(b, [0, 1, 2, 3]);
    }

    #[test]
    fn read_only_disk_refuses_writes() {
        let mut r = rig(true);
        r.d.mem.write_slice(&[1; 512], GuestAddress(DATA)).unwrap();
        assert_eq!(r.request(VIRTIO_BLK_T_OUT, 0, Some((512, false))).0, IOERR);
        let mut b = [0u8; 1];
        r.disk.read_at(0, &mut b).unwrap();
        assert_eq!(b[0], janus_abi::demo::test_image_byte(0));
    }

    #[test]
    fn parse_is_pure_layout_checking() {
        let d = Driver::new(8);
        let chain = Chain {
            head: 0,
            readable: vec![],
            writable: vec![],
        };
        assert!(parse(&chain, &d.mem, 4096, false).is_err());
    }
}
