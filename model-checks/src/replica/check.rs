//! Running the replica model through stateright's checker, into the crate's `Report`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use stateright::{Checker, Expectation, HasDiscoveries, Model};

use super::config::{Bug, Config};
use super::model::{ReplicaModel, property_rules};
use crate::check::{Report, Stop, Verdict, progress_bar};

/// What to check.
#[derive(Clone, Debug)]
pub struct ReplicaCheckOptions {
    pub config: Config,
    pub bug: Option<Bug>,
    /// Checker threads (at least 1).
    pub threads: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
    pub stop: Stop,
    /// Stop after this long (the report then says the search is incomplete).
    pub time_limit: Option<Duration>,
}

/// Checks the replica model exhaustively, breadth-first (no depth bound), so that a
/// counterexample is a shortest one.
pub fn run_replica_check(options: &ReplicaCheckOptions) -> Report {
    let model = ReplicaModel::new(options.config.clone(), options.bug);
    let threads = options.threads.max(1);
    let started = Instant::now();
    let finish_when = match options.stop {
        Stop::Exhaustive => HasDiscoveries::All,
        Stop::FirstFailure => HasDiscoveries::AnyFailures,
        Stop::Failed(name) => HasDiscoveries::AnyOf([name].into_iter().collect()),
    };
    let mut builder = model.clone().checker();
    if let Some(limit) = options.time_limit {
        builder = builder.timeout(limit);
    }
    let checker = builder
        .threads(threads)
        .finish_when(finish_when)
        .spawn_bfs();
    let bar = progress_bar(options.progress);
    let plain = options.progress && !std::io::stderr().is_terminal();
    let mut last_line = Instant::now();
    while !checker.is_done() {
        let message = format!(
            "{} unique states, {} generated, depth {}",
            checker.unique_state_count(),
            checker.state_count(),
            checker.max_depth()
        );
        if plain && last_line.elapsed() >= Duration::from_secs(10) {
            eprintln!("[{:.0}s] {message}", started.elapsed().as_secs_f64());
            last_line = Instant::now();
        }
        bar.set_message(message);
        bar.tick();
        std::thread::sleep(Duration::from_millis(50));
    }
    let checker = checker.join();
    bar.finish_and_clear();
    let duration = started.elapsed();
    let discoveries = checker.discoveries();
    let properties = model.properties();
    let verdicts = properties
        .iter()
        .map(|property| {
            let found = discoveries.get(property.name);
            let always = property.expectation != Expectation::Sometimes;
            let counterexample = match (always, found) {
                (true, Some(path)) => Some(
                    path.clone()
                        .into_vec()
                        .into_iter()
                        .filter_map(|(state, action)| {
                            action.map(|action| model.describe(&state, &action))
                        })
                        .collect(),
                ),
                _ => None,
            };
            Verdict {
                name: property.name,
                expectation: if always { "always" } else { "sometimes" },
                rules: property_rules(property.name),
                holds: always == found.is_none(),
                counterexample,
            }
        })
        .collect();
    let timed_out = options.time_limit.is_some_and(|limit| duration >= limit);
    let complete = !timed_out
        && match &options.stop {
            Stop::Exhaustive => discoveries.len() < properties.len(),
            Stop::FirstFailure => !properties.iter().any(|property| {
                property.expectation != Expectation::Sometimes
                    && discoveries.contains_key(property.name)
            }),
            Stop::Failed(name) => !discoveries.contains_key(name),
        };
    Report {
        model: "replica",
        config: options.config.name,
        bug: options.bug.map(Bug::name),
        threads,
        unique_states: checker.unique_state_count(),
        states_generated: checker.state_count(),
        max_depth: checker.max_depth(),
        duration,
        complete,
        timed_out,
        verdicts,
    }
}
