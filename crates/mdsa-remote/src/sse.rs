//! Server-sent events: the framing of OpenAI's streamed answers.
//!
//! A stream is lines of `field: value`; a blank line ends an event. Only the
//! `data` and `event` fields matter here; comments (`: keep-alive`) and other
//! fields are skipped. Lines may end in `\n` or `\r\n` (servers do not end them
//! in a lone `\r`, which the format also allows).

use std::io::{self, BufRead, BufReader, Read};

/// Longest line accepted: a bound on what a misbehaving server can make us buffer.
const MAX_LINE: u64 = 4 << 20;

/// One event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Event {
    /// The `event:` field; empty for the default (`message`).
    pub(crate) name: String,
    /// The `data:` lines, joined with `\n`.
    pub(crate) data: String,
}

/// Reads events from a byte stream, however its reads split the lines.
pub(crate) struct EventReader<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
}

impl<R: Read> EventReader<R> {
    pub(crate) fn new(reader: R) -> Self {
        Self {
            reader: BufReader::new(reader),
            line: Vec::new(),
        }
    }

    /// The next event; `None` at the end of the stream. An event the stream ends
    /// in the middle of is dropped, as the format specifies.
    pub(crate) fn next_event(&mut self) -> io::Result<Option<Event>> {
        let mut event = Event::default();
        let mut has_data = false;
        loop {
            self.line.clear();
            let read = (&mut self.reader)
                .take(MAX_LINE)
                .read_until(b'\n', &mut self.line)?;
            if read == 0 {
                return Ok(None);
            }
            if self.line.last() != Some(&b'\n') && read as u64 == MAX_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("an event line is longer than {MAX_LINE} bytes"),
                ));
            }
            // Whole lines are whole UTF-8 sequences, however the reads split them.
            let line = std::str::from_utf8(&self.line)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let line = line.trim_end_matches('\n').trim_end_matches('\r');
            if line.is_empty() {
                if has_data {
                    return Ok(Some(event));
                }
                event = Event::default();
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            match field {
                "data" => {
                    if has_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    has_data = true;
                }
                "event" => event.name = value.to_string(),
                // llama.cpp's server has reported failures as `error: {...}`
                // lines rather than as an event named error.
                "error" => {
                    event.name = "error".into();
                    event.data = value.to_string();
                    has_data = true;
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per read, as a slow network does.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn events(text: &str, step: usize) -> Vec<Event> {
        let mut reader = EventReader::new(Trickle {
            bytes: text.as_bytes(),
            step,
        });
        let mut events = Vec::new();
        while let Some(event) = reader.next_event().unwrap() {
            events.push(event);
        }
        events
    }

    fn data(data: &str) -> Event {
        Event {
            name: String::new(),
            data: data.into(),
        }
    }

    #[test]
    fn events_survive_any_split_of_the_reads() {
        let text =
            ": keep-alive\n\ndata: {\"a\":\"é\"}\r\n\r\ndata: one\ndata:two\n\ndata: [DONE]\n\n";
        let expected = vec![data("{\"a\":\"é\"}"), data("one\ntwo"), data("[DONE]")];
        for step in [1, 2, 3, 7, 1000] {
            assert_eq!(events(text, step), expected, "reads of {step} bytes");
        }
    }

    #[test]
    fn named_and_llama_cpp_style_errors_are_events() {
        let text =
            "event: error\ndata: {\"message\":\"boom\"}\n\nerror: {\"message\":\"bang\"}\n\n";
        let got = events(text, 5);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|e| e.name == "error"));
        assert_eq!(got[1].data, "{\"message\":\"bang\"}");
    }

    #[test]
    fn an_unfinished_event_at_the_end_is_dropped() {
        assert_eq!(events("data: a\n\ndata: b", 4), vec![data("a")]);
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut reader = EventReader::new(&b"data: \xff\n\n"[..]);
        assert_eq!(
            reader.next_event().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
