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
    pub fn render(
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
