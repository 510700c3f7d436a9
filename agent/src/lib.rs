//! pilot as a library: everything the `pilot` binary does, in the order an event flows
//! through it (see README.md in this folder): probes (kernel) -> decode -> tracker -> graph
//! -> policy -> report. The binary (`main.rs`) only parses the command line and maps errors to
//! exit codes; tracker, graph, policy and diff are unit-testable here without root.
pub mod account;
pub mod alloc;
pub mod authorize;
pub mod bench;
pub mod cgroup;
pub mod channels;
#[cfg(test)]
mod build_version;
pub mod check;
pub mod cli;
pub mod commit;
pub mod daemon;
pub mod decision;
pub mod decode;
pub mod diff;
pub mod doctor;
pub mod drift;
pub mod error;
pub mod event;
pub mod fidelity;
pub mod generate;
pub mod filestate;
pub mod governance;
pub mod graph;
pub mod graph_cmd;
pub mod journal;
pub mod keys;
pub mod output;
pub mod policy;
pub mod probes;
pub mod procfs;
pub mod report;
pub mod rollback;
pub mod run;
pub mod rundir;
pub mod sandbox;
pub mod session;
pub mod sink;
pub mod snapshot;
pub mod trace;
pub mod tracker;
