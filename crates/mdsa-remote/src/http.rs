//! Requests to the server: time limits, the API key, retries, and turning
//! failed answers into errors that quote the server.

use std::io::Read;
use std::ops::ControlFlow;
use std::thread;
use std::time::Duration;

use mdsa_engine::GenerationParams;
use ureq::http::Response;
use ureq::{Body, RequestBuilder};

use crate::config::RemoteConfig;
use crate::error::RemoteError;
use crate::stream::{Answer, clip};
use crate::wire::{CompletionRequest, Input, ModelList, error_message};

/// Wait before the first retry; each further retry waits twice as long.
const BACKOFF: Duration = Duration::from_millis(200);
/// The most of an error body kept for its message.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// An HTTP client for one configured server.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    agent: ureq::Agent,
    config: RemoteConfig,
}

impl Client {
    pub(crate) fn new(config: RemoteConfig) -> Self {
        let agent = ureq::Agent::config_builder()
            // Error answers are read here, for the server's message.
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.connect_timeout))
            // Applies to every read, so it bounds the silence between chunks.
            .timeout_per_read(Some(config.read_timeout))
            .user_agent(concat!("mdsa-remote/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self { agent, config }
    }

    pub(crate) fn config(&self) -> &RemoteConfig {
        &self.config
    }

    /// The model names `GET /models` lists.
    pub(crate) fn model_ids(&self) -> Result<Vec<String>, RemoteError> {
        let url = self.config.url("models");
        let text = self.retrying(|| {
            let response = self.authorize(self.agent.get(&url)).call();
            let mut response = success(&url, response)?;
            response
                .body_mut()
                .read_to_string()
                .map_err(|e| RemoteError::transport(&url, e))
        })?;
        let list: ModelList = serde_json::from_str(&text).map_err(|e| RemoteError::Protocol {
            url: url.clone(),
            reason: format!("not a model list ({e}): {}", clip(&text)),
        })?;
        Ok(list.data.into_iter().map(|m| m.id).collect())
    }

    /// Streams a completion of `input`, passing text pieces to `on_text`.
    /// Transient failures are retried only while no text has reached
    /// `on_text`: after that, a retry would hand the caller the same text twice.
    pub(crate) fn complete(
        &self,
        input: Input<'_>,
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Answer, RemoteError> {
        let url = self.config.url(input.path());
        let request =
            CompletionRequest::new(&self.config.model, input, params, self.config.extensions);
        // A struct of strings and numbers always serializes.
        let body = serde_json::to_vec(&request).expect("a completion request serializes");
        self.retrying(|| {
            let post = self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .header("accept", "text/event-stream");
            let response = success(&url, self.authorize(post).send(&body[..]))?;
            let mut answer = Answer::default();
            // Dropping the reader (on return) closes the connection unless the
            // answer was read to its end: that is how a cancel reaches the server.
            match answer.read(response.into_body().into_reader(), &url, on_text) {
                Ok(()) => Ok(answer),
                Err(e) if answer.text.is_empty() => Err(e),
                Err(e) => Err(RemoteError::Interrupted(Box::new(e))),
            }
        })
    }

    fn authorize<B>(&self, request: RequestBuilder<B>) -> RequestBuilder<B> {
        match self.config.bearer() {
            Some(bearer) => request.header("authorization", bearer),
            None => request,
        }
    }

    /// Runs `attempt` until it succeeds, fails with a lasting error, or the
    /// configured retries are spent, waiting 200 ms, 400 ms, ... in between.
    fn retrying<T>(
        &self,
        mut attempt: impl FnMut() -> Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        let mut failures = 0;
        loop {
            match attempt() {
                Err(error) if error.is_transient() => {
                    if failures == self.config.retries {
                        return Err(match failures {
                            0 => error,
                            _ => RemoteError::GaveUp {
                                attempts: failures + 1,
                                last: Box::new(error),
                            },
                        });
                    }
                    thread::sleep(BACKOFF * 2u32.pow(failures.min(5)));
                    failures += 1;
                }
                result => return result,
            }
        }
    }
}

/// The response if it is a 2xx; otherwise an error with the status and the
/// server's message.
fn success(
    url: &str,
    response: Result<Response<Body>, ureq::Error>,
) -> Result<Response<Body>, RemoteError> {
    let response = response.map_err(|e| RemoteError::transport(url, e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let mut bytes = Vec::new();
    // The message is best effort: a body that fails to arrive leaves the status.
    let _ = response
        .into_body()
        .into_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let message = serde_json::from_str(&text)
        .ok()
        .and_then(|json| error_message(&json))
        .unwrap_or_else(|| match text.trim() {
            "" => status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string(),
            text => clip(text),
        });
    Err(RemoteError::Status {
        url: url.to_string(),
        status: status.as_u16(),
        message,
    })
}
