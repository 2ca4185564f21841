//! Disk images behind the block devices: a host file, or an image in memory (the built-in
//! test image, and images for tests).
//!
//! A file is opened for reading and writing when the host allows it, and read-only otherwise
//! (a device then refuses writes as a write-protected disk would). Writes go to the host's page
//! cache; [`DiskImage::flush`] is an fsync, which is what a guest's cache flush command means.

use janus_abi::demo::test_image_byte;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot open disk {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("disk {path} is in use: another process holds a {held} lock on it (QEMU and other Janus processes lock the images they open; --disk ...,locking=off skips the check)")]
    Locked { path: PathBuf, held: &'static str },
    #[error("disk {path} is not a regular file or block device")]
    NotAFile { path: PathBuf },
}

enum Backing {
    File(File),
    Memory(Mutex<Vec<u8>>),
}

pub struct DiskImage {
    backing: Backing,
    size: u64,
    name: String,
    read_only: bool,
}

/// Size of the built-in test image.
pub const TEST_IMAGE_BYTES: usize = 2 << 20;

/// Locks the whole of `file` with an open file description lock (F_OFD_SETLK, as QEMU does):
/// shared for a read-only disk, exclusive for a writable one. Another process's lock on any
/// byte of the file (QEMU locks single bytes) makes it fail.
fn lock_file(file: &File, path: &Path, exclusive: bool) -> Result<(), DiskError> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: an all-zero flock is a valid value; the fields are then set.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = if exclusive {
        libc::F_WRLCK
    } else {
        libc::F_RDLCK
    } as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    // SAFETY: `file` is open; `fl` is a valid flock describing the whole file (l_len 0).
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) {
        return Err(DiskError::Open {
            path: path.to_path_buf(),
            source: e,
        });
    }
    // Which kind of lock is in the way: ask for a write lock's conflict.
    fl.l_type = libc::F_WRLCK as i16;
    // SAFETY: as above; F_OFD_GETLK only fills `fl`.
    let held = if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) } == 0
        && fl.l_type == libc::F_RDLCK as i16
    {
        "read"
    } else {
        "write"
    };
    Err(DiskError::Locked {
        path: path.to_path_buf(),
        held,
    })
}

impl DiskImage {
    /// Opens a raw image file, for writing too where the host allows it, and locks it.
    pub fn open(path: &Path) -> Result<DiskImage, DiskError> {
        DiskImage::open_with(path, false, true)
    }

    /// Opens a raw image file: read-only if `read_only` (or if the host allows no writes),
    /// locked (shared when read-only, exclusive otherwise) if `locking`.
    pub fn open_with(path: &Path, read_only: bool, locking: bool) -> Result<DiskImage, DiskError> {
        let open_err = |source| DiskError::Open {
            path: path.to_path_buf(),
            source,
        };
        let writable = if read_only {
            Err(std::io::Error::from(ErrorKind::PermissionDenied))
        } else {
            OpenOptions::new().read(true).write(true).open(path)
        };
        let (file, read_only) = match writable {
            Ok(f) => (f, false),
            // Not writable here: serve it read-only. (A directory cannot be opened for writing
            // either; opened for reading, the type check below names the problem.)
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::PermissionDenied
                        | ErrorKind::ReadOnlyFilesystem
                        | ErrorKind::IsADirectory
                ) =>
            {
                (File::open(path).map_err(open_err)?, true)
            }
            Err(e) => return Err(open_err(e)),
        };
        let meta = file.metadata().map_err(open_err)?;
        let ft = meta.file_type();
        use std::os::unix::fs::FileTypeExt;
        if !(ft.is_file() || ft.is_block_device()) {
            return Err(DiskError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        // Block devices report length 0 in metadata; seeking to the end gives the size.
        let size = if ft.is_block_device() {
            use std::io::Seek;
            let mut f = &file;
            f.seek(std::io::SeekFrom::End(0)).map_err(open_err)?
        } else {
            meta.len()
        };
        // Reading the first sector now turns "unreadable" into a startup error, not a guest one.
        let mut probe = [0u8; 512];
        let n = probe.len().min(size as usize);
        file.read_exact_at(&mut probe[..n], 0).map_err(open_err)?;
        if locking {
            lock_file(&file, path, !read_only)?;
        }
        Ok(DiskImage {
            backing: Backing::File(file),
            size,
            name: path.display().to_string(),
            read_only,
        })
    }

    /// Opens a raw image file whose writes the device refuses, as a write-protected disk's
    /// (`--disk path=FILE,readonly=on`).
    pub fn open_read_only(path: &Path) -> Result<DiskImage, DiskError> {
        DiskImage::open_with(path, true, true)
    }

    /// The built-in test image: a position-dependent pattern (see `janus_abi::demo`); read-only.
    pub fn test_image() -> DiskImage {
        let data: Vec<u8> = (0..TEST_IMAGE_BYTES as u64).map(test_image_byte).collect();
        DiskImage {
            read_only: true,
            ..DiskImage::from_bytes(data, "built-in test image")
        }
    }

    /// A writable image held in memory (for tests and fuzzing).
    pub fn from_bytes(data: Vec<u8>, name: &str) -> DiskImage {
        DiskImage {
            size: data.len() as u64,
            backing: Backing::Memory(Mutex::new(data)),
            name: name.into(),
            read_only: false,
        }
    }

    /// Whether writes are refused (the host file could only be opened for reading).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The image's byte range for `len` bytes at `offset`, if it is inside the image.
    fn range(&self, offset: u64, len: usize) -> std::io::Result<std::ops::Range<usize>> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(offset as usize..end as usize),
            _ => Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "access past the end of the disk",
            )),
        }
    }

    /// Reads `buf.len()` bytes at `offset`; the range must be inside the image.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let range = self.range(offset, buf.len())?;
        match &self.backing {
            Backing::File(f) => f.read_exact_at(buf, offset),
            Backing::Memory(v) => {
                buf.copy_from_slice(&lock(v)[range]);
                Ok(())
            }
        }
    }

    /// Writes `buf` at `offset`; the range must be inside the image (it never grows).
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        if self.read_only {
            return Err(std::io::Error::new(
                ErrorKind::PermissionDenied,
                "the disk is read-only",
            ));
        }
        let range = self.range(offset, buf.len())?;
        match &self.backing {
            Backing::File(f) => f.write_all_at(buf, offset),
            Backing::Memory(v) => {
                lock(v)[range].copy_from_slice(buf);
                Ok(())
            }
        }
    }

    /// Puts everything written so far on stable storage (fsync of the file's data).
    pub fn flush(&self) -> std::io::Result<()> {
        match &self.backing {
            Backing::File(f) if !self.read_only => f.sync_data(),
            _ => Ok(()),
        }
    }
}

fn lock(m: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    crate::bus::lock(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn test_image_matches_reference_pattern() {
        let d = DiskImage::test_image();
        let mut b = [0u8; 16];
        d.read_at(4096, &mut b).unwrap();
        for (i, x) in b.iter().enumerate() {
            assert_eq!(*x, test_image_byte(4096 + i as u64));
        }
        assert!(d.read_at(d.size() - 8, &mut b).is_err(), "past the end");
        assert!(
            d.read_at(u64::MAX - 4, &mut b).is_err(),
            "overflowing offset"
        );
        assert!(d.read_only());
        assert!(d.write_at(0, &b).is_err(), "the test image is read-only");
    }

    #[test]
    fn memory_image_writes() {
        let d = DiskImage::from_bytes(vec![0u8; 1024], "mem");
        d.write_at(510, &[1, 2, 3, 4]).unwrap();
        let mut b = [0u8; 6];
        d.read_at(509, &mut b).unwrap();
        assert_eq!(b, [0, 1, 2, 3, 4, 0]);
        assert!(d.write_at(1022, &[0; 4]).is_err(), "past the end");
        d.flush().unwrap();
    }

    #[test]
    fn file_image_reads_and_errors() {
        let dir = std::env::temp_dir().join(format!("janus-disk-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("img");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&[7u8; 1024])
            .unwrap();
        let d = DiskImage::open(&path).unwrap();
        assert_eq!(d.size(), 1024);
        assert!(!d.read_only());
        let mut b = [0u8; 512];
        d.read_at(512, &mut b).unwrap();
        assert_eq!(b, [7u8; 512]);
        d.write_at(1020, &[9; 4]).unwrap();
        d.flush().unwrap();
        assert_eq!(
            &std::fs::read(&path).unwrap()[1016..],
            &[7, 7, 7, 7, 9, 9, 9, 9]
        );
        assert!(d.write_at(1021, &[9; 4]).is_err(), "the image never grows");
        drop(d);
        let ro = DiskImage::open_read_only(&path).unwrap();
        assert!(ro.read_only());
        assert!(ro.write_at(0, &[0]).is_err());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1024);
        assert!(matches!(
            DiskImage::open(&dir.join("missing")),
            Err(DiskError::Open { .. })
        ));
        assert!(matches!(
            DiskImage::open(&dir),
            Err(DiskError::NotAFile { .. }) | Err(DiskError::Open { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn images_are_locked_like_qemu_does() {
        let path = std::env::temp_dir().join(format!("janus-lock-{}.img", std::process::id()));
        std::fs::write(&path, [0u8; 1024]).unwrap();
        let d = DiskImage::open(&path).unwrap();
        // A writer excludes everyone else; readers share.
        let e = DiskImage::open(&path).err().expect("second writer refused");
        assert!(e.to_string().contains("in use"), "{e}");
        assert!(DiskImage::open_read_only(&path).is_err());
        assert!(
            DiskImage::open_with(&path, false, false).is_ok(),
            "locking=off"
        );
        drop(d);
        let r1 = DiskImage::open_read_only(&path).unwrap();
        let _r2 = DiskImage::open_read_only(&path).unwrap();
        let e = DiskImage::open(&path)
            .err()
            .expect("writer refused while read");
        assert!(e.to_string().contains("read lock"), "{e}");
        drop(r1);
        let _ = std::fs::remove_file(&path);
    }
}
