//! sixfold-conformance: the deterministic simulator, protocol traces and their validation,
//! and language-neutral vectors other implementations can run, with the runner that holds
//! any target program against them.

pub mod refine;
pub mod runner;
pub mod sim;
pub mod trace;
pub mod validate;
pub mod vectors;
