//! A model's own chat template (Jinja, from GGUF metadata or
//! `tokenizer_config.json`) rendered with minijinja.
//!
//! Templates come from model files, which a user may download from anywhere, so
//! rendering is sandboxed: minijinja has no file or network access, and a fuel
//! limit stops a template that loops forever.

use mdsa_engine::ChatMessage;
use minijinja::{Environment, ErrorKind, context};

use mdsa_engine::ModelError;

/// Instructions a template may execute before it is stopped.
const TEMPLATE_FUEL: u64 = 1_000_000;

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    /// Where the template came from, for error messages.
    origin: String,
}

impl ChatTemplate {
    /// Compiles `source`; `origin` names where it came from (a file and key).
    pub fn new(
        source: &str,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
        origin: impl Into<String>,
    ) -> Result<Self, ModelError> {
        let origin = origin.into();
        let mut env = Environment::new();
        env.set_fuel(Some(TEMPLATE_FUEL));
        // HF templates call Python string methods (`.strip()`, `.startswith()`).
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| template_error(&origin, "compiling", &e))?;
        Ok(Self {
            env,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
            origin,
        })
    }

    /// Renders a conversation; with `add_generation_prompt` the text ends where the
    /// assistant's answer begins.
    ///
    /// A template that refuses a system message (Gemma's raises "System role
    /// not supported") gets it folded into the first user message instead,
    /// as Gemma's own documentation advises, so a domain's system prompt still
    /// reaches the model.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ModelError> {
        match self.render_as_given(messages, add_generation_prompt) {
            Err(error) if Self::refuses_system(&error, messages) => match fold_system(messages) {
                Some(folded) => self.render_as_given(&folded, add_generation_prompt),
                None => Err(error),
            },
            rendered => rendered,
        }
    }

    fn refuses_system(error: &ModelError, messages: &[ChatMessage]) -> bool {
        let has_system = messages.first().is_some_and(|m| m.role == "system");
        has_system && error.to_string().to_lowercase().contains("system")
    }

    fn render_as_given(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ModelError> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| template_error(&self.origin, "loading", &e))?;
        template
            .render(context! {
                messages => minijinja::Value::from(minijinja::value::Serde(messages)),
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| template_error(&self.origin, "rendering", &e))
    }
}

/// `messages` with a leading system message prepended to the first user
/// message (separated by a blank line); `None` when there is no user message.
fn fold_system(messages: &[ChatMessage]) -> Option<Vec<ChatMessage>> {
    let (system, rest) = messages.split_first()?;
    let first_user = rest.iter().position(|m| m.role == "user")?;
    let mut folded = rest.to_vec();
    let user = &mut folded[first_user];
    user.content = format!("{}\n\n{}", system.content, user.content);
    Some(folded)
}

fn template_error(origin: &str, doing: &str, error: &minijinja::Error) -> ModelError {
    ModelError::ChatTemplate {
        origin: origin.to_string(),
        reason: format!("{doing}: {error:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_renders_like_transformers() {
        let template = ChatTemplate::new(CHATML, "<|im_start|>", "<|im_end|>", "test").unwrap();
        let text = template.render(&[ChatMessage::user("Hi")], true).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let text = template
            .render(
                &[ChatMessage::system("Be brief."), ChatMessage::user("Hi")],
                false,
            )
            .unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn a_template_without_a_system_role_gets_it_in_the_first_user_turn() {
        // Gemma's template, as in its tokenizer_config.json.
        let gemma = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";
        let template = ChatTemplate::new(gemma, "<bos>", "<eos>", "test").unwrap();
        let text = template
            .render(
                &[ChatMessage::system("Be brief."), ChatMessage::user("Hi")],
                true,
            )
            .unwrap();
        assert_eq!(
            text,
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
        );
        // Other exceptions are not second-guessed.
        let strict =
            ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "", "", "t")
                .unwrap();
        let err = strict
            .render(&[ChatMessage::system("s"), ChatMessage::user("u")], false)
            .unwrap_err();
        assert!(err.to_string().contains("alternate"), "{err}");
    }

    #[test]
    fn python_string_methods_work() {
        let source = "{% for m in messages %}{{ m.content.strip().upper() }}{% endfor %}";
        let template = ChatTemplate::new(source, "", "", "test").unwrap();
        assert_eq!(
            template
                .render(&[ChatMessage::user("  hi ")], false)
                .unwrap(),
            "HI"
        );
    }

    #[test]
    fn template_errors_name_the_origin() {
        let err = ChatTemplate::new("{% for %}", "", "", "model.gguf: tokenizer.chat_template")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("model.gguf: tokenizer.chat_template"),
            "{err}"
        );
        let raising =
            ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "", "", "t")
                .unwrap();
        let err = raising.render(&[], false).unwrap_err();
        assert!(err.to_string().contains("roles must alternate"), "{err}");
    }

    #[test]
    fn a_template_that_never_ends_runs_out_of_fuel() {
        let source =
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        let template = ChatTemplate::new(source, "", "", "t").unwrap();
        let err = template.render(&[], false).unwrap_err();
        assert!(err.to_string().contains("fuel"), "{err}");
    }
}
