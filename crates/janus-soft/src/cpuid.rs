//! The CPUID table of the soft CPU: exactly the features it implements.

use janus_engine::CpuidEntry;

/// Leaf 1 EDX features implemented.
const L1_EDX: u32 = (1 << 0) // FPU
    | (1 << 2)  // DE
    | (1 << 3)  // PSE
    | (1 << 4)  // TSC
    | (1 << 5)  // MSR
    | (1 << 6)  // PAE
    | (1 << 7)  // MCE (none is ever raised)
    | (1 << 8)  // CX8
    | (1 << 9)  // APIC (the platform's local APIC)
    | (1 << 11) // SEP
    | (1 << 12) // MTRR
    | (1 << 13) // PGE
    | (1 << 14) // MCA (MCG_CAP: no banks)
    | (1 << 15) // CMOV
    | (1 << 16) // PAT
    | (1 << 19) // CLFSH
    | (1 << 23) // MMX
    | (1 << 24) // FXSR
    | (1 << 25) // SSE
    | (1 << 26); // SSE2

/// Leaf 0x8000_0001 EDX: SYSCALL, NX, 1 GiB pages, RDTSCP, long mode.
const X1_EDX: u32 = (1 << 11) | (1 << 20) | (1 << 26) | (1 << 27) | (1 << 29);
/// Leaf 0x8000_0001 ECX: LAHF/SAHF in 64-bit mode.
const X1_ECX: u32 = 1;

/// Leaf 1 ECX features of every level: CMPXCHG16B, POPCNT.
const L1_ECX: u32 = (1 << 13) | (1 << 23);
/// Leaf 1 ECX features `v2` adds: SSE3, SSSE3, SSE4.1, SSE4.2.
const L1_ECX_V2: u32 = SSE3 | SSSE3 | SSE4_1 | SSE4_2;
/// Leaf 1 ECX features `v3` adds: FMA, MOVBE, XSAVE, AVX, F16C (OSXSAVE follows CR4).
const L1_ECX_V3: u32 = FMA | MOVBE | XSAVE | AVX | F16C;
/// Leaf 7 EBX features `v3` adds: BMI1, AVX2, BMI2.
const L7_EBX_V3: u32 = BMI1 | AVX2 | BMI2;
/// Leaf 0x8000_0001 ECX features `v3` adds: LZCNT.
const X1_ECX_V3: u32 = LZCNT;

pub const SSE3: u32 = 1 << 0;
pub const SSSE3: u32 = 1 << 9;
pub const FMA: u32 = 1 << 12;
pub const SSE4_1: u32 = 1 << 19;
pub const SSE4_2: u32 = 1 << 20;
pub const MOVBE: u32 = 1 << 22;
pub const XSAVE: u32 = 1 << 26;
pub const OSXSAVE: u32 = 1 << 27;
pub const AVX: u32 = 1 << 28;
pub const F16C: u32 = 1 << 29;
pub const BMI1: u32 = 1 << 3;
pub const AVX2: u32 = 1 << 5;
pub const BMI2: u32 = 1 << 8;
pub const LZCNT: u32 = 1 << 5;

/// XCR0 bits the soft CPU supports at `v3`: x87, SSE and AVX state.
pub const XCR0_V3: u64 = 0b111;
/// XSAVE area: the legacy region and header, and the AVX component (YMM_Hi128) after them.
pub const XSAVE_AVX_OFFSET: u32 = 576;
pub const XSAVE_AVX_SIZE: u32 = 256;

/// The x86-64 micro-architecture level the soft CPU presents (`--cpu`): `V1` is the
/// baseline (SSE2, with CMPXCHG16B, POPCNT and LAHF/SAHF in 64-bit mode), `V2` adds SSE3,
/// SSSE3, SSE4.1 and SSE4.2, `V3` adds AVX, AVX2, BMI1, BMI2, FMA, F16C, LZCNT, MOVBE and
/// XSAVE with the YMM state. The engine runs what a level adds on the host's own vector unit,
/// so a level is offered only where the host has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    V1,
    V2,
    V3,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 3] = [Level::V1, Level::V2, Level::V3];

    pub fn name(self) -> &'static str {
        match self {
            Level::V1 => "v1",
            Level::V2 => "v2",
            Level::V3 => "v3",
        }
    }

    /// The host CPU (and its kernel, for the AVX state) runs every instruction the level
    /// adds.
    pub fn host_runs(self) -> bool {
        use std::arch::is_x86_feature_detected as has;
        let v2 =
            has!("sse3") && has!("ssse3") && has!("sse4.1") && has!("sse4.2") && has!("popcnt");
        let v3 = has!("avx")
            && has!("avx2")
            && has!("bmi1")
            && has!("bmi2")
            && has!("fma")
            && has!("f16c")
            && has!("lzcnt")
            && has!("movbe")
            && has!("xsave");
        match self {
            Level::V1 => true,
            Level::V2 => v2,
            Level::V3 => v2 && v3,
        }
    }

    /// The highest level the host runs: the soft engine's default.
    pub fn host_max() -> Level {
        *Level::ALL
            .iter()
            .rev()
            .find(|l| l.host_runs())
            .unwrap_or(&Level::V1)
    }

    fn leaf1_ecx(self) -> u32 {
        match self {
            Level::V1 => L1_ECX,
            Level::V2 => L1_ECX | L1_ECX_V2,
            Level::V3 => L1_ECX | L1_ECX_V2 | L1_ECX_V3,
        }
    }

    fn leaf7_ebx(self) -> u32 {
        if self >= Level::V3 {
            L7_EBX_V3
        } else {
            0
        }
    }

    fn ext_ecx(self) -> u32 {
        if self >= Level::V3 {
            X1_ECX | X1_ECX_V3
        } else {
            X1_ECX
        }
    }
}

/// Instruction-set extensions beyond the baseline that a CPUID table advertises: what the
/// decoder lets the guest execute (the rest raise #UD, as on a CPU without them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isa {
    /// CPUID.1:ECX bits among the `v2` and `v3` ones.
    pub leaf1_ecx: u32,
    /// CPUID.7.0:EBX bits among BMI1, AVX2, BMI2.
    pub leaf7_ebx: u32,
    /// CPUID.8000_0001:ECX's LZCNT.
    pub ext_ecx: u32,
}

impl Isa {
    /// Everything the engine implements.
    pub const ALL: Isa = Isa {
        leaf1_ecx: L1_ECX_V2 | L1_ECX_V3,
        leaf7_ebx: L7_EBX_V3,
        ext_ecx: X1_ECX_V3,
    };

    /// What `table` advertises.
    pub fn from_cpuid(table: &[CpuidEntry]) -> Isa {
        let (_, _, ecx, _) = query(table, 1, 0);
        let max = query(table, 0, 0).0;
        let l7 = if max >= 7 { query(table, 7, 0).1 } else { 0 };
        let x1 = query(table, 0x8000_0001, 0).2;
        Isa {
            leaf1_ecx: ecx & (L1_ECX_V2 | L1_ECX_V3),
            leaf7_ebx: l7 & L7_EBX_V3,
            ext_ecx: x1 & X1_ECX_V3,
        }
    }

    /// XSAVE and the AVX state are advertised.
    pub fn xsave(self) -> bool {
        self.leaf1_ecx & XSAVE != 0
    }

    /// Whether the guest may execute `i` (every extension it belongs to is advertised).
    pub fn allows(self, i: &iced_x86::Instruction) -> bool {
        use iced_x86::CpuidFeature as F;
        i.cpuid_features().iter().all(|f| {
            let (word, bit) = match f {
                F::SSE3 => (self.leaf1_ecx, SSE3),
                F::SSSE3 => (self.leaf1_ecx, SSSE3),
                F::SSE4_1 => (self.leaf1_ecx, SSE4_1),
                F::SSE4_2 => (self.leaf1_ecx, SSE4_2),
                F::FMA => (self.leaf1_ecx, FMA),
                F::MOVBE => (self.leaf1_ecx, MOVBE),
                F::XSAVE | F::XSAVEOPT => (self.leaf1_ecx, XSAVE),
                F::AVX => (self.leaf1_ecx, AVX),
                F::F16C => (self.leaf1_ecx, F16C),
                F::BMI1 => (self.leaf7_ebx, BMI1),
                F::AVX2 => (self.leaf7_ebx, AVX2),
                F::BMI2 => (self.leaf7_ebx, BMI2),
                F::LZCNT => (self.ext_ecx, LZCNT),
                _ => return true,
            };
            word & bit != 0
        })
    }
}

fn leaf(function: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuidEntry {
    CpuidEntry {
        function,
        index: 0,
        indexed: false,
        eax,
        ebx,
        ecx,
        edx,
    }
}

fn indexed(function: u32, index: u32, [eax, ebx, ecx, edx]: [u32; 4]) -> CpuidEntry {
    CpuidEntry {
        function,
        index,
        indexed: true,
        eax,
        ebx,
        ecx,
        edx,
    }
}

fn regs(s: &[u8; 16]) -> [u32; 4] {
    std::array::from_fn(|i| {
        u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]])
    })
}

/// The soft CPU's CPUID leaves, before the mode policy adds or hides hypervisor leaves.
/// `tsc_hz` is reported through leaf 0x15 (TSC/crystal ratio) and 0x16 (base MHz).
pub fn supported(tsc_hz: u64, level: Level) -> Vec<CpuidEntry> {
    let vendor = b"GenuineIntel";
    let v = |i: usize| u32::from_le_bytes([vendor[i], vendor[i + 1], vendor[i + 2], vendor[i + 3]]);
    // Family 6, model 15, stepping 11 (a Core 2): old enough that Linux applies no
    // model-specific quirks, new enough for x86-64.
    let signature = (6 << 8) | (0xf << 4) | 0xb;
    // CLFLUSH line 8*8 bytes, one logical processor, APIC ID 0 (the policy sets it).
    let l1_ebx = (8 << 8) | (1 << 16);
    let mut brand = [0u8; 48];
    let name = b"Janus soft x86-64 CPU";
    brand[..name.len()].copy_from_slice(name);
    let b: Vec<[u32; 4]> = brand
        .chunks(16)
        .map(|c| regs(c.try_into().unwrap_or(&[0; 16])))
        .collect();
    let mhz = (tsc_hz / 1_000_000) as u32;
    // The "crystal" of leaf 0x15 is the local APIC timer's input clock, as Linux assumes.
    let crystal = janus_abi::pc::LAPIC_TIMER_HZ as u32;
    let mut table = vec![
        leaf(0, 0x16, v(0), v(8), v(4)),
        leaf(1, signature, l1_ebx, level.leaf1_ecx(), L1_EDX),
        // EDX[29]: IA32_ARCH_CAPABILITIES, which says the CPU has none of the speculative
        // execution flaws Linux mitigates (`msr::ARCH_CAPABILITIES`).
        indexed(7, 0, [0, level.leaf7_ebx(), 0, 1 << 29]),
        // TSC = crystal * EBX / EAX. Linux multiplies the crystal's kHz by EBX in 32 bits, so
        // the ratio goes in thousandths, as small as real CPUs report it.
        leaf(
            0x15,
            1000,
            (tsc_hz * 1000 / crystal as u64) as u32,
            crystal,
            0,
        ),
        leaf(0x16, mhz, mhz, 0, 0),
    ];
    if level >= Level::V3 {
        // XSAVE: x87, SSE and AVX state (EBX, the size for the XCR0 set now, is filled in
        // by CPUID itself); XSAVEOPT; the AVX component's size and offset.
        let full = XSAVE_AVX_OFFSET + XSAVE_AVX_SIZE;
        table.push(indexed(0xd, 0, [XCR0_V3 as u32, full, full, 0]));
        table.push(indexed(0xd, 1, [1, 0, 0, 0]));
        table.push(indexed(0xd, 2, [XSAVE_AVX_SIZE, XSAVE_AVX_OFFSET, 0, 0]));
    }
    table.extend([
        leaf(0x8000_0000, 0x8000_0008, 0, 0, 0),
        leaf(0x8000_0001, 0, 0, level.ext_ecx(), X1_EDX),
        leaf(0x8000_0002, b[0][0], b[0][1], b[0][2], b[0][3]),
        leaf(0x8000_0003, b[1][0], b[1][1], b[1][2], b[1][3]),
        leaf(0x8000_0004, b[2][0], b[2][1], b[2][2], b[2][3]),
        // Invariant TSC.
        leaf(0x8000_0007, 0, 0, 0, 1 << 8),
        // 40 physical, 48 linear address bits.
        leaf(0x8000_0008, (48 << 8) | crate::mmu::PHYS_BITS, 0, 0, 0),
    ]);
    table
}

/// Answers CPUID for EAX=`function`, ECX=`index` from `table`, as Intel CPUs do for leaves
/// outside the table: a basic leaf above the maximum returns the highest basic leaf.
pub fn query(table: &[CpuidEntry], function: u32, index: u32) -> (u32, u32, u32, u32) {
    let find = |f: u32| janus_engine::cpuid::lookup(table, f, index);
    if let Some(e) = find(function) {
        return (e.eax, e.ebx, e.ecx, e.edx);
    }
    let max_basic = find(0).map_or(0, |e| e.eax);
    if function < 0x4000_0000 && function > max_basic {
        if let Some(e) = find(max_basic) {
            return (e.eax, e.ebx, e.ecx, e.edx);
        }
    }
    (0, 0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_and_features() {
        let t = supported(2_600_000_000, Level::V1);
        let (a, b, c, d) = query(&t, 0, 0);
        assert_eq!(a, 0x16);
        let mut v = Vec::new();
        for r in [b, d, c] {
            v.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&v, b"GenuineIntel");
        let (_, _, _, edx) = query(&t, 0x8000_0001, 0);
        assert_ne!(edx & (1 << 29), 0, "long mode");
        let (a, b, c, _) = query(&t, 0x15, 0);
        assert_eq!(c as u64 * b as u64 / a as u64, 2_600_000_000);
        assert_eq!(query(&t, 0x4000_0000, 0), (0, 0, 0, 0));
    }

    #[test]
    fn levels_gate_instructions() {
        let pshufb = iced_x86::Decoder::new(64, &[0x66, 0x0f, 0x38, 0x00, 0xc1], 0).decode();
        let paddb = iced_x86::Decoder::new(64, &[0x66, 0x0f, 0xfc, 0xc1], 0).decode();
        let v1 = Isa::from_cpuid(&supported(1_000_000_000, Level::V1));
        let v2 = Isa::from_cpuid(&supported(1_000_000_000, Level::V2));
        assert!(!v1.allows(&pshufb) && v1.allows(&paddb));
        assert!(v2.allows(&pshufb) && v2.allows(&paddb));
        let vpshufb = iced_x86::Decoder::new(64, &[0xc4, 0xe2, 0x75, 0x00, 0xc2], 0).decode();
        let andn = iced_x86::Decoder::new(64, &[0xc4, 0xe2, 0x70, 0xf2, 0xc2], 0).decode();
        let v3 = Isa::from_cpuid(&supported(1_000_000_000, Level::V3));
        assert!(!v2.allows(&vpshufb) && !v2.allows(&andn));
        assert!(v3.allows(&vpshufb) && v3.allows(&andn) && v3.allows(&pshufb));
        assert_eq!(v3, Isa::ALL);
        assert!(v3.xsave() && !v2.xsave());
        let (_, _, ecx, _) = query(&supported(1_000_000_000, Level::V2), 1, 0);
        assert_eq!(
            ecx & (SSE3 | SSSE3 | SSE4_1 | SSE4_2),
            SSE3 | SSSE3 | SSE4_1 | SSE4_2
        );
    }
}
