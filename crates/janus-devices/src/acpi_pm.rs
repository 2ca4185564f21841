//! The ACPI fixed hardware at 0x600: PM1a status (write 1 to clear) and enable, PM1a control,
//! and the PM timer (a 24-bit counter at 3.579545 MHz that Linux uses as a clocksource).
//! Writing SLP_EN with the S5 sleep type powers the VM off, which is how an OS shuts a PC down.

use crate::bus::BusDevice;
use crate::control::{StopRequest, VmControl};
use crate::pit8254::MonoClock;
use janus_abi::pc;
use std::sync::Arc;

/// Bytes the device spans: PM1_STS (2), PM1_EN (2), PM1_CNT (2), reserved (2), PM_TMR (4).
pub const LEN: u16 = 12;
const STS: usize = 0;
const CNT: usize = 4;
/// Offset of the PM timer (port 0x608).
pub const TMR: usize = 8;
/// The PM timer's frequency.
pub const PM_TIMER_HZ: u64 = pc::PM_TMR_HZ;
const SLP_TYP_MASK: u16 = 7 << pc::PM1_SLP_TYP_SHIFT;
const SCI_EN: u16 = 1;

pub struct AcpiPm {
    regs: [u8; 6],
    control: Arc<VmControl>,
    clock: MonoClock,
    warned_sleep: bool,
}

impl AcpiPm {
    pub fn new(control: Arc<VmControl>, clock: MonoClock) -> AcpiPm {
        let mut regs = [0u8; 6];
        // ACPI mode is already on: there is no SMI handler to switch it.
        regs[CNT] = SCI_EN as u8;
        AcpiPm {
            regs,
            control,
            clock,
            warned_sleep: false,
        }
    }

    fn cnt(&self) -> u16 {
        u16::from_le_bytes([self.regs[CNT], self.regs[CNT + 1]])
    }

    fn sleep(&mut self) {
        let cnt = self.cnt();
        let typ = (cnt & SLP_TYP_MASK) >> pc::PM1_SLP_TYP_SHIFT;
        // SLP_EN is write-only and self-clearing.
        let cleared = cnt & !pc::PM1_SLP_EN;
        self.regs[CNT..CNT + 2].copy_from_slice(&cleared.to_le_bytes());
        if typ == pc::SLP_TYP_S5 {
            self.control.request(StopRequest::Poweroff {
                code: 0,
                via: "ACPI S5",
            });
        } else if !self.warned_sleep {
            tracing::warn!(
                "acpi: guest asked for sleep type {typ}; only S5 (soft off) exists, ignored"
            );
            self.warned_sleep = true;
        }
    }
}

impl AcpiPm {
    /// The PM timer's 24-bit count now.
    fn timer(&self) -> u32 {
        let ns = (self.clock)();
        ((ns as u128 * PM_TIMER_HZ as u128 / 1_000_000_000) as u32) & 0x00ff_ffff
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let timer = self.timer();
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset as usize + i;
            *b = match at {
                0..=5 => self.regs[at],
                TMR..=11 => timer.to_le_bytes()[at - TMR],
                _ => 0xff,
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut touched_cnt_high = false;
        for (i, &v) in data.iter().enumerate() {
            let at = offset as usize + i;
            match at {
                STS | 1 => self.regs[at] &= !v, // write 1 to clear
                2..=5 => self.regs[at] = v,
                _ => {}
            }
            touched_cnt_high |= at == CNT + 1;
        }
        if touched_cnt_high && self.cnt() & pc::PM1_SLP_EN != 0 {
            self.sleep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s5() -> u16 {
        (pc::SLP_TYP_S5 << pc::PM1_SLP_TYP_SHIFT) | pc::PM1_SLP_EN
    }

    fn pm(control: Arc<VmControl>) -> AcpiPm {
        AcpiPm::new(control, Box::new(|| 1_000_000_000))
    }

    #[test]
    fn pm_timer_counts_at_3_58_mhz() {
        let mut pm = pm(Arc::new(VmControl::new()));
        let mut d = [0u8; 4];
        pm.read(TMR as u64, &mut d);
        assert_eq!(
            u32::from_le_bytes(d),
            (PM_TIMER_HZ as u32) & 0xff_ffff,
            "one second"
        );
    }

    #[test]
    fn s5_powers_off() {
        let control = Arc::new(VmControl::new());
        let mut pm = pm(control.clone());
        pm.write(4, &s5().to_le_bytes());
        assert_eq!(
            control.take(),
            Some(StopRequest::Poweroff {
                code: 0,
                via: "ACPI S5"
            })
        );
        let mut d = [0u8; 2];
        pm.read(4, &mut d);
        assert_eq!(
            u16::from_le_bytes(d) & pc::PM1_SLP_EN,
            0,
            "SLP_EN self-clears"
        );
    }

    #[test]
    fn byte_writes_and_other_sleep_types() {
        let control = Arc::new(VmControl::new());
        let mut pm = pm(control.clone());
        let s3 = (3 << pc::PM1_SLP_TYP_SHIFT) | pc::PM1_SLP_EN;
        pm.write(5, &[(s3 >> 8) as u8]);
        assert!(!control.pending(), "S3 is not supported and is ignored");
        pm.write(4, &[0x01]);
        pm.write(5, &[(s5() >> 8) as u8]);
        assert!(control.pending());
    }

    #[test]
    fn status_is_write_one_to_clear() {
        let mut pm = pm(Arc::new(VmControl::new()));
        pm.regs[0] = 0b1011;
        pm.write(0, &[0b0001, 0]);
        let mut d = [0u8; 1];
        pm.read(0, &mut d);
        assert_eq!(d[0], 0b1010);
        pm.write(2, &[0x20, 0x01]);
        let mut e = [0u8; 2];
        pm.read(2, &mut e);
        assert_eq!(e, [0x20, 0x01]);
    }
}
