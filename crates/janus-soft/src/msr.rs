//! Model-specific registers: the ones an x86-64 OS reads and writes. Any other index raises
//! #GP, as on hardware (Linux probes optional MSRs with the exception-safe accessors).

use crate::core::{Cpu, Fault, Stop};
use crate::cpu::{FS, GS};
use janus_engine::cpu::bits;

pub const TSC: u32 = 0x10;
pub const APIC_BASE: u32 = 0x1b;
/// IA32_PLATFORM_ID: Intel's microcode loader reads it.
pub const PLATFORM_ID: u32 = 0x17;
pub const FEATURE_CONTROL: u32 = 0x3a;
pub const BIOS_SIGN_ID: u32 = 0x8b;
pub const MTRRCAP: u32 = 0xfe;
/// IA32_ARCH_CAPABILITIES (read-only).
pub const ARCH_CAPABILITIES: u32 = 0x10a;

/// What IA32_ARCH_CAPABILITIES reports: not susceptible to Meltdown (RDCL_NO), speculative
/// store bypass, MDS, TAA, the MMIO stale-data flaws (SBDR_SSDP_NO, FBSDP_NO, PSDP_NO),
/// post-barrier RSB predictions, GDS or RFDS, and no L1D flush needed (SKIP_L1DFL_VMENTRY) or
/// machine check on page-size changes (PSCHANGE_MC_NO). These are facts about the soft CPU:
/// it checks a page's permissions before every access (a user-mode access only ever finds
/// user pages in the TLB set it probes, so separate kernel page tables protect nothing more),
/// and it has no fill, store or load-port buffers of its own for VERW to clear. Linux then
/// spends nothing on page-table isolation or buffer clearing, as on a CPU without the flaws.
const ARCH_CAPABILITIES_VALUE: u64 = 1 // RDCL_NO
    | 1 << 3  // SKIP_L1DFL_VMENTRY
    | 1 << 4  // SSB_NO
    | 1 << 5  // MDS_NO
    | 1 << 6  // PSCHANGE_MC_NO
    | 1 << 8  // TAA_NO
    | 1 << 13 // SBDR_SSDP_NO
    | 1 << 14 // FBSDP_NO
    | 1 << 15 // PSDP_NO
    | 1 << 24 // PBRSB_NO
    | 1 << 26 // GDS_NO
    | 1 << 27; // RFDS_NO
pub const SYSENTER_CS: u32 = 0x174;
pub const SYSENTER_ESP: u32 = 0x175;
pub const SYSENTER_EIP: u32 = 0x176;
pub const MCG_CAP: u32 = 0x179;
pub const MCG_STATUS: u32 = 0x17a;
pub const MISC_ENABLE: u32 = 0x1a0;
pub const PAT: u32 = 0x277;
pub const MTRR_DEF_TYPE: u32 = 0x2ff;
pub const TSC_DEADLINE: u32 = 0x6e0;
pub const EFER: u32 = 0xc000_0080;
pub const STAR: u32 = 0xc000_0081;
pub const LSTAR: u32 = 0xc000_0082;
pub const CSTAR: u32 = 0xc000_0083;
pub const SFMASK: u32 = 0xc000_0084;
pub const FS_BASE: u32 = 0xc000_0100;
pub const GS_BASE: u32 = 0xc000_0101;
pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
pub const TSC_AUX: u32 = 0xc000_0103;

/// Fixed-range MTRR indices, in the order `Msrs::mtrr_fixed` keeps them.
const MTRR_FIXED: [u32; 11] = [
    0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,
];

/// EFER bits software can set: SCE, LME, NXE (LMA follows CR0.PG).
const EFER_WRITABLE: u64 = bits::EFER_SCE | bits::EFER_LME | bits::EFER_NXE;

fn canonical(v: u64) -> bool {
    ((v as i64) << 16) >> 16 == v as i64
}

pub fn read(cpu: &mut Cpu, index: u32) -> Result<u64, Stop> {
    if let Some(v) = cpu.intc.as_ref().and_then(|c| c.read_msr(index)) {
        return Ok(v);
    }
    if let Some(v) = cpu.msr_handler.as_ref().and_then(|h| h.read_msr(index)) {
        return Ok(v);
    }
    let m = &cpu.r.msr;
    Ok(match index {
        TSC => crate::exec::system::guest_tsc(cpu),
        APIC_BASE => m.apic_base,
        FEATURE_CONTROL => 1, // locked, VMX off
        BIOS_SIGN_ID | PLATFORM_ID => 0,
        MTRRCAP => 0x508, // 8 variable ranges, fixed ranges, write-combining
        ARCH_CAPABILITIES => ARCH_CAPABILITIES_VALUE,
        SYSENTER_CS => m.sysenter_cs,
        SYSENTER_ESP => m.sysenter_esp,
        SYSENTER_EIP => m.sysenter_eip,
        MCG_CAP | MCG_STATUS => 0,
        MISC_ENABLE => m.misc_enable,
        PAT => m.pat,
        MTRR_DEF_TYPE => m.mtrr_def_type,
        0x200..=0x20f => m.mtrr_var[(index - 0x200) as usize],
        TSC_DEADLINE => m.tsc_deadline,
        EFER => cpu.r.efer,
        STAR => m.star,
        LSTAR => m.lstar,
        CSTAR => m.cstar,
        SFMASK => m.sfmask,
        FS_BASE => cpu.r.seg[FS].base,
        GS_BASE => cpu.r.seg[GS].base,
        KERNEL_GS_BASE => m.kernel_gs_base,
        TSC_AUX => m.tsc_aux,
        i => match MTRR_FIXED.iter().position(|&f| f == i) {
            Some(k) => m.mtrr_fixed[k],
            None => return Err(unknown(cpu, i, "read")),
        },
    })
}

pub fn write(cpu: &mut Cpu, index: u32, v: u64) -> Result<(), Stop> {
    let gp = || Err(Fault::gp(0).into());
    let owner = cpu
        .intc
        .as_ref()
        .and_then(|c| c.write_msr(index, v))
        .or_else(|| cpu.msr_handler.as_ref().and_then(|h| h.write_msr(index, v)));
    match owner {
        Some(true) => return Ok(()),
        Some(false) => return gp(),
        None => {}
    }
    match index {
        TSC => {
            cpu.tsc.set(v);
            if let Some(h) = &cpu.msr_handler {
                h.tsc_changed();
            }
        }
        APIC_BASE => {
            if v & 0xfff & !((1 << 8) | (1 << 10) | (1 << 11)) != 0 {
                return gp();
            }
            cpu.r.msr.apic_base = v;
        }
        FEATURE_CONTROL | BIOS_SIGN_ID | MCG_STATUS => {}
        SYSENTER_CS => cpu.r.msr.sysenter_cs = v & 0xffff,
        SYSENTER_ESP | SYSENTER_EIP if !canonical(v) => return gp(),
        SYSENTER_ESP => cpu.r.msr.sysenter_esp = v,
        SYSENTER_EIP => cpu.r.msr.sysenter_eip = v,
        MISC_ENABLE => cpu.r.msr.misc_enable = v,
        PAT => {
            // Each of the 8 entries must be a valid memory type (0, 1, 4, 5, 6, 7).
            if (0..8).any(|i| matches!((v >> (i * 8)) & 0xff, 2 | 3 | 8..=0xff)) {
                return gp();
            }
            cpu.r.msr.pat = v;
        }
        MTRR_DEF_TYPE => cpu.r.msr.mtrr_def_type = v,
        0x200..=0x20f => cpu.r.msr.mtrr_var[(index - 0x200) as usize] = v,
        TSC_DEADLINE => cpu.r.msr.tsc_deadline = v,
        EFER => {
            if v & !(EFER_WRITABLE | bits::EFER_LMA) != 0 {
                return gp();
            }
            let old = cpu.r.efer;
            // LME cannot change while paging is on.
            if cpu.r.paging() && (old ^ v) & bits::EFER_LME != 0 {
                return gp();
            }
            cpu.r.efer = (v & EFER_WRITABLE) | (old & bits::EFER_LMA);
            if (old ^ cpu.r.efer) & bits::EFER_NXE != 0 {
                cpu.tlb.flush_all();
            }
        }
        STAR => cpu.r.msr.star = v,
        LSTAR | CSTAR if !canonical(v) => return gp(),
        LSTAR => cpu.r.msr.lstar = v,
        CSTAR => cpu.r.msr.cstar = v,
        SFMASK => cpu.r.msr.sfmask = v & 0xffff_ffff,
        FS_BASE | GS_BASE | KERNEL_GS_BASE if !canonical(v) => return gp(),
        FS_BASE => cpu.r.seg[FS].base = v,
        GS_BASE => cpu.r.seg[GS].base = v,
        KERNEL_GS_BASE => cpu.r.msr.kernel_gs_base = v,
        TSC_AUX => cpu.r.msr.tsc_aux = v & 0xffff_ffff,
        i => match MTRR_FIXED.iter().position(|&f| f == i) {
            Some(k) => cpu.r.msr.mtrr_fixed[k] = v,
            None => return Err(unknown(cpu, i, "write")),
        },
    }
    Ok(())
}

/// An MSR Janus does not implement: #GP, logged once per index.
fn unknown(cpu: &mut Cpu, index: u32, what: &str) -> Stop {
    let key = format!("msr {what} {index:#x}");
    let n = cpu.stats.unimplemented.entry(key).or_insert(0);
    *n += 1;
    if *n == 1 {
        tracing::debug!("soft engine: {what} of MSR {index:#x}: not implemented, #GP");
    }
    Fault::gp(0).into()
}
