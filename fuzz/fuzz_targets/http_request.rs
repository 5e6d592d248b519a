//! Arbitrary request bodies into the server's JSON parsing: the chat
//! completions request with its checks and conversation, the embeddings and
//! the route requests. Any body must end in a value or in a 400 whose message
//! is non-empty, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mdsa_server::ApiError;
use mdsa_server::openai::{ChatCompletionRequest, EmbeddingsRequest, RouteRequest, from_json_body};

fn bad_request(error: &ApiError) {
    assert_eq!(error.status.as_u16(), 400, "{error}");
    assert!(!error.message.is_empty(), "{error:?}");
    if let Some(param) = &error.param {
        assert!(!param.is_empty(), "{error:?}");
    }
    // What the client receives.
    serde_json::to_vec(&error.body()).expect("an error body serialises");
}

fuzz_target!(|data: &[u8]| {
    match from_json_body::<ChatCompletionRequest>(data) {
        Ok(request) => {
            if let Err(error) = request.check() {
                bad_request(&error);
            }
            match request.conversation() {
                Ok((history, question)) => {
                    assert_eq!(history.len() + 1, request.messages.len());
                    assert!(!question.trim().is_empty());
                    for message in &history {
                        assert!(
                            ["system", "user", "assistant"].contains(&message.role.as_str()),
                            "{message:?}"
                        );
                    }
                }
                Err(error) => bad_request(&error),
            }
        }
        Err(error) => bad_request(&error),
    }
    match from_json_body::<EmbeddingsRequest>(data) {
        Ok(_) => {}
        Err(error) => bad_request(&error),
    }
    match from_json_body::<RouteRequest>(data) {
        Ok(_) => {}
        Err(error) => bad_request(&error),
    }
});
