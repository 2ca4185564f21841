//! Engine-neutral CPUID table entries.

/// Leaves whose output depends on the sub-leaf index in ECX.
pub const fn leaf_is_indexed(function: u32) -> bool {
    matches!(
        function,
        0x4 | 0x7
            | 0xb
            | 0xd
            | 0xf
            | 0x10
            | 0x12
            | 0x14
            | 0x17
            | 0x18
            | 0x1d
            | 0x1e
            | 0x1f
            | 0x20
            | 0x23
            | 0x24
            | 0x8000_001d
            | 0x8000_0020
            | 0x8000_0026
    )
}

/// One CPUID leaf (and sub-leaf) of a vCPU's table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidEntry {
    pub function: u32,
    pub index: u32,
    /// The output depends on `index`.
    pub indexed: bool,
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

impl CpuidEntry {
    /// Does this entry answer CPUID with EAX=`function`, ECX=`index`?
    pub fn matches(&self, function: u32, index: u32) -> bool {
        self.function == function && (!self.indexed || self.index == index)
    }
}

/// Finds the entry answering EAX=`function`, ECX=`index` in `table`.
pub fn lookup(table: &[CpuidEntry], function: u32, index: u32) -> Option<&CpuidEntry> {
    table.iter().find(|e| e.matches(function, index))
}
