//! Between Janus's engine-neutral types and KVM's structures.

use janus_engine::cpu::gpr;
use janus_engine::{CpuState, CpuidEntry, DescriptorTable, Segment};
use kvm_bindings::{
    kvm_cpuid_entry2, kvm_dtable, kvm_regs, kvm_segment, kvm_sregs, KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
};

pub fn cpuid_from_kvm(e: &kvm_cpuid_entry2) -> CpuidEntry {
    CpuidEntry {
        function: e.function,
        index: e.index,
        indexed: e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX != 0,
        eax: e.eax,
        ebx: e.ebx,
        ecx: e.ecx,
        edx: e.edx,
    }
}

pub fn cpuid_to_kvm(e: &CpuidEntry) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function: e.function,
        index: e.index,
        flags: if e.indexed {
            KVM_CPUID_FLAG_SIGNIFCANT_INDEX
        } else {
            0
        },
        eax: e.eax,
        ebx: e.ebx,
        ecx: e.ecx,
        edx: e.edx,
        ..Default::default()
    }
}

fn seg_to_kvm(s: &Segment) -> kvm_segment {
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present as u8,
        dpl: s.dpl,
        db: s.db as u8,
        s: s.s as u8,
        l: s.l as u8,
        g: s.g as u8,
        avl: s.avl as u8,
        unusable: s.unusable as u8,
        padding: 0,
    }
}

fn seg_from_kvm(s: &kvm_segment) -> Segment {
    Segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present != 0,
        dpl: s.dpl,
        db: s.db != 0,
        s: s.s != 0,
        l: s.l != 0,
        g: s.g != 0,
        avl: s.avl != 0,
        unusable: s.unusable != 0,
    }
}

fn dt_to_kvm(d: &DescriptorTable) -> kvm_dtable {
    kvm_dtable {
        base: d.base,
        limit: d.limit,
        ..Default::default()
    }
}

pub fn regs_to_kvm(s: &CpuState) -> kvm_regs {
    let g = &s.gprs;
    kvm_regs {
        rax: g[gpr::RAX],
        rbx: g[gpr::RBX],
        rcx: g[gpr::RCX],
        rdx: g[gpr::RDX],
        rsi: g[gpr::RSI],
        rdi: g[gpr::RDI],
        rsp: g[gpr::RSP],
        rbp: g[gpr::RBP],
        r8: g[8],
        r9: g[9],
        r10: g[10],
        r11: g[11],
        r12: g[12],
        r13: g[13],
        r14: g[14],
        r15: g[15],
        rip: s.rip,
        rflags: s.rflags,
    }
}

/// Fills `sregs` (read from KVM first, so fields Janus does not model, like the APIC base and
/// the interrupt bitmap, keep KVM's values).
pub fn sregs_to_kvm(s: &CpuState, sregs: &mut kvm_sregs) {
    sregs.cs = seg_to_kvm(&s.cs);
    sregs.ds = seg_to_kvm(&s.ds);
    sregs.es = seg_to_kvm(&s.es);
    sregs.fs = seg_to_kvm(&s.fs);
    sregs.gs = seg_to_kvm(&s.gs);
    sregs.ss = seg_to_kvm(&s.ss);
    sregs.tr = seg_to_kvm(&s.tr);
    sregs.ldt = seg_to_kvm(&s.ldt);
    sregs.gdt = dt_to_kvm(&s.gdt);
    sregs.idt = dt_to_kvm(&s.idt);
    sregs.cr0 = s.cr0;
    sregs.cr2 = s.cr2;
    sregs.cr3 = s.cr3;
    sregs.cr4 = s.cr4;
    sregs.cr8 = s.cr8;
    sregs.efer = s.efer;
}

pub fn state_from_kvm(r: &kvm_regs, sr: &kvm_sregs) -> CpuState {
    let mut gprs = [0u64; 16];
    gprs[gpr::RAX] = r.rax;
    gprs[gpr::RCX] = r.rcx;
    gprs[gpr::RDX] = r.rdx;
    gprs[gpr::RBX] = r.rbx;
    gprs[gpr::RSP] = r.rsp;
    gprs[gpr::RBP] = r.rbp;
    gprs[gpr::RSI] = r.rsi;
    gprs[gpr::RDI] = r.rdi;
    gprs[8..].copy_from_slice(&[r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15]);
    CpuState {
        gprs,
        rip: r.rip,
        rflags: r.rflags,
        cs: seg_from_kvm(&sr.cs),
        ds: seg_from_kvm(&sr.ds),
        es: seg_from_kvm(&sr.es),
        fs: seg_from_kvm(&sr.fs),
        gs: seg_from_kvm(&sr.gs),
        ss: seg_from_kvm(&sr.ss),
        tr: seg_from_kvm(&sr.tr),
        ldt: seg_from_kvm(&sr.ldt),
        gdt: DescriptorTable {
            base: sr.gdt.base,
            limit: sr.gdt.limit,
        },
        idt: DescriptorTable {
            base: sr.idt.base,
            limit: sr.idt.limit,
        },
        cr0: sr.cr0,
        cr2: sr.cr2,
        cr3: sr.cr3,
        cr4: sr.cr4,
        cr8: sr.cr8,
        efer: sr.efer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_kvm_structs() {
        let mut s = CpuState::power_on();
        for (i, g) in s.gprs.iter_mut().enumerate() {
            *g = 0x1000 + i as u64;
        }
        s.cs.l = true;
        s.cr3 = 0x9000;
        let r = regs_to_kvm(&s);
        let mut sr = kvm_sregs::default();
        sregs_to_kvm(&s, &mut sr);
        assert_eq!(state_from_kvm(&r, &sr), s);
    }

    #[test]
    fn cpuid_round_trips() {
        let e = CpuidEntry {
            function: 7,
            index: 1,
            indexed: true,
            eax: 1,
            ebx: 2,
            ecx: 3,
            edx: 4,
        };
        assert_eq!(cpuid_from_kvm(&cpuid_to_kvm(&e)), e);
    }
}
