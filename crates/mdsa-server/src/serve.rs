//! Running the server: bind, serve, watch the domains file, and shut down
//! gracefully.

use std::future::Future;
use std::net::SocketAddr;

use mdsa::Mdsa;
use tokio::net::TcpListener;

use crate::config::ServerConfig;
use crate::routes::router;
use crate::state::AppState;
use crate::watch::watch_domains;

/// What can stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// A bound server, not yet serving: its address is known (port 0 picks one),
/// so a caller can print or use it before serving.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    state: AppState,
    config: ServerConfig,
}

impl Server {
    /// Binds `config.addr()` for `mdsa`.
    pub async fn bind(mdsa: Mdsa, config: ServerConfig) -> Result<Self, ServeError> {
        let addr = config.addr();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let state = AppState::with_keys(mdsa, config.limits.clone(), config.keys.clone());
        Ok(Self {
            listener,
            state,
            config,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        Ok(self.listener.local_addr()?)
    }

    /// The shared state (to inspect the queue, or drain from elsewhere).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains: `/ready` turns 503, new
    /// requests get 503, connections finish what they asked (streams run to
    /// the end) within the configured drain timeout.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Self {
            listener,
            state,
            config,
        } = self;
        let watcher = config
            .watch_domains
            .clone()
            .map(|path| tokio::spawn(watch_domains(state.clone(), path, config.watch_interval)));
        let draining = state.clone();
        let app = router(state.clone());
        // Fired when shutdown starts, so the drain timeout can start with it.
        let (started_draining, drain_started) = tokio::sync::oneshot::channel::<()>();
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutting down: draining requests in flight");
            draining.start_draining();
            let _ = started_draining.send(());
        };
        let serving = axum::serve(listener, app).with_graceful_shutdown(graceful);
        // Connections drain by themselves; the timeout bounds a client that
        // never finishes reading its stream.
        let drain_timeout = config.drain_timeout;
        let result = tokio::select! {
            result = serving => result,
            () = async {
                if drain_started.await.is_ok() {
                    tokio::time::sleep(drain_timeout).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!(?drain_timeout, "drain timeout passed with connections still open; closing them");
                Ok(())
            }
        };
        if !state.drained(drain_timeout).await {
            tracing::warn!("drain timeout passed with requests still running");
        }
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        Ok(result?)
    }
}

/// Ctrl-C or SIGTERM: what `mdsa serve` stops on.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
