//! sixfold-conformance: language-neutral vectors other implementations can run, the
//! reference evaluator that produces their expected outputs from `sixfold-core`, and the
//! runner that holds any target program against them.

pub mod runner;
pub mod vectors;
