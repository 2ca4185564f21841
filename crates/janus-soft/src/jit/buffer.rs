//! Executable memory for translated code: one mapping, filled front to back. When it is full
//! the translator drops every translation and starts over (as QEMU's TCG flushes its buffer);
//! translations of invalidated blocks simply become unreachable until then.

/// An executable buffer allocated with mmap.
pub struct CodeBuffer {
    base: *mut u8,
    size: usize,
    used: usize,
}

// SAFETY: the mapping is owned by this struct and only used by the vCPU thread that owns the
// translator.
unsafe impl Send for CodeBuffer {}

impl CodeBuffer {
    /// Maps `size` bytes readable, writable and executable.
    pub fn new(size: usize) -> std::io::Result<CodeBuffer> {
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(CodeBuffer {
            base: p.cast(),
            size,
            used: 0,
        })
    }

    /// Where the next `emit` will place its code.
    pub fn cursor(&self) -> usize {
        self.base as usize + self.used
    }

    /// Room left.
    pub fn free(&self) -> usize {
        self.size - self.used
    }

    /// Copies `code` in (16-byte aligned) and returns its address, or `None` when full.
    pub fn emit(&mut self, code: &[u8]) -> Option<*const u8> {
        let start = self.used.next_multiple_of(16);
        if start + code.len() > self.size {
            return None;
        }
        // SAFETY: `start + code.len() <= size`, so the copy stays inside the mapping, which
        // nothing executes while it is written (the vCPU thread is translating).
        let dst = unsafe { self.base.add(start) };
        // SAFETY: source and destination are valid for `code.len()` bytes and do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), dst, code.len()) };
        self.used = start + code.len();
        Some(dst)
    }

    /// Forgets everything after the first `keep` bytes (the permanent stubs at the start).
    pub fn reset_to(&mut self, keep: usize) {
        self.used = keep.min(self.used);
    }

    /// Bytes used, including the permanent stubs.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Whether `addr` lies inside the buffer.
    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.base as usize && addr < self.base as usize + self.size
    }
}

impl Drop for CodeBuffer {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` created; no translated code runs after the
        // translator is dropped.
        unsafe {
            libc::munmap(self.base.cast(), self.size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_aligned_and_stops_when_full() {
        let mut b = CodeBuffer::new(4096).unwrap();
        let a = b.emit(&[0xc3]).unwrap();
        assert_eq!(a as usize % 16, 0);
        let c = b.emit(&[0x90, 0xc3]).unwrap();
        assert_eq!(c as usize - a as usize, 16);
        assert!(b.contains(c as usize + 1));
        assert!(b.emit(&[0u8; 4096]).is_none());
        b.reset_to(16);
        assert_eq!(b.used(), 16);
        assert!(b.emit(&[0u8; 4000]).is_some());
    }

    #[test]
    fn runs_what_it_holds() {
        let mut b = CodeBuffer::new(4096).unwrap();
        // mov eax, 42; ret
        let f = b.emit(&[0xb8, 42, 0, 0, 0, 0xc3]).unwrap();
        // SAFETY: the bytes are a complete function with the C ABI: they set EAX and return.
        let f: extern "C" fn() -> u32 = unsafe { std::mem::transmute(f) };
        assert_eq!(f(), 42);
    }
}
