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

/// The number before `what` on the host's `janus: e1000:` line ("3 frames out").
fn reported(stderr: &str, what: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("janus: e1000:"))
        .unwrap_or_else(|| panic!("no e1000 report in:\n{stderr}"));
    let words: Vec<&str> = line.split([' ', ',', ';', ':', '(', ')']).collect();
    let at = words
        .windows(2)
        .position(|w| format!("{} {}", w[0], w[1]) == what)
        .unwrap_or_else(|| panic!("no '{what}' in {line}"));
    words[at - 1].replace(',', "").parse().expect("a count")
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
    let cmdline = format!(
        "console=ttyS0 quiet janus.modules=e1000 janus.cmd={}",
        common::base64(script().as_bytes())
    );
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
    assert!(reported(&run.stderr, "frames out") >= 3, "{ctx}");
    assert!(reported(&run.stderr, "frames in") >= 3, "{ctx}");
    assert_eq!(reported(&run.stderr, "guest errors"), 0, "{ctx}");
    if let Some(line) = run.stderr.lines().find(|l| l.starts_with("janus: e1000:")) {
        eprintln!("{line}");
    }
}
