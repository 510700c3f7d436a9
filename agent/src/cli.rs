//! Command-line contract. Runbooks call these exact flags: change them only with care.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pilot",
    // `0.1.0 (git 34efba1, 2026-12-01)`: the commit it was built from (build.rs).
    version = env!("PILOT_VERSION"),
    about = "Dry-run a recovery action on a production host and see what it would touch",
    long_about = "pilot follows a process tree in the kernel (eBPF) and records every exec, fork, \
exit, file change, socket effect and signal it makes, with paths made absolute and the syscall's \
result, so a failed unlink is not reported as a deletion.",
    after_long_help = "Environment:
  PILOT_JOURNAL      the journal (default /var/lib/pilot/journal.jsonl)
  PILOT_SOCKET       the daemon's socket (default /run/pilot/pilot.sock)
  PILOT_NO_DAEMON=1  run and trace in-process even where a daemon serves them
  RUST_LOG           what is logged on stderr (default warn), e.g. RUST_LOG=pilot=debug

Files:
  ./pilot-runs/<id>/             run directories of `pilot run` (--out DIR puts one elsewhere)
  /etc/pilot/pilot.toml          the daemon's configuration (`pilot daemon --help`)
  /etc/pilot/policies/           the shipped policies, for --policy

Exit status (each command's --help says which it uses): 0 done or pass; 1 pilot itself failed;
2 bad usage or input; 3 blocked by policy; 4 the pilot's command failed; 5 this kernel cannot
contain a pilot (`pilot doctor`).

Completions for bash, zsh and fish, and a man page per command: `pilot generate --help`."
)]
pub struct Cli {
    /// Log lines on stderr as text or as JSON objects (one per line); RUST_LOG picks the level
    /// (default warn), e.g. RUST_LOG=debug or RUST_LOG=pilot=debug.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
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
  network  TCP/UDP connects and sends go to pilot's sink (they succeed), and so do Unix
           connects to live listeners; the sink speaks DNS, Redis, PostgreSQL and HTTP/1.1:
           reads (a lookup, GET, SELECT) go through to the live server and its answer comes
           back, mutations (SET, DROP TABLE, POST, SHUTDOWN) are captured, answered as the
           server would, and judged by the policy; other bytes are recorded and unanswered.
           --allow ADDR:PORT lets a destination through untouched (recorded by the trace);
           --rpc off turns the protocol sessions off; --rpc ADDR:PORT=PROTO names a protocol
  signals  reach only the pilot's own processes (it sees the host's, read-only, in /proc)

Examples:
  pilot run -- ./repair.sh --shard 7
  pilot run --out /tmp/r1 --timeout 5m -- java -jar rebalancer.jar --dry-run=false
  pilot diff /tmp/r1                  what it would have changed
  pilot graph /tmp/r1                 what it would have touched, by component

The run directory (default ./pilot-runs/<id>/) holds events.jsonl, graph.json, graph.dot,
changes.json, verdict.json, sink.json and upper/ (the overlay's upper layers).
Exit status: 0 the pilot ran and completed cleanly; 3 blocked by policy; 4 the pilot command
failed (nonzero exit, killed, timed out); 1 pilot itself failed; 2 bad usage or input;
5 this kernel cannot contain a pilot (`pilot doctor` says what is missing).")]
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
    /// Write one self-contained HTML page of a run: verdict, intent, effect graph, changes.
    #[command(after_help = "Examples:
  pilot report ./pilot-runs/1795306977-4242            writes ./pilot-runs/1795306977-4242/report.html
  pilot report ./pilot-runs/1795306977-4242 --html /tmp/INC-1234.html
                                                      one file to attach to a ticket

The page needs no network: open it from anywhere. `pilot run` writes report.html into every
run directory, and `pilot commit` rewrites it with the live run beside the pilot.
The graph is laid out by Graphviz `dot` when installed, else by a built-in layout.
Exit status: 0 written; 2 DIR is not a run directory, or FILE cannot be written.")]
    Report(ReportArgs),
    /// Join the effect graphs of several hosts into one: connects that reached another host's
    /// listening component become edges to it.
    #[command(after_help = "Examples:
  pilot merge web1/graph.json db1/graph.json --out /tmp/fleet
  pilot merge ./runs/web1 ./runs/db1 --out /tmp/fleet     run directories work too
  pilot graph /tmp/fleet                                  the merged graph, by component

Each input is the graph.json of `pilot run` or `pilot trace --out` on one host; a connect or
send to an address another host's snapshot shows a component listening on (its own address,
or a wildcard listener on one of its interface addresses) becomes an edge to that component.
Writes DIR/graph.json (schema pilot.effect-graph/v2: v1 plus `hosts` and a `host` on every
node, edge and component) and DIR/graph.dot.

Exit status: 0 merged; 2 bad input (a missing or unreadable graph).")]
    Merge(MergeArgs),
    /// The per-host agent: serves `pilot run`, `pilot trace` and `pilot status` over a Unix
    /// socket, and Prometheus metrics.
    #[command(after_help = "Examples:
  pilot daemon                                  defaults: /run/pilot/pilot.sock, metrics on 127.0.0.1:9464
  pilot daemon --config /etc/pilot/pilot.toml
  pilot daemon --check-config --config /etc/pilot/pilot.toml
  systemctl start pilot                         the packaged unit runs `pilot daemon`
  curl -s 127.0.0.1:9464/metrics

While it runs, `pilot run` and `pilot trace` of the same pilot binary go through it (PILOT_SOCKET
names another socket; PILOT_NO_DAEMON=1 runs in-process). A client that goes away does not stop
its run unless on_client_disconnect = \"kill\"; `pilot status` shows it. Every run is stopped
after max_run (default 1h), and stopping the daemon stops its runs first.

Config (TOML, every key optional; an unknown key is an error):
  socket = \"/run/pilot/pilot.sock\"       metrics_listen = \"127.0.0.1:9464\"   (\"\" = off)
  max_run = \"1h\"                          on_client_disconnect = \"continue\"   (or \"kill\")
  state_dir = \"/var/lib/pilot/daemon\"     (each run's output, <id>.log)

Exit status: 0 stopped by SIGTERM/SIGINT; 2 bad config, socket in use, not root.")]
    Daemon(DaemonArgs),
    /// What the daemon runs and ran: pid, outcome, run directory, whether the client is there.
    #[command(after_help = "Examples:
  pilot status
  pilot status --json | jq '.runs[] | select(.exit_code == null)'

Exit status: 0; 2 no daemon answers (start one with `pilot daemon` or `systemctl start pilot`).")]
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Probe this kernel's features and say what `pilot run` and `pilot trace` can guarantee.
    #[command(after_help = "Every feature is probed for real (a program loaded, a hook attached, namespaces
unshared in a child), not guessed from the kernel version.

Examples:
  sudo pilot doctor                  the table: feature, present, needed by, used for / if missing
  sudo pilot doctor --json | jq '.features[] | select(.present | not) | .name'

Exit status: 0 `pilot run` can contain a pilot here; 5 it cannot (`pilot run` refuses with the
same status), `pilot trace` works; 6 neither works; 2 not root.")]
    Doctor {
        /// Print the report as JSON (schema pilot.doctor/v1).
        #[arg(long)]
        json: bool,
    },
    /// Write shell completions or man pages, made from these very definitions.
    #[command(after_help = "Examples:
  pilot generate bash > /etc/bash_completion.d/pilot     completions for bash (zsh, fish alike)
  pilot generate zsh --dir ~/.zfunc                      writes ~/.zfunc/_pilot
  pilot generate man --dir /usr/local/share/man/man1     pilot.1 and a page per subcommand
                                                         (pilot-run.1, pilot-journal-verify.1...)
  pilot generate man | man -l -                          read pilot(1) without installing it

Without --dir the completion script, or the pilot(1) page, goes to stdout; with --dir each file
is written there under the name its shell or man looks for (pilot.bash, _pilot, pilot.fish) and
named on stdout. The Debian package installs all of them.
Exit status: 0 written; 2 DIR cannot be written.")]
    Generate(GenerateArgs),
    /// Internal: the sandbox's first process (started by `pilot run`).
    #[command(name = "__sandbox", hide = true)]
    Sandbox { spec: String },
    /// Internal: helpers for `cargo xtask bench` (`load floor`, `load agent`).
    #[command(name = "__bench", hide = true)]
    Bench { args: Vec<String> },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Policy file(s) to gate the run with, repeatable; `default` names the built-in policy
    /// (`--policy default --policy site.toml` layers a file over it); none: the built-in one.
    #[arg(long, value_name = "FILE")]
    pub policy: Vec<PathBuf>,
    /// Run directory (default ./pilot-runs/<id>/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Let connections to ADDR:PORT through for real (repeatable), e.g. a read-only replica.
    #[arg(long, value_name = "ADDR:PORT")]
    pub allow: Vec<String>,
    /// Protocol sessions of the sink (repeatable): `off` records and answers nothing, as
    /// before; `ADDR:PORT=PROTO` names the protocol of a destination where sniffing cannot
    /// tell (dns, redis, postgresql, http).
    #[arg(long, value_name = "off|ADDR:PORT=PROTO")]
    pub rpc: Vec<String>,
    /// Kill the pilot after this long (90, 30s, 5m, 1h).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Print every event as it happens (on stderr).
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub events: EventArgs,
    /// The command, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Policy file(s), repeatable; `default` names the built-in policy (to layer a file over
    /// it: `--policy default --policy site.toml`); none: the built-in default policy.
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
pub struct ReportArgs {
    /// Run directory of a `pilot run` (or `pilot trace --out`).
    pub dir: PathBuf,
    /// Where to write the page (default DIR/report.html).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
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

    #[command(flatten)]
    pub events: EventArgs,

    /// The command to start and trace, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// How events travel, for `run` and `trace` alike.
#[derive(Args, Debug)]
pub struct EventArgs {
    /// Ring buffer size in KiB (power of two). Bigger absorbs longer bursts.
    #[arg(long, value_name = "KIB", default_value_t = DEFAULT_RINGBUF_KIB)]
    pub ringbuf_kib: u32,

    /// Also stream every event (the lines of events.jsonl) to a file for a log shipper:
    /// `jsonl:PATH` (appended to, created if missing; a FIFO works too).
    #[arg(long, value_name = "jsonl:PATH", value_parser = parse_export)]
    pub export: Option<PathBuf>,
}

pub const DEFAULT_RINGBUF_KIB: u32 = 16384;

impl Default for EventArgs {
    fn default() -> EventArgs {
        EventArgs { ringbuf_kib: DEFAULT_RINGBUF_KIB, export: None }
    }
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// graph.json files (or run directories holding one), one per host.
    #[arg(value_name = "GRAPH", required = true, num_args = 1..)]
    pub graphs: Vec<PathBuf>,
    /// Directory to write the merged graph.json and graph.dot into (created).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `--export jsonl:PATH`: the only format so far.
fn parse_export(s: &str) -> Result<PathBuf, String> {
    match s.strip_prefix("jsonl:") {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err(format!("give jsonl:PATH, e.g. --export jsonl:/var/log/pilot/events.jsonl (got {s:?})")),
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// man: the manual pages; bash, zsh, fish: the completion script for that shell.
    #[arg(value_enum)]
    pub what: Generated,
    /// Write the files into DIR (created) instead of stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Generated {
    Man,
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Configuration file (default /etc/pilot/pilot.toml, if it exists; else the defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only check the configuration: exit 0 if it is valid, 2 (saying what is wrong) if not.
    #[arg(long)]
    pub check_config: bool,
}
