//! Runs the vectors against a target program speaking JSON lines on stdin/stdout:
//! one request `{"suite": S, "input": I}` per line, one output per line (docs/conformance.md).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

use crate::vectors::{VectorFile, evaluate};

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("cannot start target {command:?}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("target I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("target closed its output before answering case {case:?}")]
    Closed { case: String },
    #[error("cannot read vectors from {path}: {reason}")]
    Vectors { path: String, reason: String },
}

/// One case whose output differed from the expected one.
#[derive(Debug, Clone)]
pub struct Mismatch {
    pub suite: String,
    pub case: String,
    pub expected: Value,
    pub actual: Value,
}

#[derive(Debug, Default)]
pub struct RunSummary {
    pub passed: usize,
    pub mismatches: Vec<Mismatch>,
}

/// Reads every `*.json` vector file of `dir` and of its `generated/` folder, in name order.
pub fn load_vectors(dir: &Path) -> Result<Vec<VectorFile>, RunnerError> {
    let mut files = load_folder(dir)?;
    let generated = dir.join("generated");
    if generated.is_dir() {
        files.extend(load_folder(&generated)?);
    }
    Ok(files)
}

fn load_folder(dir: &Path) -> Result<Vec<VectorFile>, RunnerError> {
    let error = |reason: String| RunnerError::Vectors {
        path: dir.display().to_string(),
        reason,
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| error(e.to_string()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
            serde_json::from_str(&text).map_err(|e| error(format!("{}: {e}", path.display())))
        })
        .collect()
}

/// A running target program.
pub struct Target {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Target {
    /// Starts `command` through `sh -c`.
    pub fn spawn(command: &str) -> Result<Target, RunnerError> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|source| RunnerError::Spawn {
                command: command.to_string(),
                source,
            })?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Target {
            child,
            stdin,
            stdout,
        })
    }

    fn ask(&mut self, suite: &str, case: &str, input: &Value) -> Result<Value, RunnerError> {
        writeln!(self.stdin, "{}", json!({"suite": suite, "input": input}))?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err(RunnerError::Closed {
                case: case.to_string(),
            });
        }
        Ok(serde_json::from_str(line.trim())
            .unwrap_or_else(|_| json!({"unparseable_output": line.trim()})))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs every case of `files` against `target`.
pub fn run(files: &[VectorFile], target: &mut Target) -> Result<RunSummary, RunnerError> {
    let mut summary = RunSummary::default();
    for file in files {
        for case in &file.cases {
            let actual = target.ask(&file.suite, &case.name, &case.input)?;
            if actual == case.expected {
                summary.passed += 1;
            } else {
                summary.mismatches.push(Mismatch {
                    suite: file.suite.clone(),
                    case: case.name.clone(),
                    expected: case.expected.clone(),
                    actual,
                });
            }
        }
    }
    Ok(summary)
}

/// The reference target's loop: answers each request line with [`evaluate`]'s output.
pub fn serve(input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(request) => {
                let suite = request.get("suite").and_then(Value::as_str).unwrap_or("");
                let input = request.get("input").cloned().unwrap_or(Value::Null);
                evaluate(suite, &input).unwrap_or_else(|e| json!({"error": e.to_string()}))
            }
            Err(e) => json!({"error": format!("request is not JSON: {e}")}),
        };
        writeln!(output, "{answer}")?;
        output.flush()?;
    }
    Ok(())
}
