//! The command line of `cargo xtask loadtest`, and the check that a target
//! URL stays on this machine.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail, ensure};

pub(super) const USAGE: &str = "\
usage: cargo xtask loadtest [--clients 1,8,64] [--seconds 20] [--mode route|chat|both]
                            [--max-tokens 16] [--max-requests 100000] [--url http://127.0.0.1:PORT]

Without --url, builds mdsa-cli (release), starts `mdsa serve --port 0` with a
queue as large as the most clients (and --queue-timeout 240), loads it, and
stops it with SIGTERM. With
--url, loads a server already running on this machine (loopback only; one
server, not a load balancer, and no other traffic: the chat runs compare the
answers with that server's own request count from /metrics).

  --clients LIST      client threads per run, comma-separated (default 1,8,64)
  --seconds S         how long each run sends requests (default 20)
  --mode M            route (POST /v1/route), chat (POST /v1/chat/completions) or both (default)
  --max-tokens N      max_tokens of each chat request (default 16)
  --max-requests N    at most this many requests per run, all clients together (default 100000)
  --url URL           a running server: http:// on 127.0.0.0/8, localhost or [::1]

Writes target/loadtest.json; exits non-zero if any request errored or was lost.";

/// What one run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// `POST /v1/route`.
    Route,
    /// `POST /v1/chat/completions`, not streamed.
    Chat,
}

impl Mode {
    pub(super) fn name(self) -> &'static str {
        match self {
            Mode::Route => "route",
            Mode::Chat => "chat",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Options {
    pub(super) clients: Vec<usize>,
    pub(super) duration: Duration,
    pub(super) modes: Vec<Mode>,
    pub(super) max_tokens: u32,
    pub(super) max_requests: u64,
    /// A running server's base URL (checked: loopback), without a trailing `/`.
    pub(super) url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clients: vec![1, 8, 64],
            duration: Duration::from_secs(20),
            modes: vec![Mode::Route, Mode::Chat],
            max_tokens: 16,
            max_requests: 100_000,
            url: None,
        }
    }
}

/// Most client threads one run may start.
const MAX_CLIENTS: usize = 1024;
/// Longest run, in seconds.
const MAX_SECONDS: f64 = 3600.0;

impl Options {
    /// `None` for `--help`. Takes `--flag value` and `--flag=value`.
    pub(super) fn parse(args: &[String]) -> anyhow::Result<Option<Self>> {
        let mut options = Self::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
                _ => (arg.as_str(), None),
            };
            if matches!(flag, "-h" | "--help") {
                return Ok(None);
            }
            let mut value = || -> anyhow::Result<String> {
                match &inline {
                    Some(v) => Ok(v.clone()),
                    None => args
                        .next()
                        .cloned()
                        .with_context(|| format!("{flag} needs a value")),
                }
            };
            match flag {
                "--clients" => options.clients = parse_clients(&value()?)?,
                "--seconds" => options.duration = parse_seconds(&value()?)?,
                "--mode" => options.modes = parse_mode(&value()?)?,
                "--max-tokens" => {
                    let v = value()?;
                    options.max_tokens = positive(flag, &v)?;
                }
                "--max-requests" => {
                    let v = value()?;
                    options.max_requests = positive(flag, &v)?;
                }
                "--url" => options.url = Some(loopback_base_url(&value()?)?),
                other => bail!("unknown argument {other:?}\n\n{USAGE}"),
            }
        }
        Ok(Some(options))
    }

    /// The most clients of any run: the queue a spawned server needs.
    pub(super) fn max_clients(&self) -> usize {
        self.clients.iter().copied().max().unwrap_or(1)
    }
}

pub(super) fn positive<T: std::str::FromStr + PartialOrd + Default>(
    flag: &str,
    text: &str,
) -> anyhow::Result<T> {
    match text.trim().parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => bail!("{flag}: expected a number above 0, found {text:?}"),
    }
}

fn parse_clients(text: &str) -> anyhow::Result<Vec<usize>> {
    let clients = text
        .split(',')
        .map(|part| {
            let n: usize = positive("--clients", part)?;
            ensure!(
                n <= MAX_CLIENTS,
                "--clients: at most {MAX_CLIENTS} per run, found {n}"
            );
            Ok(n)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(clients)
}

fn parse_seconds(text: &str) -> anyhow::Result<Duration> {
    match text.trim().parse::<f64>() {
        Ok(s) if s > 0.0 && s <= MAX_SECONDS => Ok(Duration::from_secs_f64(s)),
        _ => bail!(
            "--seconds: expected a number of seconds above 0 and at most {MAX_SECONDS}, found {text:?}"
        ),
    }
}

fn parse_mode(text: &str) -> anyhow::Result<Vec<Mode>> {
    Ok(match text {
        "route" => vec![Mode::Route],
        "chat" => vec![Mode::Chat],
        "both" => vec![Mode::Route, Mode::Chat],
        other => bail!("--mode: expected route, chat or both, found {other:?}"),
    })
}

/// Where a URL points: a host as written and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
}

/// Checks that `url` is `http://` to a loopback host (127.0.0.0/8,
/// `localhost`, `[::1]`) and returns it without a trailing `/`. Anything else
/// is refused: a load test sends thousands of requests, and this workplace
/// allows them nowhere but this machine.
pub(super) fn loopback_base_url(url: &str) -> anyhow::Result<String> {
    let target = parse_http_url(url)?;
    ensure!(
        is_loopback_host(&target.host),
        "--url: {url:?} is not on this machine; the load test only targets loopback \
         (127.0.0.0/8, localhost or [::1])"
    );
    Ok(url.trim_end_matches('/').to_string())
}

/// Splits `http://HOST[:PORT][/PATH]` (no user info, query or fragment).
pub(super) fn parse_http_url(url: &str) -> anyhow::Result<Target> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("--url: expected http://HOST:PORT (plain HTTP on loopback), found {url:?}");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    ensure!(
        !rest.contains(['?', '#']),
        "--url: expected no query or fragment, found {url:?}"
    );
    ensure!(
        !authority.contains('@'),
        "--url: expected no user info (user@host), found {url:?}"
    );
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .with_context(|| format!("--url: unclosed '[' in {url:?}"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .with_context(|| format!("--url: expected ':PORT' after ']' in {url:?}"))?,
            ),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    ensure!(!host.is_empty(), "--url: no host in {url:?}");
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .with_context(|| format!("--url: expected a port from 1 to 65535, found {p:?}"))?,
    };
    Ok(Target {
        host: host.to_string(),
        port,
    })
}

/// An IP literal on loopback, or `localhost` itself.
pub(super) fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// Resolves the URL's host as the HTTP client will and checks that every
/// address is loopback (a `localhost` mapped elsewhere is refused too).
pub(super) fn ensure_resolves_to_loopback(url: &str) -> anyhow::Result<()> {
    let target = parse_http_url(url)?;
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .with_context(|| format!("--url: cannot resolve {:?}", target.host))?
        .collect();
    ensure!(
        !addrs.is_empty(),
        "--url: {:?} resolves to no address",
        target.host
    );
    if let Some(away) = addrs
        .iter()
        .find(|a| !is_loopback_host(&a.ip().to_string()))
    {
        bail!(
            "--url: {:?} resolves to {away}, which is not loopback; refusing to send load there",
            target.host
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Option<Options>> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Options::parse(&args)
    }

    #[test]
    fn defaults_are_three_client_counts_two_modes_twenty_seconds() {
        let options = parse(&[]).unwrap().unwrap();
        assert_eq!(options, Options::default());
        assert_eq!(options.clients, [1, 8, 64]);
        assert_eq!(options.modes, [Mode::Route, Mode::Chat]);
        assert_eq!(options.duration, Duration::from_secs(20));
        assert_eq!(options.max_tokens, 16);
        assert_eq!(options.max_clients(), 64);
    }

    #[test]
    fn every_flag_in_both_spellings() {
        let options = parse(&[
            "--clients",
            "2,4",
            "--seconds=0.5",
            "--mode",
            "chat",
            "--max-tokens=8",
            "--max-requests",
            "50",
            "--url=http://127.0.0.1:8080/",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(options.clients, [2, 4]);
        assert_eq!(options.duration, Duration::from_millis(500));
        assert_eq!(options.modes, [Mode::Chat]);
        assert_eq!(options.max_tokens, 8);
        assert_eq!(options.max_requests, 50);
        assert_eq!(options.url.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(
            parse(&["--mode", "route"]).unwrap().unwrap().modes,
            [Mode::Route]
        );
        assert!(parse(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        for (args, needle) in [
            (&["--clients", "1,0"][..], "--clients"),
            (&["--clients", "1,,2"], "--clients"),
            (&["--clients", "5000"], "at most"),
            (&["--seconds", "0"], "--seconds"),
            (&["--seconds", "abc"], "--seconds"),
            (&["--mode", "stream"], "route, chat or both"),
            (&["--max-tokens", "-3"], "--max-tokens"),
            (&["--max-requests", "0"], "--max-requests"),
            (&["--clients"], "needs a value"),
            (&["--verbose"], "unknown argument"),
        ] {
            let error = format!("{:#}", parse(args).unwrap_err());
            assert!(error.contains(needle), "{args:?}: {error}");
        }
    }

    #[test]
    fn loopback_urls_are_accepted() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "http://127.1.2.3:9",
            "http://localhost:8080",
            "http://LOCALHOST",
            "http://[::1]:8080",
            "http://[::ffff:127.0.0.1]:8080",
        ] {
            assert!(loopback_base_url(url).is_ok(), "{url}");
        }
        assert_eq!(
            parse_http_url("http://[::1]:8080/x").unwrap(),
            Target {
                host: "::1".into(),
                port: 8080
            }
        );
        assert_eq!(parse_http_url("http://localhost").unwrap().port, 80);
    }

    #[test]
    fn anything_off_this_machine_is_refused() {
        for url in [
            "http://10.0.0.1:8080",
            "http://0.0.0.0:8080",
            "http://192.168.1.2",
            "http://example.com",
            "http://localhost.example.com",
            "http://127.0.0.1.example.com",
            "http://127.0.0.1@example.com",
            "http://example.com@127.0.0.1",
            "http://[::2]:8080",
            "http://2130706433",
            "https://127.0.0.1:8443",
            "127.0.0.1:8080",
            "http://127.0.0.1:0",
            "http://127.0.0.1:99999",
            "http://127.0.0.1:8080/?next=x",
            "http://[::1",
            "http://[::1]x",
            "http://",
        ] {
            assert!(loopback_base_url(url).is_err(), "{url} was accepted");
        }
    }

    #[test]
    fn loopback_literals_resolve_to_loopback() {
        ensure_resolves_to_loopback("http://127.0.0.1:8080").unwrap();
        ensure_resolves_to_loopback("http://[::1]:8080").unwrap();
    }
}
