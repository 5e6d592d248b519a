//! The command line of `cargo xtask loadtest`, and the check that a target
//! URL stays on this machine.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail, ensure};

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

/// What `--mode` asks for: one mode, or both in turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Modes {
    /// POST /v1/route.
    Route,
    /// POST /v1/chat/completions.
    Chat,
    /// Route, then chat.
    #[default]
    Both,
}

impl Modes {
    /// The runs' modes, in the order they run.
    pub(super) fn modes(self) -> Vec<Mode> {
        match self {
            Modes::Route => vec![Mode::Route],
            Modes::Chat => vec![Mode::Chat],
            Modes::Both => vec![Mode::Route, Mode::Chat],
        }
    }
}

/// Concurrent clients against mdsa serve (release): throughput, latency, lost
/// requests.
///
/// Without --url, builds mdsa-cli (release), starts `mdsa serve --port 0` with a
/// queue as large as the most clients (and --queue-timeout 240), loads it, and
/// stops it with SIGTERM. With --url, loads a server already running on this
/// machine (loopback only; one server, not a load balancer, and no other
/// traffic: the chat runs compare the answers with that server's own request
/// count from /metrics).
///
/// Before the runs of each mode, 24 requests (chat: 1 token each) load the
/// models and let the generator keep each domain's prompt prefix; they are not
/// counted, so every run meets the server in its steady state.
///
/// Writes target/loadtest.json; exits non-zero if any request errored or was lost.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub(crate) struct LoadtestArgs {
    /// Client threads per run, comma-separated.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = DEFAULT_CLIENTS,
        value_parser = client_count,
        allow_negative_numbers = true,
        // `--clients 2 --clients 4` is [4], as any flag given twice.
        action = clap::ArgAction::Set,
    )]
    pub(crate) clients: Vec<usize>,
    /// How long each run sends requests, in seconds.
    #[arg(
        long = "seconds",
        value_name = "S",
        default_value = DEFAULT_SECONDS,
        value_parser = seconds,
        allow_negative_numbers = true,
    )]
    pub(crate) duration: Duration,
    /// Route (POST /v1/route), chat (POST /v1/chat/completions) or both.
    #[arg(long, value_name = "M", value_enum, default_value_t)]
    pub(crate) mode: Modes,
    /// max_tokens of each chat request.
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_MAX_TOKENS,
        value_parser = positive::<u32>,
        allow_negative_numbers = true
    )]
    pub(crate) max_tokens: u32,
    /// At most this many requests per run, all clients together.
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_MAX_REQUESTS,
        value_parser = positive::<u64>,
        allow_negative_numbers = true
    )]
    pub(crate) max_requests: u64,
    /// Seconds over which a run's clients start, evenly spaced (0: all at
    /// once). Clients that start together send their first requests in one
    /// burst, whose prompts then run together, and the run's tail latencies
    /// measure that burst rather than the steady state.
    #[arg(
        long,
        value_name = "S",
        default_value = DEFAULT_RAMP_UP,
        value_parser = ramp_seconds,
        allow_negative_numbers = true,
    )]
    pub(crate) ramp_up: Duration,
    /// A running server: http:// on 127.0.0.0/8, localhost or [::1].
    #[arg(long, value_name = "URL", value_parser = loopback_base_url)]
    pub(crate) url: Option<String>,
    /// The server at --url is not mdsa (llama.cpp's llama-server, say, as a
    /// reference): its /metrics is not read, and a request counts as lost
    /// when its client got no answer.
    #[arg(long, requires = "url")]
    pub(crate) foreign: bool,
}

// The defaults, as `--help` shows them; `Default` below writes the same values
// (a test checks they agree).
const DEFAULT_CLIENTS: &str = "1,8,64";
const DEFAULT_SECONDS: &str = "20";
const DEFAULT_MAX_TOKENS: u32 = 16;
const DEFAULT_MAX_REQUESTS: u64 = 100_000;
const DEFAULT_RAMP_UP: &str = "1";

impl Default for LoadtestArgs {
    /// What `cargo xtask loadtest` with no options runs.
    fn default() -> Self {
        Self {
            clients: vec![1, 8, 64],
            duration: Duration::from_secs(20),
            mode: Modes::Both,
            max_tokens: DEFAULT_MAX_TOKENS,
            max_requests: DEFAULT_MAX_REQUESTS,
            ramp_up: Duration::from_secs(1),
            url: None,
            foreign: false,
        }
    }
}

/// Most client threads one run may start.
const MAX_CLIENTS: usize = 1024;
/// Longest run, in seconds.
const MAX_SECONDS: f64 = 3600.0;

impl LoadtestArgs {
    /// The most clients of any run: the queue a spawned server needs.
    pub(super) fn max_clients(&self) -> usize {
        self.clients.iter().copied().max().unwrap_or(1)
    }
}

/// A number above 0 (a value parser).
pub(super) fn positive<T: std::str::FromStr + PartialOrd + Default>(
    text: &str,
) -> Result<T, String> {
    match text.trim().parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err(format!("expected a number above 0, found {text:?}")),
    }
}

/// One of `--clients`: from 1 to [`MAX_CLIENTS`].
fn client_count(text: &str) -> Result<usize, String> {
    let n: usize = positive(text)?;
    if n > MAX_CLIENTS {
        return Err(format!("at most {MAX_CLIENTS} per run, found {n}"));
    }
    Ok(n)
}

/// `--seconds`: above 0 and at most [`MAX_SECONDS`].
fn seconds(text: &str) -> Result<Duration, String> {
    seconds_within(text, false)
}

/// `--ramp-up`: from 0 to [`MAX_SECONDS`].
fn ramp_seconds(text: &str) -> Result<Duration, String> {
    seconds_within(text, true)
}

/// A number of seconds up to [`MAX_SECONDS`], from 0 if `zero` is allowed,
/// else above it.
fn seconds_within(text: &str, zero: bool) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if (s > 0.0 || (zero && s == 0.0)) && s <= MAX_SECONDS => {
            Ok(Duration::from_secs_f64(s))
        }
        _ => Err(format!(
            "expected a number of seconds {} and at most {MAX_SECONDS}, found {text:?}",
            if zero { "from 0" } else { "above 0" }
        )),
    }
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

    fn parse(args: &[&str]) -> Result<LoadtestArgs, clap::Error> {
        match crate::tests::parse(&[&["loadtest"], args].concat())?.task {
            Some(crate::Task::Loadtest(args)) => Ok(args),
            other => panic!("not loadtest: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_three_client_counts_two_modes_twenty_seconds() {
        let options = parse(&[]).unwrap();
        assert_eq!(options, LoadtestArgs::default());
        assert_eq!(options.clients, [1, 8, 64]);
        assert_eq!(options.mode.modes(), [Mode::Route, Mode::Chat]);
        assert_eq!(options.duration, Duration::from_secs(20));
        assert_eq!(options.max_tokens, 16);
        assert_eq!(options.max_requests, 100_000);
        assert_eq!(options.ramp_up, Duration::from_secs(1));
        assert_eq!(options.url, None);
        assert_eq!(options.max_clients(), 64);
    }

    #[test]
    fn ramp_up_takes_zero_and_refuses_what_is_not_a_duration() {
        assert_eq!(parse(&["--ramp-up", "0"]).unwrap().ramp_up, Duration::ZERO);
        assert_eq!(
            parse(&["--ramp-up=2.5"]).unwrap().ramp_up,
            Duration::from_millis(2500)
        );
        for bad in ["-1", "soon", "1e9"] {
            let error = parse(&["--ramp-up", bad]).unwrap_err().to_string();
            assert!(error.contains("seconds from 0"), "{bad}: {error}");
        }
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
        .unwrap();
        assert_eq!(options.clients, [2, 4]);
        assert_eq!(options.duration, Duration::from_millis(500));
        assert_eq!(options.mode.modes(), [Mode::Chat]);
        assert_eq!(options.max_tokens, 8);
        assert_eq!(options.max_requests, 50);
        assert_eq!(options.url.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(
            parse(&["--mode", "route"]).unwrap().mode.modes(),
            [Mode::Route]
        );
        assert_eq!(parse(&["--clients=3"]).unwrap().clients, [3]);
        // Given twice, the last one counts.
        assert_eq!(
            parse(&["--clients", "2,4", "--clients", "16"])
                .unwrap()
                .clients,
            [16]
        );
        assert_eq!(
            parse(&["--help"]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelp
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        for (args, needle) in [
            (&["--clients", "1,0"][..], "--clients"),
            (&["--clients", "1,,2"], "--clients"),
            (&["--clients", "1,x"], "--clients"),
            (&["--clients", "5000"], "at most"),
            (&["--clients", "-1"], "--clients"),
            (&["--seconds", "0"], "--seconds"),
            (&["--seconds", "4000"], "at most 3600"),
            (&["--seconds", "abc"], "--seconds"),
            (
                &["--mode", "stream"],
                "[possible values: route, chat, both]",
            ),
            (&["--max-tokens", "-3"], "--max-tokens"),
            (&["--max-tokens", "0"], "--max-tokens"),
            (&["--max-requests", "0"], "--max-requests"),
            (&["--url", "http://10.0.0.1:8080"], "not on this machine"),
            (&["--clients"], "a value is required for '--clients <LIST>'"),
            (&["--verbose"], "unexpected argument '--verbose'"),
            (&["--foreign"], "--url <URL>"),
        ] {
            let error = parse(args).unwrap_err().to_string();
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
