//! The test network: a namespace with a TAP interface (`janus_vmm::netns`, shared with
//! `janus bench --io`).

pub use janus_vmm::netns::*;
