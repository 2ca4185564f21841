//! A network namespace with a TAP interface in it, for the tests and the I/O benchmark that
//! give the guest a network card: the host end of the link is [`HOST_IP`] on [`TAP`], and
//! janus runs inside the namespace (`ip netns exec`), so the host's own network is never
//! touched.

use std::path::Path;
use std::process::Command;

/// The host end of the TAP link, and the guest's address on it.
pub const HOST_IP: &str = "10.0.2.1";
pub const GUEST_IP: &str = "10.0.2.15";
/// The TAP interface's name inside the namespace.
pub const TAP: &str = "jtap0";

/// A network namespace with a TAP interface at [`HOST_IP`], deleted on drop.
pub struct Netns {
    pub name: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

impl Netns {
    /// The namespace, or why it cannot be made here.
    pub fn create(tag: &str) -> Result<Netns, String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root: cannot create a network namespace and a TAP interface".into());
        }
        if !Path::new("/dev/net/tun").exists() {
            return Err("/dev/net/tun is absent".into());
        }
        let ns = Netns {
            name: format!("janus-{tag}-{}", std::process::id()),
        };
        ip(&["netns", "add", &ns.name])?;
        let n = ns.name.as_str();
        ip(&["-n", n, "tuntap", "add", "dev", TAP, "mode", "tap"])?;
        ip(&["-n", n, "addr", "add", &format!("{HOST_IP}/24"), "dev", TAP])?;
        ip(&["-n", n, "link", "set", TAP, "up"])?;
        Ok(ns)
    }

    /// An open handle on the namespace, which another thread can enter.
    pub fn handle(&self) -> Result<NetnsHandle, String> {
        let path = format!("/run/netns/{}", self.name);
        std::fs::File::open(&path)
            .map(NetnsHandle)
            .map_err(|e| format!("{path}: {e}"))
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

/// An open network namespace (it does not delete the namespace when dropped).
pub struct NetnsHandle(std::fs::File);

impl NetnsHandle {
    /// Moves the calling thread (only it) into the namespace, so that the sockets it makes
    /// from now on live there: a test's end of a TCP connection with the guest.
    pub fn enter_on_this_thread(&self) -> Result<(), String> {
        use std::os::fd::AsRawFd;
        // SAFETY: setns takes a file descriptor we own for the duration of the call and a
        // namespace type; it changes only the calling thread's network namespace.
        let rc = unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}
