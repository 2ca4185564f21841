//! `janus bench --kernel K --initramfs I --io`: what I/O costs by each technique, on the same
//! Linux guest, disk image and TAP interface, one boot after another in the same run.
//!
//! The guest reads its whole disk (`dd bs=1M`, page cache dropped first) and pings the host
//! end of a TAP interface, fully virtualized (IDE with PIO, IDE with bus-master DMA, e1000)
//! and para-virtualized (virtio-blk, virtio-net) on the soft engine, and the same on QEMU
//! (TCG, `-M pc`: its PIIX3 IDE and e1000, and virtio over PCI) as the peer. The read is timed
//! from the host (when each marker line reaches the console), as `janus bench --kernel` times
//! its workload; the round trip is ping's own. Janus's exits by device, over the bytes the
//! disk moved, give the exits each technique needs per MiB.
//!
//! The network part needs root and /dev/net/tun (a namespace with a TAP interface is made for
//! the run); without them the disk part still runs and the report says why the rest did not.

use crate::bench_linux::{base64, qemu_version, run_timed, Transcript};
use crate::netns::{Netns, GUEST_IP, HOST_IP, TAP};
use crate::{Result, VmmError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;

const INIT_MARKER: &str = "janus-init: started";
const READ_BEGIN: &str = "janus-io: read-begin";
const READ_END: &str = "janus-io: read-end";

#[derive(Clone, Debug)]
pub struct IoBenchOptions {
    /// The janus binary (the running one), started as a child like QEMU.
    pub janus: PathBuf,
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub memory_mib: u64,
    /// Size of the disk image the guest reads whole.
    pub disk_mib: u64,
    /// Pings timed after the link is up.
    pub pings: u32,
}

/// How a machine reaches its disk and network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Technique {
    /// Full virtualization, the IDE disk by PIO (`libata.dma=0`), the e1000.
    IdePio,
    /// Full virtualization, the IDE disk by bus-master DMA (what Linux picks), the e1000.
    IdeDma,
    /// Para-virtualization: virtio-blk and virtio-net.
    Virtio,
}

impl Technique {
    fn mode(self) -> &'static str {
        match self {
            Technique::IdePio | Technique::IdeDma => "full",
            Technique::Virtio => "para",
        }
    }

    fn disk_device(self) -> &'static str {
        match self {
            Technique::IdePio | Technique::IdeDma => "/dev/sda",
            Technique::Virtio => "/dev/vda",
        }
    }

    /// Janus's names for the disk's report line, and for the disk and the network card in
    /// its exits-by-device line.
    fn janus_devices(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Technique::IdePio | Technique::IdeDma => ("ide", "piix-ide", "e1000"),
            Technique::Virtio => ("virtio-blk", "virtio-blk", "virtio-net"),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Technique::IdePio => "full: IDE PIO + e1000",
            Technique::IdeDma => "full: IDE DMA + e1000",
            Technique::Virtio => "para: virtio-blk + virtio-net",
        }
    }

    /// The guest's command-line arguments on `machine`: Janus's virtio devices are on
    /// virtio-mmio, QEMU's on PCI.
    fn kernel_args(self, machine: &str) -> &'static str {
        match (self, machine) {
            (Technique::IdePio, _) => "libata.dma=0 janus.modules=ata_piix,sd_mod,e1000",
            (Technique::IdeDma, _) => "janus.modules=ata_piix,sd_mod,e1000",
            (Technique::Virtio, "qemu-tcg") => "janus.modules=virtio_pci,virtio_blk,virtio_net",
            (Technique::Virtio, _) => "janus.modules=virtio_mmio,virtio_blk,virtio_net",
        }
    }
}

/// One boot's figures.
#[derive(Clone, Debug, Serialize)]
pub struct IoColumn {
    /// "janus-soft" or "qemu-tcg".
    pub machine: String,
    pub technique: Technique,
    pub boot_to_init_s: f64,
    /// The whole disk read, host-timed.
    pub read_s: f64,
    pub read_mib_s: f64,
    /// ping's min/avg/max round trip, when the network part ran.
    pub rtt_ms: Option<[f64; 3]>,
    /// Janus: the disk device's exits over the run, and the MiB it moved.
    pub disk_exits: Option<u64>,
    pub disk_mib_moved: Option<f64>,
    /// Janus: the network card's exits over the run.
    pub net_exits: Option<u64>,
}

impl IoColumn {
    /// Device exits per MiB the disk moved (Janus only).
    pub fn disk_exits_per_mib(&self) -> Option<f64> {
        let (e, m) = self.disk_exits.zip(self.disk_mib_moved)?;
        (m > 0.0).then(|| e as f64 / m)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct IoBenchReport {
    pub kernel: String,
    pub disk_mib: u64,
    pub pings: u32,
    pub qemu: Option<String>,
    pub columns: Vec<IoColumn>,
    /// Why parts did not run.
    pub skipped: Vec<String>,
}

/// The guest script: read the disk between markers, then (with a network) bring the link up,
/// wait for the host to answer, and time `pings` round trips.
fn script(t: Technique, disk_mib: u64, pings: u32, net: bool) -> String {
    let mut s = format!(
        "echo 3 > /proc/sys/vm/drop_caches\n\
         echo {READ_BEGIN}\n\
         dd if={dev} of=/dev/null bs=1M count={disk_mib}\n\
         echo {READ_END}\n",
        dev = t.disk_device()
    );
    if net {
        s.push_str(&format!(
            "ip addr add {GUEST_IP}/24 dev eth0 && ip link set eth0 up\n\
             ping -c 3 -W 10 {HOST_IP} >/dev/null\n\
             ping -c {pings} -i 0.2 {HOST_IP}\n"
        ));
    }
    s
}

fn cmdline(machine: &str, t: Technique, disk_mib: u64, pings: u32, net: bool) -> String {
    format!(
        "console=ttyS0 {} janus.cmd={}",
        t.kernel_args(machine),
        base64(script(t, disk_mib, pings, net).as_bytes())
    )
}

/// ping's "round-trip min/avg/max = a/b/c ms".
fn parse_rtt(t: &Transcript) -> Option<[f64; 3]> {
    let line = t
        .lines
        .iter()
        .rev()
        .find(|(_, l)| l.contains("round-trip"))?;
    let figures = line.1.split('=').nth(1)?.split_whitespace().next()?;
    let v: Vec<f64> = figures.split('/').filter_map(|x| x.parse().ok()).collect();
    (v.len() == 3).then(|| [v[0], v[1], v[2]])
}

/// The exits `device` answered, from `janus run`'s "exits by device" line.
pub fn device_exits(stderr: &str, device: &str) -> Option<u64> {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("janus: exits by device: "))?;
    line.split(", ").find_map(|entry| {
        let (name, n) = entry.rsplit_once(' ')?;
        (name == device).then(|| n.parse().ok()).flatten()
    })
}

/// MiB the disk device moved over the run, from its report line.
fn disk_mib_moved(stderr: &str, device: &str) -> Option<f64> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("janus: {device}:")))?;
    let words: Vec<&str> = line.split([' ', '(', ')', ',', ';']).collect();
    // IDE: "N bytes by PIO, M bytes by DMA"; virtio-blk: "N reads (K KiB), M writes (L KiB)".
    let mut bytes = 0f64;
    for (i, w) in words.iter().enumerate() {
        let scale = match *w {
            "bytes" => 1.0,
            "KiB" => 1024.0,
            _ => continue,
        };
        if let Some(n) = i
            .checked_sub(1)
            .and_then(|j| words[j].replace(',', "").parse::<f64>().ok())
        {
            bytes += n * scale;
        }
    }
    Some(bytes / (1 << 20) as f64)
}

/// Janus prints counts with thousands separators; `reported` wants plain numbers.
fn plain(stderr: &str) -> String {
    let mut out = String::with_capacity(stderr.len());
    let b: Vec<char> = stderr.chars().collect();
    for (i, &c) in b.iter().enumerate() {
        let between_digits =
            i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit();
        if !(c == ',' && between_digits) {
            out.push(c);
        }
    }
    out
}

fn column(
    machine: &str,
    t: Technique,
    run: &Transcript,
    opts: &IoBenchOptions,
    net: bool,
) -> std::result::Result<IoColumn, String> {
    let init = run
        .at(INIT_MARKER)
        .ok_or_else(|| format!("/init never started; last lines: {}", run.tail()))?;
    let (begin, end) = run
        .at(READ_BEGIN)
        .zip(run.at(READ_END))
        .ok_or_else(|| format!("the disk read did not run; last lines: {}", run.tail()))?;
    let records = format!("{}+0 records in", opts.disk_mib);
    if run.at(&records).is_none() {
        return Err(format!(
            "the guest did not read {} MiB from {}; last lines: {}",
            opts.disk_mib,
            t.disk_device(),
            run.tail()
        ));
    }
    let rtt = parse_rtt(run);
    if net && rtt.is_none() {
        return Err(format!(
            "the guest did not ping the host; last lines: {}",
            run.tail()
        ));
    }
    let read_s = (end - begin).as_secs_f64();
    let stderr = plain(&run.stderr);
    let (disk_report, disk, nic) = t.janus_devices();
    let janus = machine == "janus-soft";
    Ok(IoColumn {
        machine: machine.into(),
        technique: t,
        boot_to_init_s: init.as_secs_f64(),
        read_s,
        read_mib_s: opts.disk_mib as f64 / read_s.max(1e-9),
        rtt_ms: rtt,
        disk_exits: janus.then(|| device_exits(&stderr, disk)).flatten(),
        disk_mib_moved: janus
            .then(|| disk_mib_moved(&stderr, disk_report))
            .flatten(),
        net_exits: janus.then(|| device_exits(&stderr, nic)).flatten(),
    })
}

/// `program` in the namespace when there is one.
fn command(program: &Path, netns: Option<&Netns>) -> Command {
    match netns {
        Some(ns) => ns.command(&program.to_string_lossy()),
        None => Command::new(program),
    }
}

fn janus_column(
    opts: &IoBenchOptions,
    t: Technique,
    disk: &Path,
    netns: Option<&Netns>,
) -> std::result::Result<IoColumn, String> {
    let net = netns.is_some();
    let mut cmd = command(&opts.janus, netns);
    cmd.args(["run", "--engine", "soft", "--mode", t.mode()])
        .arg("--memory")
        .arg(format!("size={}M", opts.memory_mib))
        .arg("--kernel")
        .arg(&opts.kernel)
        .arg("--initramfs")
        .arg(&opts.initramfs)
        .arg("--disk")
        .arg(format!("path={}", disk.display()))
        .args([
            "--cmdline",
            &cmdline("janus-soft", t, opts.disk_mib, opts.pings, net),
        ]);
    if net {
        cmd.args(["--net", &format!("tap={TAP}")]);
    }
    let run = run_timed(cmd)?;
    column("janus-soft", t, &run, opts, net)
}

fn qemu_column(
    opts: &IoBenchOptions,
    t: Technique,
    disk: &Path,
    netns: Option<&Netns>,
) -> std::result::Result<IoColumn, String> {
    let net = netns.is_some();
    let mut cmd = command(&opts.qemu, netns);
    cmd.args(["-M", "pc", "-accel", "tcg", "-m"])
        .arg(opts.memory_mib.to_string())
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(&opts.kernel)
        .arg("-initrd")
        .arg(&opts.initramfs)
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if={}",
            disk.display(),
            if t == Technique::Virtio {
                "virtio"
            } else {
                "ide"
            }
        ))
        .args([
            "-append",
            &cmdline("qemu-tcg", t, opts.disk_mib, opts.pings, net),
        ]);
    if net {
        let model = if t == Technique::Virtio {
            "virtio-net-pci"
        } else {
            "e1000"
        };
        cmd.args([
            "-nic",
            &format!("tap,ifname={TAP},script=no,downscript=no,model={model}"),
        ]);
    } else {
        cmd.args(["-nic", "none"]);
    }
    let run = run_timed(cmd)?;
    column("qemu-tcg", t, &run, opts, net)
}

/// A disk image of `mib` MiB, every sector different (so nothing can short-cut a read of
/// zeros), removed on drop.
struct TempDisk(PathBuf);

impl TempDisk {
    fn create(mib: u64) -> std::io::Result<TempDisk> {
        let path = std::env::temp_dir().join(format!("janus-bench-io-{}.img", std::process::id()));
        let data: Vec<u8> = (0..mib << 20)
            .map(|i| ((i / 512) ^ (i % 251)) as u8)
            .collect();
        std::fs::write(&path, data)?;
        Ok(TempDisk(path))
    }
}

impl Drop for TempDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn run(opts: &IoBenchOptions) -> Result<IoBenchReport> {
    for (what, p) in [("kernel", &opts.kernel), ("initramfs", &opts.initramfs)] {
        if !p.is_file() {
            return Err(VmmError::Config(format!(
                "janus bench: {what} {} is not a file",
                p.display()
            )));
        }
    }
    let disk = TempDisk::create(opts.disk_mib)
        .map_err(|e| VmmError::Config(format!("janus bench: cannot write a disk image: {e}")))?;
    let mut skipped = Vec::new();
    let netns = Netns::create("bench")
        .map_err(|why| skipped.push(format!("the network part: {why}")))
        .ok();
    let mut columns = Vec::new();
    for t in [Technique::IdePio, Technique::IdeDma, Technique::Virtio] {
        let c = janus_column(opts, t, &disk.0, netns.as_ref()).map_err(|why| {
            VmmError::Config(format!(
                "janus bench: the Linux guest failed on Janus ({}): {why}",
                t.describe()
            ))
        })?;
        columns.push(c);
    }
    let qemu = match qemu_version(&opts.qemu) {
        Ok(v) => {
            for t in [Technique::IdePio, Technique::IdeDma, Technique::Virtio] {
                match qemu_column(opts, t, &disk.0, netns.as_ref()) {
                    Ok(c) => columns.push(c),
                    Err(why) => skipped.push(format!("qemu-tcg ({}): {why}", t.describe())),
                }
            }
            Some(v)
        }
        Err(why) => {
            skipped.push(format!("qemu-tcg: {why}"));
            None
        }
    };
    Ok(IoBenchReport {
        kernel: opts.kernel.display().to_string(),
        disk_mib: opts.disk_mib,
        pings: opts.pings,
        qemu,
        columns,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn transcript(lines: &[&str], stderr: &str) -> Transcript {
        Transcript {
            lines: lines
                .iter()
                .enumerate()
                .map(|(i, l)| (Duration::from_millis(100 * i as u64), l.to_string()))
                .collect(),
            stderr: stderr.into(),
            total: Duration::from_secs(1),
        }
    }

    #[test]
    fn report_lines_give_exits_and_bytes() {
        let ide = "janus: ide: 1,024 commands, 5,000 register accesses (3,000 task file, 0 data port, 2,000 bus master); 0 bytes by PIO, 2,097,152 bytes by DMA; 1 cache flushes";
        let s = plain(ide);
        assert_eq!(disk_mib_moved(&s, "ide"), Some(2.0));
        let blk = "janus: virtio-blk: 700 register accesses; 512 reads (3072 KiB), 1 writes (1024 KiB), 0 flushes, 0 get-ids, 0 errors";
        assert_eq!(disk_mib_moved(blk, "virtio-blk"), Some(4.0));
        let by = plain("janus: exits by device: e1000 13,950, piix-ide 2,100, uart16550 12");
        assert_eq!(device_exits(&by, "piix-ide"), Some(2100));
        assert_eq!(device_exits(&by, "e1000"), Some(13950));
        assert_eq!(device_exits(&by, "virtio-blk"), None);
    }

    #[test]
    fn columns_need_the_read_and_the_ping() {
        let opts = IoBenchOptions {
            janus: "janus".into(),
            qemu: "qemu".into(),
            kernel: "k".into(),
            initramfs: "i".into(),
            memory_mib: 512,
            disk_mib: 4,
            pings: 5,
        };
        let good = [
            INIT_MARKER,
            READ_BEGIN,
            "4+0 records in",
            "4+0 records out",
            READ_END,
            "round-trip min/avg/max = 1.5/2.0/3.25 ms",
        ];
        let c = column(
            "qemu-tcg",
            Technique::IdeDma,
            &transcript(&good, ""),
            &opts,
            true,
        )
        .unwrap();
        assert_eq!(c.rtt_ms, Some([1.5, 2.0, 3.25]));
        assert!((c.read_s - 0.3).abs() < 1e-9);
        assert!((c.read_mib_s - 4.0 / 0.3).abs() < 1e-6);
        assert_eq!(c.disk_exits, None, "QEMU has no Janus counters");
        let short = [INIT_MARKER, READ_BEGIN, "3+0 records in", READ_END];
        let e = column(
            "janus-soft",
            Technique::Virtio,
            &transcript(&short, ""),
            &opts,
            false,
        );
        assert!(e.unwrap_err().contains("did not read 4 MiB"));
        let no_ping = &good[..5];
        let e = column(
            "janus-soft",
            Technique::IdePio,
            &transcript(no_ping, ""),
            &opts,
            true,
        );
        assert!(e.unwrap_err().contains("did not ping"));
    }

    #[test]
    fn the_script_reads_the_right_disk() {
        assert!(script(Technique::Virtio, 8, 3, false)
            .contains("if=/dev/vda of=/dev/null bs=1M count=8"));
        assert!(
            script(Technique::IdePio, 8, 3, true).contains(&format!("ping -c 3 -i 0.2 {HOST_IP}"))
        );
        assert!(cmdline("janus-soft", Technique::IdePio, 8, 3, false).contains("libata.dma=0"));
        assert!(!cmdline("janus-soft", Technique::IdeDma, 8, 3, false).contains("libata.dma=0"));
        assert!(cmdline("janus-soft", Technique::Virtio, 8, 3, false).contains("virtio_mmio,"));
        assert!(cmdline("qemu-tcg", Technique::Virtio, 8, 3, false).contains("virtio_pci,"));
    }
}
