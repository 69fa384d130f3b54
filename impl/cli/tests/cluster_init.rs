//! `sixfold cluster init` writes a config that a storage node starts from.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

fn sixfold() -> &'static str {
    env!("CARGO_BIN_EXE_sixfold")
}

fn init(out: &std::path::Path, nodes: &str, base_port: &str) -> std::process::Output {
    Command::new(sixfold())
        .args([
            "cluster",
            "init",
            "--nodes",
            nodes,
            "--az",
            "3",
            "--base-port",
            base_port,
        ])
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn init_writes_a_private_config_a_node_starts_from() {
    let dir = tempfile::tempdir().unwrap();
    for nodes in ["6", "9", "12"] {
        let out = dir.path().join(format!("c{nodes}.toml"));
        let written = init(&out, nodes, "17300");
        assert!(
            written.status.success(),
            "{}",
            String::from_utf8_lossy(&written.stderr)
        );
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text.matches("[[node]]").count().to_string(), nodes);
        let again = init(&out, nodes, "17300");
        assert_eq!(
            again.status.code(),
            Some(2),
            "an existing config is not overwritten"
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
    }
    let refused = init(&dir.path().join("c7.toml"), "7", "17300");
    assert_eq!(refused.status.code(), Some(2));
    // Node 1 of the nine-node config starts (A6: the 0600 file is accepted).
    let mut node = Command::new(sixfold())
        .args(["storage-node", "--config"])
        .arg(dir.path().join("c9.toml"))
        .args(["--node-id", "1"])
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(node.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = node.kill();
    let output = node.wait_with_output().unwrap();
    assert!(
        line.contains("17300"),
        "node 1 did not start: {line:?} {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
