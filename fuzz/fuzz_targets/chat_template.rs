//! A fuzzed chat template rendering fuzzed messages. Templates come from model
//! files anyone can publish, so compiling and rendering must never panic or
//! hang (the fuel limit stops loops), and every error must say which template
//! failed.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mdsa_models::chat::{ChatMessage, ChatTemplate};

const ORIGIN: &str = "fuzz.gguf: tokenizer.chat_template";

/// The seeds in corpus/chat_template/ encode this struct as `arbitrary` 1.x
/// reads it (SmolLM2's ChatML template with two messages, a Qwen-style one, a
/// loop the fuel limit must stop, a macro that recurses); change the fields
/// and they still run, as other inputs.
#[derive(Debug, Arbitrary)]
struct Input {
    template: String,
    messages: Vec<(Role, String)>,
    add_generation_prompt: bool,
    bos_token: String,
    eos_token: String,
}

/// Mostly the roles real conversations have, sometimes anything.
#[derive(Debug, Arbitrary)]
enum Role {
    System,
    User,
    Assistant,
    Other(String),
}

impl Role {
    fn name(self) -> String {
        match self {
            Self::System => "system".into(),
            Self::User => "user".into(),
            Self::Assistant => "assistant".into(),
            Self::Other(name) => name,
        }
    }
}

fuzz_target!(|input: Input| {
    let template =
        match ChatTemplate::new(&input.template, input.bos_token, input.eos_token, ORIGIN) {
            Ok(template) => template,
            Err(error) => {
                let message = error.to_string();
                assert!(message.contains(ORIGIN), "error without origin: {message}");
                return;
            }
        };
    let messages: Vec<ChatMessage> = input
        .messages
        .into_iter()
        .map(|(role, content)| ChatMessage::new(role.name(), content))
        .collect();
    if let Err(error) = template.render(&messages, input.add_generation_prompt) {
        let message = error.to_string();
        assert!(message.contains(ORIGIN), "error without origin: {message}");
    }
});
