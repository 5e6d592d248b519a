//! Turning a query into the prompt a domain's model sees.

use mdsa_engine::{ChatMessage, TextGenerator};

use crate::config::DomainConfig;
use crate::error::Result;

/// Builds a domain's conversation: its system prompt, then its template with the
/// query filled in, rendered through the model's own chat template.
#[derive(Debug, Clone, Copy)]
pub struct PromptBuilder<'a> {
    domain: &'a DomainConfig,
}

impl<'a> PromptBuilder<'a> {
    /// A builder for one domain.
    pub fn new(domain: &'a DomainConfig) -> Self {
        Self { domain }
    }

    /// The user message: the template with `{query}` replaced.
    pub fn user_message(&self, query: &str) -> String {
        self.domain.prompt_template.replace("{query}", query.trim())
    }

    /// The conversation: a system message (when the domain has a system prompt;
    /// otherwise the model's template supplies its own default) and the user message.
    pub fn messages(&self, query: &str) -> Vec<ChatMessage> {
        self.conversation(&[], query)
    }

    /// The conversation with earlier turns: one system message (the domain's
    /// system prompt, then any system text of the caller's: chat templates take
    /// a single system message, first), the rest of `history`, then the
    /// templated query.
    pub fn conversation(&self, history: &[ChatMessage], query: &str) -> Vec<ChatMessage> {
        let mut system: Vec<&str> = Vec::new();
        if !self.domain.system_prompt.trim().is_empty() {
            system.push(self.domain.system_prompt.trim());
        }
        let (callers_system, turns): (Vec<_>, Vec<_>) =
            history.iter().partition(|m| m.role == "system");
        system.extend(
            callers_system
                .iter()
                .map(|m| m.content.trim())
                .filter(|c| !c.is_empty()),
        );
        let mut messages = Vec::with_capacity(2 + turns.len());
        if !system.is_empty() {
            messages.push(ChatMessage::system(system.join("\n\n")));
        }
        messages.extend(turns.into_iter().cloned());
        messages.push(ChatMessage::user(self.user_message(query)));
        messages
    }

    /// The prompt text for `generator`, ending where the answer starts.
    pub fn render(&self, generator: &dyn TextGenerator, query: &str) -> Result<String> {
        Ok(generator.render_chat(&self.messages(query))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_prompt_and_template_become_messages() {
        let domain = DomainConfig::new("d", "x")
            .system_prompt("Be brief.")
            .prompt_template("Question about money: {query}");
        let messages = PromptBuilder::new(&domain).messages("  Why save?\n");
        assert_eq!(
            messages,
            [
                ChatMessage::system("Be brief."),
                ChatMessage::user("Question about money: Why save?")
            ]
        );
        let history = [
            ChatMessage::system("Answer in French."),
            ChatMessage::user("Hi"),
            ChatMessage::assistant("Hello!"),
        ];
        assert_eq!(
            PromptBuilder::new(&domain).conversation(&history, "Why save?"),
            [
                ChatMessage::system("Be brief.\n\nAnswer in French."),
                ChatMessage::user("Hi"),
                ChatMessage::assistant("Hello!"),
                ChatMessage::user("Question about money: Why save?")
            ]
        );
        let bare = DomainConfig::new("d", "x");
        assert_eq!(
            PromptBuilder::new(&bare).messages("hi"),
            [ChatMessage::user("hi")]
        );
    }
}
