//! Command-line contract. Runbooks call these exact flags: change them only with care.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pilot",
    version,
    about = "Dry-run a recovery action on a production host and see what it would touch",
    long_about = "pilot follows a process tree in the kernel (eBPF) and records every exec, fork, \
exit, file change, socket effect and signal it makes, with paths made absolute and the syscall's \
result, so a failed unlink is not reported as a deletion."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Trace a command, a running process or a cgroup, and print what it did.
    #[command(after_help = "Examples:
  pilot trace -- ./repair.sh --shard 7        trace a script and everything it starts
  pilot trace --out /tmp/t1 -- hdfs dfsadmin -report
                                              also write /tmp/t1/events.jsonl and summary.json
  pilot trace -v --pid 4242                   follow a running process until it exits or ^C
  pilot trace --cgroup /sys/fs/cgroup/unified/system.slice/kafka.service

With a command, pilot exits with the command's exit status (128+N if killed by signal N).
Exit status 2: bad input (missing pid, unknown cgroup, not root, kernel without BTF);
1: pilot itself failed.")]
    Trace(TraceArgs),
    /// Show the effect graph of a recorded run (a directory written by `--out`).
    #[command(after_help = "Examples:
  pilot graph /tmp/t1                 what the action touched, by component, destructive first
  pilot graph /tmp/t1 --format dot | dot -Tsvg > t1.svg
  pilot graph /tmp/t1 --format json | jq '.edges[] | select(.cross_component)'")]
    Graph(GraphArgs),
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    /// Run directory holding graph.json.
    pub dir: PathBuf,
    /// text: a tree for the terminal; dot: Graphviz; json: the graph.json schema.
    #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
    pub format: GraphFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum GraphFormat {
    Text,
    Dot,
    Json,
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Write events.jsonl (one JSON object per event), summary.json, graph.json and graph.dot
    /// into DIR (created).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Print every event as it happens (on stderr).
    #[arg(short, long)]
    pub verbose: bool,

    /// Follow this running process (and the children it has and makes) until it exits or ^C.
    #[arg(long, value_name = "PID", conflicts_with_all = ["cgroup", "command"])]
    pub pid: Option<i64>,

    /// Follow every process in this cgroup v2 directory (and its sub-cgroups) until it is
    /// empty or ^C.
    #[arg(long, value_name = "PATH", conflicts_with = "command")]
    pub cgroup: Option<PathBuf>,

    /// Ring buffer size in KiB (power of two). Bigger absorbs longer bursts.
    #[arg(long, value_name = "KIB", default_value_t = 16384)]
    pub ringbuf_kib: u32,

    /// The command to start and trace, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}
