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
    /// Run a command as a pilot: the real command on the live host, contained.
    #[command(after_help = "The command sees live data, but:
  files    every writable filesystem is an overlay: writes, deletes, renames, chmods land in
           the run directory's upper/ layer, never in production
  network  TCP/UDP connects and sends go to pilot's sink (they succeed; nothing reaches the
           destination), Unix-socket connects are refused; --allow lets a destination through
  signals  reach only the pilot's own processes (it sees the host's, read-only, in /proc)

Examples:
  pilot run -- ./repair.sh --shard 7
  pilot run --out /tmp/r1 --timeout 5m -- java -jar rebalancer.jar --dry-run=false
  pilot diff /tmp/r1                  what it would have changed
  pilot graph /tmp/r1                 what it would have touched, by component

The run directory (default ./pilot-runs/<id>/) holds events.jsonl, graph.json, graph.dot,
changes.json, verdict.json, sink.json and upper/ (the overlay's upper layers).
Exit status: 0 the pilot ran and completed cleanly; 3 blocked by policy; 4 the pilot command
failed (nonzero exit, killed, timed out); 1 pilot itself failed; 2 bad usage or input.")]
    Run(RunArgs),
    /// Re-evaluate a recorded run against policies (without re-running it).
    #[command(after_help = "Examples:
  pilot check ./pilot-runs/1795306977-4242                      the built-in default policy
  pilot check --policy policies/hdfs.toml ./pilot-runs/1795306977-4242

Exit status: 0 pass or warn; 3 blocked; 2 bad input (policy syntax: file, line and key).")]
    Check(CheckArgs),
    /// Run a pilot's command live, traced, and measure how far it strays from the pilot.
    #[command(after_help = "Refuses a pilot whose verdict was block; --force overrides that and the journal
records it. Writes DIR/live/ (events, graph) and DIR/fidelity.json.

Exit status: 0 done; 3 refused (blocked pilot); 4 the live command failed; 2 bad input.")]
    Commit(CommitArgs),
    /// The tamper-evident journal of runs, verdicts and commits.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Show what a pilot changed (created, modified, deleted, renamed...), from its run directory.
    Diff(DiffArgs),
    /// Remove what pilots whose agent died left behind (their cgroups and any process in them).
    Gc,
    /// Internal: the sandbox's first process (started by `pilot run`).
    #[command(name = "__sandbox", hide = true)]
    Sandbox { spec: String },
    /// Internal: helpers for `cargo xtask bench` (`load floor`, `load agent`).
    #[command(name = "__bench", hide = true)]
    Bench { args: Vec<String> },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Policy file(s) to gate the run with.
    #[arg(long, value_name = "FILE")]
    pub policy: Vec<PathBuf>,
    /// Run directory (default ./pilot-runs/<id>/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Let connections to ADDR:PORT through for real (repeatable), e.g. a read-only replica.
    #[arg(long, value_name = "ADDR:PORT")]
    pub allow: Vec<String>,
    /// Kill the pilot after this long (90, 30s, 5m, 1h).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Print every event as it happens (on stderr).
    #[arg(short, long)]
    pub verbose: bool,
    /// Ring buffer size in KiB (power of two).
    #[arg(long, value_name = "KIB", default_value_t = 16384)]
    pub ringbuf_kib: u32,
    /// The command, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Policy file(s); none: the built-in default policy.
    #[arg(long, value_name = "FILE")]
    pub policy: Vec<PathBuf>,
    /// Print the evaluation as JSON.
    #[arg(long)]
    pub json: bool,
    /// Run directory holding graph.json.
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Run directory of the pilot to commit.
    pub dir: PathBuf,
    /// Commit although the pilot's verdict was block (recorded in the journal).
    #[arg(long)]
    pub force: bool,
    /// Print every event of the live run as it happens.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Subcommand, Debug)]
pub enum JournalCommand {
    /// Check every entry's hash and the chain; exit 1 naming the first bad entry.
    #[command(after_help = "The journal is /var/lib/pilot/journal.jsonl unless PILOT_JOURNAL says otherwise.")]
    Verify {
        /// Journal file (default: $PILOT_JOURNAL or /var/lib/pilot/journal.jsonl).
        path: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Run directory of a `pilot run`.
    pub dir: PathBuf,
    /// Print changes.json instead of the list.
    #[arg(long)]
    pub json: bool,
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
