//! The PC platform's fixed port map as Janus builds it.
//!
//! These are the addresses of a plain PC that an unaware guest assumes (or, for the power
//! management block, finds in the ACPI FADT). The VMM's device bus and the embedded guest both
//! use these numbers.

/// POST diagnostic port: a write records a progress code (a POST card on a real PC).
pub const POST_CODE: u16 = 0x80;

/// First 16550 UART (COM1), 8 ports.
pub const COM1: u16 = 0x3f8;
/// IRQ line of COM1 on the ISA bus.
pub const COM1_IRQ: u32 = 4;

/// i8042 keyboard controller data port.
pub const I8042_DATA: u16 = 0x60;
/// i8042 keyboard controller command/status port.
pub const I8042_COMMAND: u16 = 0x64;

/// System control port B: PIT channel 2 gate (bit 0), speaker (bit 1), channel 2 output (bit 5).
pub const SYSTEM_CONTROL_B: u16 = 0x61;

/// i8254 PIT: counters 0..=2 at 0x40..=0x42, mode/command at 0x43.
pub const PIT_BASE: u16 = 0x40;
/// PIT input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;

/// CMOS/RTC index port (bit 7 masks NMI).
pub const CMOS_INDEX: u16 = 0x70;
/// CMOS/RTC data port.
pub const CMOS_DATA: u16 = 0x71;

/// ACPI PM1a event block (status, enable): 4 ports.
pub const PM1A_EVT_BLK: u16 = 0x600;
/// ACPI PM1a control block: 2 ports.
pub const PM1A_CNT_BLK: u16 = 0x604;
/// PM1 control: sleep type field (bits 10..=12).
pub const PM1_SLP_TYP_SHIFT: u16 = 10;
/// PM1 control: sleep enable.
pub const PM1_SLP_EN: u16 = 1 << 13;
/// Sleep type value Janus assigns to S5 (soft off); the ACPI `_S5` object carries the same.
pub const SLP_TYP_S5: u16 = 5;

/// ACPI PM timer block: one 32-bit port (a 24-bit counter at 3.579545 MHz; the FADT says 24-bit).
pub const PM_TMR_BLK: u16 = 0x608;
/// ACPI PM timer frequency in Hz.
pub const PM_TMR_HZ: u64 = 3_579_545;
/// ISA IRQ (and I/O APIC GSI) of the ACPI system control interrupt (SCI), level-triggered.
pub const SCI_IRQ: u32 = 9;

/// Local APIC MMIO base (each CPU sees its own), 4 KiB.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// I/O APIC MMIO base (IOREGSEL at +0, IOWIN at +0x10), 4 KiB; its inputs start at GSI 0.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Bytes of MMIO the local APIC and the I/O APIC each occupy.
pub const APIC_MMIO_SIZE: u64 = 0x1000;

/// CMOS RAM index of the century byte (BCD), as the ACPI FADT tells the OS.
pub const CMOS_CENTURY: u8 = 0x32;
/// Written to the i8042 command port, pulses the CPU reset line; the ACPI FADT names this as the
/// reset register.
pub const I8042_CMD_RESET: u8 = 0xfe;
