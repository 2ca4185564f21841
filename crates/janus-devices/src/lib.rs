//! Device models and the bus every device-touching exit lands on.
//!
//! Written by hand where no well-kept crate models the part (CMOS RTC, PIT, 8259 PIC, I/O APIC,
//! local APIC, PCI bus and bridges, PIIX IDE, the e1000 NIC, ACPI PM block, the hypercall
//! doorbell); the 16550A UART and the i8042 reset line come from vm-superio.

pub mod acpi_pm;
pub mod bus;
pub mod cmos_rtc;
pub mod control;
pub mod debug_exit;
pub mod disk;
pub mod e1000;
pub mod fw_cfg;
pub mod hypercall;
pub mod i8042;
pub mod ide;
pub mod ioapic;
pub mod irqchip;
pub mod kvmclock;
pub mod lapic;
pub mod legacy;
pub mod pci;
pub mod pic8259;
pub mod pit8254;
pub mod post;
pub mod pvclock;
pub mod pvpanic;
pub mod tap;
#[cfg(test)]
mod test_support;
pub mod timer;
pub mod uart16550;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusError};
pub use control::{StopRequest, VmControl};
