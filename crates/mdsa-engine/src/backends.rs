//! The set of model backends a program offers, by name: what a spec's
//! `backend` field selects from.
//!
//! A program (the `mdsa` CLI, a server of your own) builds one [`Backends`]
//! value and hands it to mdsa; a backend crate adds itself with
//! [`Backends::insert`]. The built-in local backend (`"local"`,
//! [`LOCAL_BACKEND`]) is always there: the model manager builds it, so it is
//! not held here.
//!
//! ```
//! use std::sync::Arc;
//!
//! use mdsa_engine::{Backends, ModelRole, ModelSpec};
//! # use mdsa_engine::{LoadPlan, LoadedModel, ModelBackend, ModelError};
//! # #[derive(Debug)]
//! # struct MyBackend;
//! # impl ModelBackend for MyBackend {
//! #     fn name(&self) -> &str { "mine" }
//! #     fn plan(&self, _: &ModelSpec) -> Result<LoadPlan, ModelError> { unimplemented!() }
//! #     fn load(&self, _: &ModelSpec) -> Result<LoadedModel, ModelError> { unimplemented!() }
//! # }
//!
//! let mut backends = Backends::new();
//! backends.insert(Arc::new(MyBackend));
//! assert_eq!(backends.names().collect::<Vec<_>>(), ["local", "mine"]);
//!
//! let mut spec = ModelSpec::new("big", "served-name", ModelRole::Generator);
//! spec.backend = "openai".into();
//! let err = backends.check([&spec]).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "model \"big\" asks for backend \"openai\", which this program does not have \
//!      (it has: local, mine)"
//! );
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::backend::{LOCAL_BACKEND, ModelBackend};
use crate::spec::ModelSpec;

/// Model backends by name, besides the built-in local one.
#[derive(Clone, Default)]
pub struct Backends {
    by_name: BTreeMap<String, Arc<dyn ModelBackend>>,
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// A spec names a backend the program does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "model {model:?} asks for backend {backend:?}, which this program does not have (it has: {available})"
)]
pub struct UnknownBackend {
    /// The model's id.
    pub model: String,
    /// The backend it names.
    pub backend: String,
    /// The backends there are, comma-separated, `local` first.
    pub available: String,
}

impl Backends {
    /// Only the built-in local backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `backend` under its [`name`](ModelBackend::name), returning the
    /// one it replaces. A backend named `local` replaces the built-in one.
    pub fn insert(&mut self, backend: Arc<dyn ModelBackend>) -> Option<Arc<dyn ModelBackend>> {
        self.by_name.insert(backend.name().to_string(), backend)
    }

    /// `self` with `backend` added (see [`insert`](Self::insert)).
    pub fn with(mut self, backend: Arc<dyn ModelBackend>) -> Self {
        self.insert(backend);
        self
    }

    /// The backend registered as `name` (not the built-in local one).
    pub fn get(&self, name: &str) -> Option<&Arc<dyn ModelBackend>> {
        self.by_name.get(name)
    }

    /// Whether a spec may name `name`: `local`, or a registered backend.
    pub fn contains(&self, name: &str) -> bool {
        name == LOCAL_BACKEND || self.by_name.contains_key(name)
    }

    /// Every name a spec may use, `local` first, then the rest in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(LOCAL_BACKEND).chain(
            self.by_name
                .keys()
                .map(String::as_str)
                .filter(|n| *n != LOCAL_BACKEND),
        )
    }

    /// The registered backends (not the built-in local one), by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn ModelBackend>> {
        self.by_name.values()
    }

    /// Checks that every spec names a backend there is, so that a typo fails
    /// at start-up rather than when the model is first asked for.
    pub fn check<'a>(
        &self,
        specs: impl IntoIterator<Item = &'a ModelSpec>,
    ) -> Result<(), UnknownBackend> {
        match specs.into_iter().find(|s| !self.contains(&s.backend)) {
            None => Ok(()),
            Some(spec) => Err(UnknownBackend {
                model: spec.id.clone(),
                backend: spec.backend.clone(),
                available: self.names().collect::<Vec<_>>().join(", "),
            }),
        }
    }
}
