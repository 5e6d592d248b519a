//! Answering a query in a domain: prompt, generate with the domain's settings
//! under its timeout, validate, and retry as its policy says.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mdsa_engine::{ChatMessage, FinishReason, GenerationOutput, GenerationParams, TextGenerator};
use serde::Serialize;

use crate::config::{DomainConfig, ValidationRules};
use crate::error::{DomainError, Result};
use crate::prompt::PromptBuilder;
use crate::validate::{ResponseValidator, Verdict};

/// What happens during an execution, in order, for a streaming caller.
#[derive(Debug, Clone, Copy)]
pub enum ExecutionEvent<'a> {
    /// An attempt starts (1-based) with these parameters.
    AttemptStarted {
        /// Attempt number, from 1.
        attempt: u32,
        /// The parameters of this attempt.
        params: &'a GenerationParams,
    },
    /// A piece of the current attempt's answer.
    Text(&'a str),
    /// The attempt's answer failed validation and another attempt follows: a UI
    /// should discard the text streamed since `AttemptStarted`.
    AttemptRejected {
        /// Attempt number, from 1.
        attempt: u32,
        /// What failed.
        verdict: &'a Verdict,
    },
}

/// One attempt, for the record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptReport {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Its validation.
    pub verdict: Verdict,
    /// Why its generation ended.
    pub finish_reason: FinishReason,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// The repetition penalty used.
    pub repetition_penalty: f32,
    /// The temperature used.
    pub temperature: f32,
    /// Wall time of the attempt.
    pub elapsed: Duration,
    /// The generator's own share of it (tokenizing, prefill, decoding).
    pub generation: Duration,
}

/// The answer of an execution. When every attempt failed validation this is the
/// last answer with its failed verdict (check `verdict.passed`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Execution {
    /// The domain that answered.
    pub domain: String,
    /// The answer (the last attempt's).
    pub text: String,
    /// The last attempt's generation output (usage, timings, finish reason).
    pub output: GenerationOutput,
    /// The last attempt's validation.
    pub verdict: Verdict,
    /// Attempts made (1 + retries used).
    pub attempts: u32,
    /// Every attempt, in order.
    pub history: Vec<AttemptReport>,
    /// The conversation the model was given (system prompt, history, query).
    pub messages: Vec<ChatMessage>,
    /// Wall time of the whole execution.
    pub elapsed: Duration,
}

impl Execution {
    /// Whether the caller stopped the stream.
    pub fn cancelled(&self) -> bool {
        self.output.finish_reason == FinishReason::Cancelled
    }
}

/// Runs queries in domains. Holds no model: the caller passes the generator the
/// domain runs on, so the same executor serves every domain and model.
#[derive(Debug, Clone, Default)]
pub struct DomainExecutor {
    // Compiling a domain's banned patterns costs more than the rest of the
    // bookkeeping of a request, so each set of rules is compiled once.
    // Looked up by equality: formatting the rules into a hash key cost more
    // than comparing them against the handful of sets a configuration has.
    validators: Arc<Mutex<Vec<CompiledRules>>>,
}

/// A set of rules and its compiled validator.
type CompiledRules = (ValidationRules, Arc<ResponseValidator>);

impl DomainExecutor {
    /// An executor.
    pub fn new() -> Self {
        Self::default()
    }

    /// The compiled validator for `rules`, shared: cloning a `Regex` gives the
    /// clone fresh match caches, which every request would then rebuild.
    fn validator(&self, rules: &ValidationRules) -> Result<Arc<ResponseValidator>> {
        let mut cache = self
            .validators
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, validator)) = cache.iter().find(|(known, _)| known == rules) {
            return Ok(Arc::clone(validator));
        }
        let validator = Arc::new(ResponseValidator::new(rules)?);
        // Rules come from configuration files: a handful of distinct sets.
        cache.push((rules.clone(), Arc::clone(&validator)));
        Ok(validator)
    }

    /// Answers `query` without streaming.
    pub fn run(
        &self,
        domain: &DomainConfig,
        generator: &dyn TextGenerator,
        query: &str,
    ) -> Result<Execution> {
        self.execute(domain, generator, query, &mut |_| ControlFlow::Continue(()))
    }

    /// Answers `query`, streaming events to `on_event` (returning `Break` from a
    /// `Text` event stops generation: the execution ends as cancelled, without retries).
    ///
    /// The domain's timeout covers every attempt; when it passes, generation is
    /// stopped and the result is [`DomainError::Timeout`]. An answer that fails
    /// validation is retried with the repetition penalty (and temperature) raised
    /// by the policy's steps; when retries run out, the last answer is returned
    /// with its failed verdict, not as an error.
    pub fn execute(
        &self,
        domain: &DomainConfig,
        generator: &dyn TextGenerator,
        query: &str,
        on_event: &mut dyn FnMut(ExecutionEvent<'_>) -> ControlFlow<()>,
    ) -> Result<Execution> {
        self.execute_conversation(domain, generator, &[], query, on_event)
    }

    /// Like [`execute`](Self::execute), with earlier turns of the conversation
    /// (see [`PromptBuilder::conversation`]).
    pub fn execute_conversation(
        &self,
        domain: &DomainConfig,
        generator: &dyn TextGenerator,
        turns: &[ChatMessage],
        query: &str,
        on_event: &mut dyn FnMut(ExecutionEvent<'_>) -> ControlFlow<()>,
    ) -> Result<Execution> {
        let start = Instant::now();
        let timeout = domain.timeout_duration();
        let deadline = start.checked_add(timeout);
        let validator = self.validator(&domain.validation)?;
        let messages = PromptBuilder::new(domain).conversation(turns, query);
        let mut history = Vec::new();
        let total = 1 + domain.retry.retries;
        let timed_out = |attempts: u32, partial: String| DomainError::Timeout {
            domain: domain.id.clone(),
            timeout,
            attempts,
            partial,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(timed_out(attempt - 1, String::new()));
            }
            let params = attempt_params(domain, attempt);
            // Informational: cancelling is done by breaking from a `Text` event.
            let _ = on_event(ExecutionEvent::AttemptStarted {
                attempt,
                params: &params,
            });
            let attempt_start = Instant::now();
            let mut expired = false;
            let output = generator.generate_chat(&messages, &params, &mut |piece| {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    expired = true;
                    return ControlFlow::Break(());
                }
                on_event(ExecutionEvent::Text(piece))
            })?;
            if expired {
                return Err(timed_out(attempt, output.text));
            }
            let verdict = validator.validate(&output.text, &output);
            history.push(AttemptReport {
                attempt,
                verdict: verdict.clone(),
                finish_reason: output.finish_reason,
                completion_tokens: output.usage.completion_tokens,
                repetition_penalty: params.sampling.repetition_penalty,
                temperature: params.sampling.temperature,
                elapsed: attempt_start.elapsed(),
                generation: output.timings.total,
            });
            let last = attempt == total || output.finish_reason == FinishReason::Cancelled;
            if verdict.passed || last {
                return Ok(Execution {
                    domain: domain.id.clone(),
                    text: output.text.clone(),
                    output,
                    verdict,
                    attempts: attempt,
                    history,
                    messages,
                    elapsed: start.elapsed(),
                });
            }
            // Informational, like `AttemptStarted`.
            let _ = on_event(ExecutionEvent::AttemptRejected {
                attempt,
                verdict: &verdict,
            });
        }
    }
}

/// The parameters of attempt `attempt` (from 1): the domain's, with the retry
/// steps added once per earlier attempt.
pub fn attempt_params(domain: &DomainConfig, attempt: u32) -> GenerationParams {
    let mut params = domain.generation.to_params();
    let steps = attempt.saturating_sub(1) as f32;
    params.sampling.repetition_penalty += steps * domain.retry.repetition_penalty_step;
    params.sampling.temperature += steps * domain.retry.temperature_step;
    params
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use mdsa_engine::{ChatMessage, ModelError, Timings, Usage};

    use super::*;
    use crate::config::{RetryPolicy, ValidationRules};

    /// Answers from a script, one per call, streamed word by word with a pause.
    struct Scripted {
        answers: Mutex<Vec<&'static str>>,
        pause: Duration,
        seen: Mutex<Vec<GenerationParams>>,
    }

    impl Scripted {
        fn new(answers: &[&'static str], pause: Duration) -> Self {
            Self {
                answers: Mutex::new(answers.iter().rev().copied().collect()),
                pause,
                seen: Mutex::new(Vec::new()),
            }
        }
    }

    impl TextGenerator for Scripted {
        fn generate(
            &self,
            _prompt: &str,
            params: &GenerationParams,
            on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
        ) -> Result<GenerationOutput, ModelError> {
            self.seen.lock().unwrap().push(params.clone());
            let answer = self.answers.lock().unwrap().pop().unwrap_or("");
            let mut text = String::new();
            let mut finish_reason = FinishReason::Eos;
            for piece in answer.split_inclusive(' ') {
                std::thread::sleep(self.pause);
                text.push_str(piece);
                if on_text(piece).is_break() {
                    finish_reason = FinishReason::Cancelled;
                    break;
                }
            }
            Ok(GenerationOutput {
                text,
                token_ids: Vec::new(),
                finish_reason,
                usage: Usage::default(),
                timings: Timings::default(),
            })
        }
        fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, ModelError> {
            Ok(messages.iter().map(|m| m.content.as_str()).collect())
        }
        fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
            Ok(text.split_whitespace().count())
        }
        fn context_length(&self) -> usize {
            1024
        }
    }

    fn domain(retries: u32) -> DomainConfig {
        DomainConfig::new("d", "x")
            .examples(["e"])
            .validation(ValidationRules {
                min_chars: 10,
                ..ValidationRules::default()
            })
            .retry(RetryPolicy {
                retries,
                repetition_penalty_step: 0.2,
                temperature_step: 0.0,
            })
    }

    #[test]
    fn a_failed_answer_is_retried_with_a_higher_penalty() {
        let generator = Scripted::new(&["short", "a long enough answer"], Duration::ZERO);
        let mut events = Vec::new();
        let execution = DomainExecutor::new()
            .execute(&domain(2), &generator, "q", &mut |e| {
                events.push(match e {
                    ExecutionEvent::AttemptStarted { attempt, .. } => format!("start {attempt}"),
                    ExecutionEvent::Text(t) => t.to_string(),
                    ExecutionEvent::AttemptRejected { attempt, .. } => format!("reject {attempt}"),
                });
                ControlFlow::Continue(())
            })
            .unwrap();
        assert!(execution.verdict.passed);
        assert_eq!(execution.attempts, 2);
        assert_eq!(execution.text, "a long enough answer");
        assert_eq!(events[..3], ["start 1", "short", "reject 1"]);
        assert_eq!(events[3], "start 2");
        let seen = generator.seen.lock().unwrap();
        assert!(
            (seen[1].sampling.repetition_penalty - seen[0].sampling.repetition_penalty - 0.2).abs()
                < 1e-6
        );
    }

    #[test]
    fn when_retries_run_out_the_last_answer_comes_back_failed() {
        let generator = Scripted::new(&["no", "nope", "still no"], Duration::ZERO);
        let execution = DomainExecutor::new()
            .run(&domain(2), &generator, "q")
            .unwrap();
        assert!(!execution.verdict.passed);
        assert_eq!(execution.attempts, 3);
        assert_eq!(execution.history.len(), 3);
        assert_eq!(execution.text, "still no");
    }

    #[test]
    fn the_timeout_stops_generation() {
        let generator = Scripted::new(
            &["one two three four five six seven eight"],
            Duration::from_millis(20),
        );
        let slow = domain(0).timeout(Duration::from_millis(50));
        let start = Instant::now();
        let err = DomainExecutor::new()
            .run(&slow, &generator, "q")
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_millis(150));
        match err {
            DomainError::Timeout {
                attempts, partial, ..
            } => {
                assert_eq!(attempts, 1);
                assert!(partial.starts_with("one"), "{partial}");
            }
            other => panic!("expected a timeout, got {other}"),
        }
    }

    #[test]
    fn the_caller_can_cancel() {
        let generator = Scripted::new(&["one two three four five six"], Duration::ZERO);
        let execution = DomainExecutor::new()
            .execute(&domain(3), &generator, "q", &mut |e| match e {
                ExecutionEvent::Text("two ") => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            })
            .unwrap();
        assert!(execution.cancelled());
        assert_eq!(execution.attempts, 1);
    }
}
