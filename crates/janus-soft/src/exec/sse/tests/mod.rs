//! Tests: each instruction family against the host CPU, the exceptions, and FXSAVE/FXRSTOR.

mod faults;
mod gather;
mod harness;
mod modes;
mod native;
mod state;
mod xsave;
