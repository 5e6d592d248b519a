//! `mdsa._native.Stream`: a query running on a thread of its own, its events
//! read one by one from Python (`for event in m.stream(...)`).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use mdsa::{Mdsa, MdsaError, QueryEvent, QueryOptions, QueryResponse};
use pyo3::prelude::*;
use serde_json::json;

use crate::errors::{raise, to_py};

/// How often a reader waiting for the next event looks for Ctrl-C.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// What the query's thread sends: its events, then its outcome.
enum Item {
    Event(QueryEvent),
    Done(Box<Result<QueryResponse, MdsaError>>),
}

/// The events of one query: `routed`, `loading`/`downloading`/`loaded`,
/// `attempt`, `text` pieces, then `done` with the whole response (JSON each).
#[pyclass(frozen, module = "mdsa._native")]
pub(crate) struct Stream {
    events: Receiver<Item>,
    cancel: Arc<AtomicBool>,
    finished: AtomicBool,
}

impl Stream {
    /// Starts the query. The channel is unbounded so that generation never
    /// waits for a slow reader (a whole answer is a few kilobytes).
    pub(crate) fn start(mdsa: Mdsa, text: String, options: QueryOptions) -> Self {
        let (sender, events) = crossbeam_channel::unbounded();
        let cancel = Arc::new(AtomicBool::new(false));
        let cancelled = Arc::clone(&cancel);
        let spawned = std::thread::Builder::new()
            .name("mdsa-stream".into())
            .spawn({
                let sender = sender.clone();
                move || {
                    let result = mdsa.query_with(&text, &options, &mut |event| {
                        // A reader that went away reads nothing more: stop.
                        if cancelled.load(Ordering::Relaxed)
                            || sender.send(Item::Event(event)).is_err()
                        {
                            return ControlFlow::Break(());
                        }
                        ControlFlow::Continue(())
                    });
                    // Nobody may be listening any more; the request is logged either way.
                    let _ = sender.send(Item::Done(Box::new(result)));
                }
            });
        if let Err(error) = spawned {
            let failed = MdsaError::InvalidRequest(format!("could not start a thread: {error}"));
            let _ = sender.send(Item::Done(Box::new(Err(failed))));
        }
        Self {
            events,
            cancel,
            finished: AtomicBool::new(false),
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // An abandoned stream (a `break` out of the loop) stops generating.
        self.cancel.store(true, Ordering::Relaxed);
    }
}

#[pymethods]
impl Stream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next event as JSON; `StopIteration` after `done`.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        if self.finished.load(Ordering::Relaxed) {
            return Ok(None);
        }
        loop {
            match py.detach(|| self.events.recv_timeout(SIGNAL_CHECK_INTERVAL)) {
                Ok(Item::Event(event)) => return Ok(Some(event_json(&event).to_string())),
                Ok(Item::Done(result)) => {
                    self.finished.store(true, Ordering::Relaxed);
                    let response = (*result).map_err(to_py)?;
                    let done = json!({ "event": "done", "result": response });
                    return Ok(Some(done.to_string()));
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(signal) = py.check_signals() {
                        self.cancel();
                        return Err(signal);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.finished.store(true, Ordering::Relaxed);
                    return Err(raise(
                        "MdsaError",
                        "the query's thread ended without an outcome".into(),
                    ));
                }
            }
        }
    }

    /// Asks the generation to stop; the stream still ends with `done`, whose
    /// outcome is `cancelled` unless the answer was already complete.
    fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// One event as the JSON object the Python half reads (the load events in
/// the shape `mdsa query --json` prints and `mdsa serve` streams).
fn event_json(event: &QueryEvent) -> serde_json::Value {
    match event {
        QueryEvent::Routed(decision) => json!({ "event": "routed", "decision": decision }),
        QueryEvent::Attempt { number } => json!({ "event": "attempt", "number": number }),
        QueryEvent::Text(text) => json!({ "event": "text", "text": text }),
        QueryEvent::Loading { .. } | QueryEvent::Downloading { .. } | QueryEvent::Loaded { .. } => {
            event.load_progress_json().unwrap_or_default()
        }
    }
}
