//! Continuous batching: one scheduler thread per generator runs every active
//! request together. Each step is one batched forward pass
//! ([`Decoder::forward_batch`]): a decode token for each sequence past its
//! prompt, or a chunk of prompt for each sequence still prefilling (a long
//! prompt's chunks alternate with decode steps, so it does not stall the
//! others; see `Turn`). New requests join between steps, and
//! finished or cancelled ones leave and give their KV cache back. Sampling,
//! stop strings, streaming and limits stay per sequence ([`Sequence`]).

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mdsa_engine::{ModelError, ServingStats};

use super::caches::CachePool;
use super::prefix::PrefixCache;
use super::sequence::{Job, Sequence};
use crate::arch::decoder::{BatchItem, Decoder};
use crate::tokenizer::TextTokenizer;

/// Prompt tokens one sequence runs per step.
const PREFILL_CHUNK: usize = 256;

/// Longest the decoding sequences wait while new prompts run in steps of their
/// own: past it, the next step decodes. A short prompt's step is as long as a
/// decode step, so a few may run in a row; a long prompt's chunks alternate
/// with decode steps.
const DECODE_WAIT: Duration = Duration::from_millis(30);

/// What the scheduler thread shares with the generator.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) model: Box<dyn Decoder>,
    pub(crate) tokenizer: TextTokenizer,
    pub(crate) eos_ids: HashSet<u32>,
    pub(crate) caches: CachePool,
    pub(crate) prefixes: PrefixCache,
    /// Sequences run at once at most; more requests wait their turn.
    pub(crate) max_sequences: usize,
    /// Passes run, and sequences summed over them.
    pub(crate) steps: AtomicU64,
    pub(crate) sequence_steps: AtomicU64,
    /// The most sequences one pass ran.
    pub(crate) largest: AtomicUsize,
    /// Sequences running now, and the bytes of their keys and values.
    pub(crate) active: AtomicUsize,
    pub(crate) active_kv_bytes: AtomicU64,
}

/// How the scheduler has batched since the model loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchStats {
    /// Forward passes run.
    pub steps: u64,
    /// Sequences per pass, on average.
    pub mean_batch: f64,
    /// The most sequences one pass ran.
    pub largest_batch: usize,
}

impl Core {
    /// The figures of [`BatchStats`], from [`Core::serving_stats`].
    pub(crate) fn batch_stats(&self) -> BatchStats {
        let serving = self.serving_stats();
        BatchStats {
            steps: serving.steps,
            mean_batch: if serving.steps == 0 {
                0.0
            } else {
                serving.sequence_steps as f64 / serving.steps as f64
            },
            largest_batch: serving.largest_batch,
        }
    }

    /// The figures of [`mdsa_engine::ServingStats`]: the passes so far, and
    /// the keys and values held now (running sequences and kept prefixes).
    pub(crate) fn serving_stats(&self) -> ServingStats {
        let prefix_bytes = self.prefixes.stats().bytes;
        let allocated =
            self.caches.alive() * self.caches.capacity() * self.model.kv_bytes_per_token();
        ServingStats {
            steps: self.steps.load(Ordering::Relaxed),
            sequence_steps: self.sequence_steps.load(Ordering::Relaxed),
            largest_batch: self.largest.load(Ordering::Relaxed),
            active_sequences: self.active.load(Ordering::Relaxed),
            kv_cache_bytes: self.active_kv_bytes.load(Ordering::Relaxed) + prefix_bytes as u64,
            kv_allocated_bytes: (allocated + prefix_bytes) as u64,
        }
    }

    /// Publishes how many sequences run and the bytes their caches hold.
    fn publish_active(&self, active: &mut [Sequence]) {
        let bytes: usize = active.iter_mut().map(|s| s.cache_mut().bytes()).sum();
        self.active.store(active.len(), Ordering::Relaxed);
        self.active_kv_bytes.store(bytes as u64, Ordering::Relaxed);
    }
}

/// A generator's scheduler thread and the queue into it.
#[derive(Debug)]
pub(crate) struct Scheduler {
    jobs: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Scheduler {
    /// Starts the thread over `core`.
    pub(crate) fn start(core: Arc<Core>) -> Result<Self, ModelError> {
        let (jobs, queue) = channel();
        let thread = std::thread::Builder::new()
            .name("mdsa-batch".into())
            .spawn(move || {
                crate::team::lower_priority();
                run(&core, &queue)
            })
            .map_err(|e| ModelError::Backend(format!("cannot start the batch scheduler: {e}")))?;
        Ok(Self {
            jobs: Mutex::new(Some(jobs)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `job`; its events arrive on its channel.
    pub(crate) fn submit(&self, job: Job) -> Result<(), ModelError> {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or_else(|| ModelError::Backend("the batch scheduler has stopped".into()))
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // Closing the queue ends the thread once its sequences are done.
        drop(
            self.jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = thread.join();
        }
    }
}

/// The scheduler's loop: admit, step, retire, until the queue closes and
/// nothing is left to run.
fn run(core: &Core, queue: &Receiver<Job>) {
    let mut active: Vec<Sequence> = Vec::new();
    let mut open = true;
    // When the decoding sequences last made a token.
    let mut decoded_at = Instant::now();
    loop {
        // Wait for work when idle; otherwise take what has arrived.
        if active.is_empty() {
            match queue.recv() {
                Ok(job) => active.push(admit(job, core)),
                Err(_) => return,
            }
        }
        while open && active.len() < core.max_sequences {
            match queue.try_recv() {
                Ok(job) => active.push(admit(job, core)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        let turn = Turn::next(&active, decoded_at);
        step(&mut active, core, turn);
        if turn != Turn::Prompts {
            decoded_at = Instant::now();
        }
        let mut i = 0;
        while i < active.len() {
            if active[i].finished() {
                let done = active.swap_remove(i);
                core.caches.give_back(done.complete());
            } else {
                i += 1;
            }
        }
        core.publish_active(&mut active);
        if !open && active.is_empty() {
            return;
        }
    }
}

fn admit(job: Job, core: &Core) -> Sequence {
    let cache = core.caches.take(core.model.as_ref());
    Sequence::new(job, cache, core)
}

/// Which sequences a step runs.
///
/// A new request's prompt runs in a step without the decoding sequences, so
/// that its first token does not wait for every other sequence's next one
/// (under load, a step of 16 prompt tokens and 7 decodes took twice as long
/// as either alone: the work is arithmetic, not reading the weights, so
/// sharing the pass saves little). [`DECODE_WAIT`] bounds what the decoding
/// sequences give up for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Only the sequences still prefilling.
    Prompts,
    /// Only the sequences past their prompt.
    Decodes,
    /// Every sequence (when all are of one kind).
    All,
}

impl Turn {
    /// The turn after the decoding sequences last made a token at
    /// `decoded_at`.
    fn next(active: &[Sequence], decoded_at: Instant) -> Self {
        let running = || active.iter().filter(|s| !s.finished());
        Self::choose(
            running().any(Sequence::prefilling),
            running().any(|s| !s.prefilling()),
            decoded_at.elapsed(),
        )
    }

    /// With sequences `prompting` and `decoding`, the latter having waited
    /// `waited` since their last token.
    fn choose(prompting: bool, decoding: bool, waited: Duration) -> Self {
        match (prompting, decoding) {
            (true, true) if waited < DECODE_WAIT => Self::Prompts,
            (true, true) => Self::Decodes,
            _ => Self::All,
        }
    }

    fn runs(self, sequence: &Sequence) -> bool {
        self.admits(sequence.prefilling())
    }

    /// Whether a sequence still `prefilling` (or not) runs in this turn.
    fn admits(self, prefilling: bool) -> bool {
        match self {
            Self::Prompts => prefilling,
            Self::Decodes => !prefilling,
            Self::All => true,
        }
    }
}

/// One batched pass over the active sequences whose `turn` it is.
fn step(active: &mut [Sequence], core: &Core, turn: Turn) {
    for sequence in active.iter_mut() {
        sequence.stop_if_cancelled();
    }
    let running: Vec<&mut Sequence> = active
        .iter_mut()
        .filter(|s| !s.finished() && turn.runs(s))
        .collect();
    if running.is_empty() {
        return;
    }
    core.steps.fetch_add(1, Ordering::Relaxed);
    core.sequence_steps
        .fetch_add(running.len() as u64, Ordering::Relaxed);
    core.largest.fetch_max(running.len(), Ordering::Relaxed);
    let inputs: Vec<Vec<u32>> = running
        .iter()
        .map(|s| s.input(PREFILL_CHUNK).to_vec())
        .collect();
    let mut running = running;
    let result = {
        let mut batch: Vec<BatchItem<'_>> = running
            .iter_mut()
            .zip(&inputs)
            .map(|(sequence, tokens)| BatchItem {
                tokens,
                cache: sequence.cache_mut(),
            })
            .collect();
        // A panicking pass fails its requests, not the scheduler (and with
        // it every later request of this model).
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            crate::quant::run_in_pool(|| core.model.forward_batch(&mut batch))
        }))
        .unwrap_or_else(|payload| {
            let said = crate::panic_message(payload.as_ref()).unwrap_or_default();
            Err(ModelError::Backend(format!(
                "the forward pass panicked: {said}"
            )))
        })
    };
    match result {
        Ok(logits) => {
            for ((sequence, input), logits) in running.into_iter().zip(&inputs).zip(logits) {
                sequence.advance(input.len(), logits, core);
            }
        }
        Err(error) => {
            // One pass failed for all of them; the first gets the error itself.
            let text = error.to_string();
            let mut error = Some(error);
            for sequence in running {
                sequence.fail(
                    error
                        .take()
                        .unwrap_or_else(|| ModelError::Backend(text.clone())),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_prompts_run_alone_until_the_decoding_sequences_have_waited_enough() {
        let short = DECODE_WAIT / 3;
        assert_eq!(Turn::choose(true, true, Duration::ZERO), Turn::Prompts);
        assert_eq!(Turn::choose(true, true, short), Turn::Prompts);
        assert_eq!(Turn::choose(true, true, DECODE_WAIT), Turn::Decodes);
        assert_eq!(Turn::choose(true, true, DECODE_WAIT * 10), Turn::Decodes);
        // One kind alone: everyone runs, however long the wait.
        assert_eq!(Turn::choose(true, false, DECODE_WAIT * 10), Turn::All);
        assert_eq!(Turn::choose(false, true, Duration::ZERO), Turn::All);
        assert_eq!(Turn::choose(false, false, Duration::ZERO), Turn::All);
    }

    #[test]
    fn a_turn_runs_only_its_kind_of_sequence() {
        // `step` keeps a sequence when `admits(sequence.prefilling())`.
        for (turn, prefilling, runs) in [
            (Turn::Prompts, true, true),
            (Turn::Prompts, false, false),
            (Turn::Decodes, true, false),
            (Turn::Decodes, false, true),
            (Turn::All, true, true),
            (Turn::All, false, true),
        ] {
            assert_eq!(turn.admits(prefilling), runs, "{turn:?} {prefilling}");
        }
    }
}
