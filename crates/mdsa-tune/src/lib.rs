//! Fine-tuning the router's sentence encoder on the domains' own examples.
//!
//! A frozen encoder places "What's my balance?" wherever its pre-training put
//! it; [`tune`] moves it toward the examples of its domain. Each step embeds a
//! batch of labelled examples and applies a supervised contrastive loss (every
//! example's softmax over its similarities to the rest of the batch should go
//! to its own label's examples), with AdamW through burn's autodiff, on the
//! CPU. A share of each label's examples is held out: the nearest-example
//! accuracy on them (as the router scores) is measured before tuning and after
//! every epoch, training stops when it stops improving, and the best epoch's
//! model is written as a sentence-transformers directory: `model.safetensors`
//! (f32) beside copies of the base model's tokenizer, configuration and
//! pooling files, and `mdsa_tune.json`. The same seed gives the same model.
//!
//! ```no_run
//! use std::path::Path;
//! use mdsa_tune::{LabelledText, TuneOptions, tune};
//!
//! let data = vec![
//!     LabelledText { text: "What's my balance?".into(), label: 0 },
//!     LabelledText { text: "Send money to my sister".into(), label: 0 },
//!     LabelledText { text: "Where is my parcel?".into(), label: 1 },
//!     LabelledText { text: "Refund my order".into(), label: 1 },
//! ];
//! let report = tune(Path::new("models/minilm"), &data, 2, &TuneOptions::default(),
//!     Path::new("models/minilm-tuned"), &mut |_| {})?;
//! println!("held-out accuracy {:.3} -> {:.3}", report.before, report.after);
//! # Ok::<(), mdsa_tune::TuneError>(())
//! ```

mod data;
mod error;
mod model;
mod save;
mod train;

pub use data::LabelledText;
pub use error::{Result, TuneError};
pub use train::{EpochReport, TuneEvent, TuneOptions, TuneReport, tune};
