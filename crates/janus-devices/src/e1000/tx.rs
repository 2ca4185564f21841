//! The transmit side's descriptor formats and what the MAC does with a packet: legacy
//! descriptors (with the IC/CSS/CSO checksum), TCP/IP context descriptors, and data
//! descriptors with checksum offload (IXSM, TXSM) and TCP segmentation (TSE), which Linux's
//! `e1000` uses on the 82540EM (it enables NETIF_F_TSO and NETIF_F_HW_CSUM for 82544 and
//! later, except the 82547). SDM 3.3.
//!
//! A packet is the buffers of consecutive data (or legacy) descriptors up to one with EOP. Its
//! offload options come from its first data descriptor, its VLAN insertion from the EOP one.

use super::frame::{fold, insert_checksum};
use janus_engine::GuestMemory;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// Descriptor command bits (byte 11).
const CMD_EOP: u8 = 0x01;
const CMD_IC: u8 = 0x04;
pub const CMD_RS: u8 = 0x08;
const CMD_DEXT: u8 = 0x20;
const CMD_VLE: u8 = 0x40;
/// Context descriptor TUCMD bits (byte 11).
const TUCMD_TCP: u8 = 0x01;
const TUCMD_IP: u8 = 0x02;
const TUCMD_TSE: u8 = 0x04;
/// Data descriptor DCMD.TSE.
const DCMD_TSE: u8 = 0x04;
/// Data descriptor option bits (byte 13): insert the IP and the TCP/UDP checksum.
const POPTS_IXSM: u8 = 0x01;
const POPTS_TXSM: u8 = 0x02;
/// Descriptor types (bits 23:20 of the second dword) of extended descriptors.
const DTYP_CONTEXT: u8 = 0;
const DTYP_DATA: u8 = 1;
/// Written back in byte 12 when the descriptor asks (RS): descriptor done.
pub const STA_DD: u8 = 0x01;

/// The largest packet the transmitter assembles: a 64 KiB TSO payload and its headers (the
/// 82540's own limit is larger, but no driver sends more and the buffer is host memory).
pub const PACKET_MAX: usize = 0x1_0000 + 256;
/// TCP flags cleared on all but the last segment: FIN and PSH.
const TCP_FIN_PSH: u8 = 0x09;

/// The offload context a TCP/IP context descriptor sets up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context {
    ipcss: usize,
    ipcso: usize,
    ipcse: usize,
    tucss: usize,
    tucso: usize,
    tucse: usize,
    tucmd: u8,
    hdr_len: usize,
    mss: usize,
}

/// How a packet is to be finished: from its first descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Offload {
    /// Legacy: insert a checksum (start, at) if IC was set.
    Legacy { checksum: Option<(usize, usize)> },
    /// Data descriptors: the context's checksums (POPTS) and, with TSE, segmentation.
    Data { popts: u8, tse: bool },
}

/// What the guest did wrong, for the device's error count (the packet is dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxError {
    /// A buffer is not guest RAM.
    Buffer,
    /// The packet grew past [`PACKET_MAX`].
    TooLong,
    /// A TSO context that cannot describe the packet (no MSS, headers past its end).
    BadSegmentation,
    /// An extended descriptor of a type the 82540 does not have.
    BadType,
}

/// The transmitter between descriptors: the context and the packet being assembled.
#[derive(Default)]
pub struct Transmitter {
    context: Context,
    packet: Vec<u8>,
    offload: Option<Offload>,
    /// The packet hit an error: it is dropped at its EOP.
    failed: Option<TxError>,
    /// TSO contexts carried out (the TSCTC statistic).
    pub tso_contexts: u64,
}

/// A finished frame and its VLAN insertion (tag control), if asked.
pub struct Frame {
    pub bytes: Vec<u8>,
    pub vlan: Option<u16>,
}

impl Transmitter {
    /// Forgets the packet and context (device reset).
    pub fn reset(&mut self) {
        *self = Transmitter::default();
    }

    /// Takes one descriptor; frames it completes go to `out`. An error means the packet it
    /// belonged to was dropped (reported once, at its end).
    pub fn descriptor(
        &mut self,
        d: &[u8; 16],
        mem: &GuestMemory,
        out: &mut Vec<Frame>,
    ) -> Result<(), TxError> {
        let cmd = d[11];
        if cmd & CMD_DEXT == 0 {
            let len = u16::from_le_bytes([d[8], d[9]]) as usize;
            // IC with CSS/CSO may come on any of the packet's descriptors.
            if cmd & CMD_IC != 0 {
                let checksum = Some((d[13] as usize, d[10] as usize));
                self.offload = Some(Offload::Legacy { checksum });
            }
            self.offload
                .get_or_insert(Offload::Legacy { checksum: None });
            return self.data(d, len, mem, out);
        }
        match d[10] >> 4 {
            DTYP_CONTEXT => {
                self.context = parse_context(d);
                if self.context.tucmd & TUCMD_TSE != 0 {
                    self.tso_contexts += 1;
                }
                Ok(())
            }
            DTYP_DATA => {
                let len = (u32::from_le_bytes([d[8], d[9], d[10], 0]) & 0xf_ffff) as usize;
                let tse = cmd & DCMD_TSE != 0;
                self.offload
                    .get_or_insert(Offload::Data { popts: d[13], tse });
                self.data(d, len, mem, out)
            }
            _ => Err(TxError::BadType),
        }
    }

    /// Appends a descriptor's buffer, and finishes the packet at EOP.
    fn data(
        &mut self,
        d: &[u8; 16],
        len: usize,
        mem: &GuestMemory,
        out: &mut Vec<Frame>,
    ) -> Result<(), TxError> {
        let addr = u64::from_le_bytes(d[..8].try_into().unwrap_or_default());
        if self.failed.is_none() {
            self.failed = self.append(addr, len, mem).err();
        }
        if d[11] & CMD_EOP == 0 {
            return Ok(());
        }
        let vlan = (d[11] & CMD_VLE != 0).then(|| u16::from_le_bytes([d[14], d[15]]));
        let failed = self.failed.take();
        let offload = self.offload.take();
        let mut packet = std::mem::take(&mut self.packet);
        if let Some(e) = failed {
            return Err(e);
        }
        match offload {
            Some(Offload::Data { popts, tse: true }) => {
                self.segment(&packet, popts, vlan, out)?;
            }
            Some(Offload::Data { popts, .. }) => {
                self.checksums(&mut packet, popts);
                out.push(Frame {
                    bytes: packet,
                    vlan,
                });
            }
            Some(Offload::Legacy { checksum }) => {
                if let Some((start, at)) = checksum {
                    insert_checksum(&mut packet, start, at, 0);
                }
                out.push(Frame {
                    bytes: packet,
                    vlan,
                });
            }
            None => {}
        }
        Ok(())
    }

    /// Reads `len` bytes at `addr` onto the packet.
    fn append(&mut self, addr: u64, len: usize, mem: &GuestMemory) -> Result<(), TxError> {
        if len == 0 {
            return Ok(());
        }
        let at = self.packet.len();
        if at + len > PACKET_MAX {
            return Err(TxError::TooLong);
        }
        if !mem.check_range(GuestAddress(addr), len) {
            return Err(TxError::Buffer);
        }
        self.packet.resize(at + len, 0);
        mem.read_slice(&mut self.packet[at..], GuestAddress(addr))
            .map_err(|_| TxError::Buffer)
    }

    /// The context's checksums, as POPTS asks: IP header first, then TCP/UDP.
    fn checksums(&self, frame: &mut [u8], popts: u8) {
        let c = &self.context;
        if popts & POPTS_IXSM != 0 {
            insert_checksum(frame, c.ipcss, c.ipcso, c.ipcse);
        }
        if popts & POPTS_TXSM != 0 {
            insert_checksum(frame, c.tucss, c.tucso, c.tucse);
        }
    }

    /// TCP segmentation: the header (`hdr_len` bytes) copied before each MSS of payload, with
    /// lengths, IP ID, sequence number, flags and checksums fixed up per segment.
    fn segment(
        &self,
        packet: &[u8],
        popts: u8,
        vlan: Option<u16>,
        out: &mut Vec<Frame>,
    ) -> Result<(), TxError> {
        let c = &self.context;
        let fits = c.mss > 0
            && c.hdr_len <= packet.len()
            && c.ipcss + 6 <= c.hdr_len
            && c.tucss + 18 <= c.hdr_len
            && c.tucso + 2 <= c.hdr_len;
        if !fits {
            return Err(TxError::BadSegmentation);
        }
        let (header, payload) = packet.split_at(c.hdr_len);
        let segments = payload.len().div_ceil(c.mss).max(1);
        let ip_id = u16::from_be_bytes([header[c.ipcss + 4], header[c.ipcss + 5]]);
        let seq = u32::from_be_bytes(
            header[c.tucss + 4..c.tucss + 8]
                .try_into()
                .unwrap_or([0; 4]),
        );
        // The driver leaves the pseudo-header sum without the length in the checksum field.
        let pseudo = u16::from_be_bytes([header[c.tucso], header[c.tucso + 1]]);
        for i in 0..segments {
            let chunk = payload
                .get(i * c.mss..((i + 1) * c.mss).min(payload.len()))
                .unwrap_or_default();
            let mut f = Vec::with_capacity(header.len() + chunk.len());
            f.extend_from_slice(header);
            f.extend_from_slice(chunk);
            let last = i + 1 == segments;
            self.fix_segment(&mut f, i, last, ip_id, seq, pseudo);
            self.checksums(&mut f, popts);
            out.push(Frame { bytes: f, vlan });
        }
        Ok(())
    }

    /// One segment's header fields (the segment is at least `hdr_len` bytes long).
    fn fix_segment(&self, f: &mut [u8], i: usize, last: bool, id: u16, seq: u32, pseudo: u16) {
        let c = &self.context;
        let len = f.len();
        if c.tucmd & TUCMD_IP != 0 {
            // IPv4: total length and a fresh identification per segment.
            f[c.ipcss + 2..c.ipcss + 4].copy_from_slice(&((len - c.ipcss) as u16).to_be_bytes());
            f[c.ipcss + 4..c.ipcss + 6].copy_from_slice(&id.wrapping_add(i as u16).to_be_bytes());
        } else {
            // IPv6: the payload length (after the 40-byte fixed header).
            let plen = len.saturating_sub(c.ipcss + 40) as u16;
            f[c.ipcss + 4..c.ipcss + 6].copy_from_slice(&plen.to_be_bytes());
        }
        let l4_len = (len - c.tucss) as u32;
        if c.tucmd & TUCMD_TCP != 0 {
            let s = seq.wrapping_add((i * c.mss) as u32);
            f[c.tucss + 4..c.tucss + 8].copy_from_slice(&s.to_be_bytes());
            if !last {
                f[c.tucss + 13] &= !TCP_FIN_PSH;
            }
        } else {
            f[c.tucss + 4..c.tucss + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        }
        let sum = fold(pseudo as u32 + l4_len);
        f[c.tucso..c.tucso + 2].copy_from_slice(&sum.to_be_bytes());
    }
}

fn parse_context(d: &[u8; 16]) -> Context {
    Context {
        ipcss: d[0] as usize,
        ipcso: d[1] as usize,
        ipcse: u16::from_le_bytes([d[2], d[3]]) as usize,
        tucss: d[4] as usize,
        tucso: d[5] as usize,
        tucse: u16::from_le_bytes([d[6], d[7]]) as usize,
        tucmd: d[11],
        hdr_len: d[13] as usize,
        mss: u16::from_le_bytes([d[14], d[15]]) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e1000::frame::ones_sum;

    fn mem() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn legacy(addr: u64, len: u16, cmd: u8, css: u8, cso: u8) -> [u8; 16] {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..10].copy_from_slice(&len.to_le_bytes());
        d[10] = cso;
        d[11] = cmd;
        d[13] = css;
        d
    }

    fn data(addr: u64, len: u32, dcmd: u8, popts: u8) -> [u8; 16] {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(
            &(len | 1 << 20 | (dcmd as u32 | CMD_DEXT as u32) << 24).to_le_bytes(),
        );
        d[13] = popts;
        d
    }

    fn context(c: &Context) -> [u8; 16] {
        let mut d = [0u8; 16];
        d[0] = c.ipcss as u8;
        d[1] = c.ipcso as u8;
        d[2..4].copy_from_slice(&(c.ipcse as u16).to_le_bytes());
        d[4] = c.tucss as u8;
        d[5] = c.tucso as u8;
        d[6..8].copy_from_slice(&(c.tucse as u16).to_le_bytes());
        d[11] = c.tucmd | CMD_DEXT;
        d[13] = c.hdr_len as u8;
        d[14..16].copy_from_slice(&(c.mss as u16).to_le_bytes());
        d
    }

    #[test]
    fn legacy_descriptors_gather_to_eop_and_insert_the_checksum() {
        let m = mem();
        m.write_slice(&[1, 2, 3, 4], GuestAddress(0x1000)).unwrap();
        m.write_slice(&[5, 6, 0, 0], GuestAddress(0x2000)).unwrap();
        let mut t = Transmitter::default();
        let mut out = Vec::new();
        t.descriptor(&legacy(0x1000, 4, 0, 0, 0), &m, &mut out)
            .unwrap();
        assert!(out.is_empty());
        // IC: sum from byte 0, into bytes 6-7.
        t.descriptor(&legacy(0x2000, 4, CMD_EOP | CMD_IC, 0, 6), &m, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        let f = &out[0].bytes;
        assert_eq!(&f[..6], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(fold(ones_sum(f, 0)), 0xffff, "the frame sums to -0");
    }

    #[test]
    fn buffers_outside_ram_drop_the_packet() {
        let m = mem();
        let mut t = Transmitter::default();
        let mut out = Vec::new();
        t.descriptor(&legacy(1 << 20, 16, 0, 0, 0), &m, &mut out)
            .unwrap();
        let e = t.descriptor(&legacy(0, 16, CMD_EOP, 0, 0), &m, &mut out);
        assert_eq!(e, Err(TxError::Buffer));
        assert!(out.is_empty());
        // The next packet is fine again.
        t.descriptor(&legacy(0, 16, CMD_EOP, 0, 0), &m, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        let e = t.descriptor(&legacy(u64::MAX - 3, 16, CMD_EOP, 0, 0), &m, &mut out);
        assert_eq!(e, Err(TxError::Buffer), "wrapping address");
    }

    #[test]
    fn huge_and_zero_lengths() {
        let m = mem();
        let mut t = Transmitter::default();
        let mut out = Vec::new();
        let e = t.descriptor(&data(0, 0xf_ffff, CMD_EOP, 0), &m, &mut out);
        assert_eq!(e, Err(TxError::TooLong));
        t.descriptor(&legacy(0, 0, CMD_EOP, 0, 0), &m, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].bytes.is_empty(), "an empty frame goes out as is");
        let mut bad = data(0, 4, CMD_EOP, 0);
        bad[10] = 0x50; // type 5
        assert_eq!(t.descriptor(&bad, &m, &mut out), Err(TxError::BadType));
    }

    /// An Ethernet + IPv4 + TCP header (54 bytes), then `payload` bytes.
    fn tcp_packet(payload: usize) -> Vec<u8> {
        let mut p = vec![0u8; 54 + payload];
        p[12] = 0x08;
        p[14] = 0x45;
        p[18..20].copy_from_slice(&0x1234u16.to_be_bytes()); // IP ID
        p[23] = 6;
        p[26..30].copy_from_slice(&[10, 0, 2, 15]);
        p[30..34].copy_from_slice(&[10, 0, 2, 1]);
        p[38..42].copy_from_slice(&1000u32.to_be_bytes()); // seq
        p[46] = 0x50;
        p[47] = 0x19; // FIN PSH ACK
        for (i, b) in p[54..].iter_mut().enumerate() {
            *b = i as u8;
        }
        // What Linux leaves in the TCP checksum: the pseudo-header sum without the length.
        let pseudo = fold(ones_sum(&p[26..34], 6));
        p[50..52].copy_from_slice(&pseudo.to_be_bytes());
        p
    }

    fn tcp_ok(f: &[u8]) -> bool {
        let len = (f.len() - 34) as u32;
        fold(ones_sum(&f[34..], ones_sum(&f[26..34], 6 + len))) == 0xffff
    }

    #[test]
    fn tso_cuts_segments_and_fixes_each() {
        let m = mem();
        let p = tcp_packet(3000);
        m.write_slice(&p, GuestAddress(0x4000)).unwrap();
        let ctx = Context {
            ipcss: 14,
            ipcso: 24,
            ipcse: 33,
            tucss: 34,
            tucso: 50,
            tucse: 0,
            tucmd: TUCMD_TCP | TUCMD_IP | TUCMD_TSE,
            hdr_len: 54,
            mss: 1448,
        };
        let mut t = Transmitter::default();
        let mut out = Vec::new();
        t.descriptor(&context(&ctx), &m, &mut out).unwrap();
        let popts = POPTS_IXSM | POPTS_TXSM;
        t.descriptor(&data(0x4000, 54, DCMD_TSE, popts), &m, &mut out)
            .unwrap();
        t.descriptor(
            &data(0x4000 + 54, 3000, DCMD_TSE | CMD_EOP, popts),
            &m,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(t.tso_contexts, 1);
        let mut seq = 1000;
        for (i, f) in out.iter().map(|f| &f.bytes).enumerate() {
            let plen = f.len() - 54;
            assert_eq!(plen, [1448, 1448, 104][i]);
            assert_eq!(u16::from_be_bytes([f[16], f[17]]) as usize, f.len() - 14);
            assert_eq!(u16::from_be_bytes([f[18], f[19]]), 0x1234 + i as u16);
            assert_eq!(fold(ones_sum(&f[14..34], 0)), 0xffff, "IP checksum");
            assert_eq!(u32::from_be_bytes(f[38..42].try_into().unwrap()), seq);
            assert_eq!(
                f[47],
                if i == 2 { 0x19 } else { 0x10 },
                "FIN/PSH on the last"
            );
            assert!(tcp_ok(f), "TCP checksum of segment {i}");
            assert_eq!(&f[54..], &p[54 + 1448 * i..54 + 1448 * i + plen]);
            seq += plen as u32;
        }
    }

    #[test]
    fn checksum_offload_without_tso() {
        let m = mem();
        let mut p = tcp_packet(100);
        // Without TSO the driver's pseudo-header sum includes the length.
        let pseudo = fold(ones_sum(&p[26..34], 6 + 120));
        p[50..52].copy_from_slice(&pseudo.to_be_bytes());
        m.write_slice(&p, GuestAddress(0x4000)).unwrap();
        let ctx = Context {
            tucss: 34,
            tucso: 50,
            tucmd: TUCMD_TCP,
            ..Context::default()
        };
        let mut t = Transmitter::default();
        let mut out = Vec::new();
        t.descriptor(&context(&ctx), &m, &mut out).unwrap();
        t.descriptor(
            &data(0x4000, p.len() as u32, CMD_EOP, POPTS_TXSM),
            &m,
            &mut out,
        )
        .unwrap();
        assert!(tcp_ok(&out[0].bytes));
    }

    #[test]
    fn bad_tso_contexts_drop_the_packet() {
        let m = mem();
        let mut t = Transmitter::default();
        let mut out = Vec::new();
        let ctx = Context {
            tucmd: TUCMD_TSE,
            hdr_len: 200,
            mss: 0,
            ..Context::default()
        };
        t.descriptor(&context(&ctx), &m, &mut out).unwrap();
        let e = t.descriptor(&data(0, 100, DCMD_TSE | CMD_EOP, 0), &m, &mut out);
        assert_eq!(e, Err(TxError::BadSegmentation));
        assert!(out.is_empty());
    }
}
