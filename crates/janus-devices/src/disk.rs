//! Disk images behind the block devices: a host file, or the built-in test image.

use janus_abi::demo::test_image_byte;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot open disk {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("disk {path} is not a regular file or block device")]
    NotAFile { path: PathBuf },
}

enum Backing {
    File(File),
    Memory(Vec<u8>),
}

pub struct DiskImage {
    backing: Backing,
    size: u64,
    name: String,
}

/// Size of the built-in test image.
pub const TEST_IMAGE_BYTES: usize = 2 << 20;

impl DiskImage {
    /// Opens a raw image file (read-only for now: the only block path reads).
    pub fn open(path: &Path) -> Result<DiskImage, DiskError> {
        let open_err = |source| DiskError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
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
        Ok(DiskImage {
            backing: Backing::File(file),
            size,
            name: path.display().to_string(),
        })
    }

    /// The built-in test image: a position-dependent pattern (see `janus_abi::demo`).
    pub fn test_image() -> DiskImage {
        let data: Vec<u8> = (0..TEST_IMAGE_BYTES as u64).map(test_image_byte).collect();
        DiskImage {
            size: data.len() as u64,
            backing: Backing::Memory(data),
            name: "built-in test image".into(),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads `buf.len()` bytes at `offset`; the range must be inside the image.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.size) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end of the disk",
            ));
        }
        match &self.backing {
            Backing::File(f) => f.read_exact_at(buf, offset),
            Backing::Memory(v) => {
                buf.copy_from_slice(&v[offset as usize..offset as usize + buf.len()]);
                Ok(())
            }
        }
    }
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
        let mut b = [0u8; 512];
        d.read_at(512, &mut b).unwrap();
        assert_eq!(b, [7u8; 512]);
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
}
