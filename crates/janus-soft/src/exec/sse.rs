//! SSE, SSE2 and MMX instructions, LDMXCSR/STMXCSR, FXSAVE/FXRSTOR.

use super::{Handler, Insn};

/// The handler for `insn` if it belongs to this group.
pub fn handler(_insn: &mut Insn) -> Option<Handler> {
    None
}
