//! Conversations as plain data: the [`ChatMessage`] every engine takes, and a
//! plain [`transcript`] for engines that apply a chat template of their own.

use serde::{Deserialize, Serialize};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A plain transcript of a conversation (`role: content` per line, ending
/// with `assistant:`), for engines that apply the model's chat template
/// themselves (a remote server, an external program) and for their logs.
pub fn transcript(messages: &[ChatMessage]) -> String {
    let mut text = String::new();
    for message in messages {
        text.push_str(&message.role);
        text.push_str(": ");
        text.push_str(&message.content);
        text.push('\n');
    }
    text.push_str("assistant:");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_names_each_role_and_ends_at_the_answer() {
        let text = transcript(&[ChatMessage::system("Be brief."), ChatMessage::user("Hi")]);
        assert_eq!(text, "system: Be brief.\nuser: Hi\nassistant:");
    }
}
