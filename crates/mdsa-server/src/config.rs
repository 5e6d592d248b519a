//! How the server listens and what it lets through.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::ApiKeys;

/// Where to listen and the limits to enforce.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The address to bind: loopback unless told otherwise, so a laptop's
    /// models are not offered to its network by accident.
    pub host: IpAddr,
    /// The port (0 picks a free one).
    pub port: u16,
    /// Request limits.
    pub limits: Limits,
    /// Bearer keys for the API and the admin routes (none: open).
    pub keys: ApiKeys,
    /// A domains file to reload when it changes on disk.
    pub watch_domains: Option<PathBuf>,
    /// How often the watched file is checked.
    pub watch_interval: Duration,
    /// How long a shutdown waits for requests in flight to finish.
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            limits: Limits::default(),
            keys: ApiKeys::default(),
            watch_domains: None,
            watch_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl ServerConfig {
    /// The socket address to bind.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

/// What one request may ask and how many run at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest total of request headers (names, values and their separators),
    /// in bytes (431 beyond), as front proxies limit them.
    pub max_header_bytes: usize,
    /// Cap on `max_tokens`: larger requests are lowered to it.
    pub max_tokens: usize,
    /// Requests that run models at the same time (routing, embedding,
    /// generation); each generation keeps cores busy, so more than the cores
    /// only adds latency.
    pub max_concurrent: usize,
    /// Requests that may wait for a slot; beyond, 429.
    pub max_queue: usize,
    /// How long a request waits for a slot before a 503.
    pub queue_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_header_bytes: 16 << 10,
            max_tokens: 2048,
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_queue: 64,
            queue_timeout: Duration::from_secs(60),
        }
    }
}
