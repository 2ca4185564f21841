//! The IDE disk end to end: Debian's stock kernel, fully virtualized on the soft engine, loads
//! `ata_piix` and `sd_mod` from the initramfs and finds `--disk` as /dev/sda. The guest writes a
//! file to the disk at an offset and syncs; after the VM exits the host image must hold it byte
//! for byte, with everything around it untouched. In the guest, reading it back (after
//! dropping the page cache) must give the same sha256, and bytes the host put in the image must
//! read as the host wrote them.
//!
//! Two boots: bus-master DMA (what Linux picks), and PIO (`libata.dma=0`), which Janus's IDE
//! counters confirm. Each prints the guest's `dd` read throughput.

mod common;

use common::linux::{assets, boot, run_to_end, Assets};
use std::path::Path;

const IMAGE_BYTES: usize = 8 << 20;
/// Where the guest writes its file: 4 MiB in.
const FILE_OFFSET: usize = 4 << 20;
/// The guest's file: `seq 1 SEQ_END` (about 240 KiB: many DMA regions, many PIO blocks).
const SEQ_END: u32 = 40_000;
/// Where the guest reads host-written bytes.
const PROBE_OFFSET: usize = 1_000_003;

/// What the host puts in the image: every byte depends on its position.
fn pattern(at: usize) -> u8 {
    ((at / 512) as u32 ^ (at as u32).wrapping_mul(0x9e37_79b1) >> 13) as u8
}

fn seq_file() -> Vec<u8> {
    (1..=SEQ_END)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect()
}

fn guest_script() -> String {
    let sector = FILE_OFFSET / 512;
    format!(
        "set -e\n\
         seq 1 {SEQ_END} > /tmp/f\n\
         n=$(wc -c < /tmp/f)\n\
         dd if=/tmp/f of=/dev/sda bs=512 seek={sector} conv=fsync 2>/dev/null\n\
         sync\n\
         echo 3 > /proc/sys/vm/drop_caches\n\
         echo \"file-sha=$(sha256sum < /tmp/f)\"\n\
         echo \"disk-sha=$(dd if=/dev/sda bs=512 skip={sector} 2>/dev/null | head -c $n | sha256sum)\"\n\
         dd if=/dev/sda bs=512 skip={sector} 2>/dev/null | head -c $n | cmp - /tmp/f && echo readback-same\n\
         echo \"probe=$(dd if=/dev/sda bs=1 skip={PROBE_OFFSET} count=8 2>/dev/null | od -An -tx1 | tr -d ' \\n')\"\n\
         echo 3 > /proc/sys/vm/drop_caches\n\
         t0=$(cut -d' ' -f1 /proc/uptime)\n\
         dd if=/dev/sda of=/dev/null bs=1M count=4 2>/dev/null\n\
         t1=$(cut -d' ' -f1 /proc/uptime)\n\
         r=$(awk -v a=$t0 -v b=$t1 'BEGIN {{ printf \"%.2f\", 4 / (b - a + 0.005) }}')\n\
         echo \"read-rate=$r MiB/s\"\n"
    )
}

/// The value of `key=` on the console, up to the end of its line.
fn field<'a>(console: &'a str, key: &str) -> Option<&'a str> {
    console
        .lines()
        .find_map(|l| l.trim_end().strip_prefix(key))
        .map(str::trim)
}

/// Janus's IDE counters, from the line it prints at exit.
struct IdeCounters {
    pio_bytes: u64,
    dma_bytes: u64,
    flushes: u64,
}

fn ide_counters(stderr: &str) -> Option<IdeCounters> {
    let line = stderr.lines().find(|l| l.starts_with("janus: ide: "))?;
    let number = |suffix: &str| {
        let end = line.find(suffix)?;
        let start = line[..end].rfind(' ').map_or(0, |i| i + 1);
        line[start..end].replace(',', "").parse::<u64>().ok()
    };
    Some(IdeCounters {
        pio_bytes: number(" bytes by PIO")?,
        dma_bytes: number(" bytes by DMA")?,
        flushes: number(" cache flushes")?,
    })
}

/// Boots with a fresh image and the given extra kernel arguments; checks everything both
/// transfer modes share and returns Janus's IDE counters.
fn write_sync_read_back(a: &Assets, name: &str, kernel_args: &str) -> IdeCounters {
    let dir = std::env::temp_dir().join(format!("janus-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join(format!("{name}.img"));
    let original: Vec<u8> = (0..IMAGE_BYTES).map(pattern).collect();
    std::fs::write(&image, &original).unwrap();

    let cmdline = format!(
        "console=ttyS0 {kernel_args} janus.modules=ata_piix,sd_mod janus.cmd={}",
        common::base64(guest_script().as_bytes())
    );
    let mut cmd = boot(a, &cmdline);
    cmd.arg("--disk").arg(format!("path={}", image.display()));
    let run = run_to_end(cmd, name);
    let ctx = run.context();
    assert!(run.status.success(), "janus failed ({}); {ctx}", run.status);
    assert!(
        run.console.contains("ata1.00: ATA-7: JANUS HARDDISK"),
        "{ctx}"
    );
    assert!(
        run.console.contains("[sda] 16384 512-byte logical blocks"),
        "{ctx}"
    );
    assert!(run.console.contains("janus-cmd: end status=0"), "{ctx}");

    // In the guest: the file read back from the disk is the file written.
    let file_sha = field(&run.console, "file-sha=").expect("file sha");
    let disk_sha = field(&run.console, "disk-sha=").expect("disk sha");
    assert_eq!(file_sha, disk_sha, "{ctx}");
    assert!(run.console.contains("readback-same"), "{ctx}");
    let probe: String = (0..8)
        .map(|i| format!("{:02x}", pattern(PROBE_OFFSET + i)))
        .collect();
    assert_eq!(field(&run.console, "probe="), Some(probe.as_str()), "{ctx}");
    if let Some(rate) = field(&run.console, "read-rate=") {
        eprintln!("{name}: dd if=/dev/sda of=/dev/null bs=1M count=4 in the guest: {rate}");
    }

    // On the host: the file, byte for byte, and nothing else changed.
    let mut expected = original;
    let file = seq_file();
    expected[FILE_OFFSET..FILE_OFFSET + file.len()].copy_from_slice(&file);
    let after = std::fs::read(&image).unwrap();
    assert_eq!(after.len(), IMAGE_BYTES, "the image never grows");
    if let Some(at) = (0..IMAGE_BYTES).find(|&i| after[i] != expected[i]) {
        panic!("the host image differs first at byte {at:#x}; {ctx}");
    }
    remove(&image);
    let counters = ide_counters(&run.stderr).unwrap_or_else(|| panic!("no IDE counters; {ctx}"));
    // conv=fsync and the shutdown's cache synchronisation both reach the image as fsyncs.
    assert!(counters.flushes >= 2, "{ctx}");
    counters
}

fn remove(p: &Path) {
    let _ = std::fs::remove_file(p);
}

#[test]
fn disk_over_bus_master_dma() {
    let Some(a) = assets() else { return };
    let c = write_sync_read_back(&a, "ide-dma", "");
    let (pio, dma) = (c.pio_bytes, c.dma_bytes);
    // PIO moves only IDENTIFY data (512 bytes per IDENTIFY); everything else went by DMA.
    assert!(dma >= 4 << 20, "DMA moved only {dma} bytes");
    assert!(pio <= 4 * 512, "PIO moved {pio} bytes");
}

#[test]
fn disk_over_pio() {
    let Some(a) = assets() else { return };
    let c = write_sync_read_back(&a, "ide-pio", "libata.dma=0");
    let (pio, dma) = (c.pio_bytes, c.dma_bytes);
    assert_eq!(dma, 0, "libata.dma=0 must keep the guest off DMA");
    assert!(pio >= 4 << 20, "PIO moved only {pio} bytes");
}
