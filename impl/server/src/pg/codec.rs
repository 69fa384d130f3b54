//! PostgreSQL wire protocol v3 framing (H20, H22): decoding what a client sends and
//! encoding what the server answers. Plain functions over byte slices, no IO; a frame
//! that is short, too long or of an unknown type is an error, never a panic.

/// The protocol version a StartupMessage carries (3.0).
pub const PROTOCOL_3_0: i32 = 196_608;
const SSL_REQUEST: i32 = 80_877_103;
const GSS_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// The longest startup packet accepted (PostgreSQL's own limit).
pub const MAX_STARTUP_BYTES: usize = 10_000;

/// Why bytes from a client are not a message: the connection is closed with a
/// protocol-violation error (H22).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message length {0} is out of range (4 to {1} bytes)")]
    Length(i64, usize),
    #[error("message {kind:?} is truncated: {what}")]
    Truncated { kind: char, what: &'static str },
    #[error("unknown message type {0:?}")]
    UnknownType(char),
    #[error("a string in message {0:?} is not valid UTF-8")]
    Utf8(char),
    #[error("unsupported protocol version {0}.{1} (this server speaks 3.0)")]
    Version(i32, i32),
    #[error("negative count in message {0:?}")]
    Negative(char),
}

/// The first packet of a connection, which has no type byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    SslRequest,
    GssEncRequest,
    Cancel {
        process_id: i32,
        secret: i32,
    },
    /// A StartupMessage: its parameters (`user`, `database`, ...), and the minor version
    /// asked for (a 3.x client with x > 0 is told 3.0, H21).
    Start {
        params: Vec<(String, String)>,
        minor: i32,
    },
}

/// A message a client sends after startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frontend {
    Query(String),
    Parse {
        name: String,
        sql: String,
        param_types: Vec<u32>,
    },
    Bind {
        portal: String,
        statement: String,
        param_formats: Vec<i16>,
        params: Vec<Option<Vec<u8>>>,
        result_formats: Vec<i16>,
    },
    Describe {
        portal: bool,
        name: String,
    },
    Execute {
        portal: String,
        max_rows: i32,
    },
    Close {
        portal: bool,
        name: String,
    },
    Sync,
    Flush,
    Terminate,
    /// Messages this server does not serve (function calls, COPY data, passwords after
    /// startup): answered with an error, the connection stays usable.
    Unsupported(char),
}

/// Reads the fields of one message body.
struct Fields<'a> {
    kind: char,
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
        if self.bytes.len() < n {
            return Err(FrameError::Truncated {
                kind: self.kind,
                what,
            });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, FrameError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, FrameError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn count(&mut self, what: &'static str) -> Result<usize, FrameError> {
        usize::try_from(self.i16(what)?).map_err(|_| FrameError::Negative(self.kind))
    }

    fn cstr(&mut self, what: &'static str) -> Result<String, FrameError> {
        let Some(end) = self.bytes.iter().position(|&b| b == 0) else {
            return Err(FrameError::Truncated {
                kind: self.kind,
                what,
            });
        };
        let text = std::str::from_utf8(&self.bytes[..end])
            .map_err(|_| FrameError::Utf8(self.kind))?
            .to_string();
        self.bytes = &self.bytes[end + 1..];
        Ok(text)
    }
}

/// The length prefix of a frame at `bytes`, checked against `max`: `None` until all four
/// bytes are there.
fn frame_length(bytes: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(head) = bytes.get(..4) else {
        return Ok(None);
    };
    let length = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    match usize::try_from(length) {
        Ok(length) if (4..=max).contains(&length) => Ok(Some(length)),
        _ => Err(FrameError::Length(i64::from(length), max)),
    }
}

/// H21: the startup packet at the front of `bytes`, and how many bytes it took; `None`
/// while incomplete.
pub fn decode_startup(bytes: &[u8]) -> Result<Option<(Startup, usize)>, FrameError> {
    let Some(length) = frame_length(bytes, MAX_STARTUP_BYTES)? else {
        return Ok(None);
    };
    if bytes.len() < length {
        return Ok(None);
    }
    let mut fields = Fields {
        kind: '\0',
        bytes: &bytes[4..length],
    };
    let code = fields.i32("protocol version")?;
    let startup = match code {
        SSL_REQUEST => Startup::SslRequest,
        GSS_REQUEST => Startup::GssEncRequest,
        CANCEL_REQUEST => Startup::Cancel {
            process_id: fields.i32("process id")?,
            secret: fields.i32("secret key")?,
        },
        version if version >> 16 == 3 => {
            let mut params = Vec::new();
            loop {
                let name = fields.cstr("parameter name")?;
                if name.is_empty() {
                    break;
                }
                params.push((name, fields.cstr("parameter value")?));
            }
            Startup::Start {
                params,
                minor: version & 0xffff,
            }
        }
        version => return Err(FrameError::Version(version >> 16, version & 0xffff)),
    };
    Ok(Some((startup, length)))
}

/// H22: the typed message at the front of `bytes` and how many bytes it took; `None`
/// while incomplete. A frame longer than `max` bytes is refused before it is read.
pub fn decode(bytes: &[u8], max: usize) -> Result<Option<(Frontend, usize)>, FrameError> {
    let Some(&kind) = bytes.first() else {
        return Ok(None);
    };
    let kind = kind as char;
    if !matches!(
        kind,
        'Q' | 'P' | 'B' | 'D' | 'E' | 'C' | 'S' | 'H' | 'X' | 'F' | 'd' | 'c' | 'f' | 'p'
    ) {
        return Err(FrameError::UnknownType(kind));
    }
    let Some(length) = frame_length(&bytes[1..], max)? else {
        return Ok(None);
    };
    if bytes.len() < 1 + length {
        return Ok(None);
    }
    let mut fields = Fields {
        kind,
        bytes: &bytes[5..1 + length],
    };
    let message = match kind {
        'Q' => Frontend::Query(fields.cstr("query")?),
        'P' => decode_parse(&mut fields)?,
        'B' => decode_bind(&mut fields)?,
        'D' => Frontend::Describe {
            portal: describe_target(&mut fields)?,
            name: fields.cstr("name")?,
        },
        'E' => Frontend::Execute {
            portal: fields.cstr("portal")?,
            max_rows: fields.i32("row limit")?,
        },
        'C' => Frontend::Close {
            portal: describe_target(&mut fields)?,
            name: fields.cstr("name")?,
        },
        'S' => Frontend::Sync,
        'H' => Frontend::Flush,
        'X' => Frontend::Terminate,
        other => Frontend::Unsupported(other),
    };
    Ok(Some((message, 1 + length)))
}

fn describe_target(fields: &mut Fields<'_>) -> Result<bool, FrameError> {
    match fields.take(1, "target")?[0] {
        b'P' => Ok(true),
        b'S' => Ok(false),
        _ => Err(FrameError::Truncated {
            kind: fields.kind,
            what: "target ('S' or 'P')",
        }),
    }
}

fn decode_parse(fields: &mut Fields<'_>) -> Result<Frontend, FrameError> {
    let name = fields.cstr("statement name")?;
    let sql = fields.cstr("query")?;
    let count = fields.count("parameter type count")?;
    let param_types = (0..count)
        .map(|_| fields.i32("parameter type").map(|oid| oid as u32))
        .collect::<Result<_, _>>()?;
    Ok(Frontend::Parse {
        name,
        sql,
        param_types,
    })
}

fn decode_bind(fields: &mut Fields<'_>) -> Result<Frontend, FrameError> {
    let portal = fields.cstr("portal name")?;
    let statement = fields.cstr("statement name")?;
    let count = fields.count("format count")?;
    let param_formats = (0..count)
        .map(|_| fields.i16("parameter format"))
        .collect::<Result<_, _>>()?;
    let count = fields.count("parameter count")?;
    let mut params = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let length = fields.i32("parameter length")?;
        params.push(match usize::try_from(length) {
            Ok(length) => Some(fields.take(length, "parameter value")?.to_vec()),
            Err(_) => None,
        });
    }
    let count = fields.count("result format count")?;
    let result_formats = (0..count)
        .map(|_| fields.i16("result format"))
        .collect::<Result<_, _>>()?;
    Ok(Frontend::Bind {
        portal,
        statement,
        param_formats,
        params,
        result_formats,
    })
}

/// One field of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    pub name: String,
    pub type_oid: u32,
    pub type_size: i16,
    pub format: i16,
}

/// An ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `ERROR`, `FATAL` or `WARNING`.
    pub severity: &'static str,
    /// The SQLSTATE (H23).
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

/// A message the server sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    AuthenticationOk,
    ParameterStatus(&'static str, String),
    BackendKeyData { process_id: i32, secret: i32 },
    NegotiateProtocolVersion { minor: i32, unknown: Vec<String> },
    ReadyForQuery(u8),
    RowDescription(Vec<FieldDescription>),
    DataRow(Vec<Option<Vec<u8>>>),
    CommandComplete(String),
    EmptyQueryResponse,
    ParseComplete,
    BindComplete,
    CloseComplete,
    NoData,
    PortalSuspended,
    ParameterDescription(Vec<u32>),
    Error(Notice),
    Notice(Notice),
}

/// Appends a frame of type `kind` whose body `body` writes.
fn frame(out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(kind);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let length = u32::try_from(out.len() - at).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&length.to_be_bytes());
}

fn cstr(out: &mut Vec<u8>, text: &str) {
    // A NUL inside would end the string early; PostgreSQL strings cannot hold one.
    out.extend(text.bytes().filter(|&b| b != 0));
    out.push(0);
}

fn count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&i16::try_from(n).unwrap_or(i16::MAX).to_be_bytes());
}

impl Backend {
    /// Appends this message's frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Backend::AuthenticationOk => frame(out, b'R', |b| b.extend_from_slice(&[0; 4])),
            Backend::ParameterStatus(name, value) => frame(out, b'S', |b| {
                cstr(b, name);
                cstr(b, value);
            }),
            Backend::BackendKeyData { process_id, secret } => frame(out, b'K', |b| {
                b.extend_from_slice(&process_id.to_be_bytes());
                b.extend_from_slice(&secret.to_be_bytes());
            }),
            Backend::NegotiateProtocolVersion { minor, unknown } => frame(out, b'v', |b| {
                b.extend_from_slice(&(PROTOCOL_3_0 | minor).to_be_bytes());
                b.extend_from_slice(&(unknown.len() as i32).to_be_bytes());
                unknown.iter().for_each(|name| cstr(b, name));
            }),
            Backend::ReadyForQuery(status) => frame(out, b'Z', |b| b.push(*status)),
            Backend::RowDescription(fields) => frame(out, b'T', |b| {
                count(b, fields.len());
                for field in fields {
                    cstr(b, &field.name);
                    b.extend_from_slice(&0i32.to_be_bytes()); // table OID
                    b.extend_from_slice(&0i16.to_be_bytes()); // column number
                    b.extend_from_slice(&field.type_oid.to_be_bytes());
                    b.extend_from_slice(&field.type_size.to_be_bytes());
                    b.extend_from_slice(&(-1i32).to_be_bytes()); // type modifier
                    b.extend_from_slice(&field.format.to_be_bytes());
                }
            }),
            Backend::DataRow(values) => frame(out, b'D', |b| {
                count(b, values.len());
                for value in values {
                    match value {
                        None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                        Some(bytes) => {
                            b.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                            b.extend_from_slice(bytes);
                        }
                    }
                }
            }),
            Backend::CommandComplete(tag) => frame(out, b'C', |b| cstr(b, tag)),
            Backend::EmptyQueryResponse => frame(out, b'I', |_| {}),
            Backend::ParseComplete => frame(out, b'1', |_| {}),
            Backend::BindComplete => frame(out, b'2', |_| {}),
            Backend::CloseComplete => frame(out, b'3', |_| {}),
            Backend::NoData => frame(out, b'n', |_| {}),
            Backend::PortalSuspended => frame(out, b's', |_| {}),
            Backend::ParameterDescription(oids) => frame(out, b't', |b| {
                count(b, oids.len());
                oids.iter()
                    .for_each(|oid| b.extend_from_slice(&oid.to_be_bytes()));
            }),
            Backend::Error(notice) => frame(out, b'E', |b| notice_fields(b, notice)),
            Backend::Notice(notice) => frame(out, b'N', |b| notice_fields(b, notice)),
        }
    }
}

fn notice_fields(out: &mut Vec<u8>, notice: &Notice) {
    for (tag, value) in [
        (b'S', Some(notice.severity)),
        (b'V', Some(notice.severity)),
        (b'C', Some(notice.code)),
        (b'M', Some(notice.message.as_str())),
        (b'D', notice.detail.as_deref()),
        (b'H', notice.hint.as_deref()),
    ] {
        if let Some(value) = value {
            out.push(tag);
            cstr(out, value);
        }
    }
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn messages_decode_and_wait_for_their_last_byte() {
        // H22
        let query = typed(b'Q', b"SELECT 1\0");
        for cut in 0..query.len() {
            assert_eq!(decode(&query[..cut], 1024), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            decode(&query, 1024),
            Ok(Some((Frontend::Query("SELECT 1".into()), query.len())))
        );
        let mut bind = b"\0s1\0".to_vec();
        bind.extend_from_slice(&1i16.to_be_bytes());
        bind.extend_from_slice(&0i16.to_be_bytes());
        bind.extend_from_slice(&2i16.to_be_bytes());
        bind.extend_from_slice(&2i32.to_be_bytes());
        bind.extend_from_slice(b"42");
        bind.extend_from_slice(&(-1i32).to_be_bytes());
        bind.extend_from_slice(&0i16.to_be_bytes());
        let (message, _) = decode(&typed(b'B', &bind), 1024).unwrap().unwrap();
        assert_eq!(
            message,
            Frontend::Bind {
                portal: String::new(),
                statement: "s1".into(),
                param_formats: vec![0],
                params: vec![Some(b"42".to_vec()), None],
                result_formats: vec![],
            }
        );
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        // H22
        assert_eq!(
            decode(b"Z\0\0\0\x04", 1024),
            Err(FrameError::UnknownType('Z'))
        );
        assert!(matches!(
            decode(b"Q\0\0\0\x02", 1024),
            Err(FrameError::Length(2, _))
        ));
        assert!(matches!(
            decode(b"Q\x7f\xff\xff\xff", 1024),
            Err(FrameError::Length(..))
        ));
        assert!(matches!(
            decode(&typed(b'Q', b"no terminator"), 1024),
            Err(FrameError::Truncated { .. })
        ));
        // A Bind whose parameter claims more bytes than the frame has.
        let mut bind = b"\0\0".to_vec();
        bind.extend_from_slice(&0i16.to_be_bytes());
        bind.extend_from_slice(&1i16.to_be_bytes());
        bind.extend_from_slice(&1000i32.to_be_bytes());
        assert!(matches!(
            decode(&typed(b'B', &bind), 1024),
            Err(FrameError::Truncated { .. })
        ));
        let mut negative = b"\0\0".to_vec();
        negative.extend_from_slice(&(-3i16).to_be_bytes());
        assert_eq!(
            decode(&typed(b'B', &negative), 1024),
            Err(FrameError::Negative('B'))
        );
        // Every prefix and every single-byte corruption of valid frames: no panic.
        let mut parse = b"s\0SELECT $1\0".to_vec();
        parse.extend_from_slice(&1i16.to_be_bytes());
        parse.extend_from_slice(&20i32.to_be_bytes());
        for valid in [
            typed(b'P', &parse),
            typed(b'B', &bind),
            typed(b'D', b"Px\0"),
        ] {
            for at in 0..valid.len() {
                for byte in [0u8, 1, 0x7f, 0xff] {
                    let mut bad = valid.clone();
                    bad[at] = byte;
                    let _ = decode(&bad, 1 << 20);
                    let _ = decode_startup(&bad);
                }
            }
        }
    }

    #[test]
    fn startup_packets_decode() {
        // H21
        let mut start = PROTOCOL_3_0.to_be_bytes().to_vec();
        start.extend_from_slice(b"user\0me\0database\0app\0\0");
        let mut packet = ((start.len() + 4) as i32).to_be_bytes().to_vec();
        packet.extend_from_slice(&start);
        assert_eq!(
            decode_startup(&packet),
            Ok(Some((
                Startup::Start {
                    params: vec![
                        ("user".into(), "me".into()),
                        ("database".into(), "app".into())
                    ],
                    minor: 0
                },
                packet.len()
            )))
        );
        let ssl = [0, 0, 0, 8, 4, 210, 22, 47];
        assert_eq!(decode_startup(&ssl), Ok(Some((Startup::SslRequest, 8))));
        let mut v2 = 12i32.to_be_bytes().to_vec();
        v2.extend_from_slice(&(2i32 << 16).to_be_bytes());
        v2.extend_from_slice(&[0; 4]);
        assert_eq!(decode_startup(&v2), Err(FrameError::Version(2, 0)));
        assert!(decode_startup(&[0x7f, 0, 0, 0]).is_err(), "too long");
    }

    #[test]
    fn backend_frames_carry_their_length() {
        // H22
        let mut out = Vec::new();
        Backend::DataRow(vec![Some(b"1".to_vec()), None]).encode(&mut out);
        assert_eq!(out, b"D\0\0\0\x0f\0\x02\0\0\0\x011\xff\xff\xff\xff");
        out.clear();
        Backend::ReadyForQuery(b'I').encode(&mut out);
        assert_eq!(out, b"Z\0\0\0\x05I");
    }
}
