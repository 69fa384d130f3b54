//! `sixfold sql` on a terminal, driven through tmux: a user types statements (one over
//! two lines), presses Ctrl-C on a half-typed line, recalls history with the Up key, and
//! reads the screen back. Skipped, saying so, where tmux is not installed.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "shell"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "shell"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Types `text` and presses Enter. (tmux reads an argument ending in `;` as a
    /// command separator, so a final `;` is sent as the escaped key `\;`.)
    fn line(&self, text: &str) {
        match text.strip_suffix(';') {
            Some(body) => {
                self.keys(&["-l", body]);
                self.keys(&["\\;"]);
            }
            None => self.keys(&["-l", text]),
        }
        self.keys(&["Enter"]);
    }

    /// Waits until `done` holds for the screen (20 s at most); returns the screen.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "waited 20 s for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the `count`-th primary prompt.
    fn prompts(&self, count: usize) -> String {
        self.wait_for(&format!("prompt {count}"), |screen| {
            screen.matches("sixfold>").count() >= count
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn lines(screen: &str) -> Vec<&str> {
    screen.lines().map(str::trim_end).collect()
}

#[test]
fn a_typed_session_multi_line_ctrl_c_and_history() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED: tmux is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let command = format!(
        "env HOME={home} RUST_LOG=off {bin} sql --data {data} --db app",
        home = dir.path().display(),
        bin = env!("CARGO_BIN_EXE_sixfold"),
        data = dir.path().join("data").display()
    );
    let tmux = Tmux {
        socket: format!("sixfold-test-{}", std::process::id()),
    };
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "shell",
        "-x",
        "100",
        "-y",
        "50",
        &command,
    ]);
    tmux.prompts(1);
    // A statement over two lines: the continuation prompt, then the result.
    tmux.line("SELECT 1 +");
    tmux.wait_for("the continuation prompt", |s| s.contains("   ...>"));
    tmux.line("2 AS three;");
    let screen = tmux.prompts(2);
    assert!(lines(&screen).contains(&"3"), "{screen}");
    // Ctrl-C on a half-typed line drops it; so it does for a pending statement.
    tmux.keys(&["-l", "SELECT 'abandoned'"]);
    tmux.keys(&["C-c"]);
    tmux.prompts(3);
    tmux.line("SELECT 'x' ||");
    tmux.wait_for("the second continuation prompt", |s| {
        s.matches("   ...>").count() >= 2
    });
    tmux.keys(&["C-c"]);
    tmux.prompts(4);
    tmux.line("SELECT 'after' AS word;");
    let screen = tmux.prompts(5);
    let shown = lines(&screen);
    assert!(shown.contains(&"after"), "{screen}");
    assert!(!shown.contains(&"abandoned"), "{screen}");
    assert!(!screen.contains("error"), "{screen}");
    // Up recalls the last statement; Enter runs it again.
    tmux.keys(&["Up"]);
    tmux.wait_for("the recalled line", |s| {
        s.lines()
            .last_non_empty()
            .is_some_and(|l| l.contains("SELECT 'after' AS word;"))
    });
    tmux.keys(&["Enter"]);
    let screen = tmux.prompts(6);
    assert_eq!(
        lines(&screen).iter().filter(|l| **l == "after").count(),
        2,
        "{screen}"
    );
    // Dot commands and an error: the shell goes on.
    tmux.line(".mode box");
    tmux.prompts(7);
    tmux.line("SELECT * FROM missing;");
    let screen = tmux.prompts(8);
    assert!(
        screen.contains("Parse error: no such table: missing"),
        "{screen}"
    );
    tmux.line("SELECT 42 AS answer;");
    let screen = tmux.prompts(9);
    assert!(screen.contains("│ answer │"), "{screen}");
    assert!(screen.contains("│ 42     │"), "{screen}");
    tmux.line(".quit");
    let history = dir.path().join(".sixfold_history");
    wait_for_file(&history);
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(saved.contains("SELECT 'after' AS word;"), "{saved}");
    assert!(
        saved.contains("SELECT 1 +"),
        "a two-line statement is kept whole: {saved}"
    );
    assert!(saved.contains("2 AS three;"), "{saved}");
    assert!(!saved.contains("abandoned"), "{saved}");
}

fn wait_for_file(path: &Path) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
}

trait LastNonEmpty<'a> {
    fn last_non_empty(self) -> Option<&'a str>;
}

impl<'a, I: Iterator<Item = &'a str>> LastNonEmpty<'a> for I {
    fn last_non_empty(self) -> Option<&'a str> {
        self.filter(|line| !line.trim().is_empty()).last()
    }
}
