//! The 82540EM's serial EEPROM: 64 16-bit words (a 93C46, Microwire) holding the MAC address
//! and the power-up configuration, read either by bit-banging EECD (what Linux's `e1000` does
//! on this part) or through EERD.
//!
//! Microwire read: with chip select high, the driver clocks in 3 opcode bits (110 = READ) and
//! 6 address bits on rising SK edges, then clocks the word out, most significant bit first,
//! reading DO after each rising edge. Words 0x00-0x3f sum to 0xBABA: the driver checks it and
//! refuses the card otherwise (SDM 5.6.1).

use super::regs::{EECD_CS, EECD_DI, EECD_DO, EECD_GNT, EECD_PRES, EECD_REQ, EECD_SK};
use super::regs::{EERD_DONE, EERD_START};

pub const WORDS: usize = 64;
/// The word that makes the sum come out right.
const CHECKSUM_WORD: usize = 0x3f;
const CHECKSUM: u16 = 0xbaba;
/// Microwire READ opcode, and the bits of a command (opcode and a 6-bit address).
const OP_READ: u16 = 0b110;
const COMMAND_BITS: u32 = 9;

/// The bits of EECD the driver owns and reads back.
const EECD_DRIVER_BITS: u32 = EECD_SK | EECD_CS | EECD_DI | EECD_REQ;

/// The EEPROM and the state of the Microwire exchange.
#[derive(Clone)]
pub struct Eeprom {
    words: [u16; WORDS],
    /// The last value written to EECD's driver bits.
    eecd: u32,
    /// Bits clocked in since chip select went high.
    command: u16,
    bits_in: u32,
    /// While reading: the word and how many of its bits have been clocked out.
    reading: Option<u16>,
    bits_out: u32,
}

impl Eeprom {
    /// The image for an 82540EM with `mac`: the address, the IDs, and the checksum.
    pub fn new(mac: [u8; 6], device: u16, vendor: u16) -> Eeprom {
        let mut words = [0u16; WORDS];
        for (i, pair) in mac.chunks(2).enumerate() {
            words[i] = u16::from_le_bytes([pair[0], pair[1]]);
        }
        // LED configuration: 0xffff asks the driver for its defaults.
        words[0x04] = 0xffff;
        // Initialization control 1 (as on Intel's boards) and the IDs.
        words[0x0a] = 0x6403;
        words[0x0b] = device;
        words[0x0c] = vendor;
        words[0x0d] = device;
        words[0x0e] = vendor;
        let sum = words[..CHECKSUM_WORD]
            .iter()
            .fold(0u16, |s, w| s.wrapping_add(*w));
        words[CHECKSUM_WORD] = CHECKSUM.wrapping_sub(sum);
        Eeprom {
            words,
            eecd: 0,
            command: 0,
            bits_in: 0,
            reading: None,
            bits_out: 0,
        }
    }

    pub fn word(&self, i: usize) -> u16 {
        self.words.get(i).copied().unwrap_or(0xffff)
    }

    /// EECD as read: present, access granted whenever requested, the driver's bits, and DO.
    pub fn read_eecd(&self) -> u32 {
        let grant = if self.eecd & EECD_REQ != 0 {
            EECD_GNT
        } else {
            0
        };
        let out = match self.reading {
            Some(w) if self.bits_out < 16 => (w >> (15 - self.bits_out)) & 1 != 0,
            // An idle Microwire part drives DO high (ready).
            _ => true,
        };
        EECD_PRES | grant | self.eecd | if out { EECD_DO } else { 0 }
    }

    /// A write to EECD: edges on CS and SK move the exchange along.
    pub fn write_eecd(&mut self, value: u32) {
        let old = self.eecd;
        self.eecd = value & EECD_DRIVER_BITS;
        if value & EECD_CS == 0 {
            return;
        }
        if old & EECD_CS == 0 {
            // Chip select rising: a new command starts.
            self.command = 0;
            self.bits_in = 0;
            self.reading = None;
            self.bits_out = 0;
        }
        let rising = old & EECD_SK == 0 && value & EECD_SK != 0;
        let falling = old & EECD_SK != 0 && value & EECD_SK == 0;
        if falling && self.reading.is_some() && self.bits_in > COMMAND_BITS {
            self.bits_out += 1;
        }
        if !rising {
            return;
        }
        if self.bits_in < COMMAND_BITS {
            self.command = (self.command << 1) | (value & EECD_DI != 0) as u16;
            self.bits_in += 1;
            if self.bits_in == COMMAND_BITS && self.command >> 6 == OP_READ {
                self.reading = Some(self.word(self.command as usize & 0x3f));
            }
        } else {
            // Clocks after the command shift the data out; DO is read after this edge.
            self.bits_in = self.bits_in.saturating_add(1);
        }
    }

    /// EERD after a write of `value`: with START, the word at the address, and DONE.
    pub fn eerd(&self, value: u32) -> u32 {
        if value & EERD_START == 0 {
            return value & 0xff00;
        }
        let addr = (value >> 8) & 0xff;
        (self.word(addr as usize) as u32) << 16 | addr << 8 | EERD_DONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    /// What Linux's e1000_shift_out_ee_bits / e1000_shift_in_ee_bits do.
    fn microwire_read(e: &mut Eeprom, addr: u16) -> u16 {
        let mut eecd = EECD_REQ;
        e.write_eecd(eecd);
        assert_ne!(e.read_eecd() & EECD_GNT, 0, "granted");
        eecd |= EECD_CS;
        e.write_eecd(eecd);
        let command = OP_READ << 6 | addr;
        for bit in (0..9).rev() {
            eecd = (eecd & !EECD_DI) | if command >> bit & 1 != 0 { EECD_DI } else { 0 };
            e.write_eecd(eecd);
            e.write_eecd(eecd | EECD_SK);
            e.write_eecd(eecd);
        }
        eecd &= !EECD_DI;
        let mut word = 0;
        for _ in 0..16 {
            e.write_eecd(eecd | EECD_SK);
            word = word << 1 | (e.read_eecd() & EECD_DO != 0) as u16;
            e.write_eecd(eecd);
        }
        // Standby, then release.
        e.write_eecd(eecd & !EECD_CS);
        e.write_eecd(0);
        word
    }

    #[test]
    fn words_sum_to_baba_and_hold_the_mac() {
        let e = Eeprom::new(MAC, 0x100e, 0x8086);
        let sum = (0..WORDS).fold(0u16, |s, i| s.wrapping_add(e.word(i)));
        assert_eq!(sum, 0xbaba);
        assert_eq!(e.word(0), 0x5452);
        assert_eq!(e.word(2), 0x5634);
        assert_eq!(e.word(WORDS + 5), 0xffff, "beyond the part");
    }

    #[test]
    fn microwire_reads_every_word() {
        let mut e = Eeprom::new(MAC, 0x100e, 0x8086);
        for addr in 0..WORDS as u16 {
            assert_eq!(
                microwire_read(&mut e, addr),
                e.word(addr as usize),
                "word {addr}"
            );
        }
    }

    #[test]
    fn eerd_reads_a_word() {
        let e = Eeprom::new(MAC, 0x100e, 0x8086);
        let v = e.eerd(1 << 8 | EERD_START);
        assert_eq!(v & EERD_DONE, EERD_DONE);
        assert_eq!(v >> 16, 0x1200);
        assert_eq!(e.eerd(0x300) & EERD_DONE, 0, "not started");
        assert_eq!(e.eerd(0xff00 | EERD_START) >> 16, 0xffff, "past the part");
    }

    #[test]
    fn other_opcodes_read_nothing() {
        let mut e = Eeprom::new(MAC, 0x100e, 0x8086);
        e.write_eecd(EECD_CS);
        for _ in 0..40 {
            e.write_eecd(EECD_CS | EECD_SK | EECD_DI);
            e.write_eecd(EECD_CS);
        }
        assert_ne!(e.read_eecd() & EECD_DO, 0, "idle high");
    }
}
