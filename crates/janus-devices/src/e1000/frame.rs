//! What the MAC does to frame bytes on the way through: the Internet checksum it inserts on
//! transmit, the Ethernet FCS it appends on receive, 802.1Q tags it inserts and strips, and the
//! destination address classes the statistics count by.

/// The one's-complement sum of `data` as big-endian 16-bit words, added to `sum` (unfolded).
pub fn ones_sum(data: &[u8], mut sum: u32) -> u32 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum = sum.wrapping_add(u16::from_be_bytes([w[0], w[1]]) as u32);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = words.remainder() {
        sum = sum.wrapping_add((*last as u32) << 8);
    }
    sum
}

/// Folds a sum to 16 bits.
pub fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Inserts the Internet checksum of `frame[start..end]` at `at` (big-endian), summing what the
/// field holds already (the pseudo-header sum the driver left there). `end` 0 means the end of
/// the frame, otherwise it is the last byte included. Offsets that do not fit the frame leave
/// it alone, as the hardware would produce garbage there. A zero result goes out as 0xffff
/// (the same number in one's complement, and what UDP needs).
pub fn insert_checksum(frame: &mut [u8], start: usize, at: usize, end: usize) {
    let end = if end == 0 {
        frame.len()
    } else {
        (end + 1).min(frame.len())
    };
    if start >= end || at + 2 > frame.len() {
        return;
    }
    let sum = !fold(ones_sum(&frame[start..end], 0));
    let sum = if sum == 0 { 0xffff } else { sum };
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

/// CRC-32 (IEEE 802.3) lookup table.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The Ethernet frame check sequence of `frame`, in the byte order it follows the frame.
pub fn fcs(frame: &[u8]) -> [u8; 4] {
    let crc = frame.iter().fold(u32::MAX, |c, &b| {
        CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8)
    });
    (!crc).to_le_bytes()
}

/// Offset of the Ethertype (or 802.1Q TPID) after the two MAC addresses.
pub const ETHERTYPE_AT: usize = 12;
/// The shortest frame on the wire without its FCS: shorter ones are padded.
pub const MIN_FRAME: usize = 60;

/// The 802.1Q tag control field, if `frame` is tagged with `tpid`.
pub fn vlan_tag(frame: &[u8], tpid: u16) -> Option<u16> {
    let t = frame.get(ETHERTYPE_AT..ETHERTYPE_AT + 4)?;
    (u16::from_be_bytes([t[0], t[1]]) == tpid).then(|| u16::from_be_bytes([t[2], t[3]]))
}

/// Inserts an 802.1Q tag (`tpid`, `tci`) after the MAC addresses.
pub fn insert_vlan(frame: &mut Vec<u8>, tpid: u16, tci: u16) {
    if frame.len() < ETHERTYPE_AT {
        return;
    }
    let mut tag = [0u8; 4];
    tag[..2].copy_from_slice(&tpid.to_be_bytes());
    tag[2..].copy_from_slice(&tci.to_be_bytes());
    frame.splice(ETHERTYPE_AT..ETHERTYPE_AT, tag);
}

/// Destination classes, for the statistics and the receive filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    Unicast,
    Multicast,
    Broadcast,
}

pub fn destination(frame: &[u8]) -> Destination {
    match frame.get(..6) {
        Some(d) if d == [0xff; 6] => Destination::Broadcast,
        Some(d) if d[0] & 1 != 0 => Destination::Multicast,
        _ => Destination::Unicast,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fcs_of_a_known_string() {
        // CRC-32 of "123456789" is 0xcbf43926.
        assert_eq!(fcs(b"123456789"), 0xcbf4_3926u32.to_le_bytes());
    }

    #[test]
    fn checksum_of_an_ipv4_header() {
        // A header whose correct checksum is 0xb861 (a classic worked example).
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        insert_checksum(&mut h, 0, 10, 19);
        assert_eq!(&h[10..12], &[0xb8, 0x61]);
        // Out-of-range offsets leave the frame alone.
        let before = h;
        insert_checksum(&mut h, 0, 19, 0);
        insert_checksum(&mut h, 30, 0, 0);
        assert_eq!(h, before);
    }

    #[test]
    fn vlan_tags_go_in_and_come_out() {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        insert_vlan(&mut f, 0x8100, 0x0123);
        assert_eq!(f.len(), 18);
        assert_eq!(vlan_tag(&f, 0x8100), Some(0x0123));
        assert_eq!(vlan_tag(&f, 0x88a8), None);
        assert_eq!(vlan_tag(&f[..10], 0x8100), None);
        let mut short = vec![0u8; 4];
        insert_vlan(&mut short, 0x8100, 1);
        assert_eq!(short.len(), 4);
    }

    #[test]
    fn destinations() {
        assert_eq!(destination(&[0xff; 14]), Destination::Broadcast);
        assert_eq!(
            destination(&[0x01, 0, 0x5e, 0, 0, 1]),
            Destination::Multicast
        );
        assert_eq!(destination(&[0x52, 0x54, 0, 0, 0, 1]), Destination::Unicast);
        assert_eq!(destination(&[]), Destination::Unicast);
    }
}
