//! What every command that routes or answers shares: reading the system
//! configuration (`--config`, `MDSA_CONFIG`), overriding its domains
//! (`--domains`), and building mdsa with a spinner while the encoder loads.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mdsa::engine::{DownloadProgress, ResolveOptions};
use mdsa::{Backends, Mdsa, QueryEvent, SystemConfig};

use super::fetch::Progress;

/// Options shared by every command that builds mdsa.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct SystemArgs {
    /// System configuration file (RON): models, domains, budget, logging.
    #[arg(long, global = true, env = "MDSA_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Domains file (RON) that replaces the configuration's domains.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) domains: Option<PathBuf>,
    /// Never download: use only models already in the cache (as `offline: true`
    /// in the configuration, or `HF_HUB_OFFLINE=1`).
    #[arg(long, global = true)]
    pub(crate) offline: bool,
    /// The model backends besides the local one (from the program's `main`).
    #[arg(skip)]
    pub(crate) backends: Backends,
    /// Requests each generator runs together, over the configuration's
    /// (`mdsa serve --max-concurrent`).
    #[arg(skip)]
    pub(crate) sequences: Option<usize>,
}

/// Where the CLI keeps its request log when the configuration names none, so
/// that `mdsa logs` and `mdsa metrics` see what earlier commands did.
pub(crate) fn default_log_file() -> Option<PathBuf> {
    dirs::data_local_dir().map(|d| d.join("mdsa").join("requests.jsonl"))
}

impl SystemArgs {
    /// The configuration the flags select, with the CLI's defaults for what it
    /// leaves open (a request log file and an on-disk embedding cache).
    pub(crate) fn load(&self) -> anyhow::Result<SystemConfig> {
        let mut config = match &self.config {
            Some(path) => SystemConfig::from_file(path)?,
            None => SystemConfig::default(),
        };
        if let Some(domains) = &self.domains {
            config.domains = Some(domains.clone());
        }
        config.offline |= self.offline;
        if let Some(n) = self.sequences {
            config.budget.sequences_per_model = n;
        }
        if config.logging.file.is_none() {
            config.logging.file = default_log_file();
        }
        if config.embedding_cache.is_none() {
            config.embedding_cache =
                dirs::cache_dir().map(|d| d.join("mdsa").join("embeddings.json"));
        }
        Ok(config)
    }

    /// How model references resolve: the configuration's cache and `offline`
    /// setting, with `--offline`.
    pub(crate) fn resolve_options(&self) -> anyhow::Result<ResolveOptions> {
        Ok(self.load()?.resolve_options())
    }

    /// Builds mdsa (loads the router's encoder and embeds the domains).
    pub(crate) fn build(&self) -> anyhow::Result<Mdsa> {
        let config = self.load()?;
        // A spec naming a backend this program lacks fails now, not at its
        // first query.
        self.backends
            .check(&config.models)
            .context(self.describe())?;
        self.fetch_encoder(&config)?;
        let spinner = Spinner::start("loading the router");
        let built = Mdsa::builder()
            .config(config)
            .backends(&self.backends)
            .build();
        spinner.finish();
        built.context(self.describe())
    }

    /// Downloads the router's encoder, when missing, with progress bars: every
    /// command that builds mdsa needs it before anything else. (Domain models
    /// are fetched on first use, inside the manager, behind the load spinner.)
    fn fetch_encoder(&self, config: &SystemConfig) -> anyhow::Result<()> {
        let Some(spec) = config.models.iter().find(|s| s.id == config.encoder) else {
            return Ok(());
        };
        if spec.backend != mdsa::engine::LOCAL_BACKEND {
            return Ok(());
        }
        let model = spec.model_ref().context(self.describe())?;
        // The same context as a failed load, so the message reads the same.
        super::fetch::fetch(&model, &config.resolve_options())
            .with_context(|| format!("loading model \"{}\"", spec.id))
            .context(self.describe())?;
        Ok(())
    }

    fn describe(&self) -> String {
        match (&self.config, &self.domains) {
            (Some(c), _) => format!("starting mdsa with {}", c.display()),
            (None, Some(d)) => format!("starting mdsa with domains {}", d.display()),
            (None, None) => "starting mdsa with the default configuration".into(),
        }
    }
}

/// A spinner on stderr while something loads; silent when stderr is not a terminal.
pub(crate) struct Spinner(ProgressBar);

impl Spinner {
    pub(crate) fn start(message: &str) -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        Self(bar)
    }

    pub(crate) fn finish(self) {
        self.0.finish_and_clear();
    }
}

/// Shows a spinner while a cold model loads during a query, and download
/// bars while its files are fetched.
#[derive(Default)]
pub(crate) struct LoadIndicator {
    spinner: Option<Spinner>,
    downloads: Option<Progress>,
}

impl LoadIndicator {
    /// Reacts to a query's progress events.
    pub(crate) fn on_event(&mut self, event: &QueryEvent) {
        match event {
            QueryEvent::Loading { model, cold: true } => {
                self.spinner = Some(Spinner::start(&format!("loading model {model}")));
            }
            QueryEvent::Downloading {
                file,
                downloaded,
                total,
                done,
                ..
            } => {
                // Bars and a spinner would fight over the same line.
                if let Some(spinner) = self.spinner.take() {
                    spinner.finish();
                }
                self.downloads
                    .get_or_insert_with(Progress::default)
                    .update(DownloadProgress {
                        file,
                        downloaded: *downloaded,
                        total: *total,
                        done: *done,
                    });
            }
            QueryEvent::Loaded { .. } => {
                if let Some(spinner) = self.spinner.take() {
                    spinner.finish();
                }
                if let Some(mut downloads) = self.downloads.take() {
                    downloads.clear();
                }
            }
            _ => {}
        }
    }
}
