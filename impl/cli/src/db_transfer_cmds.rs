//! `sixfold db export` and `sixfold db import`: one database to or from a plain SQLite
//! file (spec/backup.md B1–B5, docs/backup.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sixfold_sql::{CatalogError, ImportFile, TransferError, TransferSummary, export_database};

use crate::sql_cmds::{READ_ONLY_ATTEMPTS, ReadOnlySession, Session, VolumeLocation};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sixfold db export --cluster cluster.toml orders orders.db\n  sqlite3 orders.db .dump"
)]
pub struct ExportArgs {
    #[command(flatten)]
    pub location: VolumeLocation,
    /// The database to export.
    pub name: String,
    /// The SQLite file to write; replaced if it exists, once the copy is complete.
    pub file: PathBuf,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  sixfold db import --data d orders orders.db")]
pub struct ImportArgs {
    #[command(flatten)]
    pub location: VolumeLocation,
    /// The name of the new database (refused if it exists).
    pub name: String,
    /// The SQLite file to load (checked with PRAGMA integrity_check first).
    pub file: PathBuf,
}

/// A refusal of the user's input exits 1 with a message; anything else is a failure (2).
fn outcome(result: Result<TransferSummary, TransferError>, done: &str) -> anyhow::Result<ExitCode> {
    match result {
        Ok(summary) => {
            println!("{done} ({} pages, {} bytes)", summary.pages, summary.bytes);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) if error.is_refusal() => {
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error.into()),
    }
}

/// B1, B2: the export reads through a read-only attach (R12), so it never fences the
/// application's writer; attached again if that writer moved past its read point.
pub fn export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    if let Err(error) = sixfold_sql::validate_name(&args.name) {
        return crate::sql_cmds::refused(error);
    }
    let mut attempt = 1;
    loop {
        let session = ReadOnlySession::open(&args.location)?;
        let result = export_database(session.page_volume(), &args.name, &args.file);
        session.close();
        match result {
            Err(error) if read_point_lost(&error) && attempt < READ_ONLY_ATTEMPTS => {
                tracing::info!(attempt, %error, "read-only attach is behind; attaching again");
                attempt += 1;
            }
            result => {
                let done = format!("exported {} to {}", args.name, args.file.display());
                return outcome(result, &done)
                    .with_context(|| format!("exporting {:?}", args.name));
            }
        }
    }
}

/// R12: a read on a read-only attach fails once a writer moved past its read point; such
/// a failure surfaces as an SQLite I/O error or a catalog read error. A local file's error
/// or a refusal would fail the same way again.
fn read_point_lost(error: &TransferError) -> bool {
    matches!(
        error,
        TransferError::Sqlite { .. } | TransferError::Catalog(CatalogError::Volume(_))
    )
}

/// B3–B5: the file is checked before the writer is opened, so a bad file never fences
/// anyone; then the database is written and named in its last MTR.
pub fn import(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    if let Err(error) = sixfold_sql::validate_name(&args.name) {
        return crate::sql_cmds::refused(error);
    }
    let checked = match ImportFile::check(&args.file) {
        Ok(checked) => checked,
        Err(error) => return outcome(Err(error), ""),
    };
    let session = Session::open(&args.location)?;
    let result = checked.load(session.page_volume(), &args.name);
    session.close();
    let done = format!("imported {} as {}", args.file.display(), args.name);
    outcome(result, &done).with_context(|| format!("importing {}", args.file.display()))
}
