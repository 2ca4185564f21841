//! The e1000 end to end: Debian's stock kernel, fully virtualized on the soft engine with
//! `--net tap=jtap0`, loads `e1000`, which binds the emulated 82540EM (8086:100e) at 00:03.0,
//! brings the link up and pings the host end of the TAP interface. The host's report line
//! must count the frames. The guest's round-trip line is printed.
//!
//! The test needs a network namespace with a TAP interface (root and /dev/net/tun); without
//! them it skips and says why. Without the guest (scripts/guest-assets.sh) it skips, unless
//! `JANUS_REQUIRE_GUEST=1`.

mod common;

use common::linux::{assets, boot_with_net, run_to_end};
use common::netns::{Netns, GUEST_IP, HOST_IP};

/// The kernel command line: load `e1000`, run `script`.
fn cmdline(script: &str) -> String {
    format!(
        "console=ttyS0 quiet janus.modules=e1000 janus.cmd={}",
        common::base64(script.as_bytes())
    )
}

fn script() -> String {
    format!(
        "d=/sys/bus/pci/devices/0000:00:03.0\n\
         echo \"pci=$(cat $d/vendor):$(cat $d/device)\"\n\
         echo \"driver=$(basename $(readlink /sys/class/net/eth0/device/driver))\"\n\
         ip addr add {GUEST_IP}/24 dev eth0 && ip link set eth0 up\n\
         i=0; while [ \"$(cat /sys/class/net/eth0/carrier)\" != 1 ] && [ $i -lt 20 ]; do sleep 1; i=$((i+1)); done\n\
         ping -c 3 -W 10 {HOST_IP}\n\
         echo \"link=$(dmesg | grep -c 'Link is Up')\"\n\
         true\n"
    )
}

#[test]
fn e1000_pings_the_host() {
    let Some(a) = assets() else { return };
    let netns = match Netns::create("e1000") {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("skipped (the network part): {why}");
            return;
        }
    };
    let cmdline = cmdline(&script());
    let run = run_to_end(boot_with_net(&a, &cmdline, &netns), "e1000");
    let ctx = run.context();
    assert!(run.status.success(), "janus failed ({}); {ctx}", run.status);
    assert!(run.console.contains("janus-cmd: end status=0"), "{ctx}");
    let value = |key: &str| {
        run.console
            .lines()
            .find_map(|l| l.trim_end().strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
    };
    assert_eq!(value("pci").as_deref(), Some("0x8086:0x100e"), "{ctx}");
    assert_eq!(value("driver").as_deref(), Some("e1000"), "{ctx}");
    assert_ne!(
        value("link").as_deref(),
        Some("0"),
        "dmesg: Link is Up; {ctx}"
    );
    assert!(
        run.console
            .contains("3 packets transmitted, 3 packets received"),
        "ping over the e1000; {ctx}"
    );
    if let Some(rtt) = run.console.lines().find(|l| l.contains("round-trip")) {
        eprintln!("e1000 ping from the guest (soft engine): {}", rtt.trim());
    }
    // Echo requests out and replies in, besides ARP.
    assert_frames(&run.stderr, 3, &ctx);
}

/// Ports the test listens on, in the namespace: the guest sends to the first and receives
/// from the second.
const PORT_FROM_GUEST: u16 = 5000;
const PORT_TO_GUEST: u16 = 5001;
const SEQ_END: u32 = 150_000;

/// What `seq 1 SEQ_END` prints: about 1 MB, enough for full-sized segments and TSO.
fn payload() -> Vec<u8> {
    (1..=SEQ_END)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect()
}

/// The next connection on `l`, or an error once `stop` is set (the VM has exited).
fn accept(
    l: &std::net::TcpListener,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<std::net::TcpStream, String> {
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(std::time::Duration::from_secs(120)))
                    .map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err("the guest never connected".into());
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The host's end, on a thread inside the namespace: takes what the guest sends on one port,
/// then sends the payload on the other. Returns the bytes received.
fn tcp_peer(
    netns: &Netns,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Result<Vec<u8>, String>> {
    use std::io::{Read, Write};
    let ns = netns.handle().expect("open the namespace");
    let (ready, listening) = std::sync::mpsc::channel();
    let peer = std::thread::spawn(move || {
        let bound = ns.enter_on_this_thread().and_then(|_| {
            let bind = |p| std::net::TcpListener::bind((HOST_IP, p)).map_err(|e| e.to_string());
            Ok((bind(PORT_FROM_GUEST)?, bind(PORT_TO_GUEST)?))
        });
        let _ = ready.send(bound.as_ref().map(|_| ()).map_err(Clone::clone));
        let (from_guest, to_guest) = bound?;
        let mut got = Vec::new();
        accept(&from_guest, &stop)?
            .read_to_end(&mut got)
            .map_err(|e| format!("receiving: {e}"))?;
        accept(&to_guest, &stop)?
            .write_all(&payload())
            .map_err(|e| format!("sending: {e}"))?;
        Ok(got)
    });
    listening
        .recv()
        .expect("the peer thread reports")
        .unwrap_or_else(|e| panic!("cannot listen in the namespace: {e}"));
    peer
}

/// TCP both ways through the e1000: about 1 MB from the guest (its driver asks the card to
/// insert the TCP checksums, so a wrong one would make the host drop the segments) and 1 MB to
/// it (full-sized frames into its RX ring); both must arrive byte for byte.
#[test]
fn e1000_carries_tcp_both_ways() {
    let Some(a) = assets() else { return };
    let netns = match Netns::create("e1000tcp") {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("skipped (the network part): {why}");
            return;
        }
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peer = tcp_peer(&netns, stop.clone());
    let script = format!(
        "ip addr add {GUEST_IP}/24 dev eth0 && ip link set eth0 up\n\
         i=0; while [ \"$(cat /sys/class/net/eth0/carrier)\" != 1 ] && [ $i -lt 20 ]; do sleep 1; i=$((i+1)); done\n\
         ping -c 1 -W 10 {HOST_IP} >/dev/null\n\
         seq 1 {SEQ_END} > /tmp/f\n\
         nc {HOST_IP} {PORT_FROM_GUEST} < /tmp/f && echo tcp-out=done\n\
         nc {HOST_IP} {PORT_TO_GUEST} < /dev/null > /tmp/r\n\
         cmp /tmp/f /tmp/r && echo tcp-in=same\n\
         true\n"
    );
    let cmdline = cmdline(&script);
    let run = run_to_end(boot_with_net(&a, &cmdline, &netns), "e1000-tcp");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let got = peer.join().expect("the peer thread");
    let ctx = run.context();
    assert!(run.status.success(), "janus failed ({}); {ctx}", run.status);
    let got = got.unwrap_or_else(|e| panic!("host end: {e}; {ctx}"));
    assert_eq!(got.len(), payload().len(), "bytes from the guest; {ctx}");
    assert!(got == payload(), "the guest's bytes arrived changed; {ctx}");
    assert!(run.console.contains("tcp-out=done"), "{ctx}");
    assert!(
        run.console.contains("tcp-in=same"),
        "bytes to the guest; {ctx}"
    );
    // About 1 MB each way in full-sized frames (the guest sends as nc writes, so its stack
    // rarely has enough queued to hand the card a TSO super-frame).
    assert_frames(&run.stderr, 700, &ctx);
}

/// The card's report: at least `frames` each way and no guest errors (and it is printed).
fn assert_frames(stderr: &str, frames: u64, ctx: &str) {
    assert!(
        common::reported(stderr, "e1000", "frames out") >= frames,
        "{ctx}"
    );
    assert!(
        common::reported(stderr, "e1000", "frames in") >= frames,
        "{ctx}"
    );
    assert_eq!(
        common::reported(stderr, "e1000", "guest errors"),
        0,
        "{ctx}"
    );
    if let Some(line) = stderr.lines().find(|l| l.starts_with("janus: e1000:")) {
        eprintln!("{line}");
    }
}
