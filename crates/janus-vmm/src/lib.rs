//! The Janus VMM: what a VM is made of, how it is built, and the loop that runs it.
//!
//! `config` says what the user asked for; `policy` decides what the guest is shown in full or
//! para mode; `engine` picks kvm or soft; `machine` builds memory, devices and the vCPU;
//! `run_loop` dispatches exits to the bus and counts them; `demo` runs the embedded guest in
//! both modes and compares.

pub mod bench;
pub mod bench_io;
pub mod bench_linux;
pub mod bench_suite;
pub mod config;
pub mod demo;
pub mod engine;
pub mod exit_status;
pub mod firmware;
pub mod machine;
pub mod memory;
pub mod netns;
pub mod policy;
pub mod run_loop;
pub mod signals;
pub mod stdin;
pub mod timers;
pub mod virtio;

pub use config::{CpuModel, EngineChoice, KernelSource, Mode, VmConfig};
pub use machine::Machine;
pub use run_loop::{Outcome, RunReport};

/// Everything that can stop a VM from being built or run, as one-line messages.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Boot(#[from] janus_boot::BootError),
    #[error(transparent)]
    Disk(#[from] janus_devices::disk::DiskError),
    #[error("--net: {0}")]
    Net(#[from] janus_devices::tap::TapError),
    #[error(transparent)]
    Engine(#[from] janus_engine::EngineError),
    #[error("device bus: {0}")]
    Bus(#[from] janus_devices::BusError),
    #[error("guest memory: {0}")]
    Memory(String),
    /// The host refused something the VMM needs (a thread, a signal mask).
    #[error("{0}")]
    Host(String),
}

pub type Result<T> = std::result::Result<T, VmmError>;
