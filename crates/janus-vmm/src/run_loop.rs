//! The run loop: run the vCPU, dispatch each exit to the bus, count exits by kind, and stop on
//! poweroff, reset or a fault with a report naming the exit and RIP.

use crate::machine::Machine;
use janus_abi::{hypercall, pc};
use janus_devices::bus::{Access, Bus};
use janus_devices::StopRequest;
use janus_engine::{ExitCounters, ExitKind, VmExit};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Why the VM stopped with an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The exit that stopped it, in words.
    pub exit: String,
    pub rip: Option<u64>,
    /// The vCPU's state at the time, in one line.
    pub state: Option<String>,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rip {
            Some(rip) => write!(f, "{} at rip={rip:#x}", self.exit),
            None => f.write_str(&self.exit),
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Poweroff {
        code: u32,
        via: &'static str,
    },
    Reset {
        via: &'static str,
    },
    /// The user stopped the VM from the host.
    Quit {
        via: &'static str,
    },
    /// The guest reported a panic (pvpanic).
    Panic,
    /// The guest wrote `value` to the debug-exit port (`--device debug-exit`).
    DebugExit {
        value: u32,
    },
    /// A signal (SIGINT, SIGTERM, SIGHUP) stopped the VM.
    Signal {
        signo: i32,
        name: &'static str,
    },
    Fault(Fault),
}

impl Outcome {
    /// Exit status for the `janus` process (see [`crate::exit_status`]).
    pub fn exit_code(&self) -> u8 {
        crate::exit_status::of_outcome(self)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Poweroff { code: 0, via } => write!(f, "guest powered off ({via})"),
            Outcome::Poweroff { code, via } => {
                write!(f, "guest powered off with code {code} ({via})")
            }
            Outcome::Reset { via } => write!(f, "guest reset the machine ({via})"),
            Outcome::Quit { via } => write!(f, "stopped by the user ({via})"),
            Outcome::Signal { name, .. } => write!(f, "stopped by {name}"),
            Outcome::Panic => write!(f, "guest panicked (pvpanic)"),
            Outcome::DebugExit { value } => write!(f, "guest wrote {value:#x} to debug-exit"),
            Outcome::Fault(fault) => write!(f, "VM stopped: {fault}"),
        }
    }
}

/// A POST code the guest wrote, when, and the exit counts just before that write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostEvent {
    pub code: u8,
    pub at: Duration,
    pub exits_before: ExitCounters,
    /// Guest instructions retired before the POST write, where the engine counts them.
    pub instructions: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct RunReport {
    pub outcome: Outcome,
    pub exits: ExitCounters,
    /// Port and MMIO exits by the device that answered them (a string I/O exit, which carries
    /// many elements, counts once, as it is one trip out of the guest).
    pub exits_by_device: BTreeMap<&'static str, u64>,
    pub post: Vec<PostEvent>,
    pub wall: Duration,
    pub instructions: Option<u64>,
    /// How a software engine ran the guest's instructions.
    pub exec: Option<janus_engine::ExecStats>,
}

/// What dispatching one exit decided.
enum Next {
    Continue,
    Fault(String),
}

fn describe_data(data: &[u8]) -> String {
    let mut v = [0u8; 8];
    let n = data.len().min(8);
    v[..n].copy_from_slice(&data[..n]);
    format!(
        "{:#x} ({} byte{})",
        u64::from_le_bytes(v),
        data.len(),
        if data.len() == 1 { "" } else { "s" }
    )
}

struct Dispatch<'a> {
    bus: &'a Bus,
    exits: &'a mut ExitCounters,
    devices: &'a mut BTreeMap<&'static str, u64>,
    post: &'a mut Vec<PostEvent>,
    started: Instant,
    hypercalls: bool,
    /// Accesses where nothing is mapped read all ones and drop writes, as on a PC's bus
    /// (`--strict-io` clears it: they stop the VM).
    open_bus: bool,
    /// Addresses already logged as open-bus accesses (each is logged once).
    open_seen: &'a mut std::collections::BTreeSet<(bool, u64)>,
}

/// How unmapped accesses count in the report.
const OPEN_BUS: &str = "unmapped (open bus)";

impl Dispatch<'_> {
    /// Counts one exit for the device that answered `access`.
    fn count(&mut self, access: Access) {
        if let Access::Device(name) = access {
            *self.devices.entry(name).or_default() += 1;
        }
    }

    /// An access where nothing is mapped, on an open bus: counted, and logged the first time
    /// at each address. Returns `false` with `--strict-io` (the VM stops).
    fn open(&mut self, mmio: bool, addr: u64, what: &str) -> bool {
        if !self.open_bus {
            return false;
        }
        *self.devices.entry(OPEN_BUS).or_default() += 1;
        if self.open_seen.insert((mmio, addr)) {
            tracing::warn!(
                "{what} where no device is mapped: open bus (reads all ones, writes dropped; --strict-io stops the VM instead)"
            );
        }
        true
    }

    fn exit(&mut self, exit: VmExit<'_>) -> Next {
        match exit {
            VmExit::PioIn { port, size, data } => {
                self.exits.record(ExitKind::PioIn);
                for (i, chunk) in data.chunks_mut(size.max(1) as usize).enumerate() {
                    let access = self.bus.pio_read(port, chunk);
                    if access == Access::Unmapped {
                        let what = format!(
                            "pio_in of {size} byte{} from port {port:#x}",
                            if size == 1 { "" } else { "s" }
                        );
                        if self.open(false, port as u64, &what) {
                            chunk.fill(0xff);
                            continue;
                        }
                        return Next::Fault(format!("{what}, where no device is mapped"));
                    }
                    if i == 0 {
                        self.count(access);
                    }
                }
                Next::Continue
            }
            VmExit::PioOut { port, size, data } => {
                let doorbell = self.hypercalls
                    && (hypercall::DOORBELL_BASE..hypercall::DOORBELL_BASE + hypercall::CALL_COUNT)
                        .contains(&port);
                if port == pc::POST_CODE {
                    self.post.push(PostEvent {
                        code: data.first().copied().unwrap_or(0),
                        at: self.started.elapsed(),
                        exits_before: *self.exits,
                        instructions: None,
                    });
                }
                self.exits.record(if doorbell {
                    ExitKind::Hypercall
                } else {
                    ExitKind::PioOut
                });
                for (i, chunk) in data.chunks(size.max(1) as usize).enumerate() {
                    let access = self.bus.pio_write(port, chunk);
                    if access == Access::Unmapped {
                        let what = format!("pio_out of {} to port {port:#x}", describe_data(chunk));
                        if self.open(false, port as u64, &what) {
                            continue;
                        }
                        return Next::Fault(format!("{what}, where no device is mapped"));
                    }
                    if i == 0 {
                        self.count(access);
                    }
                }
                Next::Continue
            }
            VmExit::MmioRead { addr, data } => {
                self.exits.record(ExitKind::MmioRead);
                let access = self.bus.mmio_read(addr, data);
                self.count(access);
                if access == Access::Unmapped {
                    let what = format!("mmio_read of {} bytes at {addr:#x}", data.len());
                    if self.open(true, addr, &what) {
                        data.fill(0xff);
                        return Next::Continue;
                    }
                    return Next::Fault(format!("{what}, where no device is mapped"));
                }
                Next::Continue
            }
            VmExit::MmioWrite { addr, data } => {
                self.exits.record(ExitKind::MmioWrite);
                let access = self.bus.mmio_write(addr, data);
                self.count(access);
                if access == Access::Unmapped {
                    let what = format!("mmio_write of {} at {addr:#x}", describe_data(data));
                    if self.open(true, addr, &what) {
                        return Next::Continue;
                    }
                    return Next::Fault(format!("{what}, where no device is mapped"));
                }
                Next::Continue
            }
            VmExit::Halt => {
                self.exits.record(ExitKind::Halt);
                Next::Fault("halt: the guest executed HLT and nothing can wake it".into())
            }
            VmExit::Shutdown => {
                self.exits.record(ExitKind::Shutdown);
                Next::Fault("shutdown: the guest triple-faulted".into())
            }
            VmExit::Interrupted => {
                self.exits.record(ExitKind::Interrupted);
                Next::Continue
            }
            VmExit::Failed { reason } => {
                self.exits.record(ExitKind::Failed);
                Next::Fault(format!("failed: {reason}"))
            }
        }
    }
}

impl Machine {
    /// Runs the guest until it powers off, resets, or faults.
    pub fn run(&mut self) -> RunReport {
        let started = Instant::now();
        let mut exits = ExitCounters::default();
        let mut devices = BTreeMap::new();
        let mut post = Vec::new();
        let hypercalls = self.doorbell.is_some();
        let mut open_seen = std::collections::BTreeSet::new();
        let outcome = loop {
            let posts = post.len();
            let next = match self.vcpu.run() {
                Ok(exit) => Dispatch {
                    bus: &self.bus,
                    exits: &mut exits,
                    devices: &mut devices,
                    post: &mut post,
                    started,
                    hypercalls,
                    open_bus: !self.strict_io,
                    open_seen: &mut open_seen,
                }
                .exit(exit),
                Err(e) => Next::Fault(format!("engine error: {e}")),
            };
            if post.len() > posts {
                // The POST write has not retired yet: this counts what ran before it.
                if let Some(e) = post.last_mut() {
                    e.instructions = self.vcpu.instructions_retired();
                }
            }
            if let Next::Fault(exit) = next {
                let state = self.vcpu.state().ok();
                break Outcome::Fault(Fault {
                    exit,
                    rip: state.as_ref().map(|s| s.rip),
                    state: state.map(|s| s.summary()),
                });
            }
            if self.control.pending() {
                match self.control.take() {
                    Some(StopRequest::Poweroff { code, via }) => {
                        break Outcome::Poweroff { code, via }
                    }
                    Some(StopRequest::Reset { via }) => break Outcome::Reset { via },
                    Some(StopRequest::Quit { via }) => break Outcome::Quit { via },
                    Some(StopRequest::Signal { signo, name }) => {
                        break Outcome::Signal { signo, name }
                    }
                    Some(StopRequest::Panic) => break Outcome::Panic,
                    Some(StopRequest::DebugExit { value }) => break Outcome::DebugExit { value },
                    None => {}
                }
            }
        };
        RunReport {
            outcome,
            exits,
            exits_by_device: devices,
            post,
            wall: started.elapsed(),
            instructions: self.vcpu.instructions_retired(),
            exec: self.vcpu.exec_stats(),
        }
    }
}
