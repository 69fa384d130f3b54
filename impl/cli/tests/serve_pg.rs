//! `sixfold serve --pg` end to end (spec/server.md H20–H30): the binary on loopback,
//! driven by a small PostgreSQL-protocol client written here, by `psql` (Debian
//! `postgresql-client`) and by Python's `psycopg` (PyPI). psql and psycopg are installed
//! when missing; a test that cannot install them says so and is skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sixfold");

/// A running `sixfold serve --pg`; SIGKILLed on drop.
struct Server {
    child: Child,
    http: String,
    pg: String,
}

impl Server {
    /// H1, H20: starts the server on `location` and reads the two addresses it prints.
    fn start(location: &[&str], extra: &[&str], log: &Path) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(location)
            .args(["--http", "127.0.0.1:0", "--pg", "127.0.0.1:0"])
            .args(["--max-body", "65536"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for _ in 0..2 {
                let line = lines.next().and_then(Result::ok).unwrap_or_default();
                let _ = send.send(line);
            }
        });
        let line = || {
            receive
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no address printed; log: {}", read(log)))
        };
        let http = line();
        let pg = line();
        let http = http
            .strip_prefix("listening on http://")
            .expect(&http)
            .to_string();
        let pg = pg
            .strip_prefix("listening on postgresql://")
            .expect(&pg)
            .to_string();
        Server { child, http, pg }
    }

    fn port(&self) -> String {
        self.pg.rsplit(':').next().unwrap().to_string()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// One HTTP/1.1 request: the whole answer, head and body.
    fn http(&self, method: &str, path: &str, body: &str) -> String {
        let mut stream = TcpStream::connect(&self.http).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    /// Creates database `name` through the HTTP API (H12).
    fn create(&self, name: &str) {
        let answer = self.http("POST", "/v1/db", &format!("{{\"name\": \"{name}\"}}"));
        assert!(
            answer.starts_with("HTTP/1.1 201") || answer.starts_with("HTTP/1.1 200"),
            "{answer}"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// One backend message: its type byte and body.
#[derive(Debug, Clone)]
struct Msg {
    kind: u8,
    body: Vec<u8>,
}

impl Msg {
    fn cstr_fields(&self) -> Vec<(u8, String)> {
        // ErrorResponse / NoticeResponse fields.
        let mut fields = Vec::new();
        let mut rest = &self.body[..];
        while let Some((&tag, tail)) = rest.split_first() {
            if tag == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0).unwrap();
            fields.push((tag, String::from_utf8_lossy(&tail[..end]).into_owned()));
            rest = &tail[end + 1..];
        }
        fields
    }

    fn field(&self, tag: u8) -> Option<String> {
        self.cstr_fields()
            .into_iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v)
    }

    fn values(&self) -> Vec<Option<Vec<u8>>> {
        let count = i16::from_be_bytes([self.body[0], self.body[1]]) as usize;
        let mut at = 2;
        let mut values = Vec::new();
        for _ in 0..count {
            let length = i32::from_be_bytes(self.body[at..at + 4].try_into().unwrap());
            at += 4;
            if length < 0 {
                values.push(None);
            } else {
                values.push(Some(self.body[at..at + length as usize].to_vec()));
                at += length as usize;
            }
        }
        values
    }

    /// RowDescription: (name, type OID, format) per column.
    fn columns(&self) -> Vec<(String, u32, i16)> {
        let count = i16::from_be_bytes([self.body[0], self.body[1]]) as usize;
        let mut at = 2;
        let mut columns = Vec::new();
        for _ in 0..count {
            let end = at + self.body[at..].iter().position(|&b| b == 0).unwrap();
            let name = String::from_utf8_lossy(&self.body[at..end]).into_owned();
            at = end + 1 + 6;
            let oid = u32::from_be_bytes(self.body[at..at + 4].try_into().unwrap());
            at += 4 + 2 + 4;
            let format = i16::from_be_bytes([self.body[at], self.body[at + 1]]);
            at += 2;
            columns.push((name, oid, format));
        }
        columns
    }
}

/// A minimal PostgreSQL-protocol client.
struct Pg {
    stream: TcpStream,
}

fn frame(kind: Option<u8>, body: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = kind.into_iter().collect();
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

impl Pg {
    /// H21: SSLRequest (answered `N`), then a StartupMessage for `database`; the
    /// messages up to ReadyForQuery, or up to the FATAL error.
    fn connect(address: &str, database: &str) -> (Pg, Vec<Msg>) {
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        stream
            .write_all(&frame(None, &80_877_103i32.to_be_bytes()))
            .unwrap();
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"N", "H21: no TLS");
        let mut body = 196_608i32.to_be_bytes().to_vec();
        for (key, value) in [("user", "tester"), ("database", database)] {
            cstr(&mut body, key);
            cstr(&mut body, value);
        }
        body.push(0);
        stream.write_all(&frame(None, &body)).unwrap();
        let mut pg = Pg { stream };
        let mut hello = Vec::new();
        while let Some(msg) = pg.try_read() {
            let kind = msg.kind;
            hello.push(msg);
            if kind == b'Z' || kind == b'E' {
                break;
            }
        }
        (pg, hello)
    }

    fn try_read(&mut self) -> Option<Msg> {
        let mut head = [0u8; 5];
        self.stream.read_exact(&mut head).ok()?;
        let length = i32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
        let mut body = vec![0; length - 4];
        self.stream.read_exact(&mut body).ok()?;
        Some(Msg {
            kind: head[0],
            body,
        })
    }

    fn until_ready(&mut self) -> Vec<Msg> {
        let mut messages = Vec::new();
        loop {
            let msg = self
                .try_read()
                .expect("connection closed before ReadyForQuery");
            let ready = msg.kind == b'Z';
            messages.push(msg);
            if ready {
                return messages;
            }
        }
    }

    fn send(&mut self, kind: u8, body: &[u8]) {
        self.stream.write_all(&frame(Some(kind), body)).unwrap();
    }

    fn query(&mut self, sql: &str) -> Vec<Msg> {
        let mut body = Vec::new();
        cstr(&mut body, sql);
        self.send(b'Q', &body);
        self.until_ready()
    }

    /// H28: Parse, Bind (text parameters, `binary` results), Describe, Execute, Sync.
    fn extended(
        &mut self,
        sql: &str,
        types: &[u32],
        params: &[Option<&[u8]>],
        binary: bool,
    ) -> Vec<Msg> {
        let mut parse = Vec::new();
        cstr(&mut parse, "");
        cstr(&mut parse, sql);
        parse.extend_from_slice(&(types.len() as i16).to_be_bytes());
        types
            .iter()
            .for_each(|oid| parse.extend_from_slice(&oid.to_be_bytes()));
        let mut bind = Vec::new();
        cstr(&mut bind, "");
        cstr(&mut bind, "");
        bind.extend_from_slice(&0i16.to_be_bytes());
        bind.extend_from_slice(&(params.len() as i16).to_be_bytes());
        for param in params {
            match param {
                None => bind.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(bytes) => {
                    bind.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                    bind.extend_from_slice(bytes);
                }
            }
        }
        bind.extend_from_slice(&1i16.to_be_bytes());
        bind.extend_from_slice(&i16::from(binary).to_be_bytes());
        let mut bytes = frame(Some(b'P'), &parse);
        bytes.extend(frame(Some(b'B'), &bind));
        bytes.extend(frame(Some(b'D'), b"P\0"));
        bytes.extend(frame(Some(b'E'), b"\0\0\0\0\0"));
        bytes.extend(frame(Some(b'S'), b""));
        self.stream.write_all(&bytes).unwrap();
        self.until_ready()
    }
}

fn kinds(messages: &[Msg]) -> String {
    messages.iter().map(|m| m.kind as char).collect()
}

fn tags(messages: &[Msg]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.kind == b'C')
        .map(|m| String::from_utf8_lossy(&m.body[..m.body.len() - 1]).into_owned())
        .collect()
}

fn sqlstate(messages: &[Msg]) -> Option<String> {
    messages
        .iter()
        .find(|m| m.kind == b'E')
        .and_then(|m| m.field(b'C'))
}

fn status(messages: &[Msg]) -> char {
    let last = messages.last().unwrap();
    assert_eq!(last.kind, b'Z');
    last.body[0] as char
}

fn rows(messages: &[Msg]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter(|m| m.kind == b'D')
        .map(|m| {
            m.values()
                .into_iter()
                .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
                .collect()
        })
        .collect()
}

fn start(dir: &Path) -> Server {
    start_with(dir, &[])
}

fn start_with(dir: &Path, extra: &[&str]) -> Server {
    let data = dir.join("data");
    Server::start(
        &["--data", data.to_str().unwrap()],
        extra,
        &dir.join("serve.log"),
    )
}

/// The BackendKeyData of a session's startup messages.
fn backend_key(hello: &[Msg]) -> (i32, i32) {
    let key = hello
        .iter()
        .find(|m| m.kind == b'K')
        .expect("BackendKeyData");
    let word = |at: usize| i32::from_be_bytes(key.body[at..at + 4].try_into().unwrap());
    (word(0), word(4))
}

/// A statement that runs for many seconds in a debug build.
const LONG_QUERY: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
                          WHERE x < 1000000000) SELECT count(*) FROM c";

#[test]
fn cancel_requests_and_read_deadlines_interrupt_and_the_session_goes_on() {
    // H21, H29
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), &["--commit-wait", "2"]);
    server.create("app");
    let (mut pg, hello) = Pg::connect(&server.pg, "app");
    let (process_id, secret) = backend_key(&hello);
    let mut body = Vec::new();
    cstr(&mut body, LONG_QUERY);
    pg.send(b'Q', &body);
    std::thread::sleep(Duration::from_millis(300));
    let mut cancel = 80_877_102i32.to_be_bytes().to_vec();
    cancel.extend_from_slice(&process_id.to_be_bytes());
    cancel.extend_from_slice(&secret.to_be_bytes());
    let started = std::time::Instant::now();
    TcpStream::connect(&server.pg)
        .unwrap()
        .write_all(&frame(None, &cancel))
        .unwrap();
    let out = pg.until_ready();
    assert_eq!(
        (sqlstate(&out).as_deref(), status(&out)),
        (Some("57014"), 'I')
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "canceled, not timed out"
    );
    // A read past --commit-wait: interrupted, and the session goes on.
    let out = pg.query(LONG_QUERY);
    assert_eq!(sqlstate(&out).as_deref(), Some("57014"), "{out:?}");
    assert_eq!(
        rows(&pg.query("SELECT 'after'")),
        [vec![Some("after".to_string())]]
    );
    // A 3.2 client is told 3.0 first (NegotiateProtocolVersion), then served.
    let mut stream = TcpStream::connect(&server.pg).unwrap();
    let mut start = 196_610i32.to_be_bytes().to_vec();
    start.extend_from_slice(b"user\0u\0database\0app\0\0");
    stream.write_all(&frame(None, &start)).unwrap();
    let mut pg = Pg { stream };
    let first = pg.try_read().unwrap();
    assert_eq!(first.kind, b'v');
    assert_eq!(first.body[..4], 196_608i32.to_be_bytes());
    assert_eq!(pg.try_read().unwrap().kind, b'R');
}

#[test]
fn the_protocol_over_tcp_startup_queries_types_transactions_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    server.create("app");

    // H21: an unknown database is refused with FATAL 3D000.
    let (_, hello) = Pg::connect(&server.pg, "nope");
    assert_eq!(sqlstate(&hello).as_deref(), Some("3D000"), "{hello:?}");
    assert_eq!(hello.last().unwrap().field(b'S').as_deref(), Some("FATAL"));

    // H21: AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery 'I'.
    let (mut pg, hello) = Pg::connect(&server.pg, "app");
    assert!(kinds(&hello).starts_with("RS"), "{}", kinds(&hello));
    assert!(kinds(&hello).ends_with("KZ"), "{}", kinds(&hello));
    assert_eq!(status(&hello), 'I');
    let parameters: Vec<String> = hello
        .iter()
        .filter(|m| m.kind == b'S')
        .map(|m| String::from_utf8_lossy(&m.body).replace('\0', "="))
        .collect();
    for wanted in [
        "client_encoding=UTF8=",
        "integer_datetimes=on=",
        "server_version=16",
    ] {
        assert!(
            parameters.iter().any(|p| p.starts_with(wanted)),
            "{parameters:?}"
        );
    }

    // H25, H27: several statements in one Query, their tags, an empty query.
    let out = pg.query(
        "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT, r REAL, b BLOB); \
         INSERT INTO t VALUES (1, 'one', 1.5, x'00ff'); INSERT INTO t VALUES (2, '', NULL, NULL)",
    );
    assert_eq!(
        tags(&out),
        ["CREATE TABLE", "INSERT 0 1", "INSERT 0 1"],
        "{out:?}"
    );
    assert_eq!(status(&out), 'I');
    assert_eq!(kinds(&pg.query(" ; ")), "IZ");

    // H28, H24: extended protocol with text parameters; NULL and '' stay apart.
    let out = pg.extended(
        "INSERT INTO t VALUES ($1, $2, $3, $4)",
        &[20, 0, 701, 17],
        &[Some(b"3"), None, Some(b"-2.25"), Some(b"\\x0102")],
        false,
    );
    assert_eq!(kinds(&out), "12nCZ", "{out:?}");
    assert_eq!(tags(&out), ["INSERT 0 1"]);
    let out = pg.query("SELECT k, v, r, b, v IS NULL FROM t ORDER BY k");
    let description = out.iter().find(|m| m.kind == b'T').unwrap().columns();
    let oids: Vec<u32> = description.iter().map(|c| c.1).collect();
    assert_eq!(oids, [20, 25, 701, 17, 20], "int8, text, float8, bytea");
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        rows(&out),
        [
            vec![
                some("1"),
                some("one"),
                some("1.5"),
                some("\\x00ff"),
                some("0")
            ],
            vec![some("2"), some(""), None, None, some("0")],
            vec![some("3"), None, some("-2.25"), some("\\x0102"), some("1")],
        ]
    );
    assert_eq!(tags(&out), ["SELECT 3"]);
    // Binary results: int8 as eight bytes.
    let out = pg.extended("SELECT k FROM t WHERE k = $1", &[0], &[Some(b"2")], true);
    let column = out.iter().find(|m| m.kind == b'T').unwrap().columns();
    assert_eq!((column[0].1, column[0].2), (20, 1));
    let row = out.iter().find(|m| m.kind == b'D').unwrap().values();
    assert_eq!(row[0].as_deref(), Some(&2i64.to_be_bytes()[..]));

    // H26: BEGIN / ROLLBACK / COMMIT with the status byte, a failed block.
    assert_eq!(status(&pg.query("BEGIN")), 'T');
    assert_eq!(status(&pg.query("DELETE FROM t")), 'T');
    let out = pg.query("ROLLBACK");
    assert_eq!(
        (tags(&out), status(&out)),
        (vec!["ROLLBACK".to_string()], 'I')
    );
    assert_eq!(rows(&pg.query("SELECT count(*) FROM t")), [vec![some("3")]]);
    pg.query("BEGIN");
    pg.query("INSERT INTO t(k) VALUES (10)");
    let out = pg.query("INSERT INTO t(k) VALUES (10)");
    assert_eq!(
        (sqlstate(&out).as_deref(), status(&out)),
        (Some("23505"), 'E')
    );
    let out = pg.query("SELECT 1");
    assert_eq!(
        (sqlstate(&out).as_deref(), status(&out)),
        (Some("25P02"), 'E')
    );
    let out = pg.query("COMMIT");
    assert_eq!(
        (tags(&out), status(&out)),
        (vec!["ROLLBACK".to_string()], 'I')
    );
    pg.query("BEGIN");
    pg.query("INSERT INTO t(k) VALUES (11)");
    let out = pg.query("COMMIT");
    assert_eq!(
        (tags(&out), status(&out)),
        (vec!["COMMIT".to_string()], 'I')
    );
    assert_eq!(
        rows(&pg.query("SELECT k FROM t WHERE k >= 10")),
        [vec![some("11")]],
        "the failed block left nothing; the committed one everything"
    );

    // H23: errors carry SQLSTATEs, and the session goes on.
    let out = pg.query("SELEC 1");
    assert_eq!(
        (sqlstate(&out).as_deref(), status(&out)),
        (Some("42601"), 'I')
    );
    assert_eq!(
        sqlstate(&pg.query("SELECT * FROM missing")).as_deref(),
        Some("42P01")
    );
    let out = pg.extended("SELECT $1 +", &[], &[], false);
    assert_eq!(
        (sqlstate(&out).as_deref(), kinds(&out)),
        (Some("42601"), "EZ".into())
    );
    let out = pg.extended("SELECT $1", &[20], &[Some(b"x")], false);
    assert_eq!(sqlstate(&out).as_deref(), Some("22P02"));
    assert_eq!(rows(&pg.query("SELECT 41 + 1")), [vec![some("42")]]);

    // Terminate ends the session cleanly.
    pg.send(b'X', b"");
    assert!(pg.try_read().is_none());
}

#[test]
fn malformed_frames_get_an_error_and_the_server_stays_up() {
    // H22
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    server.create("app");
    let garbage: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0x7f, 0xff, 0xff, 0xff],
        vec![0, 0, 0, 8, 0, 2, 0, 0],
        (0..=255u8).cycle().take(5000).collect(),
    ];
    for bytes in &garbage {
        let mut stream = TcpStream::connect(&server.pg).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(bytes).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        if !answer.is_empty() {
            assert_eq!(answer[0], b'E', "an ErrorResponse, then close: {answer:?}");
        }
    }
    // After startup: an unknown type, a length past --max-body, a truncated Bind.
    let after_startup: Vec<Vec<u8>> = vec![
        frame(Some(b'Z'), b"junk"),
        [b'Q', 0x00, 0x10, 0x00, 0x00].to_vec(),
        frame(Some(b'B'), &[0, 0, 0, 0, 0, 1, 0x7f, 0, 0, 0]),
        frame(Some(b'Q'), b"no terminator"),
    ];
    for bytes in &after_startup {
        let (mut pg, hello) = Pg::connect(&server.pg, "app");
        assert_eq!(status(&hello), 'I');
        pg.stream.write_all(bytes).unwrap();
        let answer = pg.try_read().expect("an error before the close");
        assert_eq!(answer.kind, b'E', "{answer:?}");
        let code = answer.field(b'C').unwrap();
        assert!(code == "08P01" || code == "54000", "{code}");
        assert!(pg.try_read().is_none(), "the connection closes");
    }
    // Unsupported but well-formed messages: an error, and the session goes on.
    let (mut pg, _) = Pg::connect(&server.pg, "app");
    pg.send(b'F', b"\0\0\0\0");
    pg.send(b'S', b"");
    let out = pg.until_ready();
    assert_eq!(sqlstate(&out).as_deref(), Some("0A000"));
    let out = pg.query("SELECT 'still here'");
    assert_eq!(rows(&out), [vec![Some("still here".to_string())]]);
}

#[test]
fn concurrent_clients_and_a_restart_keep_every_commit() {
    // H18, H26, H29
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    server.create("app");
    let (mut pg, _) = Pg::connect(&server.pg, "app");
    pg.query("CREATE TABLE t(client INTEGER, n INTEGER, PRIMARY KEY (client, n))");
    let address = server.pg.clone();
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let address = address.clone();
            std::thread::spawn(move || {
                let (mut pg, _) = Pg::connect(&address, "app");
                for n in 0..25 {
                    let (c, n) = (client.to_string(), n.to_string());
                    let out = if n.parse::<u32>().unwrap() % 2 == 0 {
                        pg.extended(
                            "INSERT INTO t VALUES ($1, $2)",
                            &[23, 23],
                            &[Some(c.as_bytes()), Some(n.as_bytes())],
                            false,
                        )
                    } else {
                        pg.query(&format!("BEGIN; INSERT INTO t VALUES ({c}, {n}); COMMIT"))
                    };
                    assert_eq!(sqlstate(&out), None, "{out:?}");
                    assert_eq!(status(&out), 'I');
                }
            })
        })
        .collect();
    // Meanwhile a transaction block held open by this client does not stop the others
    // for longer than it is open.
    pg.query("BEGIN");
    pg.query("INSERT INTO t VALUES (99, 0)");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(tags(&pg.query("COMMIT")), ["COMMIT"]);
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(
        rows(&pg.query("SELECT count(*) FROM t")),
        [vec![Some("101".to_string())]]
    );
    // A client that leaves inside a transaction block: rolled back, nothing kept.
    let (mut leaver, _) = Pg::connect(&server.pg, "app");
    leaver.query("BEGIN");
    leaver.query("INSERT INTO t VALUES (100, 0)");
    drop(leaver);
    std::thread::sleep(Duration::from_millis(200));
    // Every commit answered survives SIGKILL and restart.
    server.kill();
    let server = start(dir.path());
    let (mut pg, _) = Pg::connect(&server.pg, "app");
    assert_eq!(
        rows(&pg.query("SELECT count(*), count(DISTINCT client) FROM t")),
        [vec![Some("101".to_string()), Some("5".to_string())]]
    );
}

#[test]
fn many_idle_sessions_are_served_and_counted() {
    // H20, H30
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    server.create("app");
    let idle: Vec<Pg> = (0..300)
        .map(|_| {
            let (pg, hello) = Pg::connect(&server.pg, "app");
            assert_eq!(status(&hello), 'I');
            pg
        })
        .collect();
    let (mut pg, _) = Pg::connect(&server.pg, "app");
    assert_eq!(rows(&pg.query("SELECT 7")), [vec![Some("7".to_string())]]);
    let metrics = server.http("GET", "/metrics", "");
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from {metrics}"))
    };
    assert_eq!(value("sixfold_pg_connections "), 301.0);
    assert!(value("sixfold_pg_queries_total ") >= 1.0);
    drop(idle);
    // The sessions' ends are counted once the server sees them close.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = server.http("GET", "/metrics", "");
        if metrics.contains("sixfold_pg_connections 1\n") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // H1: SIGTERM stops the server cleanly with a PostgreSQL session still open, and the
    // session learns it (the connection closes).
    let mut server = server;
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let stopped = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "no exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(stopped.success(), "{stopped:?}");
    assert!(pg.try_read().is_none());
}

/// `psql`, installed from Debian's packages when missing; `None` (and a printed reason)
/// when it cannot be.
fn psql() -> Option<PathBuf> {
    let found = || {
        Command::new("psql")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    if found().is_none() {
        let quiet = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !quiet(&["install", "-y", "-q", "postgresql-client"]) {
            quiet(&["update", "-q"]);
            quiet(&["install", "-y", "-q", "postgresql-client"]);
        }
    }
    match found() {
        Some(_) => Some(PathBuf::from("psql")),
        None => {
            eprintln!(
                "SKIPPED: psql is not installed and `apt-get install postgresql-client` failed"
            );
            None
        }
    }
}

fn run_psql(psql: &Path, server: &Server, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(psql)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port(),
            "-U",
            "tester",
            "-d",
            "app",
        ])
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "20")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn psql_connects_and_runs_sqlite_statements() {
    // H20, H21, H23, H25, H26
    let Some(psql) = psql() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    server.create("app");
    let (ok, _, err) = run_psql(
        &psql,
        &server,
        &[
            "-c",
            "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)",
            "-c",
            "INSERT INTO t VALUES (1, 'one'), (2, ''), (3, NULL)",
        ],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = run_psql(
        &psql,
        &server,
        &[
            "-c",
            "\\pset null (null)",
            "-c",
            "SELECT k, v FROM t ORDER BY k",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "1|one\n2|\n3|(null)\n");
    // A script with a transaction, and one rolled back.
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "BEGIN;\nINSERT INTO t VALUES (4, 'four');\nCOMMIT;\n\
         BEGIN;\nDELETE FROM t;\nROLLBACK;\nSELECT count(*) FROM t;\n",
    )
    .unwrap();
    let (ok, out, err) = run_psql(&psql, &server, &["-f", script.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "4");
    // An error: psql exits 1 with SQLite's message and the SQLSTATE.
    let (ok, _, err) = run_psql(
        &psql,
        &server,
        &[
            "-v",
            "VERBOSITY=verbose",
            "-c",
            "INSERT INTO t VALUES (1, 'again')",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("23505") && err.contains("UNIQUE constraint failed"),
        "{err}"
    );
    let (ok, _, err) = run_psql(&psql, &server, &["-c", "SELEC 1"]);
    assert!(!ok && err.contains("syntax error"), "{err}");
    // An unknown database.
    let output = Command::new(&psql)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port(),
            "-d",
            "nope",
            "-c",
            "SELECT 1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && err.contains("does not exist"),
        "{err}"
    );
}

/// A virtual environment with `psycopg[binary]` under the target folder; `None` (and a
/// printed reason) when it cannot be made.
fn psycopg_python() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pg-venv");
    let python = venv.join("bin").join("python3");
    let has_psycopg = |python: &Path| {
        Command::new(python)
            .args(["-c", "import psycopg"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has_psycopg(&python) {
        return Some(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv", venv.to_str().unwrap()])
        .output()
        .is_ok_and(|o| o.status.success());
    let installed = made
        && Command::new(&python)
            .args(["-m", "pip", "install", "-q", "psycopg[binary]"])
            .output()
            .is_ok_and(|o| o.status.success());
    if installed && has_psycopg(&python) {
        Some(python)
    } else {
        eprintln!(
            "SKIPPED: could not install psycopg[binary] into {}",
            venv.display()
        );
        None
    }
}

#[test]
fn psycopg_connects_binds_parameters_and_keeps_types() {
    // H20, H24, H26, H28
    let Some(python) = psycopg_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    server.create("app");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pg_psycopg.py");
    let output = Command::new(&python)
        .arg(&script)
        .args(["--port", &server.port(), "--db", "app"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("psycopg: all checks passed"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Six storage-node processes of one config; killed on drop.
struct Nodes {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    children: Vec<(u32, Child)>,
}

impl Nodes {
    fn start() -> Nodes {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let listeners: Vec<_> = (0..6)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut ports = [0u16; 6];
        for (port, l) in ports.iter_mut().zip(&listeners) {
            *port = l.local_addr().unwrap().port();
        }
        drop(listeners);
        let config_path = dir.path().join("cluster.toml");
        let toml = sixfold_cluster::config::six_node_toml("test", "s3cret", 64, &ports);
        std::fs::write(&config_path, toml).unwrap();
        // A6: storage nodes refuse a config others can read.
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = sixfold_cluster::ClusterConfig::load(&config_path).unwrap();
        let children = (1..=6)
            .map(|id| {
                let log = std::fs::File::create(dir.path().join(format!("node{id}.log"))).unwrap();
                let child = Command::new(BIN)
                    .args(["storage-node", "--config"])
                    .arg(&config_path)
                    .args(["--node-id", &id.to_string()])
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .unwrap();
                (id, child)
            })
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !(1..=6)
            .all(|id| sixfold_cluster::status::collect(&config).reachable(sixfold_core::NodeId(id)))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "nodes did not come up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Nodes {
            dir,
            config_path,
            children,
        }
    }

    fn kill(&mut self, ids: &[u32]) {
        for (id, child) in &mut self.children {
            if ids.contains(id) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.kill(&[1, 2, 3, 4, 5, 6]);
    }
}

#[test]
fn losing_the_write_quorum_is_outcome_unknown_never_success() {
    // H29, H10: 3 of 6 nodes down, so no commit can reach 4 of 6 (C4).
    let mut nodes = Nodes::start();
    let server = Server::start(
        &["--cluster", nodes.config_path.to_str().unwrap()],
        &["--commit-wait", "3"],
        &nodes.dir.path().join("serve.log"),
    );
    server.create("app");
    let (mut pg, _) = Pg::connect(&server.pg, "app");
    assert_eq!(tags(&pg.query("CREATE TABLE t(k)")), ["CREATE TABLE"]);
    let (mut reader, _) = Pg::connect(&server.pg, "app");
    nodes.kill(&[4, 5, 6]);
    let mut body = Vec::new();
    cstr(&mut body, "INSERT INTO t VALUES (1)");
    pg.send(b'Q', &body);
    let answer = pg.try_read().expect("an error, not silence");
    assert_eq!(answer.kind, b'E', "never CommandComplete: {answer:?}");
    assert_eq!(answer.field(b'C').as_deref(), Some("08007"), "{answer:?}");
    // The server still serves other sessions (reads need no write quorum... nor, here,
    // a durable answer: they may fail, but they are answered).
    let out = reader.query("SELECT 1");
    assert_eq!(out.last().unwrap().kind, b'Z');
}
