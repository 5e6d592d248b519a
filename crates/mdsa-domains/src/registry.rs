//! The set of domains in use, with the file-level settings that came with them.

use std::path::Path;

use crate::config::{DomainConfig, DomainsFile, RouterConfig};
use crate::error::{DomainError, Result};

/// Domains by id, in file order, with the router settings, default model and
/// fallback domain of the file they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainRegistry {
    file: DomainsFile,
    origin: String,
}

impl Default for DomainRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl DomainRegistry {
    /// An empty registry with default router settings.
    pub fn new() -> Self {
        Self {
            file: DomainsFile::default(),
            origin: "<memory>".into(),
        }
    }

    /// The four predefined domains: finance, medical, support and technical.
    pub fn builtin() -> Self {
        crate::builtin::registry()
    }

    /// Reads and checks a domains file (RON).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DomainError::io(path, e))?;
        Self::from_str(&text, &path.display().to_string())
    }

    /// Parses and checks domains-file text; `origin` names it in errors.
    pub fn from_str(text: &str, origin: &str) -> Result<Self> {
        Ok(Self {
            file: DomainsFile::parse(text, origin)?,
            origin: origin.to_string(),
        })
    }

    /// Wraps an already-built file, checking it.
    pub fn from_domains_file(file: DomainsFile, origin: &str) -> Result<Self> {
        file.check().map_err(|(field, message)| {
            DomainError::Config(mdsa_config::ConfigError {
                origin: origin.to_string(),
                line: None,
                column: None,
                field,
                message,
            })
        })?;
        Ok(Self {
            file,
            origin: origin.to_string(),
        })
    }

    /// Where the domains came from (a path, `<builtin>` or `<memory>`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Adds a domain, or replaces the one with the same id; the domain is checked
    /// first. Returns the replaced domain.
    pub fn insert(&mut self, domain: DomainConfig) -> Result<Option<DomainConfig>> {
        domain.validate()?;
        match self.file.domains.iter_mut().find(|d| d.id == domain.id) {
            Some(slot) => Ok(Some(std::mem::replace(slot, domain))),
            None => {
                self.file.domains.push(domain);
                Ok(None)
            }
        }
    }

    /// Removes a domain (clearing the fallback if it named it).
    pub fn remove(&mut self, id: &str) -> Option<DomainConfig> {
        let index = self.file.domains.iter().position(|d| d.id == id)?;
        if self.file.fallback_domain.as_deref() == Some(id) {
            self.file.fallback_domain = None;
        }
        Some(self.file.domains.remove(index))
    }

    /// The domain with this id.
    pub fn get(&self, id: &str) -> Option<&DomainConfig> {
        self.file.domains.iter().find(|d| d.id == id)
    }

    /// The domain with this id, or an error listing the known ids.
    pub fn require(&self, id: &str) -> Result<&DomainConfig> {
        self.get(id).ok_or_else(|| DomainError::UnknownDomain {
            id: id.to_string(),
            known: self.ids().collect::<Vec<_>>().join(", "),
        })
    }

    /// Domains in order.
    pub fn iter(&self) -> impl Iterator<Item = &DomainConfig> {
        self.file.domains.iter()
    }

    /// Domain ids in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.file.domains.iter().map(|d| d.id.as_str())
    }

    /// Number of domains.
    pub fn len(&self) -> usize {
        self.file.domains.len()
    }

    /// Whether there are no domains.
    pub fn is_empty(&self) -> bool {
        self.file.domains.is_empty()
    }

    /// Router settings.
    pub fn router_config(&self) -> &RouterConfig {
        &self.file.router
    }

    /// Replaces the router settings (checked).
    pub fn set_router_config(&mut self, router: RouterConfig) -> Result<()> {
        let mut file = self.file.clone();
        file.router = router;
        *self = Self::from_domains_file(file, &self.origin)?;
        Ok(())
    }

    /// Model reference for domains that name none.
    pub fn default_model(&self) -> Option<&str> {
        self.file.default_model.as_deref()
    }

    /// Sets the default model reference.
    pub fn set_default_model(&mut self, model: Option<String>) {
        self.file.default_model = model;
    }

    /// The model a domain runs on: its own, else the file's default.
    pub fn model_for<'a>(&'a self, domain: &'a DomainConfig) -> Option<&'a str> {
        domain.model.as_deref().or(self.default_model())
    }

    /// The domain that takes abstained queries, if any.
    pub fn fallback_domain(&self) -> Option<&str> {
        self.file.fallback_domain.as_deref()
    }

    /// Sets the fallback domain; it must be a known domain.
    pub fn set_fallback_domain(&mut self, id: Option<&str>) -> Result<()> {
        if let Some(id) = id {
            self.require(id)?;
        }
        self.file.fallback_domain = id.map(str::to_string);
        Ok(())
    }

    /// The whole file.
    pub fn domains_file(&self) -> &DomainsFile {
        &self.file
    }

    /// Serialises as a domains file (RON) that [`DomainRegistry::from_str`] reads back.
    pub fn to_ron(&self) -> Result<String> {
        self.file.to_ron()
    }
}
