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
/// ISA IRQ of the i8042's keyboard port.
pub const I8042_KBD_IRQ: u32 = 1;

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

/// Master i8259 PIC: command (OCW2/OCW3, ICW1) at 0x20, data (IMR, ICW2-4) at 0x21.
pub const PIC_MASTER: u16 = 0x20;
/// Slave i8259 PIC, cascaded on the master's IRQ 2: command at 0xa0, data at 0xa1.
pub const PIC_SLAVE: u16 = 0xa0;
/// Edge/level control registers (PIIX ELCR): 0x4d0 for IRQs 0-7, 0x4d1 for IRQs 8-15.
pub const ELCR: u16 = 0x4d0;
/// ISA IRQ of the PIT's channel 0.
pub const PIT_IRQ: u32 = 0;
/// ISA IRQ of the slave PIC's cascade input on the master (no device may use it).
pub const PIC_CASCADE_IRQ: u32 = 2;

/// I/O APIC MMIO base (IOREGSEL at +0x00, IOWIN at +0x10).
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Size of the I/O APIC's MMIO window as the VMM maps it.
pub const IOAPIC_SIZE: u64 = 0x1000;
/// I/O APIC ID; the ACPI MADT's I/O APIC entry must carry the same.
pub const IOAPIC_ID: u8 = 0;
/// Redirection entries (pins) of the I/O APIC: GSIs 0..=23.
pub const IOAPIC_PINS: u32 = 24;
/// I/O APIC pin the PIT's IRQ 0 arrives on (the MADT's interrupt source override for IRQ 0).
pub const IOAPIC_PIT_PIN: u32 = 2;

/// Local APIC MMIO base (xAPIC page), as the APIC_BASE MSR reports it.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// Size of the local APIC's register page.
pub const LAPIC_SIZE: u64 = 0x1000;
/// Input clock of the local APIC timer, before its divider. Linux takes the timer's frequency
/// from CPUID leaf 0x15 ECX (the "crystal") when that is non-zero, so the CPUID a guest sees
/// must report this same number there.
pub const LAPIC_TIMER_HZ: u64 = 25_000_000;

/// ACPI PM timer block: one 32-bit port (a 24-bit counter at 3.579545 MHz; the FADT says 24-bit).
pub const PM_TMR_BLK: u16 = 0x608;
/// ACPI PM timer frequency in Hz.
pub const PM_TMR_HZ: u64 = 3_579_545;
/// ISA IRQ (and I/O APIC GSI) of the ACPI system control interrupt (SCI), level-triggered.
pub const SCI_IRQ: u32 = 9;

/// Bytes of MMIO the local APIC and the I/O APIC each occupy.
pub const APIC_MMIO_SIZE: u64 = 0x1000;

/// CMOS RAM index of the century byte (BCD), as the ACPI FADT tells the OS.
pub const CMOS_CENTURY: u8 = 0x32;
/// Written to the i8042 command port, pulses the CPU reset line; the ACPI FADT names this as the
/// reset register.
pub const I8042_CMD_RESET: u8 = 0xfe;

/// First virtio-mmio register page (para mode). The pages sit above the PCI window and below
/// the I/O APIC, one per device kind; the ACPI DSDT declares each as an `LNRO0005` device.
pub const VIRTIO_MMIO_BASE: u64 = 0xfed0_0000;
/// Bytes between virtio-mmio pages (each device decodes one page).
pub const VIRTIO_MMIO_STRIDE: u64 = 0x1000;
/// The GSI of each virtio-mmio page, in page order (console, block, network, entropy):
/// I/O APIC pins above the ISA range, level-triggered and active-high as the DSDT declares
/// them. GSIs 16-19 stay free for PCI interrupt routing.
pub const VIRTIO_MMIO_GSIS: [u32; 4] = [20, 21, 22, 23];
