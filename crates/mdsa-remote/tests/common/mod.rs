//! A small HTTP/1.1 server on loopback for the client tests. Each connection
//! gets one request, answered by the test's handler; the server records every
//! request and can tell when the client has closed its connection.

#![allow(dead_code, unreachable_pub)] // Each test file uses a different part.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use mdsa_engine::{spec::ModelRole, spec::ModelSpec};
use serde_json::{Value, json};

/// The model name the test specs ask for.
pub const MODEL: &str = "test/model";

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the request body is JSON")
    }
}

/// A connection being answered: the request, and ways to write the answer.
pub struct Exchange {
    /// 0 for the first connection, 1 for the second, ...
    pub index: usize,
    pub request: Request,
    stream: TcpStream,
}

impl Exchange {
    /// A whole JSON answer.
    pub fn respond(&mut self, status: u16, body: &Value) {
        let body = body.to_string();
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        self.write(&(head + &body));
    }

    /// The head of a streamed answer, sent in chunked encoding as vLLM does.
    pub fn start_stream(&mut self) {
        self.write(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        );
    }

    /// One server-sent event, `data: {data}`, in its own HTTP chunk.
    pub fn event(&mut self, data: &str) {
        let event = format!("data: {data}\n\n");
        self.write(&format!("{:x}\r\n{event}\r\n", event.len()));
    }

    /// The end of the chunked body.
    pub fn end_stream(&mut self) {
        self.write("0\r\n\r\n");
    }

    /// Streams `pieces` as chat deltas, then the finish reason, a usage chunk
    /// and `[DONE]`.
    pub fn stream_chat(&mut self, pieces: &[&str], finish: &str) {
        self.start_stream();
        for piece in pieces {
            self.event(&delta(piece));
        }
        self.event(&finish_chunk(finish));
        self.event(&json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": pieces.len()}}).to_string());
        self.event("[DONE]");
        self.end_stream();
    }

    /// Whether the client closes the connection within `wait`. Anything it
    /// still sends is read and ignored.
    pub fn client_closed(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 256];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    fn write(&mut self, text: &str) {
        // The client may have gone already; the test's assertions tell.
        let _ = self.stream.write_all(text.as_bytes());
        let _ = self.stream.flush();
    }
}

/// A chat chunk carrying `text`.
pub fn delta(text: &str) -> String {
    json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
        .to_string()
}

/// A chat chunk with only a finish reason.
pub fn finish_chunk(reason: &str) -> String {
    json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}).to_string()
}

/// A `/models` answer listing `ids`.
pub fn model_list(ids: &[&str]) -> Value {
    let data: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "object": "model"}))
        .collect();
    json!({"object": "list", "data": data})
}

/// The server. Dropping it stops accepting connections.
pub struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stopped: Arc<AtomicBool>,
}

impl Server {
    /// Serves connections one after another on `127.0.0.1`, a free port.
    pub fn start(handler: impl Fn(&mut Exchange) + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let (log, stop) = (Arc::clone(&requests), Arc::clone(&stopped));
        thread::spawn(move || {
            for (index, stream) in listener.incoming().enumerate() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                log.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(request.clone());
                handler(&mut Exchange {
                    index,
                    request,
                    stream,
                });
            }
        });
        Self {
            port,
            requests,
            stopped,
        }
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A generator spec for [`MODEL`] on this server, with `options` added.
    pub fn spec(&self, options: &[(&str, &str)]) -> ModelSpec {
        spec_for(&self.base_url(), options)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A generator spec for [`MODEL`] at `base_url`, with `options` added.
pub fn spec_for(base_url: &str, options: &[(&str, &str)]) -> ModelSpec {
    let mut spec = ModelSpec::new("remote-test", MODEL, ModelRole::Generator);
    spec.backend = mdsa_remote::BACKEND_NAME.into();
    spec.options.insert("base_url", base_url);
    for (key, value) in options {
        spec.options.insert(*key, *value);
    }
    spec
}

/// Reads a request head and its `content-length` body.
fn read_request(stream: &mut TcpStream) -> Option<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body: String::from_utf8(body).ok()?,
    })
}
