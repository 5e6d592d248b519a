//! A model's own chat template (Jinja, from GGUF metadata or
//! `tokenizer_config.json`) rendered with minijinja.
//!
//! Templates come from model files, which a user may download from anywhere, so
//! rendering is sandboxed: minijinja has no file or network access, and a fuel
//! limit stops a template that loops forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use mdsa_engine::ChatMessage;
use minijinja::{Environment, ErrorKind, context};

use mdsa_engine::ModelError;

/// Instructions a template may execute before it is stopped.
const TEMPLATE_FUEL: u64 = 1_000_000;

/// Contexts whose rendered text around the query is kept; past this the
/// whole set is dropped (a domain's system prompt is one context).
const MAX_SPLICES: usize = 64;

/// Stand-ins for the query when finding the text around it: private-use
/// characters no real query starts with, then inner whitespace that a
/// template which rewrote content (trim, case, ...) would give away.
const PROBES: [&str; 2] = ["\u{E000}mdsa\u{E001}", "\u{E002}a b\n\tC\u{E003}"];

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    /// Where the template came from, for error messages.
    origin: String,
    /// The rendered text before and after the query, per context (the
    /// messages before it); `None` for a context where the template does not
    /// pass the query through verbatim.
    splices: Mutex<HashMap<Vec<ChatMessage>, Option<Arc<Splice>>>>,
}

/// A rendered prompt cut where the query goes.
#[derive(Debug, Clone)]
struct Splice {
    prefix: String,
    suffix: String,
}

impl Splice {
    fn around(&self, query: &str) -> String {
        let mut text = String::with_capacity(self.prefix.len() + query.len() + self.suffix.len());
        text.push_str(&self.prefix);
        text.push_str(query);
        text.push_str(&self.suffix);
        text
    }
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
            splices: Mutex::new(HashMap::new()),
        })
    }

    /// Renders a conversation; with `add_generation_prompt` the text ends where the
    /// assistant's answer begins.
    ///
    /// A template that refuses a system message (Gemma's raises "System role
    /// not supported") gets it folded into the first user message instead,
    /// as Gemma's own documentation advises, so a domain's system prompt still
    /// reaches the model.
    ///
    /// A routed query's prompt differs from the last one of its domain only in
    /// the query, so the text around it is rendered once per system prompt and
    /// kept, where the template passes the query through verbatim (checked
    /// with two stand-ins); the prompt is then the same text, without running
    /// the template.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ModelError> {
        if add_generation_prompt
            && let Some((query, context)) = messages.split_last()
            && splices_apply(query, context)
        {
            let kept = self
                .splices
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(context)
                .cloned();
            let splice = match kept {
                Some(splice) => splice,
                None => self.find_splice(context),
            };
            if let Some(splice) = splice {
                return Ok(splice.around(&query.content));
            }
        }
        self.render_every_time(messages, add_generation_prompt)
    }

    /// Renders with each stand-in for the query and keeps the text around it
    /// when both agree.
    fn find_splice(&self, context: &[ChatMessage]) -> Option<Arc<Splice>> {
        let render = |probe: &str| {
            let mut messages = context.to_vec();
            messages.push(ChatMessage::user(probe));
            self.render_every_time(&messages, true).ok()
        };
        let splice = render(PROBES[0]).and_then(|text| {
            let (prefix, suffix) = text.split_once(PROBES[0])?;
            (!suffix.contains(PROBES[0])).then(|| {
                Arc::new(Splice {
                    prefix: prefix.to_string(),
                    suffix: suffix.to_string(),
                })
            })
        });
        let splice = splice.filter(|splice| render(PROBES[1]) == Some(splice.around(PROBES[1])));
        let mut splices = self.splices.lock().unwrap_or_else(PoisonError::into_inner);
        if splices.len() >= MAX_SPLICES {
            splices.clear();
        }
        splices.insert(context.to_vec(), splice.clone());
        splice
    }

    fn render_every_time(
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

/// Whether a prompt may be spliced: a new user turn after at most a system
/// message (a conversation with history is a new context every turn), whose
/// text has no markup a template might look into (`<tool_response>`...) and
/// no whitespace at its ends for a template to trim.
fn splices_apply(query: &ChatMessage, context: &[ChatMessage]) -> bool {
    let content = &query.content;
    query.role == "user"
        && context.iter().all(|m| m.role == "system")
        && context.len() <= 1
        && !content.is_empty()
        && content.trim() == content
        && !content.contains('<')
        && !content.contains(|c| ('\u{E000}'..='\u{E003}').contains(&c))
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

    /// Rendered through the kept text around the query, and every time.
    fn both_ways(template: &ChatTemplate, messages: &[ChatMessage]) -> (String, String) {
        let spliced = template.render(messages, true).unwrap();
        (spliced, template.render_every_time(messages, true).unwrap())
    }

    #[test]
    fn kept_prompt_text_renders_what_the_template_renders() {
        let gemma_like = "{{ bos_token }}{% for m in messages %}{{ '<turn>' + m.role + '\n' + m.content | trim + '\n' }}{% endfor %}<turn>model\n";
        let looks_inside = "{% for m in messages %}{% if m.content.startswith('<tool') %}TOOL{% else %}{{ m.role }}: {{ m.content }}{% endif %}\n{% endfor %}";
        let upper = "{% for m in messages %}{{ m.content.upper() }}{% endfor %}";
        let queries = [
            "What's my balance?",
            "two\nlines\tand tabs",
            "  padded  ",
            "<tool_response>x</tool_response>",
            "{{ not a template }}",
            "ünïcödé 中文",
        ];
        for source in [CHATML, gemma_like, looks_inside, upper] {
            let template = ChatTemplate::new(source, "<s>", "</s>", "test").unwrap();
            for system in [None, Some("Be brief.")] {
                for query in queries {
                    let mut messages: Vec<ChatMessage> =
                        system.map(ChatMessage::system).into_iter().collect();
                    messages.push(ChatMessage::user(query));
                    let (spliced, rendered) = both_ways(&template, &messages);
                    assert_eq!(spliced, rendered, "{source:?} {system:?} {query:?}");
                }
            }
        }
        // ChatML passes the query through: its text is kept, one per system prompt.
        let chatml = ChatTemplate::new(CHATML, "", "", "test").unwrap();
        both_ways(&chatml, &[ChatMessage::user("Hi")]);
        both_ways(
            &chatml,
            &[ChatMessage::system("A"), ChatMessage::user("Hi")],
        );
        let kept = chatml.splices.lock().unwrap();
        assert_eq!(kept.len(), 2);
        assert!(kept.values().all(Option::is_some));
        // A template that rewrites the content is not spliced.
        let upper = ChatTemplate::new(upper, "", "", "test").unwrap();
        both_ways(&upper, &[ChatMessage::user("hi")]);
        assert!(upper.splices.lock().unwrap().values().all(Option::is_none));
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
