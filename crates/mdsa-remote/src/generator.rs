//! [`RemoteGenerator`]: mdsa's [`TextGenerator`] answered by a remote server.

use std::ops::ControlFlow;
use std::time::Instant;

use mdsa_engine::{
    ChatMessage, GenerationOutput, GenerationParams, ModelError, TextGenerator, transcript,
};

use crate::config::RemoteConfig;
use crate::error::RemoteError;
use crate::http::Client;
use crate::stream::estimate_tokens;
use crate::wire::Input;

/// How many served model names an error lists.
const LISTED_MODELS: usize = 5;

/// Generates with a model served by an OpenAI-compatible server (vLLM,
/// llama.cpp's server, TGI, another mdsa, ...). Calls block; each one is an
/// independent HTTP request, so the generator is shared freely between threads.
#[derive(Debug, Clone)]
pub struct RemoteGenerator {
    client: Client,
}

impl RemoteGenerator {
    /// A generator for `config`, without contacting the server.
    pub fn new(config: RemoteConfig) -> Self {
        Self {
            client: Client::new(config),
        }
    }

    /// A generator for `config`, after checking that the server answers and
    /// serves the configured model.
    pub fn connect(config: RemoteConfig) -> Result<Self, RemoteError> {
        let generator = Self::new(config);
        generator.check_model()?;
        Ok(generator)
    }

    /// The configuration in use.
    pub fn config(&self) -> &RemoteConfig {
        self.client.config()
    }

    /// The model names the server lists at `GET {base_url}/models`.
    pub fn served_models(&self) -> Result<Vec<String>, RemoteError> {
        self.client.model_ids()
    }

    fn check_model(&self) -> Result<(), RemoteError> {
        let served = self.served_models()?;
        let model = &self.config().model;
        if served.contains(model) {
            return Ok(());
        }
        let mut available = match served.len() {
            0 => "no models".to_string(),
            _ => served[..served.len().min(LISTED_MODELS)].join(", "),
        };
        if served.len() > LISTED_MODELS {
            available.push_str(&format!(" and {} more", served.len() - LISTED_MODELS));
        }
        Err(RemoteError::ModelNotServed {
            url: self.config().url("models"),
            model: model.clone(),
            available,
        })
    }

    /// Streams a completion of `input`; `prompt_text` stands for the prompt in
    /// token estimates.
    fn complete(
        &self,
        input: Input<'_>,
        prompt_text: &str,
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationOutput, ModelError> {
        // The same checks as a local model, so a bad request fails before the network.
        let invalid = if params.max_tokens == 0 {
            Some("max_tokens must be at least 1".to_string())
        } else {
            params.sampling.validate().err()
        };
        if let Some(reason) = invalid {
            return Err(ModelError::InvalidParams { reason });
        }
        let started = Instant::now();
        let answer = self.client.complete(input, params, on_text)?;
        Ok(answer.into_output(started, prompt_text))
    }
}

/// `truncate_prompt` is not sent: the API has no such field, and the server
/// decides what happens to a prompt longer than its context (vLLM rejects it).
impl TextGenerator for RemoteGenerator {
    /// Continues `prompt` through `POST {base_url}/completions`.
    fn generate(
        &self,
        prompt: &str,
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationOutput, ModelError> {
        self.complete(Input::Prompt(prompt), prompt, params, on_text)
    }

    /// A readable transcript (`system: ...\nuser: ...\nassistant:`) for logs
    /// and for [`generate`](TextGenerator::generate). It is not the model's
    /// template: only the server knows that, and
    /// [`generate_chat`](TextGenerator::generate_chat) lets the server apply it.
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, ModelError> {
        Ok(transcript(messages))
    }

    /// Sends the messages as they are to `POST {base_url}/chat/completions`,
    /// where the server renders them with the model's own chat template.
    fn generate_chat(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationOutput, ModelError> {
        let transcript = self.render_chat(messages)?;
        self.complete(Input::Messages(messages), &transcript, params, on_text)
    }

    /// An estimate ([`estimate_tokens`]: characters / 4, rounded up): the
    /// tokenizer lives on the server, and asking it would cost a round trip
    /// per call. Budgets built on it should leave a margin.
    fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        Ok(estimate_tokens(text))
    }

    /// The configured `context_length` (default: the spec's `max_context`, else 4096).
    fn context_length(&self) -> usize {
        self.config().context_length
    }
}
