//! The virtio-mmio transport, version 2 (virtio 1.x, section 4.2): one register page per
//! device, declared to Linux with `virtio_mmio.device=<size>@<base>:<irq>`.
//!
//! Registers below 0x100 are 32-bit; the configuration space from 0x100 takes 8-, 16- and
//! 32-bit accesses. A wrong width, a write to a read-only register, or queue configuration at
//! the wrong time is ignored and counted, as hardware would ignore it. In particular queue
//! configuration is accepted only while the driver sets the device up: between FEATURES_OK and
//! DRIVER_OK, and only for a queue not yet marked ready. Once DRIVER_OK is set, moving a ring
//! would let the guest change memory the device already uses (Firecracker's CVE-2026-5747).

use super::queue::Queues;
use super::{VirtioDevice, F_EVENT_IDX, F_VERSION_1, TRANSPORT_FEATURES};
use crate::BusDevice;
use virtio_bindings::bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::bindings::virtio_mmio::*;
use virtio_queue::QueueT;

/// "virt" in little-endian.
const MAGIC: u32 = 0x7472_6976;
/// The modern (virtio 1.x) MMIO interface.
const VERSION: u32 = 2;
/// Janus's vendor ID: "JNS" and a zero, as QEMU's is "QEMU".
const VENDOR: u32 = 0x0053_4e4a;
/// Bytes of register space each device decodes (one page).
pub const MMIO_SIZE: u64 = 0x1000;

const S_ACKNOWLEDGE: u32 = VIRTIO_CONFIG_S_ACKNOWLEDGE;
const S_DRIVER: u32 = VIRTIO_CONFIG_S_DRIVER;
const S_FEATURES_OK: u32 = VIRTIO_CONFIG_S_FEATURES_OK;
const S_DRIVER_OK: u32 = VIRTIO_CONFIG_S_DRIVER_OK;
const S_NEEDS_RESET: u32 = VIRTIO_CONFIG_S_NEEDS_RESET;
const S_FAILED: u32 = VIRTIO_CONFIG_S_FAILED;
/// Status bits a driver may set.
const S_DRIVER_BITS: u32 = S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK | S_FAILED;

/// One virtio device on the MMIO transport, as a bus device.
pub struct MmioTransport<D> {
    device: D,
    queues: Queues,
    /// Device status as the driver set it (NEEDS_RESET comes from the queues).
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    /// Register accesses by the guest, for the cost per byte.
    exits: u64,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// `queues` must have been made with `device.queue_sizes()`.
    pub fn new(device: D, queues: Queues) -> MmioTransport<D> {
        MmioTransport {
            device,
            queues,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            exits: 0,
        }
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    /// Lets a backend thread (network receive, console input) serve the device's queues.
    /// Does nothing before DRIVER_OK or while the device needs a reset.
    pub fn with_device<R>(&mut self, f: impl FnOnce(&mut D, &mut Queues) -> R) -> Option<R> {
        self.running()
            .then(|| f(&mut self.device, &mut self.queues))
    }

    fn running(&self) -> bool {
        self.status & S_DRIVER_OK != 0 && !self.queues.needs_reset()
    }

    /// The device's activity and the guest errors it met, in one line.
    pub fn report(&self) -> String {
        let s = self.queues.stats();
        let mut line = format!(
            "{} register accesses; {}",
            self.exits,
            self.device.activity()
        );
        if s.bad_chains + s.misuse > 0 {
            line.push_str(&format!(
                "; guest errors: {} bad descriptor chains, {} other",
                s.bad_chains, s.misuse
            ));
        }
        line
    }

    fn offered_features(&self) -> u64 {
        self.device.features() | TRANSPORT_FEATURES
    }

    fn status(&self) -> u32 {
        self.status
            | if self.queues.needs_reset() {
                S_NEEDS_RESET
            } else {
                0
            }
    }

    fn read_register(&self, offset: u32) -> u32 {
        let queue = self.queues.get(self.queue_sel as usize);
        match offset {
            VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            VIRTIO_MMIO_VERSION => VERSION,
            VIRTIO_MMIO_DEVICE_ID => self.device.device_type(),
            VIRTIO_MMIO_VENDOR_ID => VENDOR,
            VIRTIO_MMIO_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            // 0 means "no such queue".
            VIRTIO_MMIO_QUEUE_NUM_MAX => queue.map_or(0, |q| q.max_size() as u32),
            VIRTIO_MMIO_QUEUE_NUM => queue.map_or(0, |q| q.size() as u32),
            VIRTIO_MMIO_QUEUE_READY => queue.is_some_and(|q| q.ready()) as u32,
            VIRTIO_MMIO_INTERRUPT_STATUS => self.queues.interrupt_status(),
            VIRTIO_MMIO_STATUS => self.status(),
            VIRTIO_MMIO_QUEUE_DESC_LOW => queue.map_or(0, |q| q.desc_table() as u32),
            VIRTIO_MMIO_QUEUE_DESC_HIGH => queue.map_or(0, |q| (q.desc_table() >> 32) as u32),
            VIRTIO_MMIO_QUEUE_AVAIL_LOW => queue.map_or(0, |q| q.avail_ring() as u32),
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH => queue.map_or(0, |q| (q.avail_ring() >> 32) as u32),
            VIRTIO_MMIO_QUEUE_USED_LOW => queue.map_or(0, |q| q.used_ring() as u32),
            VIRTIO_MMIO_QUEUE_USED_HIGH => queue.map_or(0, |q| (q.used_ring() >> 32) as u32),
            // No shared memory regions: their length reads as all ones.
            VIRTIO_MMIO_SHM_LEN_LOW | VIRTIO_MMIO_SHM_LEN_HIGH => u32::MAX,
            VIRTIO_MMIO_SHM_BASE_LOW | VIRTIO_MMIO_SHM_BASE_HIGH => u32::MAX,
            // The configuration space never changes under the driver.
            VIRTIO_MMIO_CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u32, value: u32) {
        match offset {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES => self.write_driver_features(value),
            VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = value,
            VIRTIO_MMIO_QUEUE_NUM
            | VIRTIO_MMIO_QUEUE_READY
            | VIRTIO_MMIO_QUEUE_DESC_LOW
            | VIRTIO_MMIO_QUEUE_DESC_HIGH
            | VIRTIO_MMIO_QUEUE_AVAIL_LOW
            | VIRTIO_MMIO_QUEUE_AVAIL_HIGH
            | VIRTIO_MMIO_QUEUE_USED_LOW
            | VIRTIO_MMIO_QUEUE_USED_HIGH => self.write_queue_config(offset, value),
            VIRTIO_MMIO_QUEUE_NOTIFY => self.queue_notify(value),
            VIRTIO_MMIO_INTERRUPT_ACK => self.queues.acknowledge(value),
            VIRTIO_MMIO_STATUS => self.write_status(value),
            _ => self.queues.misuse(format_args!(
                "write of {value:#x} to register {offset:#x}, which is read-only or absent"
            )),
        }
    }

    fn write_driver_features(&mut self, value: u32) {
        if self.status & (S_FEATURES_OK | S_DRIVER_OK) != 0 {
            return self
                .queues
                .misuse(format_args!("driver features written after FEATURES_OK"));
        }
        let shift = match self.driver_features_sel {
            0 => 0,
            1 => 32,
            _ => return,
        };
        self.driver_features =
            (self.driver_features & !(0xffff_ffffu64 << shift)) | ((value as u64) << shift);
    }

    fn write_queue_config(&mut self, offset: u32, value: u32) {
        let setting_up = self.status & S_FEATURES_OK != 0 && self.status & S_DRIVER_OK == 0;
        let index = self.queue_sel as usize;
        let Some(q) = self.queues.get_mut(index) else {
            return self.queues.misuse(format_args!(
                "queue {index} configured, which does not exist"
            ));
        };
        // Taking a queue out of service (ready = 0) is how a driver tears it down.
        let stopping = offset == VIRTIO_MMIO_QUEUE_READY && value == 0;
        if !stopping && (!setting_up || q.ready()) {
            return self.queues.misuse(format_args!(
                "queue {index} register {offset:#x} written outside set-up (status {:#x}); ignored",
                self.status
            ));
        }
        match offset {
            VIRTIO_MMIO_QUEUE_NUM => q.set_size(value as u16),
            VIRTIO_MMIO_QUEUE_READY => q.set_ready(value == 1),
            VIRTIO_MMIO_QUEUE_DESC_LOW => q.set_desc_table_address(Some(value), None),
            VIRTIO_MMIO_QUEUE_DESC_HIGH => q.set_desc_table_address(None, Some(value)),
            VIRTIO_MMIO_QUEUE_AVAIL_LOW => q.set_avail_ring_address(Some(value), None),
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH => q.set_avail_ring_address(None, Some(value)),
            VIRTIO_MMIO_QUEUE_USED_LOW => q.set_used_ring_address(Some(value), None),
            VIRTIO_MMIO_QUEUE_USED_HIGH => q.set_used_ring_address(None, Some(value)),
            _ => {}
        }
    }

    fn queue_notify(&mut self, value: u32) {
        let index = value as usize;
        if !self.running() {
            return self
                .queues
                .misuse(format_args!("queue {index} notified before DRIVER_OK"));
        }
        if index >= self.queues.len() {
            return self
                .queues
                .misuse(format_args!("queue {index} notified, which does not exist"));
        }
        self.device.notify(index, &mut self.queues);
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            return self.reset();
        }
        let value = value & S_DRIVER_BITS;
        let new = value & !self.status;
        if self.status & !value & S_DRIVER_BITS != 0 {
            return self
                .queues
                .misuse(format_args!("status bits cleared without a reset"));
        }
        if new & S_FEATURES_OK != 0 && !self.features_acceptable() {
            // The driver reads the status back and finds FEATURES_OK refused.
            self.status = value & !(S_FEATURES_OK | S_DRIVER_OK);
            return;
        }
        if new & S_DRIVER_OK != 0 && value & S_FEATURES_OK == 0 {
            self.status = value & !S_DRIVER_OK;
            return self
                .queues
                .misuse(format_args!("DRIVER_OK without FEATURES_OK"));
        }
        self.status = value;
        if new & S_DRIVER_OK != 0
            && self
                .queues
                .activate(self.driver_features & F_EVENT_IDX != 0)
        {
            self.device.activate(self.driver_features, &mut self.queues);
        }
    }

    /// The driver accepted only offered features, and virtio 1.x.
    fn features_acceptable(&self) -> bool {
        self.driver_features & !self.offered_features() == 0
            && self.driver_features & F_VERSION_1 != 0
    }

    fn reset(&mut self) {
        self.device.reset();
        self.queues.reset();
        self.status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = self.device.config();
        data.fill(0);
        let start = offset as usize;
        if let Some(src) = config.get(start..start.saturating_add(data.len())) {
            data.copy_from_slice(src);
        }
    }
}

/// A register access: 32 bits, aligned, below the configuration space.
fn register(offset: u64, len: usize) -> Option<u32> {
    (len == 4 && offset.is_multiple_of(4) && offset < VIRTIO_MMIO_CONFIG as u64)
        .then_some(offset as u32)
}

impl<D: VirtioDevice> BusDevice for MmioTransport<D> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.exits += 1;
        if offset >= VIRTIO_MMIO_CONFIG as u64 {
            return self.read_config(offset - VIRTIO_MMIO_CONFIG as u64, data);
        }
        match register(offset, data.len()) {
            Some(reg) => data.copy_from_slice(&self.read_register(reg).to_le_bytes()),
            None => {
                data.fill(0);
                self.queues.misuse(format_args!(
                    "{}-byte read of register {offset:#x}; registers are 32-bit",
                    data.len()
                ));
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.exits += 1;
        if offset >= VIRTIO_MMIO_CONFIG as u64 {
            return self
                .queues
                .misuse(format_args!("configuration space written; it is read-only"));
        }
        match (register(offset, data.len()), <[u8; 4]>::try_from(data)) {
            (Some(reg), Ok(v)) => self.write_register(reg, u32::from_le_bytes(v)),
            _ => self.queues.misuse(format_args!(
                "{}-byte write of register {offset:#x}; registers are 32-bit",
                data.len()
            )),
        }
    }
}

/// For the VMM's report at the end of a run, whatever the device type.
pub trait VirtioReport: Send {
    fn name(&self) -> &'static str;
    fn report(&self) -> String;
}

impl<D: VirtioDevice> VirtioReport for MmioTransport<D> {
    fn name(&self) -> &'static str {
        self.device.name()
    }

    fn report(&self) -> String {
        MmioTransport::report(self)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::queue::tests::{Driver, Line, AVAIL, DESC, USED, WRITE};
    use super::super::queue::{INT_CONFIG, INT_VRING};
    use super::*;
    use janus_engine::NoDmaObserver;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    /// A device with one queue of 8 that uses each chain with 1 byte.
    struct Echo {
        activated: Option<u64>,
        notified: u32,
    }
    impl VirtioDevice for Echo {
        fn device_type(&self) -> u32 {
            4
        }
        fn name(&self) -> &'static str {
            "echo"
        }
        fn queue_sizes(&self) -> &'static [u16] {
            &[8]
        }
        fn features(&self) -> u64 {
            1 << 3
        }
        fn config(&self) -> Vec<u8> {
            vec![1, 2, 3, 4, 5, 6, 7, 8]
        }
        fn activate(&mut self, features: u64, _: &mut Queues) {
            self.activated = Some(features);
        }
        fn notify(&mut self, index: usize, queues: &mut Queues) {
            self.notified += 1;
            queues.process(index, |_, _| 1);
        }
        fn activity(&self) -> String {
            format!("{} notifications", self.notified)
        }
    }

    pub struct Mmio<D> {
        pub t: MmioTransport<D>,
    }

    impl<D: VirtioDevice> Mmio<D> {
        pub fn new(device: D, d: &Driver, line: Arc<Line>) -> Mmio<D> {
            let queues = Queues::new(
                "test",
                device.queue_sizes(),
                d.mem.clone(),
                Arc::new(NoDmaObserver),
                line,
            );
            Mmio {
                t: MmioTransport::new(device, queues),
            }
        }

        pub fn r(&mut self, reg: u32) -> u32 {
            let mut b = [0u8; 4];
            self.t.read(reg as u64, &mut b);
            u32::from_le_bytes(b)
        }

        pub fn w(&mut self, reg: u32, v: u32) {
            self.t.write(reg as u64, &v.to_le_bytes());
        }

        /// What Linux's virtio_mmio does up to FEATURES_OK, accepting `features`.
        pub fn negotiate(&mut self, features: u64) {
            self.w(VIRTIO_MMIO_STATUS, 0);
            self.w(VIRTIO_MMIO_STATUS, S_ACKNOWLEDGE);
            self.w(VIRTIO_MMIO_STATUS, S_ACKNOWLEDGE | S_DRIVER);
            for sel in 0..2 {
                self.w(VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel);
                self.w(VIRTIO_MMIO_DRIVER_FEATURES, (features >> (32 * sel)) as u32);
            }
            self.w(VIRTIO_MMIO_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        }

        pub fn setup_queue(&mut self, index: u32, size: u16) {
            self.w(VIRTIO_MMIO_QUEUE_SEL, index);
            self.w(VIRTIO_MMIO_QUEUE_NUM, size as u32);
            self.w(VIRTIO_MMIO_QUEUE_DESC_LOW, DESC as u32);
            self.w(VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
            self.w(VIRTIO_MMIO_QUEUE_AVAIL_LOW, AVAIL as u32);
            self.w(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
            self.w(VIRTIO_MMIO_QUEUE_USED_LOW, USED as u32);
            self.w(VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
            self.w(VIRTIO_MMIO_QUEUE_READY, 1);
        }

        pub fn driver_ok(&mut self) {
            self.w(
                VIRTIO_MMIO_STATUS,
                S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK,
            );
        }

        /// Negotiation, queue `index` (of `size`) set up on the driver's rings, DRIVER_OK.
        pub fn bring_up(&mut self, features: u64, queues: &[(u32, u16)]) {
            self.negotiate(features);
            for &(index, size) in queues {
                self.setup_queue(index, size);
            }
            self.driver_ok();
        }
    }

    fn echo() -> Echo {
        Echo {
            activated: None,
            notified: 0,
        }
    }

    #[test]
    fn identifies_itself() {
        let d = Driver::new(8);
        let mut m = Mmio::new(echo(), &d, Arc::new(Line::default()));
        assert_eq!(m.r(VIRTIO_MMIO_MAGIC_VALUE), MAGIC);
        assert_eq!(m.r(VIRTIO_MMIO_VERSION), 2);
        assert_eq!(m.r(VIRTIO_MMIO_DEVICE_ID), 4);
        m.w(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        let low = m.r(VIRTIO_MMIO_DEVICE_FEATURES);
        m.w(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        let high = m.r(VIRTIO_MMIO_DEVICE_FEATURES);
        assert_eq!(
            (high as u64) << 32 | low as u64,
            TRANSPORT_FEATURES | 1 << 3
        );
        m.w(VIRTIO_MMIO_QUEUE_SEL, 0);
        assert_eq!(m.r(VIRTIO_MMIO_QUEUE_NUM_MAX), 8);
        m.w(VIRTIO_MMIO_QUEUE_SEL, 1);
        assert_eq!(m.r(VIRTIO_MMIO_QUEUE_NUM_MAX), 0, "no second queue");
        assert_eq!(m.r(VIRTIO_MMIO_SHM_LEN_LOW), u32::MAX);
        // Configuration space: bytes, words, dwords; past its end reads zero.
        let mut b = [0u8; 2];
        m.t.read(0x102, &mut b);
        assert_eq!(b, [3, 4]);
        let mut b = [0xffu8; 4];
        m.t.read(0x106, &mut b);
        assert_eq!(b, [0; 4]);
    }

    #[test]
    fn negotiation_refuses_unoffered_features_and_legacy_drivers() {
        let d = Driver::new(8);
        let mut m = Mmio::new(echo(), &d, Arc::new(Line::default()));
        m.negotiate(F_VERSION_1 | 1 << 5);
        assert_eq!(
            m.r(VIRTIO_MMIO_STATUS) & S_FEATURES_OK,
            0,
            "bit 5 not offered"
        );
        m.negotiate(1 << 3);
        assert_eq!(m.r(VIRTIO_MMIO_STATUS) & S_FEATURES_OK, 0, "no VERSION_1");
        m.negotiate(F_VERSION_1 | F_EVENT_IDX | 1 << 3);
        assert_ne!(m.r(VIRTIO_MMIO_STATUS) & S_FEATURES_OK, 0);
        // Features are fixed from now on.
        m.w(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        m.w(VIRTIO_MMIO_DRIVER_FEATURES, 0);
        m.setup_queue(0, 8);
        m.driver_ok();
        assert_eq!(
            m.t.device().activated,
            Some(F_VERSION_1 | F_EVENT_IDX | 1 << 3)
        );
    }

    #[test]
    fn notify_uses_chains_and_interrupts_until_acknowledged() {
        let mut d = Driver::new(8);
        let line = Arc::new(Line::default());
        let mut m = Mmio::new(echo(), &d, line.clone());
        m.bring_up(F_VERSION_1, &[(0, 8)]);
        d.desc(0, 0x8000, 1, WRITE, 0);
        d.offer(0);
        m.w(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(d.used_idx(), 1);
        assert_eq!(m.r(VIRTIO_MMIO_INTERRUPT_STATUS), INT_VRING);
        assert!(line.high.load(Ordering::SeqCst));
        m.w(VIRTIO_MMIO_INTERRUPT_ACK, INT_VRING);
        assert!(!line.high.load(Ordering::SeqCst));
        // Notifying a queue that does not exist does nothing.
        m.w(VIRTIO_MMIO_QUEUE_NOTIFY, 5);
        assert_eq!(m.t.device().notified, 1);
    }

    /// Once DRIVER_OK is set, the rings cannot be moved (CVE-2026-5747 in Firecracker).
    #[test]
    fn queue_configuration_after_driver_ok_is_ignored() {
        let mut d = Driver::new(8);
        let mut m = Mmio::new(echo(), &d, Arc::new(Line::default()));
        m.bring_up(F_VERSION_1, &[(0, 8)]);
        m.w(VIRTIO_MMIO_QUEUE_SEL, 0);
        for reg in [
            VIRTIO_MMIO_QUEUE_DESC_LOW,
            VIRTIO_MMIO_QUEUE_AVAIL_LOW,
            VIRTIO_MMIO_QUEUE_USED_LOW,
        ] {
            m.w(reg, 0x7_0000);
        }
        m.w(VIRTIO_MMIO_QUEUE_DESC_HIGH, 0xffff_ffff);
        m.w(VIRTIO_MMIO_QUEUE_NUM, 2);
        assert_eq!(m.r(VIRTIO_MMIO_QUEUE_DESC_LOW), DESC as u32);
        assert_eq!(m.r(VIRTIO_MMIO_QUEUE_DESC_HIGH), 0);
        assert_eq!(m.r(VIRTIO_MMIO_QUEUE_USED_LOW), USED as u32);
        assert_eq!(m.r(VIRTIO_MMIO_QUEUE_NUM), 8);
        assert_eq!(m.t.queues().stats().misuse, 5);
        // The queue still works where it was.
        d.desc(0, 0x8000, 1, WRITE, 0);
        d.offer(0);
        m.w(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(d.used_idx(), 1);
    }

    #[test]
    fn queue_configuration_before_features_ok_or_when_ready_is_ignored() {
        let d = Driver::new(8);
        let mut m = Mmio::new(echo(), &d, Arc::new(Line::default()));
        m.w(VIRTIO_MMIO_STATUS, S_ACKNOWLEDGE | S_DRIVER);
        m.w(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x5000);
        assert_eq!(m.r(VIRTIO_MMIO_QUEUE_DESC_LOW), 0, "before FEATURES_OK");
        m.negotiate(F_VERSION_1);
        m.setup_queue(0, 8);
        m.w(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x5000);
        assert_eq!(m.r(VIRTIO_MMIO_QUEUE_DESC_LOW), DESC as u32, "ready queue");
    }

    #[test]
    fn reset_clears_everything() {
        let mut d = Driver::new(8);
        let line = Arc::new(Line::default());
        let mut m = Mmio::new(echo(), &d, line.clone());
        m.bring_up(F_VERSION_1, &[(0, 8)]);
        d.desc(0, 0x8000, 1, WRITE, 0);
        d.offer(0);
        m.w(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        m.w(VIRTIO_MMIO_STATUS, 0);
        assert_eq!(m.r(VIRTIO_MMIO_STATUS), 0);
        assert_eq!(m.r(VIRTIO_MMIO_QUEUE_READY), 0);
        assert_eq!(m.r(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        assert!(!line.high.load(Ordering::SeqCst));
        m.w(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(m.t.device().notified, 1, "not running after reset");
    }

    #[test]
    fn broken_rings_set_needs_reset() {
        let d = Driver::new(8);
        let line = Arc::new(Line::default());
        let mut m = Mmio::new(echo(), &d, line.clone());
        m.negotiate(F_VERSION_1);
        m.setup_queue(0, 8);
        m.w(VIRTIO_MMIO_QUEUE_SEL, 0);
        m.w(VIRTIO_MMIO_QUEUE_READY, 0);
        m.w(VIRTIO_MMIO_QUEUE_USED_LOW, 0xffff_f000);
        m.w(VIRTIO_MMIO_QUEUE_READY, 1);
        m.driver_ok();
        assert_ne!(m.r(VIRTIO_MMIO_STATUS) & S_NEEDS_RESET, 0);
        assert_eq!(m.r(VIRTIO_MMIO_INTERRUPT_STATUS), INT_CONFIG);
        assert_eq!(m.t.device().activated, None);
    }

    #[test]
    fn every_offset_and_width_is_safe() {
        let d = Driver::new(8);
        let mut m = Mmio::new(echo(), &d, Arc::new(Line::default()));
        for offset in (0..MMIO_SIZE).step_by(1) {
            for len in [1usize, 2, 4, 8] {
                let mut b = vec![0u8; len];
                m.t.read(offset, &mut b);
                m.t.write(offset, &b);
                m.t.write(offset, &vec![0xff; len]);
            }
        }
    }
}
