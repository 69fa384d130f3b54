//! A minimal blocking client of the API (H19), for `sixfold sql --server` and
//! `sixfold db list --server`: plain HTTP/1.1 over one TCP connection per request, no
//! TLS (the server speaks none).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value as Json;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("server URL {0:?}: expected http://HOST:PORT")]
    Url(String),
    #[error("talking to {address}: {source}")]
    Io {
        address: String,
        source: std::io::Error,
    },
    #[error("the server's answer is not HTTP/JSON: {0}")]
    Answer(String),
}

/// How long a request may wait for its answer (a commit may wait for a quorum).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// The server at a base URL such as `http://127.0.0.1:7070`.
#[derive(Clone, Debug)]
pub struct Client {
    address: String,
    prefix: String,
}

impl Client {
    pub fn new(url: &str) -> Result<Client, ClientError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| ClientError::Url(url.to_string()))?;
        let (address, prefix) = match rest.find('/') {
            Some(at) => (&rest[..at], rest[at..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if address.is_empty() {
            return Err(ClientError::Url(url.to_string()));
        }
        Ok(Client {
            address: address.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// One request: the status code and the JSON body (`null` for an empty body).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Json>,
    ) -> Result<(u16, Json), ClientError> {
        let io = |source| ClientError::Io {
            address: self.address.clone(),
            source,
        };
        let body = body.map(Json::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect(&self.address).map_err(io)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
        let head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.prefix,
            self.address,
            body.len()
        );
        stream.write_all(head.as_bytes()).map_err(io)?;
        stream.write_all(body.as_bytes()).map_err(io)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).map_err(io)?;
        parse_answer(&answer)
    }
}

fn parse_answer(answer: &[u8]) -> Result<(u16, Json), ClientError> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| ClientError::Answer("no end of headers".into()))?;
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| ClientError::Answer(format!("no status in {head:?}")))?;
    let mut body = answer[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body)?;
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((status, Json::Null));
    }
    let json = serde_json::from_slice(&body).map_err(|error| {
        ClientError::Answer(format!(
            "{status}: {error}: {}",
            String::from_utf8_lossy(&body)
        ))
    })?;
    Ok((status, json))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, ClientError> {
    let bad = || ClientError::Answer("bad chunked body".into());
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err(bad());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_answers_parse() {
        // H19
        let client = Client::new("http://127.0.0.1:7070/").unwrap();
        assert_eq!(
            (client.address.as_str(), client.prefix.as_str()),
            ("127.0.0.1:7070", "")
        );
        let client = Client::new("http://h:1/api/").unwrap();
        assert_eq!(client.prefix, "/api");
        assert!(Client::new("https://h:1").is_err());
        assert!(Client::new("http://").is_err());
        let (status, json) =
            parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n{\"a\":1}").unwrap();
        assert_eq!((status, json), (200, serde_json::json!({"a": 1})));
        let chunked = b"HTTP/1.1 422 X\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(
            parse_answer(chunked).unwrap(),
            (422, serde_json::json!({"a": 1}))
        );
        assert!(parse_answer(b"garbage").is_err());
    }
}
