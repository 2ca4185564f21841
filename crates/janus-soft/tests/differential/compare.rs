//! Comparing a native and an engine outcome, and describing a case for a report.

use crate::case::{Approx, Case};
use crate::catalog::Form;
use crate::layout::Layout;
use crate::native::Outcome;
use crate::state::{GPR_NAMES, TESTED_FLAGS};
use iced_x86::{Formatter, Instruction, IntelFormatter};

pub fn vector_name(v: u8) -> String {
    let n = match v {
        0 => "#DE",
        1 => "#DB",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        19 => "#XM",
        _ => "vector",
    };
    format!("{n}({v})")
}

fn fault_text(o: &Outcome) -> String {
    match (&o.failure, o.fault) {
        (Some(f), _) => f.clone(),
        (None, Some(v)) => format!("{} at {:#x} ({})", vector_name(v), o.rip, o.detail),
        (None, None) => "completed".into(),
    }
}

/// The 80-bit value as an ordered integer (sign-magnitude → monotonic), for ULP distances.
fn f80_ordered(b: &[u8; 10]) -> i128 {
    let mant = u64::from_le_bytes(b[..8].try_into().unwrap_or_default()) as i128;
    let se = u16::from_le_bytes([b[8], b[9]]);
    let mag = ((se & 0x7fff) as i128) << 64 | mant;
    if se & 0x8000 != 0 {
        -mag
    } else {
        mag
    }
}

fn f32_ordered(v: u32) -> i64 {
    let mag = (v & 0x7fff_ffff) as i64;
    if v >> 31 != 0 {
        -mag
    } else {
        mag
    }
}

fn close_f80(a: &[u8; 10], b: &[u8; 10]) -> bool {
    a == b || (f80_ordered(a) - f80_ordered(b)).abs() <= 1 << 13
}

fn close_f32_lanes(a: u128, b: u128) -> bool {
    (0..4).all(|k| {
        let (x, y) = ((a >> (32 * k)) as u32, (b >> (32 * k)) as u32);
        x == y || (f32_ordered(x) - f32_ordered(y)).abs() <= 1 << 12
    })
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn f80_text(b: &[u8; 10]) -> String {
    format!(
        "{:04x}:{:016x}",
        u16::from_le_bytes([b[8], b[9]]),
        u64::from_le_bytes(b[..8].try_into().unwrap_or_default())
    )
}

/// Differences between the native (`n`) and engine (`e`) outcomes; empty if they agree.
pub fn compare(case: &Case, lay: &Layout, n: &Outcome, e: &Outcome) -> Vec<String> {
    let mut d = Vec::new();
    if e.failure.is_some() || n.fault != e.fault {
        d.push(format!(
            "outcome: native {} / engine {}",
            fault_text(n),
            fault_text(e)
        ));
        return d;
    }
    if n.fault.is_some() && n.rip != e.rip {
        d.push(format!(
            "fault rip: native {:#x} engine {:#x}",
            n.rip, e.rip
        ));
    }
    for (k, name) in GPR_NAMES.iter().enumerate() {
        if case.ignore_gpr & (1 << k) == 0 && n.gpr[k] != e.gpr[k] {
            d.push(format!(
                "{name}: native {:#x} engine {:#x}",
                n.gpr[k], e.gpr[k]
            ));
        }
    }
    let fm = case.flags_mask & TESTED_FLAGS;
    if (n.rflags ^ e.rflags) & fm != 0 {
        d.push(format!(
            "rflags (compared bits {fm:#x}): native {:#x} engine {:#x} (differ {:#x})",
            n.rflags & fm,
            e.rflags & fm,
            (n.rflags ^ e.rflags) & fm
        ));
    }
    let ignored = |addr: u64| {
        case.ignore_mem
            .iter()
            .any(|(a, l)| addr >= *a && addr < a + l)
    };
    let diffs: Vec<usize> = if n.mem == e.mem {
        Vec::new()
    } else {
        (0..n.mem.len())
            .filter(|&k| n.mem[k] != e.mem[k] && !ignored(lay.data() + k as u64))
            .collect()
    };
    if let (Some(&first), Some(&last)) = (diffs.first(), diffs.last()) {
        let s = first & !15;
        let t = (s + 32).min(n.mem.len());
        d.push(format!(
            "memory: {} bytes differ in {:#x}..={:#x}; at {:#x}: native [{}] engine [{}]",
            diffs.len(),
            lay.data() + first as u64,
            lay.data() + last as u64,
            lay.data() + s as u64,
            hex(&n.mem[s..t]),
            hex(&e.mem[s..t])
        ));
    }
    let (nf, ef) = (&n.fx, &e.fx);
    if nf.fcw() != ef.fcw() {
        d.push(format!(
            "fcw: native {:#06x} engine {:#06x}",
            nf.fcw(),
            ef.fcw()
        ));
    }
    if (nf.fsw() ^ ef.fsw()) & case.fsw_mask != 0 {
        d.push(format!(
            "fsw (compared bits {:#06x}): native {:#06x} engine {:#06x}",
            case.fsw_mask,
            nf.fsw(),
            ef.fsw()
        ));
    }
    if nf.ftw() != ef.ftw() {
        d.push(format!(
            "ftw: native {:#04x} engine {:#04x}",
            nf.ftw(),
            ef.ftw()
        ));
    }
    for k in 0..8 {
        let (a, b) = (nf.st(k), ef.st(k));
        let same = match case.approx {
            Approx::X87Transcendental => close_f80(&a, &b),
            _ => a == b,
        };
        if !same {
            d.push(format!(
                "st{k}: native {} engine {}",
                f80_text(&a),
                f80_text(&b)
            ));
        }
    }
    if nf.mxcsr() != ef.mxcsr() {
        d.push(format!(
            "mxcsr: native {:#x} engine {:#x}",
            nf.mxcsr(),
            ef.mxcsr()
        ));
    }
    for k in 0..16 {
        let (a, b) = (nf.xmm(k), ef.xmm(k));
        let same = match case.approx {
            Approx::F32Estimate => close_f32_lanes(a, b),
            _ => a == b,
        };
        if !same {
            d.push(format!("xmm{k}: native {a:#034x} engine {b:#034x}"));
        }
    }
    for k in 0..16 {
        let (a, b) = (n.ymmh[k], e.ymmh[k]);
        let same = match case.approx {
            Approx::F32Estimate => close_f32_lanes(a, b),
            _ => a == b,
        };
        if !same {
            d.push(format!(
                "ymm{k} upper half: native {a:#034x} engine {b:#034x}"
            ));
        }
    }
    d
}

pub fn format_instr(i: &Instruction) -> String {
    let mut f = IntelFormatter::new();
    f.options_mut().set_show_useless_prefixes(true);
    let mut s = String::new();
    f.format(i, &mut s);
    s
}

/// A report of one mismatching case.
pub fn describe(form: &Form, case: &Case, lay: &Layout, diffs: &[String]) -> String {
    let st = &case.state;
    let mut s = format!(
        "{:?} ({}): `{}`\n  body @{:#x}: {}\n",
        form.code,
        form.family.name(),
        format_instr(&case.instr),
        case.at,
        hex(&case.body)
    );
    if let Some(nb) = &case.native_body {
        s += &format!("  natively run as: {}\n", hex(nb));
    }
    s += "  input:";
    for (k, name) in GPR_NAMES.iter().enumerate() {
        if k % 4 == 0 {
            s += "\n   ";
        }
        s += &format!(" {name:>3}={:#018x}", st.gpr[k]);
    }
    s += &format!("\n    rflags={:#x}", st.rflags | 0x202);
    if let Some(a) = case.ea {
        let off = a.wrapping_sub(lay.data()) as usize;
        if off < st.mem.len() {
            let t = (off + 32).min(st.mem.len());
            s += &format!("\n    [{a:#x}]: {}", hex(&st.mem[off..t]));
        } else {
            s += &format!("\n    [{a:#x}]: (outside the compared area)");
        }
    }
    let fx = &st.fx;
    s += &format!(
        "\n    fcw={:#06x} fsw={:#06x} ftw={:#04x} mxcsr={:#x}",
        fx.fcw(),
        fx.fsw(),
        fx.ftw(),
        fx.mxcsr()
    );
    if matches!(
        form.family,
        crate::catalog::Family::X87 | crate::catalog::Family::Sse | crate::catalog::Family::Avx
    ) {
        for k in 0..8 {
            s += &format!("\n    st{k}={}", f80_text(&fx.st(k)));
        }
        for k in 0..16 {
            s += &format!("\n    xmm{k}={:#034x}", fx.xmm(k));
        }
    }
    if form.family == crate::catalog::Family::Avx {
        for k in 0..16 {
            s += &format!("\n    ymm{k}[255:128]={:#034x}", st.ymmh[k]);
        }
    }
    s += "\n  differences:";
    for x in diffs {
        s += &format!("\n    {x}");
    }
    s
}
