//! What the host offers: hardware assist or not.

use std::path::Path;

/// The loaded KVM module that uses hardware virtualization (`kvm_intel` or `kvm_amd`), if any.
pub fn hardware_assist() -> Option<&'static str> {
    ["kvm_intel", "kvm_amd"]
        .into_iter()
        .find(|m| Path::new("/sys/module").join(m).exists())
}

/// Every loaded module whose name starts with `kvm` (for example `kvm`, `kvm_pvm`).
pub fn kvm_modules() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/module")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("kvm"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
