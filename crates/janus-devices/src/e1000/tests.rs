//! The card driven the way Linux's `e1000` drives it, and the ways a guest can get it wrong.

use super::regs::*;
use super::*;
use crate::bus::lock;
use crate::pci::{PciFunction, COMMAND_BUS_MASTER, COMMAND_IO, COMMAND_MEMORY};
use crate::test_support::{Line, Socket, Written};
use janus_engine::GuestMemory;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const RAM: usize = 1 << 20;
const TX_RING: u64 = 0x1000;
const RX_RING: u64 = 0x2000;
const RX_BUFFERS: u64 = 0x10000;

struct Rig {
    nic: E1000,
    mem: GuestMemory,
    line: Arc<Line>,
    written: Arc<Written>,
    host: UnixDatagram,
}

impl Rig {
    fn new() -> Rig {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
        let (ours, host) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        host.set_nonblocking(true).unwrap();
        let line = Arc::new(Line::default());
        let written = Arc::new(Written::default());
        let mut nic = E1000::new(
            mem.clone(),
            written.clone(),
            line.clone(),
            Arc::new(Socket(ours)),
            MAC,
        )
        .unwrap();
        let command = COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER;
        nic.write_config(4, command as u32, 0xffff);
        Rig {
            nic,
            mem,
            line,
            written,
            host,
        }
    }

    fn r(&mut self, reg: u32) -> u32 {
        let mut d = [0u8; 4];
        self.nic.bar_read(0, reg as u64, &mut d);
        u32::from_le_bytes(d)
    }

    fn w(&mut self, reg: u32, v: u32) {
        self.nic.bar_write(0, reg as u64, &v.to_le_bytes());
    }

    fn irq(&self) -> bool {
        self.line.0.lock().unwrap().last().copied().unwrap_or(false)
    }

    /// A transmit ring of `count` descriptors, enabled.
    fn tx_ring(&mut self, count: u32) {
        self.w(TDBAL, TX_RING as u32);
        self.w(TDBAH, 0);
        self.w(TDLEN, count * 16);
        self.w(TDH, 0);
        self.w(TDT, 0);
        self.w(TCTL, TCTL_EN);
    }

    fn tx_legacy(&self, i: u64, addr: u64, len: u16, cmd: u8) {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..10].copy_from_slice(&len.to_le_bytes());
        d[11] = cmd;
        self.mem
            .write_slice(&d, GuestAddress(TX_RING + 16 * i))
            .unwrap();
    }

    /// A receive ring of `count` descriptors with buffers of the RCTL's size, all given to the
    /// card but one (RDT = count - 1), receiving broadcasts.
    fn rx_ring(&mut self, count: u32, rctl: u32) {
        for i in 0..count as u64 {
            let addr = RX_BUFFERS + i * 0x4000;
            self.mem
                .write_slice(&addr.to_le_bytes(), GuestAddress(RX_RING + 16 * i))
                .unwrap();
        }
        self.w(RDBAL, RX_RING as u32);
        self.w(RDLEN, count * 16);
        self.w(RDH, 0);
        self.w(RDT, count - 1);
        self.w(RCTL, RCTL_EN | RCTL_BAM | rctl);
    }

    /// Receive descriptor `i`: (length, status, errors).
    fn rx_desc(&self, i: u64) -> (u16, u8, u8) {
        let mut d = [0u8; 16];
        self.mem
            .read_slice(&mut d, GuestAddress(RX_RING + 16 * i))
            .unwrap();
        (u16::from_le_bytes([d[8], d[9]]), d[12], d[13])
    }

    fn received(&mut self) -> Vec<u8> {
        let mut b = [0u8; 2048];
        let n = self.host.recv(&mut b).expect("a frame on the host side");
        b[..n].to_vec()
    }
}

fn frame_to(dst: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12] = 0x08;
    for (i, b) in f[14..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

#[test]
fn pci_identity_and_bars() {
    let r = Rig::new();
    let cs = r.nic.config();
    assert_eq!(cs.read(0), 0x100e_8086);
    assert_eq!(cs.read(8) >> 8, 0x02_0000, "Ethernet controller");
    assert_eq!(cs.bar(0), 0xfebc_0000);
    assert_eq!(cs.read(0x14) & 1, 1, "BAR 1 is I/O");
    assert_eq!(cs.read(0x3c) & 0xff00, 0x0100, "INTA#");
    assert_eq!(cs.read(0x3c) & 0xff, crate::pci::intx_gsi(SLOT, 0));
    let mut c = cs.clone();
    c.write(0x10, u32::MAX, u32::MAX);
    assert_eq!(c.read(0x10), 0xfffe_0000, "128 KiB memory BAR");
}

#[test]
fn reset_status_and_receive_address() {
    let mut r = Rig::new();
    let status = r.r(STATUS);
    assert_eq!(status & (STATUS_LU | STATUS_FD), STATUS_LU | STATUS_FD);
    assert_eq!(status & (3 << 6), STATUS_SPEED_1000, "1000 Mb/s");
    r.w(RAL0, 0);
    r.w(IMS, ICR_LSC);
    let v = r.r(CTRL) | CTRL_RST;
    r.w(CTRL, v);
    assert_eq!(r.r(CTRL) & CTRL_RST, 0, "self-clearing");
    assert_eq!(r.r(RAL0), 0x1200_5452, "reloaded from the EEPROM");
    assert_eq!(r.r(RAH0), 0x8000_5634, "with Address Valid");
    assert_eq!(r.r(IMS), 0, "interrupts masked");
}

#[test]
fn eeprom_and_phy_through_the_registers() {
    let mut r = Rig::new();
    r.w(EERD, 2 << 8 | 1);
    assert_eq!(r.r(EERD) >> 16, 0x5634);
    r.w(MDIC, MDIC_OP_READ | 1 << 21 | 2 << 16);
    let v = r.r(MDIC);
    assert_ne!(v & MDIC_READY, 0);
    assert_eq!(v & 0xffff, 0x0141);
    assert_ne!(r.r(EECD) & EECD_PRES, 0);
}

#[test]
fn interrupts_follow_icr_and_ims() {
    let mut r = Rig::new();
    r.w(ICS, ICR_LSC);
    assert!(!r.irq(), "masked");
    r.w(IMS, ICR_LSC | ICR_RXT0);
    assert!(r.irq());
    r.w(IMC, ICR_LSC);
    assert!(!r.irq());
    r.w(IMS, ICR_LSC);
    assert!(r.irq());
    assert_eq!(r.r(ICR), ICR_LSC, "read returns the causes");
    assert!(!r.irq(), "and clears them");
    assert_eq!(r.r(ICR), 0);
    // INTx disable in the command register holds the line low.
    r.w(ICS, ICR_LSC);
    assert!(r.irq());
    let command = r.nic.config().command() as u32 | 1 << 10;
    r.nic.write_config(4, command, 0xffff);
    assert!(!r.irq());
}

#[test]
fn statistics_clear_when_read() {
    let mut r = Rig::new();
    r.tx_ring(8);
    r.mem
        .write_slice(&frame_to(MAC, 64), GuestAddress(0x8000))
        .unwrap();
    r.tx_legacy(0, 0x8000, 64, 0x0b);
    r.w(TDT, 1);
    assert_eq!(r.r(stat::GPTC), 1);
    assert_eq!(r.r(stat::GPTC), 0);
    assert_eq!(r.r(stat::GOTCL), 68, "octets with the FCS");
    r.w(stat::GPTC, 5);
    assert_eq!(r.r(stat::GPTC), 0, "read-only");
}

#[test]
fn transmit_sends_frames_and_writes_back_dd() {
    let mut r = Rig::new();
    r.w(IMS, ICR_TXDW);
    r.tx_ring(8);
    let f = frame_to([0xff; 6], 60);
    r.mem.write_slice(&f[..20], GuestAddress(0x8000)).unwrap();
    r.mem.write_slice(&f[20..], GuestAddress(0x9000)).unwrap();
    r.tx_legacy(0, 0x8000, 20, 0x00);
    r.tx_legacy(1, 0x9000, 40, 0x0b); // EOP | IFCS | RS
    r.w(TDT, 2);
    assert_eq!(r.received(), f);
    assert_eq!(r.r(TDH), 2);
    let mut sta = [0u8; 1];
    r.mem
        .read_slice(&mut sta, GuestAddress(TX_RING + 16 + 12))
        .unwrap();
    assert_eq!(sta[0] & 1, 1, "DD");
    assert!(r.irq(), "TXDW");
    assert!(r
        .written
        .0
        .lock()
        .unwrap()
        .contains(&(TX_RING + 16 + 12, 1)));
    let s = r.nic.stats();
    assert_eq!((s.tx_frames, s.tx_bytes), (1, 60));
    assert!(s.mmio_exits > 0);
}

#[test]
fn transmit_waits_for_bus_mastering_and_enable() {
    let mut r = Rig::new();
    r.nic.write_config(4, (COMMAND_MEMORY) as u32, 0xffff);
    r.tx_ring(8);
    r.mem
        .write_slice(&frame_to(MAC, 60), GuestAddress(0x8000))
        .unwrap();
    r.tx_legacy(0, 0x8000, 60, 0x09);
    r.w(TDT, 1);
    assert_eq!(r.r(TDH), 0, "no DMA without bus mastering");
    r.nic
        .write_config(4, (COMMAND_MEMORY | COMMAND_BUS_MASTER) as u32, 0xffff);
    assert_eq!(r.r(TDH), 1, "sent once allowed");
    assert_eq!(r.received().len(), 60);
}

#[test]
fn bad_transmit_rings_stop_the_queue() {
    let mut r = Rig::new();
    // Not a multiple of 128: the low bits are not implemented.
    r.w(TDLEN, 200);
    assert_eq!(r.r(TDLEN), 128);
    // Zero length: nothing to walk.
    r.w(TDLEN, 0);
    r.w(TCTL, TCTL_EN);
    r.w(TDT, 3);
    assert_eq!(r.r(TDH), 0);
    assert_eq!(r.nic.stats().guest_errors, 1);
    // A ring outside RAM.
    r.w(TDBAL, 0xfff0_0000);
    r.w(TDLEN, 128);
    r.w(TDT, 1);
    assert_eq!(r.r(TDH), 0);
    // A tail beyond the ring.
    r.tx_ring(8);
    r.w(TDT, 9);
    assert_eq!(r.r(TDH), 0, "stopped");
    assert_eq!(r.nic.stats().guest_errors, 3);
    // A head beyond the ring.
    r.w(TDH, 0xffff);
    r.w(TDT, 1);
    assert_eq!(r.nic.stats().guest_errors, 4);
    // A buffer outside RAM: the descriptor completes, the packet is dropped.
    r.w(TDH, 0);
    r.w(TDT, 0);
    r.tx_legacy(0, RAM as u64 - 8, 64, 0x09);
    r.w(TDT, 1);
    assert_eq!(r.r(TDH), 1);
    assert!(r.host.recv(&mut [0u8; 64]).is_err(), "nothing sent");
    assert_eq!(r.nic.stats().guest_errors, 5);
    let written = r.written.0.lock().unwrap();
    assert!(written.iter().all(|&(a, n)| a + n <= RAM as u64));
}

#[test]
fn receive_writes_frame_fcs_and_status() {
    let mut r = Rig::new();
    r.w(IMS, ICR_RXT0);
    r.rx_ring(8, 0);
    let f = frame_to(MAC, 100);
    r.nic.receive_frame(&f);
    assert_eq!(r.rx_desc(0), (104, 0x07, 0), "length with FCS; DD EOP IXSM");
    let mut got = vec![0u8; 104];
    r.mem
        .read_slice(&mut got, GuestAddress(RX_BUFFERS))
        .unwrap();
    assert_eq!(&got[..100], &f[..]);
    assert_eq!(&got[100..], &frame::fcs(&f));
    assert_eq!(r.r(RDH), 1);
    assert!(r.irq(), "RXT0");
    assert!(r.written.0.lock().unwrap().contains(&(RX_BUFFERS, 104)));
    // Stripping the CRC, and padding a short frame to 60 bytes.
    let v = r.r(RCTL) | RCTL_SECRC;
    r.w(RCTL, v);
    r.nic.receive_frame(&frame_to(MAC, 42));
    assert_eq!(r.rx_desc(1).0, 60);
    assert_eq!(r.r(stat::GPRC), 2);
}

#[test]
fn receive_filter() {
    let mut r = Rig::new();
    r.rx_ring(8, 0);
    r.nic.receive_frame(&frame_to([0x52, 0x54, 0, 0, 0, 9], 60));
    r.nic.receive_frame(&frame_to([0x01, 0, 0x5e, 0, 0, 1], 60));
    assert_eq!(r.r(RDH), 0, "other unicast and unhashed multicast dropped");
    r.nic.receive_frame(&frame_to([0xff; 6], 60));
    assert_eq!(r.r(RDH), 1, "broadcast");
    let v = r.r(RCTL) | RCTL_UPE | RCTL_MPE;
    r.w(RCTL, v);
    r.nic.receive_frame(&frame_to([0x52, 0x54, 0, 0, 0, 9], 60));
    r.nic.receive_frame(&frame_to([0x01, 0, 0x5e, 0, 0, 1], 60));
    assert_eq!(r.r(RDH), 3, "promiscuous");
    r.nic.receive_frame(&[0u8; 10]);
    assert_eq!(r.r(RDH), 3, "a runt");
}

#[test]
fn wide_frames_span_descriptors_with_eop_on_the_last() {
    let mut r = Rig::new();
    // 256-byte buffers (BSIZE 11b).
    r.rx_ring(8, 3 << 16);
    r.nic.receive_frame(&frame_to(MAC, 600));
    assert_eq!(r.rx_desc(0), (256, 0x05, 0));
    assert_eq!(r.rx_desc(1), (256, 0x05, 0));
    assert_eq!(r.rx_desc(2), (92, 0x07, 0), "EOP on the last");
    assert_eq!(r.r(RDH), 3);
    // Too long without LPE: dropped and counted as oversize.
    r.nic.receive_frame(&frame_to(MAC, 1600));
    assert_eq!(r.r(RDH), 3);
    assert_eq!(r.r(stat::ROC), 1);
}

#[test]
fn frames_wait_for_descriptors_then_overrun() {
    let mut r = Rig::new();
    r.w(IMS, ICR_RXO);
    r.rx_ring(8, 0);
    r.w(RDT, 0); // no descriptors given yet
    let f = frame_to(MAC, 1000);
    r.nic.receive_frame(&f);
    assert_eq!(r.r(RDH), 0);
    assert_eq!(r.nic.fifo.len(), 1, "waits in the FIFO");
    r.w(RDT, 2);
    assert_eq!(r.r(RDH), 1, "delivered on the tail write");
    assert!(r.nic.fifo.is_empty());
    r.w(RDT, 1);
    for _ in 0..60 {
        r.nic.receive_frame(&f);
    }
    assert!(r.r(stat::MPC) > 0, "missed packets");
    assert_ne!(r.r(ICR) & ICR_RXO, 0, "receive overrun");
    assert!(r.nic.fifo.len() <= rx::FIFO_BYTES / 1004);
}

#[test]
fn bad_receive_rings_and_buffers() {
    let mut r = Rig::new();
    r.rx_ring(8, 0);
    // A buffer outside RAM: the descriptor completes with RXE, nothing written out there.
    r.mem
        .write_slice(&(RAM as u64 - 10).to_le_bytes(), GuestAddress(RX_RING))
        .unwrap();
    r.nic.receive_frame(&frame_to(MAC, 60));
    assert_eq!(r.rx_desc(0), (64, 0x07, 0x80));
    // A ring outside RAM, then one of length zero: nothing moves.
    r.w(RDBAL, 0xffff_0000);
    r.nic.receive_frame(&frame_to(MAC, 60));
    r.w(RDBAL, RX_RING as u32);
    r.w(RDLEN, 0);
    r.nic.receive_frame(&frame_to(MAC, 60));
    // A tail beyond the ring.
    r.w(RDLEN, 128);
    r.w(RDT, 100);
    r.nic.receive_frame(&frame_to(MAC, 60));
    assert_eq!(r.r(RDH), 1);
    // A frame that needs more descriptors than the ring has (8 x 256 bytes, 4000 bytes).
    r.w(RDT, 0);
    r.w(RCTL, RCTL_EN | RCTL_LPE | 3 << 16);
    r.nic.receive_frame(&frame_to(MAC, 4000));
    assert!(r.nic.fifo.is_empty(), "dropped, not stuck");
    assert!(r.nic.stats().guest_errors >= 4);
    let written = r.written.0.lock().unwrap();
    assert!(written.iter().all(|&(a, n)| a + n <= RAM as u64));
}

#[test]
fn io_bar_reaches_the_registers() {
    let mut r = Rig::new();
    r.nic.bar_write(1, 0, &STATUS.to_le_bytes());
    let mut d = [0u8; 4];
    r.nic.bar_read(1, 4, &mut d);
    assert_ne!(u32::from_le_bytes(d) & STATUS_LU, 0);
    r.nic.bar_read(1, 0, &mut d);
    assert_eq!(u32::from_le_bytes(d), STATUS);
    r.nic.bar_write(1, 0, &IMS.to_le_bytes());
    r.nic.bar_write(1, 4, &ICR_LSC.to_le_bytes());
    assert_eq!(r.r(IMS), ICR_LSC);
    // IOADDR beyond the registers: reads float, writes vanish.
    r.nic.bar_write(1, 0, &0x10_0000u32.to_le_bytes());
    r.nic.bar_read(1, 4, &mut d);
    assert_eq!(d, [0xff; 4]);
    r.nic.bar_write(1, 4, &[1]);
    assert!(r.nic.stats().io_exits >= 7);
}

#[test]
fn narrow_and_wide_accesses() {
    let mut r = Rig::new();
    r.nic.bar_write(0, RAL0 as u64 + 1, &[0xab]);
    assert_eq!(r.r(RAL0), 0x1200_ab52, "one byte merged");
    let mut d = [0u8; 8];
    r.nic.bar_read(0, RAL0 as u64, &mut d);
    assert_eq!(u32::from_le_bytes(d[4..].try_into().unwrap()), 0x8000_5634);
    r.nic.bar_write(0, MMIO_SIZE as u64 - 2, &[1, 2, 3, 4]);
    r.nic.bar_read(0, MMIO_SIZE as u64 + 0x100, &mut d);
}

#[test]
fn receive_thread_delivers_frames() {
    let r = Rig::new();
    let Rig { nic, mem, host, .. } = r;
    let nic = Arc::new(Mutex::new(nic));
    let rig_ring = |n: &mut E1000| {
        mem.write_slice(&RX_BUFFERS.to_le_bytes(), GuestAddress(RX_RING))
            .unwrap();
        for (reg, v) in [
            (RDBAL, RX_RING as u32),
            (RDLEN, 128),
            (RDT, 4),
            (RCTL, RCTL_EN | RCTL_BAM),
        ] {
            n.bar_write(0, reg as u64, &v.to_le_bytes());
        }
    };
    let rx = receive_thread(nic.clone()).unwrap();
    rig_ring(&mut lock(&nic));
    host.send(&frame_to([0xff; 6], 60)).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let mut d = [0u8; 4];
        lock(&nic).bar_read(0, RDH as u64, &mut d);
        if u32::from_le_bytes(d) == 1 {
            break;
        }
        assert!(Instant::now() < until, "frame not delivered");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(rx);
    assert_eq!(lock(&nic).stats().rx_frames, 1);
}
