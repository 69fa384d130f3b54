//! `sixfold restore`: a new volume from a continuous backup, at a point in time
//! (spec/backup.md B13–B16, docs/backup.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sixfold_cluster::backup::{BackupError, BackupTarget, RestorePoint, restore};
use sixfold_core::Lsn;

#[derive(clap::Args)]
#[command(
    group(clap::ArgGroup::new("point").required(true).args(["to_vdl", "to_time", "latest"])),
    after_help = "Examples:\n  sixfold restore --from file:///srv/backup --into restored --latest\n  \
                  sixfold restore --from file:///srv/backup --into restored --to-time 2026-12-01T19:40:00Z\n  \
                  sixfold sql --data restored --db shop"
)]
pub struct RestoreArgs {
    /// The backup target URL the cluster config's `backup` names (file:///path).
    #[arg(long)]
    pub from: String,
    /// The new volume's folder (must not exist): an embedded cluster, `--data DIR` of
    /// every other command.
    #[arg(long)]
    pub into: PathBuf,
    /// Restore to the highest commit point (VDL) at or below this LSN.
    #[arg(long)]
    pub to_vdl: Option<u64>,
    /// Restore to the highest manifest point at or before this time: RFC 3339 in UTC
    /// (2026-12-01T19:40:00Z, fractions allowed) or milliseconds since the Unix epoch.
    #[arg(long)]
    pub to_time: Option<String>,
    /// Restore to the latest restorable point.
    #[arg(long)]
    pub latest: bool,
}

pub fn restore_cmd(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let point = match (&args.to_vdl, &args.to_time) {
        (Some(vdl), _) => RestorePoint::Vdl(Lsn(*vdl)),
        (_, Some(time)) => RestorePoint::Time(parse_time_ms(time).with_context(|| {
            format!("--to-time {time:?}: not RFC 3339 (…Z) nor Unix milliseconds")
        })?),
        _ => RestorePoint::Latest,
    };
    let target = BackupTarget::open(&args.from)?;
    match restore(&target, point, &args.into) {
        Ok(summary) => {
            println!(
                "restored VDL {} (latest restorable {}) into {}: {} pages from {} records in {} objects; read {} ms, written {} ms",
                summary.point.0,
                summary.latest.0,
                args.into.display(),
                summary.pages,
                summary.records,
                summary.objects,
                summary.plan_ms,
                summary.write_ms
            );
            Ok(ExitCode::SUCCESS)
        }
        // B16: a damaged or missing object, or no point to restore to: exit 1, named.
        Err(
            error @ (BackupError::Damaged { .. }
            | BackupError::Missing { .. }
            | BackupError::NoPoint(_)
            | BackupError::Into { .. }),
        ) => {
            eprintln!("error: {error}; nothing was restored");
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error.into()),
    }
}

/// Milliseconds since the Unix epoch of `text`: digits alone, or RFC 3339 in UTC.
pub fn parse_time_ms(text: &str) -> Option<u64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once(['T', ' '])?;
    let mut date_parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock_parts = clock.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (
        clock_parts.next()??,
        clock_parts.next()??,
        clock_parts.next()??,
    );
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return None;
    }
    let millis: i64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    u64::try_from(seconds * 1_000 + millis).ok()
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_time_ms;

    #[test]
    fn times_parse_as_rfc3339_utc_or_unix_milliseconds() {
        assert_eq!(parse_time_ms("1700000000123"), Some(1_700_000_000_123));
        assert_eq!(parse_time_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_time_ms("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_time_ms("2024-02-29T00:00:00+00:00"),
            Some(1_709_164_800_000)
        );
        assert_eq!(parse_time_ms("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_time_ms("yesterday"), None);
    }
}
