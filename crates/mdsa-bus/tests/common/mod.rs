//! Helpers shared by the integration tests.

use std::thread;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;

/// Generous bound for bodies that finish in well under a second unless they deadlock.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `body` on its own thread and fails the test if it has not finished by `limit`, so
/// a deadlock shows up as a failure instead of a hung test run. Panics in `body` propagate.
pub(crate) fn watchdog<F>(limit: Duration, body: F)
where
    F: FnOnce() + Send + 'static,
{
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let handle = thread::spawn(move || {
        body();
        // The receiver may be gone if the watchdog already fired; nothing to do then.
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(limit) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(RecvTimeoutError::Timeout) => {
            panic!("test body still running after {limit:?}: deadlock?")
        }
    }
}
