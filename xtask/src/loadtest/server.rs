//! The `mdsa serve` child process a load test runs against: started on a
//! free loopback port, found through its `listening on` line, stopped with
//! SIGTERM so that shutdown drains as it does in production.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long the server may take to load the router and bind.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);
/// How long `/ready` may take to answer 200 once bound.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM'd server may drain (its own drain timeout is 30 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// The spawned server's `--queue-timeout`, in seconds: above any wait a
/// default run causes (64 chat clients on 2 cores waited 26 s at p99), so
/// that a slow or busy machine shows as latency, not as 503s; below the
/// clients' request timeout, so that a stuck queue still shows as 503s.
pub(super) const QUEUE_TIMEOUT_SECS: u64 = 240;

/// A running `mdsa serve`; killed if dropped without [`ServerProcess::stop`].
pub(super) struct ServerProcess {
    child: Option<Child>,
    stderr: Option<JoinHandle<()>>,
    /// `http://ADDR`.
    pub(super) url: String,
    /// Where the server's stderr goes.
    pub(super) log: PathBuf,
}

/// The address in `mdsa serve`'s line `... listening on http://ADDR (...)`.
pub(super) fn listening_addr(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("listening on http://")?;
    let addr = rest.split(|c: char| c.is_whitespace() || c == '/').next()?;
    addr.parse().ok()
}

impl ServerProcess {
    /// Starts `binary serve --config config --port 0 --max-queue max_queue
    /// --queue-timeout 240` on 127.0.0.1 and waits for its address; stderr
    /// goes to `log`.
    pub(super) fn start(
        binary: &Path,
        config: &Path,
        max_queue: usize,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--host", "127.0.0.1", "--port", "0", "--max-queue"])
            .arg(max_queue.to_string())
            .args(["--queue-timeout", &QUEUE_TIMEOUT_SECS.to_string()])
            // The models were fetched just before; never reach for the Hub.
            .env("HF_HUB_OFFLINE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        println!(
            "\n==> server: {} serve --config {} --host 127.0.0.1 --port 0 --max-queue {max_queue} --queue-timeout {QUEUE_TIMEOUT_SECS} (log: {})",
            binary.display(),
            config.display(),
            log.display()
        );
        let mut child = command
            .spawn()
            .with_context(|| format!("could not start {}", binary.display()))?;
        let stderr = child.stderr.take().context("the server's stderr")?;
        let mut file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let (tx, rx) = mpsc::channel();
        // Reads every line (a full pipe would block the server), keeps them in
        // the log, and reports the address once.
        let reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if let Some(addr) = listening_addr(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr);
                }
            }
        });
        let mut server = Self {
            child: Some(child),
            stderr: Some(reader),
            url: String::new(),
            log: log.to_path_buf(),
        };
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => server.url = format!("http://{addr}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = server.child.as_mut().map(Child::wait).transpose()?;
                bail!(
                    "the server exited ({}) before listening; its log:\n{}",
                    status.map_or("?".into(), |s| s.to_string()),
                    tail(log)
                );
            }
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "the server printed no `listening on` line within {STARTUP_TIMEOUT:?}; its log:\n{}",
                tail(log)
            ),
        }
        Ok(server)
    }

    /// Polls `GET /ready` until it answers 200.
    pub(super) fn wait_ready(&self, agent: &ureq::Agent) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let status = agent
                .get(format!("{}/ready", self.url))
                .call()
                .map(|r| r.status().as_u16());
            if status.as_ref().is_ok_and(|&s| s == 200) {
                println!(
                    "==> server: ready at {} in {:.1} s",
                    self.url,
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "{}/ready did not answer 200 within {READY_TIMEOUT:?} (last: {status:?}); log:\n{}",
                    self.url,
                    tail(&self.log)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process id, while it runs.
    pub(super) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits for the server to drain and exit.
    pub(super) fn stop(mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .context("the server was already stopped")?;
        terminate(&mut child)?;
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > STOP_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed it");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(reader) = self.stderr.take() {
            let _ = reader.join();
        }
        println!(
            "\n==> server: stopped by SIGTERM in {:.1} s ({status})",
            started.elapsed().as_secs_f64()
        );
        Ok(status)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGTERM through `kill(1)` (the workspace forbids `unsafe`, so no libc
/// call); elsewhere the process is killed outright.
fn terminate(child: &mut Child) -> anyhow::Result<()> {
    if cfg!(unix) {
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("running kill -TERM")?;
        if status.success() {
            return Ok(());
        }
    }
    child.kill().context("killing the server")
}

/// The last lines of a log, for error messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_comes_from_the_listening_line() {
        let line = "mdsa serve · listening on http://127.0.0.1:38597 (dashboard at /, OpenAI API at /v1, metrics at /metrics)";
        assert_eq!(
            listening_addr(line),
            Some("127.0.0.1:38597".parse().unwrap())
        );
        assert_eq!(
            listening_addr("mdsa serve · listening on http://[::1]:8080"),
            Some("[::1]:8080".parse().unwrap())
        );
        assert_eq!(
            listening_addr("listening on http://127.0.0.1:9/\n"),
            Some("127.0.0.1:9".parse().unwrap())
        );
    }

    #[test]
    fn other_lines_have_no_address() {
        for line in [
            "",
            "mdsa serve · stopped",
            "INFO mdsa_server::serve: shutting down: draining requests in flight",
            "listening on https://127.0.0.1:8080",
            "listening on http://localhost:8080",
            "listening on http://127.0.0.1",
        ] {
            assert_eq!(listening_addr(line), None, "{line}");
        }
    }
}
