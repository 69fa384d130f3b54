//! `sixfold sql` and `sixfold db`: SQLite on the cluster volume (docs/sql.md).
//!
//! Both run where the volume is: with `--data DIR` the six storage nodes run inside this
//! process (the embedded cluster at DIR, its config written there if absent); with
//! `--cluster FILE` this process is the writer of a cluster running elsewhere. Either way
//! the process opens the writer (recovery), works, and closes it: an acknowledged commit
//! is durable on 4 of 6 segments before SQLite hears "done", so killing the process at
//! any point loses nothing acknowledged.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sixfold_cluster::{ClusterConfig, EmbeddedCluster, WriterOptions};
use sixfold_sql::shell::{ShellError, is_complete, run_shell};
use sixfold_sql::{
    Catalog, CatalogError, ClusterVolume, PageVolume, ReadOnlyVolume, open_connection,
};

/// Where the volume is: an embedded cluster's folder or a running cluster's config.
#[derive(clap::Args, Clone)]
#[group(required = true, multiple = false)]
pub struct VolumeLocation {
    /// Folder of an embedded cluster: its six storage nodes run inside this process
    /// (DIR/cluster.toml is written if absent).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Config file (TOML) of a running cluster; this process is its writer.
    #[arg(long)]
    pub cluster: Option<PathBuf>,
}

/// How long a commit waits before the writer logs that it is still waiting; it keeps
/// waiting after that (C4: never acknowledged before 4 of 6 segments have it).
const COMMIT_WARN_AFTER: Duration = Duration::from_secs(5);

pub fn writer_options() -> WriterOptions {
    WriterOptions {
        commit_timeout: COMMIT_WARN_AFTER,
        ..WriterOptions::default()
    }
}

/// An open volume: the writer, and the embedded storage nodes if this process runs them.
pub struct Session {
    pub volume: Arc<ClusterVolume>,
    pub cluster: Option<EmbeddedCluster>,
}

/// R12: the volume attached read-only (no epoch raised, nothing written), and the
/// embedded storage nodes if this process runs them.
pub struct ReadOnlySession {
    pub volume: Arc<ReadOnlyVolume>,
    pub cluster: Option<EmbeddedCluster>,
}

impl ReadOnlySession {
    /// R12: attaches read-only; never fences the running writer.
    pub fn open(location: &VolumeLocation) -> anyhow::Result<ReadOnlySession> {
        let (cluster, config) = Session::locate(location)?;
        if cluster.is_some() {
            // The embedded nodes run only in this process (A7), so no writer can be fenced;
            // a writer's recovery and final heartbeat tell the restarted nodes the VDL,
            // which they keep only in memory.
            let settle = ClusterVolume::open(config.clone(), writer_options())
                .context("opening the writer (recovery)")?;
            drop(settle);
        }
        let volume = ReadOnlyVolume::attach(config).context("attaching read-only (R12)")?;
        Ok(ReadOnlySession {
            volume: Arc::new(volume),
            cluster,
        })
    }

    pub fn page_volume(&self) -> Arc<dyn PageVolume> {
        self.volume.clone()
    }

    pub fn close(self) {
        drop(self.volume);
        if let Some(cluster) = self.cluster {
            cluster.stop();
        }
    }
}

/// Attempts of a read-only command whose read point the writer moved past (R12).
const READ_ONLY_ATTEMPTS: usize = 3;

impl Session {
    fn locate(
        location: &VolumeLocation,
    ) -> anyhow::Result<(Option<EmbeddedCluster>, ClusterConfig)> {
        Ok(match (&location.data, &location.cluster) {
            (Some(dir), _) => {
                let cluster = EmbeddedCluster::start(dir).with_context(|| {
                    format!("starting the embedded cluster in {}", dir.display())
                })?;
                let config = cluster.config().clone();
                (Some(cluster), config)
            }
            (None, Some(file)) => {
                let config = ClusterConfig::load(file)
                    .with_context(|| format!("loading {}", file.display()))?;
                (None, config)
            }
            (None, None) => anyhow::bail!("give --data DIR or --cluster FILE"),
        })
    }

    pub fn open(location: &VolumeLocation) -> anyhow::Result<Session> {
        let (cluster, config) = Self::locate(location)?;
        let volume = ClusterVolume::open(config, writer_options())
            .context("opening the writer (recovery)")?;
        Ok(Session {
            volume: Arc::new(volume),
            cluster,
        })
    }

    pub fn page_volume(&self) -> Arc<dyn PageVolume> {
        self.volume.clone()
    }

    pub fn catalog(&self) -> Catalog {
        Catalog::new(self.page_volume())
    }

    /// Closes the writer (every connection must be closed first), then the nodes.
    pub fn close(self) {
        drop(self.volume);
        if let Some(cluster) = self.cluster {
            cluster.stop();
        }
    }
}

#[derive(clap::Args)]
pub struct SqlArgs {
    #[command(flatten)]
    pub location: VolumeLocation,
    /// The database to use; created if the volume has none of that name (as sqlite3
    /// creates a missing file).
    #[arg(long)]
    pub db: String,
    /// Attach read-only (R12): no new epoch, so the running writer is not fenced; reads
    /// see the volume as of the latest durable point; writes are refused.
    #[arg(long)]
    pub readonly: bool,
}

#[derive(clap::Args)]
pub struct DbArgs {
    #[command(subcommand)]
    pub action: DbAction,
}

#[derive(clap::Subcommand)]
pub enum DbAction {
    /// List the databases of the volume: name and id.
    List {
        #[command(flatten)]
        location: VolumeLocation,
    },
    /// Create an empty database.
    Create {
        #[command(flatten)]
        location: VolumeLocation,
        /// 1–64 bytes of letters, digits, '_', '.', '-'.
        name: String,
    },
    /// Drop a database and everything in it.
    Drop {
        #[command(flatten)]
        location: VolumeLocation,
        name: String,
    },
}

/// A catalog refusal is the user's mistake, not a failure of sixfold: say it, exit 1.
fn refused(error: CatalogError) -> anyhow::Result<ExitCode> {
    match error {
        CatalogError::Volume(error) => Err(anyhow::anyhow!("volume: {error}")),
        CatalogError::Corrupt(text) => Err(anyhow::anyhow!("corrupt catalog: {text}")),
        other => {
            eprintln!("error: {other}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub fn db(args: DbArgs) -> anyhow::Result<ExitCode> {
    let (location, name) = match &args.action {
        DbAction::List { location } => (location, None),
        DbAction::Create { location, name } | DbAction::Drop { location, name } => {
            (location, Some(name.as_str()))
        }
    };
    if let Some(name) = name
        && let Err(error) = sixfold_sql::validate_name(name)
    {
        return refused(error);
    }
    if let DbAction::List { location } = &args.action {
        return list_read_only(location);
    }
    let session = Session::open(location)?;
    let catalog = session.catalog();
    let result = match (&args.action, name) {
        (DbAction::List { .. }, _) => unreachable!("listed read-only above"),
        (DbAction::Create { .. }, Some(name)) => catalog
            .create_database(name)
            .map(|id| println!("created database {name} (id {id})")),
        (DbAction::Drop { .. }, Some(name)) => catalog
            .drop_database(name)
            .map(|()| println!("dropped database {name}")),
        (_, None) => unreachable!("create and drop take a name"),
    };
    drop(catalog);
    session.close();
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => refused(error),
    }
}

/// R12: `db list` attaches read-only, so a monitoring job never fences the application;
/// attached again if the writer moved past its read point.
fn list_read_only(location: &VolumeLocation) -> anyhow::Result<ExitCode> {
    let mut attempt = 1;
    loop {
        let session = ReadOnlySession::open(location)?;
        let listed = Catalog::new(session.page_volume()).list_databases();
        session.close();
        match listed {
            Ok(databases) => {
                for info in databases {
                    println!("{}\t{}", info.name, info.db_id);
                }
                return Ok(ExitCode::SUCCESS);
            }
            Err(CatalogError::Volume(error)) if attempt < READ_ONLY_ATTEMPTS => {
                tracing::info!(attempt, %error, "read-only attach is behind; attaching again");
                attempt += 1;
            }
            Err(error) => return refused(error),
        }
    }
}

/// R12: `sql --readonly`: the shell on a read-only attach; a missing database is an error.
fn sql_read_only(args: &SqlArgs) -> anyhow::Result<ExitCode> {
    let session = ReadOnlySession::open(&args.location)?;
    let conn = open_connection(session.page_volume(), &args.db)
        .with_context(|| format!("opening database {:?} read-only", args.db))?;
    let code = if std::io::stdin().is_terminal() {
        interactive_shell(&conn, &args.db)?
    } else {
        piped_shell(&conn)?
    };
    drop(conn);
    session.close();
    Ok(code)
}

pub fn sql(args: SqlArgs) -> anyhow::Result<ExitCode> {
    if let Err(error) = sixfold_sql::validate_name(&args.db) {
        return refused(error);
    }
    if args.readonly {
        return sql_read_only(&args);
    }
    let session = Session::open(&args.location)?;
    let catalog = session.catalog();
    let interactive = std::io::stdin().is_terminal();
    let found = catalog
        .lookup(&args.db)
        .with_context(|| format!("looking up database {:?}", args.db))?;
    if found.is_none() {
        catalog
            .create_database(&args.db)
            .with_context(|| format!("creating database {:?}", args.db))?;
        if interactive {
            eprintln!("created database {}", args.db);
        }
    }
    let conn = open_connection(session.page_volume(), &args.db)
        .with_context(|| format!("opening database {:?}", args.db))?;
    let code = if interactive {
        interactive_shell(&conn, &args.db)?
    } else {
        piped_shell(&conn)?
    };
    drop(conn);
    drop(catalog);
    session.close();
    Ok(code)
}

/// Piped input: run it all, rows to stdout, the first error to stderr and exit 1.
fn piped_shell(conn: &rusqlite::Connection) -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin();
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    match run_shell(conn, stdin.lock(), &mut out, &mut err) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(ShellError::Sql { .. }) => Ok(ExitCode::FAILURE),
        Err(ShellError::Incomplete(text)) => {
            eprintln!("error: incomplete SQL: {text}");
            Ok(ExitCode::FAILURE)
        }
        Err(ShellError::Io(error)) => Err(error).context("reading SQL or writing rows"),
    }
}

/// Most lines the interactive history keeps.
const HISTORY_LINES_MAX: usize = 1_000;

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".sixfold_history"))
}

/// A terminal: a prompt, line editing and history (rustyline); an error is printed and
/// the shell goes on.
fn interactive_shell(conn: &rusqlite::Connection, db: &str) -> anyhow::Result<ExitCode> {
    use rustyline::error::ReadlineError;
    let config = rustyline::Config::builder()
        .max_history_size(HISTORY_LINES_MAX)
        .context("history size")?
        .auto_add_history(false)
        .build();
    let mut editor =
        rustyline::DefaultEditor::with_config(config).context("starting the line editor")?;
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path); // absent on first use
    }
    println!("sixfold sql on database {db}; statements end with ';', .help for more");
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() {
            "sixfold> "
        } else {
            "   ...> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(error).context("reading a line"),
        };
        if pending.is_empty() && line.trim_start().starts_with('.') {
            let _ = editor.add_history_entry(line.as_str());
            match dot_command(conn, line.trim()) {
                DotOutcome::Quit => break,
                DotOutcome::Done => continue,
            }
        }
        pending.push_str(&line);
        pending.push('\n');
        if !is_complete(&pending) {
            continue;
        }
        let _ = editor.add_history_entry(pending.trim_end());
        let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
        // The error was printed by the shell; an interactive session goes on.
        let _ = run_shell(conn, pending.as_bytes(), &mut out, &mut err);
        pending.clear();
    }
    if let Some(path) = &history
        && let Err(error) = editor.save_history(path)
    {
        eprintln!("warning: history not saved to {}: {error}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

enum DotOutcome {
    Quit,
    Done,
}

fn dot_command(conn: &rusqlite::Connection, line: &str) -> DotOutcome {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    match line.split_whitespace().next().unwrap_or("") {
        ".quit" | ".exit" => return DotOutcome::Quit,
        ".tables" => {
            let sql = "SELECT name FROM sqlite_schema WHERE type IN ('table','view') \
                       AND name NOT LIKE 'sqlite_%' ORDER BY 1;";
            let _ = run_shell(conn, sql.as_bytes(), &mut out, &mut err);
        }
        ".schema" => {
            let sql = "SELECT sql || ';' FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY 1;";
            let _ = run_shell(conn, sql.as_bytes(), &mut out, &mut err);
        }
        ".help" => {
            let _ = writeln!(
                out,
                ".tables      list tables and views\n.schema      show the CREATE statements\n\
                 .quit/.exit  leave (so does Ctrl-D)"
            );
        }
        other => {
            let _ = writeln!(err, "unknown command {other:?}; .help lists the commands");
        }
    }
    DotOutcome::Done
}
