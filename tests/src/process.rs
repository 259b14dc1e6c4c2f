//! A child process under test: output captured line by line (and echoed, prefixed, to the test's stderr, which the
//! test harness shows when the test fails), waits with deadlines, signals, and SIGKILL on drop.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::panic::Location;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::POLL_INTERVAL;

/// Variables never inherited from the test's environment, so a developer's shell cannot change what a test
/// runs: the binaries' configuration (`STREAMPLANE_*`, MediaMTX-compatible `MTX_*`) and the control plane's
/// `DATABASE_URL` fallback. Set what a test needs with [`ProcessBuilder::env`].
const SCRUBBED_PREFIXES: [&str; 2] = ["STREAMPLANE_", "MTX_"];
const SCRUBBED_NAMES: [&str; 1] = ["DATABASE_URL"];

/// How many lines of output a panic message shows.
const TAIL_LINES: usize = 60;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Default)]
struct Captured {
    lines: Vec<(Stream, String)>,
    /// Pipes that reached end of file: 2 means every line the process wrote is in `lines`.
    closed: u8,
}

/// Configures and starts a [`Process`]; like [`std::process::Command`].
#[derive(Debug, Clone)]
pub struct ProcessBuilder {
    program: PathBuf,
    name: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
}

impl ProcessBuilder {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        let program = program.into();
        let name = program
            .file_name()
            .map_or_else(|| "process".into(), |n| n.to_string_lossy().into_owned());
        ProcessBuilder {
            program,
            name,
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
        }
    }

    /// The prefix of echoed lines and the name in panic messages (default: the program's file name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets a variable; a later call for the same name wins.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Starts the process, panicking when it cannot be started.
    pub fn spawn(self) -> Process {
        let program = self.program.clone();
        self.try_spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()))
    }

    pub fn try_spawn(self) -> std::io::Result<Process> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if SCRUBBED_PREFIXES.iter().any(|p| k.starts_with(p))
                || SCRUBBED_NAMES.contains(&k.as_ref())
            {
                cmd.env_remove(&key);
            }
        }
        // Plain text logs, so that lines can be matched as they read.
        cmd.env("NO_COLOR", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn()?;
        let captured = Arc::new(Mutex::new(Captured::default()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        spawn_reader(&self.name, Stream::Stdout, stdout, captured.clone())?;
        spawn_reader(&self.name, Stream::Stderr, stderr, captured.clone())?;
        Ok(Process {
            name: self.name,
            pid: child.id(),
            child: Mutex::new(child),
            status: Mutex::new(None),
            captured,
        })
    }
}

/// A running (or exited) child process. Killed with SIGKILL when dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    pid: u32,
    child: Mutex<Child>,
    status: Mutex<Option<ExitStatus>>,
    captured: Arc<Mutex<Captured>>,
}

impl Process {
    pub fn builder(program: impl Into<PathBuf>) -> ProcessBuilder {
        ProcessBuilder::new(program)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// All output so far, stdout and stderr interleaved in arrival order, one line per line, ANSI colours removed.
    pub fn output(&self) -> String {
        self.joined(|_| true)
    }

    pub fn stdout(&self) -> String {
        self.joined(|s| s == Stream::Stdout)
    }

    pub fn stderr(&self) -> String {
        self.joined(|s| s == Stream::Stderr)
    }

    /// The number of lines so far: pass it to [`Process::wait_for_line_since`] to wait for a line printed after
    /// this point (e.g. "reconnected" after a restart of the control plane).
    pub fn mark(&self) -> usize {
        self.captured().lines.len()
    }

    /// Waits until a line containing `needle` has been printed (on stdout or stderr, at any time since the start)
    /// and returns that line. Panics with the output when the deadline passes or the process exits without it.
    #[track_caller]
    pub fn wait_for_line(&self, needle: &str, deadline: Duration) -> impl Future<Output = String> {
        self.wait_for_line_since(0, needle, deadline)
    }

    /// As [`Process::wait_for_line`], considering only lines after `mark` (from [`Process::mark`]).
    // Not `async fn`s: `#[track_caller]` must see the call, so that panics name the test's line.
    #[track_caller]
    pub fn wait_for_line_since(
        &self,
        mark: usize,
        needle: &str,
        deadline: Duration,
    ) -> impl Future<Output = String> {
        let caller = Location::caller();
        async move {
            let until = Instant::now() + deadline;
            loop {
                let all_read = {
                    let captured = self.captured();
                    if let Some((_, line)) = captured
                        .lines
                        .iter()
                        .skip(mark)
                        .find(|(_, l)| l.contains(needle))
                    {
                        return line.clone();
                    }
                    captured.closed == 2
                };
                if let Some(status) = self.try_status() {
                    // The pipes can outlive the process briefly; only once they are drained is the line truly missing.
                    if all_read {
                        panic!(
                            "{} exited ({status}) without printing a line containing {needle:?} (awaited at \
                         {caller}); output:\n{}",
                            self.name,
                            self.tail()
                        );
                    }
                }
                if Instant::now() >= until {
                    panic!(
                        "timed out after {deadline:?} waiting for {} to print a line containing {needle:?} (at \
                     {caller}); output:\n{}",
                        self.name,
                        self.tail()
                    );
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn try_status(&self) -> Option<ExitStatus> {
        let mut status = lock(&self.status);
        if status.is_none() {
            *status = lock(&self.child).try_wait().ok().flatten();
        }
        *status
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        self.try_status().is_none()
    }

    /// Waits for the process to exit and returns its status; panics with the output after `deadline`.
    #[track_caller]
    pub fn wait_exit(&self, deadline: Duration) -> impl Future<Output = ExitStatus> {
        let caller = Location::caller();
        async move {
            let until = Instant::now() + deadline;
            loop {
                if let Some(status) = self.try_status() {
                    self.drain_pipes().await;
                    return status;
                }
                if Instant::now() >= until {
                    panic!(
                        "timed out after {deadline:?} waiting for {} (pid {}) to exit (at {caller}); output:\n{}",
                        self.name,
                        self.pid,
                        self.tail()
                    );
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`, `KILL`, …) unless the process has already exited.
    pub fn signal(&self, signal: &str) {
        // Locks in the same order as try_status (status, then child). Holding the child while signalling: an
        // unreaped process keeps its pid, so the signal cannot reach another process that reused it.
        let mut status = lock(&self.status);
        let mut child = lock(&self.child);
        if status.is_some() {
            return;
        }
        if let Ok(Some(exited)) = child.try_wait() {
            *status = Some(exited);
            return;
        }
        let out = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("cannot run kill -{signal} {}: {e}", self.pid));
        // A process that exits on its own meanwhile is fine: there is nothing left to signal.
        if !out.status.success() && child.try_wait().ok().flatten().is_none() {
            panic!(
                "kill -{signal} {} failed: {}",
                self.pid,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// SIGTERM, then waits up to `deadline` for the exit (panicking with the output when it does not come).
    #[track_caller]
    pub fn terminate(&self, deadline: Duration) -> impl Future<Output = ExitStatus> {
        self.signal("TERM");
        self.wait_exit(deadline)
    }

    /// SIGKILL and reap. Does nothing when the process has already exited.
    pub fn kill(&self) {
        let mut status = lock(&self.status);
        let mut child = lock(&self.child);
        if status.is_some() {
            return;
        }
        let _already_exited = child.kill();
        if let Ok(exited) = child.wait() {
            *status = Some(exited);
        }
    }

    /// The last lines of output, for panic messages.
    pub fn tail(&self) -> String {
        let captured = self.captured();
        let skip = captured.lines.len().saturating_sub(TAIL_LINES);
        let mut out = String::new();
        if skip > 0 {
            let _ = writeln!(out, "  ({skip} earlier lines omitted)");
        }
        for (_, line) in &captured.lines[skip..] {
            let _ = writeln!(out, "  | {line}");
        }
        if captured.lines.is_empty() {
            out.push_str("  (no output)\n");
        }
        out
    }

    fn joined(&self, keep: impl Fn(Stream) -> bool) -> String {
        let captured = self.captured();
        let lines: Vec<&str> = captured
            .lines
            .iter()
            .filter(|(s, _)| keep(*s))
            .map(|(_, l)| l.as_str())
            .collect();
        lines.join("\n")
    }

    fn captured(&self) -> MutexGuard<'_, Captured> {
        lock(&self.captured)
    }

    /// After an exit, gives the reader threads a moment to take the last lines (bounded: a grandchild may hold
    /// the pipes open).
    async fn drain_pipes(&self) {
        let until = Instant::now() + Duration::from_secs(2);
        while self.captured().closed < 2 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test may poison a lock; the data (output lines, a child handle) is still fine to read.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn spawn_reader(
    name: &str,
    stream: Stream,
    pipe: impl Read + Send + 'static,
    captured: Arc<Mutex<Captured>>,
) -> std::io::Result<()> {
    let prefix = match stream {
        Stream::Stdout => format!("[{name}] "),
        Stream::Stderr => format!("[{name}!] "),
    };
    // A thread spawned from the test's thread inherits its output capture: the echo shows up with the test's
    // output when it fails, and stays quiet otherwise.
    std::thread::Builder::new()
        .name(format!("{name}-{stream:?}"))
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = strip_ansi(
                            String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']),
                        );
                        eprintln!("{prefix}{line}");
                        lock(&captured).lines.push((stream, line));
                    }
                }
            }
            lock(&captured).closed += 1;
        })?;
    Ok(())
}

/// Removes ANSI escape sequences (colours, cursor movement), in case a binary colours its logs anyway.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Process {
        Process::builder("/bin/sh")
            .name("sh")
            .arg("-c")
            .arg(script)
            .spawn()
    }

    #[test]
    fn ansi_sequences_are_removed() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m ready"),
            "2026  INFO ready"
        );
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[tokio::test]
    async fn captures_both_streams_and_waits_for_lines() {
        let p = sh("echo out1; echo err1 >&2; echo 'listening on 127.0.0.1:9'; exec sleep 30");
        let line = p
            .wait_for_line("listening on", Duration::from_secs(10))
            .await;
        assert_eq!(line, "listening on 127.0.0.1:9");
        p.wait_for_line("err1", Duration::from_secs(10)).await;
        assert!(
            p.stdout().contains("out1") && !p.stdout().contains("err1"),
            "{}",
            p.output()
        );
        assert!(p.stderr().contains("err1"));
        assert!(p.is_running());
        let status = p.terminate(Duration::from_secs(10)).await;
        assert!(!status.success());
        assert!(!p.is_running());
    }

    #[tokio::test]
    async fn lines_after_a_mark() {
        let p = sh("trap 'echo tick again' HUP; echo tick; while :; do sleep 0.05; done");
        p.wait_for_line("tick", Duration::from_secs(10)).await;
        let mark = p.mark();
        p.signal("HUP");
        let line = p
            .wait_for_line_since(mark, "tick", Duration::from_secs(10))
            .await;
        assert_eq!(line, "tick again");
    }

    #[tokio::test]
    async fn exit_codes() {
        let p = sh("echo bye; exit 64");
        let status = p.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(64));
        assert_eq!(p.output(), "bye");
    }

    #[tokio::test]
    #[should_panic(
        expected = "exited (exit status: 3) without printing a line containing \"ready\""
    )]
    async fn an_early_exit_fails_the_wait_at_once() {
        let p = sh("echo starting; exit 3");
        p.wait_for_line("ready", Duration::from_secs(30)).await;
    }

    #[tokio::test]
    #[should_panic(
        expected = "waiting for sh to print a line containing \"never\" (at tests/src/process.rs:"
    )]
    async fn a_timeout_names_the_caller() {
        let p = sh("echo hello; exec sleep 30");
        p.wait_for_line("never", Duration::from_millis(300)).await;
    }

    #[tokio::test]
    #[should_panic(expected = "output:\n  | hello\n")]
    async fn a_timeout_shows_the_output() {
        let p = sh("echo hello; exec sleep 30");
        p.wait_for_line("never", Duration::from_millis(300)).await;
    }

    #[tokio::test]
    async fn inherited_configuration_is_scrubbed() {
        // The test's own environment is not modified: look for any STREAMPLANE_/MTX_/DATABASE_URL variable the
        // child would see, and for the variable the builder sets explicitly.
        let p = Process::builder("/bin/sh")
            .arg("-c")
            .arg("env | grep -E '^(STREAMPLANE_|MTX_|DATABASE_URL=)' || true; echo done")
            .env("STREAMPLANE_EXPLICIT", "yes")
            .spawn();
        p.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(p.output(), "STREAMPLANE_EXPLICIT=yes\ndone");
    }

    #[tokio::test]
    async fn kill_and_drop() {
        let p = sh("exec sleep 30");
        let pid = p.pid();
        p.kill();
        assert!(p.try_status().is_some());
        p.kill(); // idempotent
        p.signal("TERM"); // no-op once exited
        drop(p);
        let q = sh("exec sleep 30");
        let qpid = q.pid();
        drop(q);
        assert!(
            !std::path::Path::new(&format!("/proc/{qpid}")).exists(),
            "dropped process {qpid} still exists"
        );
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
