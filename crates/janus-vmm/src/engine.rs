//! Choosing the CPU engine, and saying why.

use crate::config::{CpuModel, EngineChoice};
use crate::{Result, VmmError};
use janus_devices::irqchip::PcIrqChip;
use janus_engine::{EngineKind, GuestMemory, Vm};
use janus_soft::cpuid::Level;
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

/// The soft engine's x86-64 level for `model`: `host` is the highest the host CPU runs (the
/// engine executes a level's vector instructions on the host's own unit); a level the host
/// lacks is refused.
pub fn soft_level(model: CpuModel) -> Result<Level> {
    let level = match model {
        CpuModel::Host => return Ok(Level::host_max()),
        CpuModel::V1 => Level::V1,
        CpuModel::V2 => Level::V2,
        CpuModel::V3 => Level::V3,
    };
    if !level.host_runs() {
        return Err(VmmError::Config(format!(
            "--cpu {}: this host's CPU lacks instructions of that level, which the soft engine runs on the host (highest here: {})",
            model.name(),
            Level::host_max().name()
        )));
    }
    Ok(level)
}

/// What the guest's CPU presents on engine `kind`, in words (for the start line), or why
/// `model` cannot be had there.
pub fn cpu_model(kind: EngineKind, model: CpuModel) -> Result<String> {
    match kind {
        EngineKind::Soft => Ok(format!("x86-64-{}", soft_level(model)?.name())),
        EngineKind::Kvm if model == CpuModel::Host => Ok("host (what KVM supports)".into()),
        EngineKind::Kvm => Err(VmmError::Config(format!(
            "--cpu {}: the kvm engine presents the host's CPU as KVM supports it (--cpu host); x86-64 levels are a soft-engine model",
            model.name()
        ))),
    }
}

/// Creates the VM for the selected engine. The soft engine gets `irqchip` as its interrupt
/// controllers (KVM has its own in the kernel) and presents `model`.
pub fn create_vm(
    kind: EngineKind,
    model: CpuModel,
    memory: &GuestMemory,
    irqchip: Option<Arc<PcIrqChip>>,
) -> Result<Box<dyn Vm>> {
    match kind {
        EngineKind::Kvm => Ok(Box::new(janus_kvm::KvmVm::new(memory)?)),
        EngineKind::Soft => {
            let mut vm = janus_soft::SoftVm::new(memory, soft_level(model)?);
            if let Some(chip) = irqchip {
                vm.set_interrupt_controllers(chip.clone(), chip);
            }
            Ok(Box::new(vm))
        }
    }
}
