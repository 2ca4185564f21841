//! Executable memory for translated code: one buffer, filled front to back. When it is full
//! the translator drops every translation and starts over (as QEMU's TCG flushes its buffer);
//! translations of invalidated blocks simply become unreachable until then.
//!
//! W^X: the buffer is one memfd mapped twice, writable at one address and executable at
//! another ([`DualMap`]), so no page of the process is writable and executable at once. Code
//! is written (and patched) through the writable view and runs from the executable one.

/// One memfd mapped twice: read-write at `write`, read-execute at `exec`.
pub struct DualMap {
    write: *mut u8,
    exec: *mut u8,
    size: usize,
}

// SAFETY: the mappings are owned by this struct; its owner decides who writes through them.
unsafe impl Send for DualMap {}
// SAFETY: as above; shared references only read the addresses.
unsafe impl Sync for DualMap {}

impl DualMap {
    /// Maps a new memfd of `size` bytes (pages are allocated as they are written).
    pub fn new(size: usize, name: &std::ffi::CStr) -> std::io::Result<DualMap> {
        let err = std::io::Error::last_os_error;
        // SAFETY: `name` is NUL-terminated; the result is checked.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(err());
        }
        let map = |prot| {
            // SAFETY: a shared mapping of the whole memfd with no address hint; checked.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    size,
                    prot,
                    libc::MAP_SHARED | libc::MAP_NORESERVE,
                    fd,
                    0,
                )
            };
            (p != libc::MAP_FAILED).then_some(p.cast::<u8>())
        };
        // SAFETY: `fd` is the memfd just created.
        let sized = unsafe { libc::ftruncate(fd, size as libc::off_t) } == 0;
        let e = err();
        let (w, x) = if sized {
            (
                map(libc::PROT_READ | libc::PROT_WRITE),
                map(libc::PROT_READ | libc::PROT_EXEC),
            )
        } else {
            (None, None)
        };
        let e = if sized { err() } else { e };
        // SAFETY: the mappings keep the memory; the descriptor is no longer needed.
        unsafe { libc::close(fd) };
        match (w, x) {
            (Some(write), Some(exec)) => Ok(DualMap { write, exec, size }),
            (w, x) => {
                for p in [w, x].into_iter().flatten() {
                    // SAFETY: unmaps a mapping made just above.
                    unsafe { libc::munmap(p.cast(), size) };
                }
                Err(e)
            }
        }
    }

    /// The executable view's address of byte `off`.
    pub fn exec_at(&self, off: usize) -> usize {
        self.exec as usize + off
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Copies `bytes` in at offset `off` through the writable view.
    ///
    /// # Safety
    /// `off + bytes.len() <= size`, and no code is running from those bytes (the caller
    /// owns the buffer's code, and x86 keeps instruction fetch coherent with the store).
    pub unsafe fn write(&self, off: usize, bytes: &[u8]) {
        // SAFETY: in bounds and not executing, as the caller promises; source and
        // destination do not overlap (the source is not in this mapping's writable view).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.write.add(off), bytes.len()) };
    }
}

impl Drop for DualMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the two mappings `new` created; whoever owns the map stops
        // running its code before dropping it.
        unsafe {
            libc::munmap(self.write.cast(), self.size);
            libc::munmap(self.exec.cast(), self.size);
        }
    }
}

/// The translator's code buffer.
pub struct CodeBuffer {
    map: DualMap,
    used: usize,
}

impl CodeBuffer {
    /// Reserves `size` bytes (allocated as they fill).
    pub fn new(size: usize) -> std::io::Result<CodeBuffer> {
        Ok(CodeBuffer {
            map: DualMap::new(size, c"janus-jit")?,
            used: 0,
        })
    }

    /// Where the next `emit` will place its code.
    pub fn cursor(&self) -> usize {
        self.map.exec_at(self.used)
    }

    /// Room left.
    pub fn free(&self) -> usize {
        self.map.size() - self.used
    }

    /// Copies `code` in (16-byte aligned) and returns its executable address, or `None` when
    /// full.
    pub fn emit(&mut self, code: &[u8]) -> Option<*const u8> {
        let start = self.used.next_multiple_of(16);
        if start + code.len() > self.map.size() {
            return None;
        }
        // SAFETY: in bounds (checked above), and past everything emitted so far, so nothing
        // runs these bytes (the vCPU thread is translating).
        unsafe { self.map.write(start, code) };
        self.used = start + code.len();
        Some(self.map.exec_at(start) as *const u8)
    }

    /// Rewrites the 4 bytes at executable address `at` (a `jmp rel32`'s displacement).
    ///
    /// # Safety
    /// The bytes must be an operand of an emitted instruction that no thread is executing.
    pub unsafe fn patch_i32(&mut self, at: usize, v: i32) {
        if self.contains(at) && self.contains(at + 3) {
            // SAFETY: in bounds (checked); not executing, as the caller promises.
            unsafe { self.map.write(at - self.map.exec_at(0), &v.to_le_bytes()) };
        }
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
        addr >= self.map.exec_at(0) && addr < self.map.exec_at(self.map.size())
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
    fn no_page_is_writable_and_executable() {
        let mut b = CodeBuffer::new(1 << 20).unwrap();
        // mov eax, 7; ret
        let f = b.emit(&[0xb8, 7, 0, 0, 0, 0xc3]).unwrap();
        // SAFETY: the bytes are a complete function with the C ABI.
        let g: extern "C" fn() -> u32 = unsafe { std::mem::transmute(f) };
        assert_eq!(g(), 7);
        // Patch the immediate through the writable view: the executable one sees it.
        // SAFETY: the function is not running.
        unsafe { b.patch_i32(f as usize + 1, 9) };
        assert_eq!(g(), 9);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let rwx: Vec<&str> = maps
            .lines()
            .filter(|l| l.contains("janus-jit") && l.contains("rwx"))
            .collect();
        assert!(rwx.is_empty(), "{rwx:?}");
        assert!(maps
            .lines()
            .any(|l| l.contains("janus-jit") && l.contains("r-x")));
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
