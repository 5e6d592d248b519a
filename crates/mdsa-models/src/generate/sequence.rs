//! One request's generation as the scheduler runs it: the prompt still to
//! prefill, then one sampled token per step, with its own sampler, stop
//! strings, token limit, streamed text and timings.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Instant;

use mdsa_engine::{FinishReason, GenerationOutput, ModelError, Timings, Usage};

use super::batch::Core;
use super::detokenize::IncrementalDecoder;
use super::engine::safe_prefix;
use super::sampling::Sampler;
use crate::arch::decoder::KvCache;

/// What a sequence tells the request waiting on it.
#[derive(Debug)]
pub(crate) enum Event {
    /// A piece of the answer, safe to show (no stop string can start in it).
    Text(String),
    /// The end: the whole output, or why it failed.
    Done(Result<GenerationOutput, ModelError>),
}

/// A request, as the scheduler receives it.
#[derive(Debug)]
pub(crate) struct Job {
    /// The prompt's tokens (already fitted to the context).
    pub(crate) prompt: Vec<u32>,
    /// Most tokens to generate (already fitted to the context).
    pub(crate) max_tokens: usize,
    /// Sampling settings, stop strings.
    pub(crate) params: mdsa_engine::GenerationParams,
    /// When the request started.
    pub(crate) started: Instant,
    /// Where its events go.
    pub(crate) events: Sender<Event>,
    /// Set by the request to stop its generation.
    pub(crate) cancel: Arc<AtomicBool>,
}

/// A request being generated.
pub(crate) struct Sequence {
    job: Job,
    cache: KvCache,
    /// Prompt positions in the cache (copied from a kept prefix, or run).
    prefilled: usize,
    /// Of those, the ones copied from a kept prefix.
    reused: usize,
    sampler: Sampler,
    history: Vec<u32>,
    detokenizer: IncrementalDecoder,
    text: String,
    generated: Vec<u32>,
    /// Bytes of `text` sent to the request.
    emitted: usize,
    finish: Option<FinishReason>,
    /// Whether the request already got its end (an error).
    reported: bool,
    timings: Timings,
    decode_started: Option<Instant>,
}

impl Sequence {
    /// A sequence for `job` on `cache` (empty), starting from the longest
    /// prefix of its prompt `core` keeps.
    pub(crate) fn new(job: Job, mut cache: KvCache, core: &Core) -> Self {
        let reused = match core.prefixes.lookup(&job.prompt) {
            Some(prefix) if cache.copy_from(&prefix) => prefix.len(),
            _ => 0,
        };
        Self {
            sampler: Sampler::new(job.params.sampling.clone()),
            history: job.prompt.clone(),
            job,
            cache,
            prefilled: reused,
            reused,
            detokenizer: IncrementalDecoder::new(),
            text: String::new(),
            generated: Vec::new(),
            emitted: 0,
            finish: None,
            reported: false,
            timings: Timings::default(),
            decode_started: None,
        }
    }

    /// The tokens its next pass runs: up to `chunk` more of the prompt, or
    /// the token sampled last.
    pub(crate) fn input(&self, chunk: usize) -> &[u32] {
        if self.prefilled < self.job.prompt.len() {
            let end = (self.prefilled + chunk).min(self.job.prompt.len());
            &self.job.prompt[self.prefilled..end]
        } else {
            // After the prompt, the last generated token runs next.
            std::slice::from_ref(self.generated.last().unwrap_or_else(|| unreachable!()))
        }
    }

    /// Whether prompt tokens are still to run.
    pub(crate) fn prefilling(&self) -> bool {
        self.prefilled < self.job.prompt.len()
    }

    /// Its cache, for the pass.
    pub(crate) fn cache_mut(&mut self) -> &mut KvCache {
        &mut self.cache
    }

    /// Ends it, as cancelled, when the request asked to stop.
    pub(crate) fn stop_if_cancelled(&mut self) {
        if self.finish.is_none() && self.job.cancel.load(Ordering::Relaxed) {
            self.finish = Some(FinishReason::Cancelled);
        }
    }

    /// Records that its pass ran `n` tokens and gave `logits`: more of the
    /// prompt (nothing to sample until it is all in), or the next token.
    pub(crate) fn advance(&mut self, n: usize, mut logits: Vec<f32>, core: &Core) {
        if self.prefilling() {
            self.prefilled += n;
            if self.prefilling() {
                return;
            }
            self.timings.prefill = self.job.started.elapsed();
            core.prefixes
                .learn(&self.job.prompt, &self.cache, self.reused);
        }
        let token = self.sampler.sample(&mut logits, &self.history);
        if self.generated.is_empty() {
            self.timings.time_to_first_token = self.job.started.elapsed();
            self.decode_started = Some(Instant::now());
        }
        if core.eos_ids.contains(&token) {
            self.finish = Some(FinishReason::Eos);
            return;
        }
        self.generated.push(token);
        self.history.push(token);
        match self.detokenizer.push(&core.tokenizer, token) {
            Ok(Some(piece)) => self.text.push_str(&piece),
            Ok(None) => {}
            Err(error) => {
                self.fail(error);
                return;
            }
        }
        let stop = &self.job.params.stop;
        if let Some(at) = stop.iter().filter_map(|s| self.text.find(s.as_str())).min() {
            self.text.truncate(at);
            self.finish = Some(FinishReason::Stop);
        }
        let safe = if self.finish == Some(FinishReason::Stop) {
            self.text.len()
        } else {
            safe_prefix(&self.text, stop)
        };
        if safe > self.emitted {
            let piece = self.text[self.emitted..safe].to_string();
            self.emitted = safe;
            // A request that went away has cancelled.
            if self.job.events.send(Event::Text(piece)).is_err() {
                self.finish = Some(FinishReason::Cancelled);
                return;
            }
        }
        if self.finish.is_none() && self.generated.len() >= self.job.max_tokens {
            self.finish = Some(FinishReason::Length);
        }
    }

    /// Whether it has ended.
    pub(crate) fn finished(&self) -> bool {
        self.finish.is_some()
    }

    /// Ends it with `error`.
    pub(crate) fn fail(&mut self, error: ModelError) {
        let _ = self.job.events.send(Event::Done(Err(error)));
        // Nothing more is sent: `finish` only retires it.
        self.finish = Some(FinishReason::Cancelled);
        self.reported = true;
    }

    /// Sends the rest of the text and the output; hands back the cache.
    pub(crate) fn complete(mut self) -> KvCache {
        if self.reported {
            return self.cache;
        }
        let finish = self.finish.unwrap_or(FinishReason::Length);
        if finish != FinishReason::Cancelled && self.emitted < self.text.len() {
            let _ = self
                .job
                .events
                .send(Event::Text(self.text[self.emitted..].to_string()));
        }
        if let Some(decode_started) = self.decode_started {
            self.timings.decode = decode_started.elapsed();
        }
        self.timings.total = self.job.started.elapsed();
        let output = GenerationOutput {
            text: std::mem::take(&mut self.text),
            finish_reason: finish,
            usage: Usage {
                prompt_tokens: self.job.prompt.len(),
                completion_tokens: self.generated.len(),
                cached_prompt_tokens: self.reused,
            },
            token_ids: std::mem::take(&mut self.generated),
            timings: self.timings,
        };
        let _ = self.job.events.send(Event::Done(Ok(output)));
        self.cache
    }
}
