//! Choosing the CPU engine, and saying why.

use crate::config::EngineChoice;
use crate::{Result, VmmError};
use janus_devices::irqchip::PcIrqChip;
use janus_engine::{EngineKind, GuestMemory, Vm};
use std::path::Path;
use std::sync::Arc;

/// The engine that will run the guest, and the reason in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub kind: EngineKind,
    pub reason: String,
    /// Something the user should know (for example: /dev/kvm without hardware assist).
    pub warning: Option<String>,
}

fn no_assist_note() -> String {
    let modules = janus_kvm::kvm_modules();
    let list = if modules.is_empty() {
        "none".to_string()
    } else {
        modules.join(", ")
    };
    format!(
        "this host has no hardware assist (no kvm_intel or kvm_amd; kvm modules loaded: {list})"
    )
}

/// Resolves the user's choice against what this host has.
pub fn select(choice: EngineChoice) -> Result<Selection> {
    let dev_kvm = Path::new("/dev/kvm").exists();
    let assist = janus_kvm::hardware_assist();
    match choice {
        EngineChoice::Soft => Ok(Selection {
            kind: EngineKind::Soft,
            reason: "asked for".into(),
            warning: None,
        }),
        EngineChoice::Kvm if !dev_kvm => Err(VmmError::Config(
            "--engine kvm: /dev/kvm does not exist on this host".into(),
        )),
        EngineChoice::Kvm => Ok(Selection {
            kind: EngineKind::Kvm,
            reason: match assist {
                Some(m) => format!("asked for; hardware assist through {m}"),
                None => "asked for".into(),
            },
            warning: assist.is_none().then(|| {
                format!(
                    "{}, so /dev/kvm emulates guest instructions in software and runs them slowly",
                    no_assist_note()
                )
            }),
        }),
        EngineChoice::Auto => Ok(match (assist, dev_kvm) {
            (Some(m), true) => Selection {
                kind: EngineKind::Kvm,
                reason: format!("auto: hardware assist through {m}"),
                warning: None,
            },
            _ => Selection {
                kind: EngineKind::Soft,
                reason: format!("auto: {}", no_assist_note()),
                warning: None,
            },
        }),
    }
}

/// Creates the VM for the selected engine. The soft engine gets `irqchip` as its interrupt
/// controllers (KVM has its own in the kernel).
pub fn create_vm(
    kind: EngineKind,
    memory: &GuestMemory,
    irqchip: Option<Arc<PcIrqChip>>,
) -> Result<Box<dyn Vm>> {
    match kind {
        EngineKind::Kvm => Ok(Box::new(janus_kvm::KvmVm::new(memory)?)),
        EngineKind::Soft => {
            let mut vm = janus_soft::SoftVm::new(memory);
            if let Some(chip) = irqchip {
                vm.set_interrupt_controllers(chip.clone(), chip);
            }
            Ok(Box::new(vm))
        }
    }
}
