//! `sixfold sql` and `sixfold db`: SQLite on the cluster volume (docs/sql.md).
//!
//! Both run where the volume is: with `--data DIR` the six storage nodes run inside this
//! process (the embedded cluster at DIR, its config written there if absent); with
//! `--cluster FILE` this process is the writer of a cluster running elsewhere. Either way
//! the process opens the writer (recovery), works, and closes it: an acknowledged commit
//! is durable on 4 of 6 segments before SQLite hears "done", so killing the process at
//! any point loses nothing acknowledged.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::shell::{self, Mode, Shell};
use sixfold_cluster::{ClusterConfig, EmbeddedCluster, WriterOptions};
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
    /// URL of a running `sixfold serve` (http://HOST:PORT); only `sql` and `db list`
    /// take it, and they then open no writer of their own (H19).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
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
pub const READ_ONLY_ATTEMPTS: usize = 3;

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
            (None, None) if location.server.is_some() => {
                anyhow::bail!("--server URL works with `sql` and `db list` only")
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
#[command(after_help = SQL_EXAMPLES)]
pub struct SqlArgs {
    #[command(flatten)]
    pub location: VolumeLocation,
    /// The database to use; created if the volume has none of that name (as sqlite3
    /// creates a missing file).
    #[arg(long)]
    pub db: String,
    /// Output mode: list, csv, tabs, json, line, column, box, table, markdown, quote,
    /// insert, html, ascii (also as sqlite3's -json, -csv, -box, ...).
    #[arg(long, value_name = "MODE", overrides_with = "mode", value_parser = parse_mode)]
    pub mode: Option<Mode>,
    /// Print column names (sqlite3's -header).
    #[arg(long, overrides_with = "noheader")]
    pub header: bool,
    /// Do not print column names (sqlite3's -noheader).
    #[arg(long, overrides_with = "header")]
    pub noheader: bool,
    /// Run COMMAND (SQL or a dot command) before reading the input; repeatable
    /// (sqlite3's -cmd).
    #[arg(long, value_name = "COMMAND")]
    pub cmd: Vec<String>,
    /// Stop at the first error (sqlite3's -bail).
    #[arg(long)]
    pub bail: bool,
    /// Print each input before running it (sqlite3's -echo).
    #[arg(long)]
    pub echo: bool,
    /// Attach read-only (sqlite3's -readonly; R12): no new epoch, so the running writer
    /// is not fenced; reads see the volume as of the latest durable point; writes are
    /// refused.
    #[arg(long)]
    pub readonly: bool,
    /// Text printed for NULL (sqlite3's -nullvalue).
    #[arg(long, value_name = "TEXT")]
    pub nullvalue: Option<String>,
    /// Column separator (sqlite3's -separator).
    #[arg(long, value_name = "SEP")]
    pub separator: Option<String>,
    /// SQL or dot commands to run instead of reading standard input (as sqlite3 takes
    /// them after the file name); the first error ends the run with SQLite's code.
    #[arg(value_name = "SQL")]
    pub sql: Vec<String>,
}

const SQL_EXAMPLES: &str = "Examples:
  sixfold sql --data d --db app -json 'SELECT * FROM t'
  echo 'SELECT 0.1+0.2;' | sixfold sql --data d --db app
  sixfold sql --data d --db app .dump > app.sql && sqlite3 copy.db < app.sql
  sixfold sql --cluster cluster.toml --db app -header -box   (on a terminal: interactive)";

fn parse_mode(name: &str) -> Result<Mode, String> {
    Mode::parse(name)
        .ok_or_else(|| format!("mode should be one of: {}", SQLITE3_MODE_FLAGS.join(" ")))
}

const SQLITE3_MODE_FLAGS: &[&str] = &[
    "list", "csv", "tabs", "json", "line", "column", "box", "table", "markdown", "quote", "insert",
    "html", "ascii",
];

/// sqlite3's single-dash options after `sql`, rewritten to this CLI's flags
/// (`-json` → `--mode=json`, `-header` → `--header`, ...); other arguments pass unchanged.
pub fn sqlite3_style_arguments(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let Some(sql_at) = args
        .iter()
        .skip(1)
        .position(|arg| !arg.to_string_lossy().starts_with('-'))
    else {
        return args;
    };
    if args[sql_at + 1] != "sql" {
        return args;
    }
    let mut out: Vec<std::ffi::OsString> = args[..=sql_at + 1].to_vec();
    let mut takes_value = false;
    let mut rest = args[sql_at + 2..].iter();
    for arg in rest.by_ref() {
        let text = arg.to_string_lossy().into_owned();
        if takes_value {
            takes_value = false;
            out.push(arg.clone());
            continue;
        }
        if text == "--" {
            out.push(arg.clone());
            break;
        }
        let bare = text.strip_prefix("--").or_else(|| text.strip_prefix('-'));
        let rewritten = match bare {
            Some(name) if SQLITE3_MODE_FLAGS.contains(&name) => {
                format!("--mode={name}")
            }
            Some("header" | "headers") => "--header".to_string(),
            Some("noheader" | "noheaders") => "--noheader".to_string(),
            Some(name @ ("bail" | "echo" | "readonly")) => format!("--{name}"),
            Some(name @ ("cmd" | "nullvalue" | "separator")) => {
                takes_value = true;
                format!("--{name}")
            }
            Some("data" | "cluster" | "server" | "db" | "mode") => {
                takes_value = true;
                text.clone()
            }
            _ => text.clone(),
        };
        out.push(rewritten.into());
    }
    out.extend(rest.cloned());
    out
}

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sixfold db list --data d\n  sixfold db create --data d orders\n  sixfold db drop --cluster cluster.toml orders\n  sixfold db export --cluster cluster.toml orders orders.db\n  sixfold db import --data d orders_copy orders.db"
)]
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
    /// Write a database to a plain SQLite file, as of one durable point (B1; a read-only
    /// attach, R12: the running writer is not fenced).
    Export(crate::db_transfer_cmds::ExportArgs),
    /// Load a plain SQLite file into the volume as a new database (B3–B5: checked first,
    /// visible whole or not at all).
    Import(crate::db_transfer_cmds::ImportArgs),
}

/// A catalog refusal is the user's mistake, not a failure of sixfold: say it, exit 1.
pub fn refused(error: CatalogError) -> anyhow::Result<ExitCode> {
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
        DbAction::Export(export) => return crate::db_transfer_cmds::export(export),
        DbAction::Import(import) => return crate::db_transfer_cmds::import(import),
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
        if let Some(url) = &location.server {
            return crate::remote_cmds::db_list(url);
        }
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
        (_, _) => unreachable!("create and drop take a name; the others returned above"),
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
    // Writes are refused by the volume too; query_only gives sqlite3's own message for them.
    conn.pragma_update(None, "query_only", true)
        .context("making the connection read-only")?;
    let interactive = std::io::stdin().is_terminal() && args.sql.is_empty();
    let code = run_shell(&conn, args, interactive)?;
    drop(conn);
    session.close();
    Ok(code)
}

pub fn sql(args: SqlArgs) -> anyhow::Result<ExitCode> {
    if let Err(error) = sixfold_sql::validate_name(&args.db) {
        return refused(error);
    }
    if let Some(url) = &args.location.server {
        return crate::remote_cmds::sql(&args, url);
    }
    if args.readonly {
        return sql_read_only(&args);
    }
    let session = Session::open(&args.location)?;
    let catalog = session.catalog();
    let interactive = std::io::stdin().is_terminal() && args.sql.is_empty();
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
    let code = run_shell(&conn, &args, interactive)?;
    drop(conn);
    drop(catalog);
    session.close();
    Ok(code)
}

fn run_shell(
    conn: &rusqlite::Connection,
    args: &SqlArgs,
    interactive: bool,
) -> anyhow::Result<ExitCode> {
    let options = shell::Options {
        mode: args.mode,
        header: match (args.header, args.noheader) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        bail: args.bail,
        echo: args.echo,
        null_value: args.nullvalue.clone(),
        separator: args.separator.clone(),
        commands: args.cmd.clone(),
        sql: args.sql.clone(),
    };
    let label = conn.path().unwrap_or(&args.db).to_string();
    let shell = Shell::new(conn, label, interactive);
    if interactive {
        let banner = format!(
            "sixfold sql on database {}; statements end with ';', .help for more",
            args.db
        );
        return shell.run_interactive(options, &banner);
    }
    match shell.run(options, std::io::stdin().lock()) {
        Ok(code) => Ok(code),
        // A reader that went away (`| head`) is not an error worth a word.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(error) => Err(error).context("reading SQL or writing rows"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(args: &[&str]) -> Vec<String> {
        sqlite3_style_arguments(args.iter().map(|a| a.into()).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn sqlite3_flags_become_this_cli_s_flags() {
        assert_eq!(
            rewrite(&[
                "sixfold",
                "sql",
                "-json",
                "--data",
                "-csv",
                "--db",
                "x",
                "-cmd",
                "-header",
                "-header",
                "-readonly",
                "SELECT 1"
            ]),
            [
                "sixfold",
                "sql",
                "--mode=json",
                "--data",
                "-csv",
                "--db",
                "x",
                "--cmd",
                "-header",
                "--header",
                "--readonly",
                "SELECT 1"
            ]
        );
        assert_eq!(
            rewrite(&["sixfold", "sql", "--db", "x", "--", "-json"]),
            ["sixfold", "sql", "--db", "x", "--", "-json"]
        );
        assert_eq!(
            rewrite(&["sixfold", "status", "-json"]),
            ["sixfold", "status", "-json"],
            "other commands keep their arguments"
        );
    }
}
