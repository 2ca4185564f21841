//! Tests: each instruction family against the host CPU, the exceptions, and FXSAVE/FXRSTOR.

mod faults;
mod harness;
mod modes;
mod native;
mod state;
