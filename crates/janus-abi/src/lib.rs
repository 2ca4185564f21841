//! The contract between Janus and its guests, shared by the VMM and guest code.
//!
//! `no_std` and dependency-free so that a bare-metal guest can link it. Everything here is a
//! layout or a number that both sides must agree on; nothing here touches hardware.

#![no_std]

pub mod boot;
pub mod cpuid;
pub mod demo;
pub mod hypercall;
pub mod kvm_para;
pub mod pc;
pub mod pvclock;
