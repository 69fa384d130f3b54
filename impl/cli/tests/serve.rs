//! `sixfold serve` end to end (spec/server.md): the binary on loopback, driven over raw
//! HTTP/1.1 from Rust and by the Python standard-library example; databases compared
//! with stock SQLite (rusqlite on a local file) fed the acknowledged transactions.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use sixfold_cluster::ClusterConfig;
use sixfold_cluster::config::six_node_toml;
use sixfold_cluster::status;
use sixfold_core::NodeId;

const BIN: &str = env!("CARGO_BIN_EXE_sixfold");

/// A running `sixfold serve`; SIGKILLed on drop.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    /// H1: starts the server and reads the bound address it prints.
    fn start(location: &[&str], extra: &[&str], log: &Path) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(location)
            .args(["--http", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = send.send(line);
        });
        let line = receive
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no address printed; log: {}", read(log)));
        let address = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}; log: {}", read(log)))
            .to_string();
        Server { child, address }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        http(&self.address, method, path, body)
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    fn json(&self, method: &str, path: &str, body: &Json) -> (u16, Json) {
        let (status, text) = self.call(method, path, body.to_string().as_bytes());
        let parsed = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path} answered {status} non-JSON: {text}"));
        (status, parsed)
    }

    fn sql(&self, db: &str, body: Json) -> (u16, Json) {
        self.json("POST", &format!("/v1/db/{db}"), &body)
    }

    fn rows(&self, db: &str, sql: &str) -> Vec<Json> {
        let (status, answer) = self.sql(db, json!({ "sql": sql }));
        assert_eq!(status, 200, "{sql}: {answer}");
        answer["results"][0]["rows"].as_array().unwrap().clone()
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

/// One HTTP/1.1 request on a fresh connection (`Connection: close`): status and body.
fn http(address: &str, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP head in {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    Ok((status, body.to_string()))
}

fn data_server(dir: &Path, extra: &[&str]) -> Server {
    let data = dir.join("data");
    Server::start(
        &["--data", data.to_str().unwrap()],
        extra,
        &dir.join("serve.log"),
    )
}

fn create(server: &Server, db: &str) {
    let (status, answer) = server.json("POST", "/v1/db", &json!({ "name": db }));
    assert!(status == 201 || status == 200, "create {db}: {answer}");
}

#[test]
fn typed_values_parameters_transactions_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = data_server(dir.path(), &["--max-body", "4096"]);
    // H12: create, create again (exists), list.
    let (status, _) = server.json("POST", "/v1/db", &json!({"name": "app"}));
    assert_eq!(status, 201);
    let (status, answer) = server.json("POST", "/v1/db", &json!({"name": "app"}));
    assert_eq!((status, &answer["exists"]), (200, &json!("app")));
    let (status, answer) = server.json("GET", "/v1/db", &json!(null));
    assert_eq!(status, 200);
    assert_eq!(answer["databases"][0]["name"], "app");
    let (status, answer) = server.json("POST", "/v1/db", &json!({"name": "bad/name"}));
    assert_eq!(
        (status, answer["error"]["kind"].as_str()),
        (400, Some("bad_request"))
    );

    // H3, H4, H5, H9: typed values in and out, positional and named, one transaction.
    let (status, answer) = server.sql(
        "app",
        json!({"statements": [
            "CREATE TABLE t(k INTEGER PRIMARY KEY, v)",
            {"sql": "INSERT INTO t VALUES (?1, ?2)", "params": [1, null]},
            {"sql": "INSERT INTO t VALUES (?, ?)", "params": [2, 9223372036854775807i64]},
            {"sql": "INSERT INTO t VALUES (:k, :v)", "params": {"k": 3, ":v": 1.0}},
            {"sql": "INSERT INTO t VALUES (@k, $v)", "params": {"@k": 4, "$v": "héllo"}},
            {"sql": "INSERT INTO t VALUES (?, ?)", "params": [5, {"base64": "AAH/"}]},
            {"sql": "INSERT INTO t VALUES (?, ?)", "params": [6, {"real": "-inf"}]},
            {"sql": "INSERT INTO t VALUES (?, ?)", "params": [7, true]},
        ]}),
    );
    assert_eq!(status, 200, "{answer}");
    let commit_lsn = answer["commit_lsn"].as_u64().expect("a commit LSN");
    assert_eq!(answer["results"][1]["rows_changed"], 1);
    assert_eq!(answer["results"][1]["last_insert_rowid"], 1);
    let (_, status_json) = server.json("GET", "/status", &json!(null));
    assert!(status_json["writer"]["vdl"].as_u64().unwrap() >= commit_lsn);
    let (status, answer) = server.sql(
        "app",
        json!({"sql": "SELECT k, v, typeof(v) FROM t ORDER BY k"}),
    );
    assert_eq!(status, 200);
    assert_eq!(answer["commit_lsn"], Json::Null, "a read commits nothing");
    assert_eq!(
        answer["results"][0]["columns"],
        json!(["k", "v", "typeof(v)"])
    );
    assert_eq!(
        answer["results"][0]["rows"],
        json!([
            [1, null, "null"],
            [2, 9223372036854775807i64, "integer"],
            [3, 1.0, "real"],
            [4, "héllo", "text"],
            [5, {"base64": "AAH/"}, "blob"],
            [6, {"real": "-inf"}, "real"],
            [7, 1, "integer"],
        ])
    );
    let (_, text) = server.call("POST", "/v1/db/app", br#"{"sql": "SELECT 2.0, 2"}"#);
    assert!(
        text.contains("[[2.0,2]]"),
        "REAL keeps its fraction: {text}"
    );

    // H7, H5: a failing statement rolls back the whole request and is named.
    let (status, answer) = server.sql(
        "app",
        json!({"statements": [
            {"sql": "INSERT INTO t VALUES (?, ?)", "params": [8, "kept?"]},
            {"sql": "INSERT INTO t VALUES (?, ?)", "params": [1, "duplicate"]},
        ]}),
    );
    assert_eq!(status, 422, "{answer}");
    let error = &answer["error"];
    assert_eq!(error["kind"], "sql_error");
    assert_eq!(error["statement"], 1);
    assert_eq!(error["code"], 1555, "SQLITE_CONSTRAINT_PRIMARYKEY");
    assert_eq!(error["code_name"], "SQLITE_CONSTRAINT");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("UNIQUE constraint failed")
    );
    assert!(server.rows("app", "SELECT * FROM t WHERE k = 8").is_empty());
    let (status, answer) = server.sql("app", json!({"sql": "SELEC 1"}));
    assert_eq!(
        (status, answer["error"]["code_name"].as_str()),
        (422, Some("SQLITE_ERROR"))
    );

    // H3: parameter mismatches and bad shapes are refused.
    for (body, expected) in [
        (json!({"sql": "SELECT ?", "params": []}), 422),
        (json!({"sql": "SELECT ?", "params": [1, 2]}), 422),
        (json!({"sql": "SELECT :a", "params": {"b": 1}}), 422),
        (json!({"sql": "SELECT 1; SELECT 2"}), 422),
        (
            json!({"sql": "SELECT ?", "params": [18446744073709551615u64]}),
            400,
        ),
        (json!({"sql": "SELECT ?", "params": [[1]]}), 400),
        (json!({"sql": "SELECT 1", "param": []}), 400),
        (json!({"statements": []}), 400),
        (json!({"statements": [1]}), 400),
        (json!(["SELECT 1"]), 400),
    ] {
        let (status, answer) = server.sql("app", body.clone());
        assert_eq!(status, expected, "{body}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // H6: transaction control is refused before anything runs.
    let (status, answer) = server.sql(
        "app",
        json!({"statements": ["INSERT INTO t VALUES (9, 9)", "COMMIT"]}),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(server.rows("app", "SELECT * FROM t WHERE k = 9").is_empty());
    let (status, _) = server.sql(
        "app",
        json!({"statements": ["SAVEPOINT a", "INSERT INTO t VALUES (9, 9)", "RELEASE a"]}),
    );
    assert_eq!(status, 200);

    // H2, H11, H13: malformed JSON, unknown database and endpoint, an oversize body.
    let (status, text) = server.call("POST", "/v1/db/app", b"{\"sql\": ");
    assert_eq!(status, 400);
    assert!(text.contains("bad_json") && text.contains("EOF"), "{text}");
    let (status, answer) = server.sql("nosuch", json!({"sql": "SELECT 1"}));
    assert_eq!(
        (status, answer["error"]["kind"].as_str()),
        (404, Some("no_such_database"))
    );
    let (status, _) = server.call("GET", "/nowhere", b"");
    assert_eq!(status, 404);
    let big = json!({"sql": "SELECT ?", "params": ["x".repeat(5000)]}).to_string();
    let (status, text) = server.call("POST", "/v1/db/app", big.as_bytes());
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("too_large"), "{text}");

    // H15, H16, H17: metrics, health, readiness, status, after all the above.
    let (status, metrics) = server.call("GET", "/metrics", b"");
    assert_eq!(status, 200);
    for name in [
        "sixfold_vdl ",
        "sixfold_vcl ",
        "sixfold_epoch ",
        "sixfold_connected_nodes 6",
        "sixfold_commit_latency_seconds_bucket",
        "sixfold_http_requests_in_flight ",
    ] {
        assert!(metrics.contains(name), "{name} missing from {metrics}");
    }
    let commits = metric(&metrics, "sixfold_commits_total");
    assert!(
        commits >= 3.0,
        "creates, the typed insert, the savepoint: {commits}"
    );
    assert!(metric(&metrics, "sixfold_http_request_errors_total") >= 10.0);
    assert_eq!(server.call("GET", "/healthz", b"").0, 200);
    assert_eq!(server.call("GET", "/readyz", b"").0, 200);
    let (status, answer) = server.json("GET", "/status", &json!(null));
    assert_eq!(status, 200);
    assert_eq!(answer["writer"]["usable"], true);
    assert_eq!(answer["writer"]["connected_nodes"], 6);
    assert!(answer["commits"].as_u64().unwrap() >= 3);
    assert!(answer["page_bytes_per_commit"].as_f64().unwrap() >= 4096.0);
    // H1: SIGTERM ends it cleanly.
    assert!(server.stop().success());
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn python_standard_library_example_runs() {
    // H3, H4, H7: docs/examples/server_client.py as a user would run it.
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = data_server(dir.path(), &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/server_client.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(format!("http://{}", server.address))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("committed at LSN"), "{stdout}");
    assert!(stdout.contains(r"b'\x00\x01\xff'"), "{stdout}");
    assert!(stdout.contains("422 sql_error"), "{stdout}");
}

#[test]
fn clients_that_disconnect_mid_request_leave_the_server_up() {
    // H14
    let dir = tempfile::tempdir().unwrap();
    let server = data_server(dir.path(), &[]);
    create(&server, "app");
    server.sql(
        "app",
        json!({"sql": "CREATE TABLE t(k INTEGER PRIMARY KEY, v)"}),
    );
    // Half a body, then gone.
    let mut stream = TcpStream::connect(&server.address).unwrap();
    stream
        .write_all(
            b"POST /v1/db/app HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"sql\": \"INS",
        )
        .unwrap();
    drop(stream);
    // A whole request, and gone at once: hyper may drop it before it starts (the client
    // never learns), or run it; either way all of it or none of it.
    let inserts = |from: i64| {
        (from..from + 50)
            .map(|k| json!({"sql": "INSERT INTO t VALUES (?, ?)", "params": [k, "x".repeat(100)]}))
            .collect::<Vec<_>>()
    };
    let gone_at_once = send_and_leave(&server.address, &json!({ "statements": inserts(0) }));
    drop(gone_at_once);
    // A request that has started (it is in flight), then the client goes: it runs to
    // its end. Its first statement is a slow read, so it is still running when we go.
    let slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 400000) \
                SELECT count(*) FROM c";
    let mut statements = vec![json!(slow)];
    statements.extend(inserts(1000));
    let started = send_and_leave(&server.address, &json!({ "statements": statements }));
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(
        &server.call("GET", "/metrics", b"").1,
        "sixfold_http_requests_in_flight",
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "the request never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(started);
    // 1,000 idle connections: headers begun, never finished.
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut s = TcpStream::connect(&server.address).unwrap();
            s.write_all(b"POST /v1/db/app HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let count = |range: &str| {
        server.rows("app", &format!("SELECT count(*) FROM t WHERE {range}"))[0][0]
            .as_i64()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (first, second) = (count("k < 1000"), count("k >= 1000"));
        assert!(
            first == 0 || first == 50,
            "a request left in part: {first} rows"
        );
        assert!(
            second == 0 || second == 50,
            "a request left in part: {second} rows"
        );
        if second == 50 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the started request never committed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(idle);
    assert_eq!(server.call("GET", "/healthz", b"").0, 200);
    let (status, _) = server.sql("app", json!({"sql": "INSERT INTO t VALUES (100, 1)"}));
    assert_eq!(status, 200);
}

/// Sends a whole request on a connection of its own and returns without reading.
fn send_and_leave(address: &str, body: &Json) -> TcpStream {
    let body = body.to_string();
    let mut stream = TcpStream::connect(address).unwrap();
    let head = format!(
        "POST /v1/db/app HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    stream
}

// ---- Concurrent clients compared with stock SQLite ----

const CLIENTS: usize = 16;
const DATABASES: usize = 4;

/// One client transaction: the rows it writes, so stock SQLite can replay it.
#[derive(Clone, Debug)]
struct Txn {
    client: usize,
    seq: usize,
}

impl Txn {
    fn db(&self) -> String {
        format!("db{}", self.client % DATABASES)
    }

    fn real(&self) -> f64 {
        self.client as f64 + self.seq as f64 / 8.0
    }

    fn text(&self) -> String {
        format!(
            "client {} txn {} {}",
            self.client,
            self.seq,
            "é".repeat(self.seq % 7)
        )
    }

    fn blob(&self) -> Vec<u8> {
        (0..(self.seq * 13 % 300))
            .map(|i| (i * 7 + self.client) as u8)
            .collect()
    }

    /// Three statements: two inserts and a counter every client of the database bumps.
    fn request(&self) -> Json {
        use base64::Engine;
        let blob = base64::engine::general_purpose::STANDARD.encode(self.blob());
        json!({"statements": [
            {"sql": "INSERT INTO t(client, seq, r, s) VALUES (?, ?, ?, ?)",
             "params": [self.client, self.seq, self.real(), self.text()]},
            {"sql": "INSERT INTO u(client, seq, b) VALUES (:c, :s, :b)",
             "params": {"c": self.client, "s": self.seq, "b": {"base64": blob}}},
            "UPDATE counter SET n = n + 1 WHERE id = 1",
        ]})
    }

    fn apply(&self, conn: &rusqlite::Connection) {
        let tx = conn.unchecked_transaction().unwrap();
        tx.execute(
            "INSERT INTO t(client, seq, r, s) VALUES (?, ?, ?, ?)",
            rusqlite::params![
                self.client as i64,
                self.seq as i64,
                self.real(),
                self.text()
            ],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO u(client, seq, b) VALUES (?, ?, ?)",
            rusqlite::params![self.client as i64, self.seq as i64, self.blob()],
        )
        .unwrap();
        tx.execute("UPDATE counter SET n = n + 1 WHERE id = 1", [])
            .unwrap();
        tx.commit().unwrap();
    }
}

const SCHEMA: [&str; 4] = [
    "CREATE TABLE t(id INTEGER PRIMARY KEY, client INTEGER, seq INTEGER, r REAL, s TEXT)",
    "CREATE TABLE u(client INTEGER, seq INTEGER, b BLOB, PRIMARY KEY (client, seq))",
    "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER)",
    "INSERT INTO counter VALUES (1, 0)",
];

fn set_up(server: &Server) {
    for db in 0..DATABASES {
        let name = format!("db{db}");
        create(server, &name);
        let (status, answer) = server.sql(&name, json!({ "statements": SCHEMA }));
        assert_eq!(status, 200, "{answer}");
    }
}

/// What happened to each transaction a client sent.
#[derive(Default)]
struct Record {
    /// Answered 200, with the commit LSN.
    acknowledged: Vec<(u64, Txn)>,
    /// Sent, but no answer or an error: may or may not have committed.
    unknown: Vec<Txn>,
}

/// H8: `CLIENTS` threads, each sending `per_client` transactions to its database.
fn run_clients(address: &str, seqs: std::ops::Range<usize>, stop_at_first_failure: bool) -> Record {
    let threads: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let address = address.to_string();
            let seqs = seqs.clone();
            std::thread::spawn(move || {
                let mut record = Record::default();
                for seq in seqs {
                    let txn = Txn { client, seq };
                    let body = txn.request().to_string();
                    match http(
                        &address,
                        "POST",
                        &format!("/v1/db/{}", txn.db()),
                        body.as_bytes(),
                    ) {
                        Ok((200, text)) => {
                            let answer: Json = serde_json::from_str(&text).unwrap();
                            let lsn = answer["commit_lsn"].as_u64().expect("a commit LSN");
                            record.acknowledged.push((lsn, txn));
                        }
                        Ok((status, text)) => {
                            assert!(stop_at_first_failure, "txn {txn:?}: {status} {text}");
                            record.unknown.push(txn);
                            break;
                        }
                        Err(_) => {
                            assert!(stop_at_first_failure, "txn {txn:?}: no answer");
                            record.unknown.push(txn);
                            break;
                        }
                    }
                }
                record
            })
        })
        .collect();
    let mut all = Record::default();
    for thread in threads {
        let record = thread.join().unwrap();
        all.acknowledged.extend(record.acknowledged);
        all.unknown.extend(record.unknown);
    }
    all
}

/// Stock SQLite on a local file, fed `txns` in order.
fn stock_sqlite(path: &Path, txns: &[&Txn]) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    for sql in SCHEMA {
        conn.execute_batch(sql).unwrap();
    }
    for txn in txns {
        txn.apply(&conn);
    }
    conn
}

const CHECKS: [&str; 3] = [
    "SELECT id, client, seq, r, s FROM t ORDER BY id",
    "SELECT client, seq, b FROM u ORDER BY client, seq",
    "SELECT id, n FROM counter",
];

/// The rows of `sql` on stock SQLite, as the API's JSON values.
fn local_rows(conn: &rusqlite::Connection, sql: &str) -> Vec<Json> {
    use base64::Engine;
    let mut statement = conn.prepare(sql).unwrap();
    let columns = statement.column_count();
    statement
        .query_map([], |row| {
            Ok(Json::Array(
                (0..columns)
                    .map(|at| match row.get_ref(at).unwrap() {
                        rusqlite::types::ValueRef::Null => Json::Null,
                        rusqlite::types::ValueRef::Integer(i) => json!(i),
                        rusqlite::types::ValueRef::Real(r) => json!(r),
                        rusqlite::types::ValueRef::Text(t) => {
                            json!(String::from_utf8_lossy(t))
                        }
                        rusqlite::types::ValueRef::Blob(b) => json!({
                            "base64": base64::engine::general_purpose::STANDARD.encode(b)
                        }),
                    })
                    .collect(),
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Every database equals stock SQLite fed `txns` of that database in commit order.
fn assert_equals_stock_sqlite(server: &Server, dir: &Path, txns: &[(u64, Txn)]) {
    for db in 0..DATABASES {
        let name = format!("db{db}");
        let mut mine: Vec<&(u64, Txn)> = txns.iter().filter(|(_, t)| t.db() == name).collect();
        mine.sort_by_key(|(lsn, _)| *lsn);
        let ordered: Vec<&Txn> = mine.iter().map(|(_, txn)| txn).collect();
        let local = stock_sqlite(&dir.join(format!("{name}.sqlite")), &ordered);
        for sql in CHECKS {
            assert_eq!(
                server.rows(&name, sql),
                local_rows(&local, sql),
                "{name}: {sql}"
            );
        }
    }
}

#[test]
fn sixteen_clients_on_four_databases_equal_stock_sqlite() {
    // H8, H9, H5: every transaction acknowledged; commit LSNs give the commit order.
    let dir = tempfile::tempdir().unwrap();
    let server = data_server(dir.path(), &[]);
    set_up(&server);
    let per_client = 12;
    let record = run_clients(&server.address, 0..per_client, false);
    assert_eq!(record.acknowledged.len(), CLIENTS * per_client);
    let lsns: BTreeSet<u64> = record.acknowledged.iter().map(|(lsn, _)| *lsn).collect();
    assert_eq!(
        lsns.len(),
        record.acknowledged.len(),
        "one commit LSN per transaction"
    );
    assert_equals_stock_sqlite(&server, dir.path(), &record.acknowledged);
    let (_, metrics) = server.call("GET", "/metrics", b"");
    assert!(metric(&metrics, "sixfold_transactions_total") >= (CLIENTS * per_client) as f64);
}

#[test]
fn kill_9_mid_run_keeps_every_acknowledged_transaction_whole() {
    // H18
    let dir = tempfile::tempdir().unwrap();
    let mut server = data_server(dir.path(), &[]);
    set_up(&server);
    let address = server.address.clone();
    let clients = std::thread::spawn(move || run_clients(&address, 0..1000, true));
    // Let some commits land, then SIGKILL the server (and its embedded nodes).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, metrics) = server.call("GET", "/metrics", b"");
        // The set-up's 4 transactions, then the clients'.
        if metric(&metrics, "sixfold_transactions_total") >= 60.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let record = clients.join().unwrap();
    // Some answers were still on their way when the server died.
    assert!(
        record.acknowledged.len() >= 20,
        "{}",
        record.acknowledged.len()
    );
    let server = data_server(dir.path(), &[]);
    // Which transactions are present: each whole (t, u and the counter agree) ...
    let mut present: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    for db in 0..DATABASES {
        let name = format!("db{db}");
        let t_keys = server.rows(&name, "SELECT client, seq, id FROM t ORDER BY id");
        let u_keys = server.rows(&name, "SELECT client, seq FROM u ORDER BY client, seq");
        let counter = server.rows(&name, "SELECT n FROM counter")[0][0]
            .as_u64()
            .unwrap();
        assert_eq!(t_keys.len(), u_keys.len(), "{name}: a transaction in part");
        assert_eq!(
            t_keys.len() as u64,
            counter,
            "{name}: a transaction in part"
        );
        let mut from_t: Vec<(usize, usize)> = Vec::new();
        for row in &t_keys {
            let key = (
                row[0].as_u64().unwrap() as usize,
                row[1].as_u64().unwrap() as usize,
            );
            from_t.push(key);
            // The row id orders the transactions as they committed.
            present.insert(key, row[2].as_u64().unwrap());
        }
        from_t.sort();
        let from_u: Vec<(usize, usize)> = u_keys
            .iter()
            .map(|row| {
                (
                    row[0].as_u64().unwrap() as usize,
                    row[1].as_u64().unwrap() as usize,
                )
            })
            .collect();
        assert_eq!(from_t, from_u, "{name}: t and u disagree");
    }
    // ... every acknowledged one is there, and nothing that was never sent.
    for (_, txn) in &record.acknowledged {
        assert!(
            present.contains_key(&(txn.client, txn.seq)),
            "acknowledged {txn:?} lost"
        );
    }
    let sent: BTreeSet<(usize, usize)> = record
        .acknowledged
        .iter()
        .map(|(_, t)| (t.client, t.seq))
        .chain(record.unknown.iter().map(|t| (t.client, t.seq)))
        .collect();
    for key in present.keys() {
        assert!(sent.contains(key), "{key:?} present but never sent");
    }
    // Stock SQLite fed the present transactions in their commit order equals each db.
    let replay: Vec<(u64, Txn)> = present
        .iter()
        .map(|(&(client, seq), &id)| (id, Txn { client, seq }))
        .collect();
    assert_equals_stock_sqlite(&server, dir.path(), &replay);
    // And the restarted server takes writes again.
    let record = run_clients(&server.address, 1000..1002, false);
    assert_eq!(
        record.acknowledged.len(),
        CLIENTS * 2,
        "writes after restart"
    );
}

// ---- Outcome unknown: a cluster of storage-node processes ----

/// Six storage-node processes of one config; killed on drop.
struct Nodes {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    config: ClusterConfig,
    children: BTreeMap<u32, Child>,
}

impl Nodes {
    fn start() -> Nodes {
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
        std::fs::write(&config_path, six_node_toml("test", "s3cret", 64, &ports)).unwrap();
        // A6: storage nodes refuse a config others can read.
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = ClusterConfig::load(&config_path).unwrap();
        let mut nodes = Nodes {
            dir,
            config_path,
            config,
            children: BTreeMap::new(),
        };
        for id in 1..=6 {
            let log =
                std::fs::File::create(nodes.dir.path().join(format!("node{id}.log"))).unwrap();
            let child = Command::new(BIN)
                .args(["storage-node", "--config"])
                .arg(&nodes.config_path)
                .args(["--node-id", &id.to_string()])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            nodes.children.insert(id, child);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = status::collect(&nodes.config);
            if (1..=6).all(|id| status.reachable(NodeId(id))) {
                break;
            }
            assert!(Instant::now() < deadline, "nodes did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        nodes
    }

    fn kill(&mut self, id: u32) {
        if let Some(mut child) = self.children.remove(&id) {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn server(&self, extra: &[&str]) -> Server {
        Server::start(
            &["--cluster", self.config_path.to_str().unwrap()],
            extra,
            &self.dir.path().join("serve.log"),
        )
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_fenced_writer_refuses_and_is_not_ready() {
    // H16, H11: fenced while idle: the next request learns it, nothing is written.
    let nodes = Nodes::start();
    let server = nodes.server(&["--commit-wait", "20"]);
    create(&server, "app");
    let (status, _) = server.sql("app", json!({"sql": "CREATE TABLE t(k)"}));
    assert_eq!(status, 200);
    assert_eq!(server.call("GET", "/readyz", b"").0, 200);
    // A second writer takes over (E3).
    let output = Command::new(BIN)
        .args(["db", "create", "--cluster"])
        .arg(&nodes.config_path)
        .arg("other")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (status, answer) = server.sql("app", json!({"sql": "INSERT INTO t VALUES (1)"}));
    assert!(
        status == 503 || answer["error"]["kind"] == "outcome_unknown",
        "a fenced writer must refuse: {status} {answer}"
    );
    let (status, text) = server.call("GET", "/readyz", b"");
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("fenced"), "{text}");
    assert_eq!(
        server.call("GET", "/healthz", b"").0,
        200,
        "the process still serves"
    );
    let (_, metrics) = server.call("GET", "/metrics", b"");
    assert!(metrics.contains("sixfold_writer_usable 0"), "{metrics}");
    let (_, answer) = server.json("GET", "/status", &json!(null));
    assert_eq!(answer["writer"]["usable"], false, "{answer}");
}

#[test]
fn losing_the_write_quorum_answers_outcome_unknown_never_success() {
    // H10: 3 of 6 nodes down, so no commit can reach 4 of 6 (C4).
    let mut nodes = Nodes::start();
    let server = nodes.server(&["--commit-wait", "3"]);
    create(&server, "app");
    let (status, _) = server.sql("app", json!({"sql": "CREATE TABLE t(k)"}));
    assert_eq!(status, 200);
    for id in [4, 5, 6] {
        nodes.kill(id);
    }
    let started = Instant::now();
    let (status, answer) = server.sql("app", json!({"sql": "INSERT INTO t VALUES (1)"}));
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["error"]["kind"], "outcome_unknown", "{answer}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(server.call("GET", "/healthz", b"").0, 200);
    let (_, metrics) = server.call("GET", "/metrics", b"");
    assert!(metric(&metrics, "sixfold_commit_outcome_unknown_total") >= 1.0);
}

#[test]
fn the_cli_runs_sql_and_lists_databases_through_the_server() {
    // H19: no writer of its own, so the server's writer keeps its epoch and stays ready.
    let dir = tempfile::tempdir().unwrap();
    let server = data_server(dir.path(), &[]);
    let url = format!("http://{}", server.address);
    let (_, before) = server.json("GET", "/status", &json!(null));
    let run = |args: &[&str], input: &str| {
        let mut child = Command::new(BIN)
            .args(["sql", "--server", &url, "--db", "app"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(
        &[
            "CREATE TABLE t(a, b)",
            "INSERT INTO t VALUES (1, 'x'), (2.5, NULL), (3, x'00ff')",
            "SELECT a, b FROM t",
        ],
        "",
    );
    assert_eq!(code, Some(0), "{stderr}");
    // A blob prints as sqlite3 prints it: cut at its first NUL byte.
    assert_eq!(stdout, "1|x\n2.5|\n3|\n", "{stdout:?}");
    let (code, stdout, stderr) = run(
        &["-json"],
        "SELECT a FROM t WHERE a > 1; -- two rows\nSELECT nope;\nSELECT typeof(b) FROM t WHERE a = 3;",
    );
    assert_eq!(code, Some(1), "an error makes the exit code 1");
    assert_eq!(
        stdout,
        "[{\"a\":2.5},\n{\"a\":3}]\n[{\"typeof(b)\":\"blob\"}]\n"
    );
    assert!(stderr.contains("Error: no such column: nope"), "{stderr}");
    let (code, stdout, _) = run(&["-bail", "SELECT nope", "SELECT 1"], "");
    assert_eq!(
        (code, stdout.as_str()),
        (Some(1), ""),
        "-bail stops at the error"
    );
    let output = Command::new(BIN)
        .args(["db", "list", "--server", &url])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "app\t1\n");
    let (_, after) = server.json("GET", "/status", &json!(null));
    assert_eq!(
        after["writer"]["epoch"], before["writer"]["epoch"],
        "no new writer"
    );
    assert_eq!(server.call("GET", "/readyz", b"").0, 200);
    let output = Command::new(BIN)
        .args(["db", "list", "--server", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "an unreachable server is an error"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("127.0.0.1:1"));
}

#[test]
fn a_read_past_its_deadline_is_interrupted_and_the_server_goes_on() {
    // H10, H11: a read that outlives --commit-wait is answered 503 "timeout" (nothing
    // was written) and interrupted, and its connection serves the next request.
    let dir = tempfile::tempdir().unwrap();
    let server = data_server(dir.path(), &["--commit-wait", "1", "--max-sessions", "1"]);
    create(&server, "app");
    let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                   SELECT count(*) FROM c";
    let (status, answer) = server.sql("app", json!({ "sql": endless }));
    assert_eq!(
        (status, answer["error"]["kind"].as_str()),
        (503, Some("timeout")),
        "{answer}"
    );
    // One session only: this answer needs the interrupted one's turn to have ended.
    let (status, answer) = server.sql("app", json!({"sql": "SELECT 41 + 1"}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["rows"], json!([[42]]));
}
