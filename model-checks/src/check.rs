//! Running a model through stateright's checker and reporting what it found.

use std::fmt;
use std::hash::Hash;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use stateright::{Checker, Expectation, HasDiscoveries, Model};

use crate::quorum::{Bug, Config, QuorumModel, UnknownName, property_rules, symmetry};

/// The models `sixfold check` knows.
pub const MODEL_NAMES: &[&str] = &["quorum", "membership", "replica"];

/// Refuses a model name that is not one of `MODEL_NAMES`.
pub fn validate_model(name: &str) -> Result<(), UnknownName> {
    if MODEL_NAMES.contains(&name) {
        Ok(())
    } else {
        Err(UnknownName::new("model", name, MODEL_NAMES))
    }
}

/// What to check.
#[derive(Clone, Debug)]
pub struct CheckOptions {
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

/// When the search may stop before it has visited every reachable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Only when every property has a discovery (or every state was visited).
    Exhaustive,
    /// At the first counterexample to an `always` property.
    FirstFailure,
    /// When this property has a counterexample.
    Failed(&'static str),
}

/// One property's verdict.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub name: &'static str,
    /// "always" or "sometimes".
    pub expectation: &'static str,
    pub rules: &'static [&'static str],
    pub holds: bool,
    /// For a failed `always`: the steps to the violating state.
    pub counterexample: Option<Vec<String>>,
}

/// What a check found.
#[derive(Clone, Debug)]
pub struct Report {
    pub model: &'static str,
    pub config: &'static str,
    /// The mutant's CLI name, if one was checked.
    pub bug: Option<&'static str>,
    pub threads: usize,
    pub unique_states: usize,
    pub states_generated: usize,
    pub max_depth: usize,
    pub duration: Duration,
    /// Whether the checker visited every reachable state.
    pub complete: bool,
    /// Whether the search stopped at the time limit.
    pub timed_out: bool,
    pub verdicts: Vec<Verdict>,
}

impl Report {
    /// The search was exhaustive, every `always` property holds and every `sometimes`
    /// property was witnessed.
    pub fn all_hold(&self) -> bool {
        self.complete && self.verdicts.iter().all(|verdict| verdict.holds)
    }

    /// Names of the properties that failed: an `always` with a counterexample, or a
    /// `sometimes` never witnessed in an exhaustive search.
    pub fn failed(&self) -> Vec<&'static str> {
        self.verdicts
            .iter()
            .filter(|verdict| {
                let refuted = verdict.counterexample.is_some();
                let unwitnessed = verdict.expectation == "sometimes" && !verdict.holds;
                refuted || (unwitnessed && self.complete)
            })
            .map(|verdict| verdict.name)
            .collect()
    }

    pub fn verdict(&self, name: &str) -> Option<&Verdict> {
        self.verdicts.iter().find(|verdict| verdict.name == name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bug = self.bug.unwrap_or("none");
        writeln!(
            f,
            "model {} config {} bug {} threads {}",
            self.model, self.config, bug, self.threads
        )?;
        writeln!(f, "unique states:    {}", self.unique_states)?;
        writeln!(f, "states generated: {}", self.states_generated)?;
        writeln!(f, "max depth:        {}", self.max_depth)?;
        writeln!(f, "seconds:          {:.1}", self.duration.as_secs_f64())?;
        let coverage = if self.complete {
            "exhaustive (every reachable state visited, no depth bound)"
        } else if self.timed_out {
            "stopped at the time limit (incomplete)"
        } else {
            "stopped at a counterexample (incomplete)"
        };
        writeln!(f, "search:           {coverage}")?;
        writeln!(f, "properties:")?;
        for verdict in &self.verdicts {
            let outcome = match (verdict.expectation, verdict.holds) {
                ("always", true) if self.complete => "holds",
                ("always", true) => "not refuted",
                ("always", false) => "FAILS",
                (_, true) => "witnessed",
                (_, false) if self.complete => "NOT WITNESSED",
                (_, false) => "not witnessed yet",
            };
            writeln!(
                f,
                "  {:<9} {:<56} {:<13} [{}]",
                verdict.expectation,
                verdict.name,
                outcome,
                verdict.rules.join(" ")
            )?;
        }
        for verdict in &self.verdicts {
            if let Some(steps) = &verdict.counterexample {
                writeln!(
                    f,
                    "\ncounterexample to \"{}\" ({} steps):",
                    verdict.name,
                    steps.len()
                )?;
                for (number, step) in steps.iter().enumerate() {
                    writeln!(f, "  {:>3}. {step}", number + 1)?;
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn progress_bar(enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar
}

/// How a search runs, whatever the model.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    /// Checker threads (at least 1).
    pub threads: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
    pub stop: Stop,
    /// Stop after this long (the report then says the search is incomplete).
    pub time_limit: Option<Duration>,
}

/// A symmetry reduction: the representative of a state's orbit.
pub(crate) type Representative<M> = fn(&<M as Model>::State) -> <M as Model>::State;

/// What a report names, and how it prints a model's steps and rules.
pub(crate) struct Subject<'a, M: Model> {
    pub model_name: &'static str,
    pub config: &'static str,
    pub bug: Option<&'static str>,
    pub symmetry: Option<Representative<M>>,
    pub describe: &'a dyn Fn(&M::State, &M::Action) -> String,
    pub rules: fn(&str) -> &'static [&'static str],
    /// Breadth-first, so that a counterexample is a shortest one (else depth-first).
    pub breadth_first: bool,
}

/// Checks the quorum model exhaustively (DFS, symmetry reduction, no depth bound).
pub fn run_check(options: &CheckOptions) -> Report {
    let model = QuorumModel::new(options.config.clone(), options.bug);
    let describe = |state: &_, action: &_| model.describe(state, action);
    let subject = Subject {
        model_name: "quorum",
        config: options.config.name,
        bug: options.bug.map(|bug| bug.name()),
        symmetry: Some(if options.config.az_crashes {
            symmetry::representative_az_pairs
        } else {
            symmetry::representative_pg
        }),
        describe: &describe,
        rules: property_rules,
        breadth_first: false,
    };
    let search = SearchOptions {
        threads: options.threads,
        progress: options.progress,
        stop: options.stop.clone(),
        time_limit: options.time_limit,
    };
    search_model(&model, &search, subject)
}

/// Explores `model` with stateright's checker (DFS, or BFS for shortest counterexamples;
/// no depth bound) and reports each property's verdict.
pub(crate) fn search_model<M>(model: &M, options: &SearchOptions, subject: Subject<M>) -> Report
where
    M: Model + Clone + Send + Sync + 'static,
    M::State: Hash + Send + Sync + Clone + PartialEq + 'static,
    M::Action: Clone + PartialEq,
{
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
    if let Some(representative) = subject.symmetry {
        builder = builder.symmetry_fn(representative);
    }
    let builder = builder.threads(threads).finish_when(finish_when);
    if subject.breadth_first {
        report_search(builder.spawn_bfs(), model, options, subject, started)
    } else {
        report_search(builder.spawn_dfs(), model, options, subject, started)
    }
}

/// Waits for a running search (a progress bar meanwhile) and reports each property.
fn report_search<M, C>(
    checker: C,
    model: &M,
    options: &SearchOptions,
    subject: Subject<M>,
    started: Instant,
) -> Report
where
    M: Model,
    M::State: Clone + PartialEq,
    M::Action: Clone + PartialEq,
    C: Checker<M>,
{
    let threads = options.threads.max(1);
    let bar = progress_bar(options.progress);
    // Without a terminal the bar is hidden: print a plain line every 10 s instead.
    let plain = options.progress && !std::io::stderr().is_terminal();
    let mut last_line = Instant::now();
    while !checker.is_done() {
        let unique = checker.unique_state_count();
        let seconds = started.elapsed().as_secs_f64().max(0.001);
        let message = format!(
            "{unique} unique states, {} generated, depth {}, {:.0} states/s",
            checker.state_count(),
            checker.max_depth(),
            unique as f64 / seconds
        );
        if plain && last_line.elapsed() >= Duration::from_secs(10) {
            eprintln!("[{seconds:.0}s] {message}");
            last_line = Instant::now();
        }
        bar.set_message(message);
        bar.tick();
        std::thread::sleep(Duration::from_millis(200));
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
                            action.map(|action| (subject.describe)(&state, &action))
                        })
                        .collect(),
                ),
                _ => None,
            };
            Verdict {
                name: property.name,
                expectation: if always { "always" } else { "sometimes" },
                rules: (subject.rules)(property.name),
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
        model: subject.model_name,
        config: subject.config,
        bug: subject.bug,
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

/// Serves the stateright Explorer for the model; blocks while it serves.
pub fn serve_explorer(config: Config, bug: Option<Bug>, address: std::net::SocketAddr) {
    let model = QuorumModel::new(config, bug);
    let _checker = model.checker().serve(address);
}
