//! x87 floating-point instructions.

use super::{Handler, Insn};

/// The handler for `insn` if it belongs to this group.
pub fn handler(_insn: &mut Insn) -> Option<Handler> {
    None
}
