//! Server processes: spawned with their output in a log file, stopped by PID (SIGTERM, then
//! SIGKILL), and never left behind: the guard stops them when dropped, panics included, and
//! the kernel kills them if the test process dies first (PR_SET_PDEATHSIG).

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running child process, stopped by PID when dropped.
pub struct Proc {
    child: Child,
    label: String,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    ///
    /// The child is killed by the kernel when the spawning thread exits, so spawn from the
    /// test's own thread or a runtime worker, not from a short-lived thread.
    pub fn spawn(label: &str, mut cmd: Command, log: &Path) -> Proc {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let err = out.try_clone().expect("log file handle");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} ({:?}): {e}", cmd.get_program()));
        Proc {
            child,
            label: label.to_owned(),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has already ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, up to `grace` for the process to exit, then SIGKILL. Waits for the exit.
    pub fn stop(mut self, grace: Duration) {
        self.terminate(grace);
    }

    /// SIGKILL at once (a crash).
    pub fn kill(mut self) {
        self.terminate(Duration::ZERO);
    }

    fn terminate(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        if !grace.is_zero() {
            // SAFETY: plain syscall on our own child's PID (not reaped yet, so not reused).
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let until = Instant::now() + grace;
            while Instant::now() < until {
                if self.exited().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("{} (pid {pid}) ignored SIGTERM; killing it", self.label);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- {} (pid {}), last lines of {} -----\n{}",
                self.label,
                self.child.id(),
                self.log.display(),
                self.log_tail(60)
            );
        }
        self.terminate(Duration::from_secs(5));
    }
}

/// The last `lines` lines of a file (at most its last 64 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A loopback port free right now, for a server to bind next. Picked at random BELOW the
/// kernel's ephemeral range (32768–60999 by default): a port the kernel hands out (`bind :0`)
/// can be taken by any test's outgoing connection between now and the server's bind, which made
/// servers fail with "Address already in use".
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
