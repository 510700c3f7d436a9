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
           connects to live listeners; the sink speaks DNS, Redis, PostgreSQL, HTTP/1.1,
           etcd v3 (gRPC) and ZooKeeper: reads (a lookup, GET, SELECT, etcdctl get) go through
           to the live server and its answer comes back, mutations (SET, DROP TABLE, POST,
           SHUTDOWN, etcdctl member remove, zkCli set) are captured, answered as the server
           would, and judged by the policy; other bytes are recorded and unanswered.
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
    #[command(after_help = "Before anything runs live, the commit must be bound to the pilot:
  - decision.json verifies (signed by this host's run key; intent, snapshot, events, graph,
    changes and verdict unchanged) and the policies are the same files, unexpired;
  - the gate's required_approvals are there (`pilot approve`), by listed approvers, not the run key;
  - the verdict was not block;
  - no drift: the targets the pilot changed or contacted are as they were, no new live process
    holds them, the policy gives the same verdict on the host as it is now, and the pilot is
    younger than the gate's max_age (default 1h);
  - the gate's rollback_readiness_required: nothing a rollback could not undo.
--force overrides the last three (never the decision or the approvals); the journal records it.
Then it saves pre-images (DIR/rollback/), runs the intent live, and writes DIR/live/ (events,
graph), DIR/drift.json, DIR/fidelity.json and the post-commit states for `pilot rollback`.

Examples:
  pilot commit ./pilot-runs/1795306977-4242
  pilot commit --force ./pilot-runs/1795306977-4242     over a block verdict or drift (journaled)

Exit status: 0 done; 3 refused (decision, approvals, verdict, drift, age, readiness);
4 the live command failed; 2 bad input (expired policy, bad gate).")]
    Commit(CommitArgs),
    /// Approve a pilot's decision with your key: what `required_approvals` counts.
    #[command(after_help = "Checks that the decision verifies (signature and every bound file), shows what is
approved, and writes DIR/approvals/<key fingerprint>.json (journaled). The approval is of this
exact decision: a changed verdict, graph, intent or policy, or another run, does not count.
The run key cannot approve: approval is apart from execution.

Examples:
  pilot key new ~/.pilot/alice                   once: ~/.pilot/alice and ~/.pilot/alice.pub
  pilot approve ./pilot-runs/1795306977-4242 --key ~/.pilot/alice --note \"INC-1234, checked the graph\"

Exit status: 0 approved; 3 refused (the decision does not verify, or the key is the run key);
2 bad input (no decision.json, unreadable key).")]
    Approve(ApproveArgs),
    /// Restore what a commit changed, from the pre-images it saved.
    #[command(after_help = "Restores every path of DIR/rollback/manifest.json that is in the state the commit
left: content, mode, owner, extended attributes, symlink targets, directories. A path that
is in neither the post-commit state nor its pre-image was changed since the commit: then
nothing is restored, and the paths are listed (--force restores over them). Journaled.
Not undone (listed at the end, and in the manifest): signals delivered, messages sent to live
services or other hosts, writes to kernel settings, changes the live run made that the pilot
did not show.

Examples:
  pilot rollback ./pilot-runs/1795306977-4242
  pilot rollback --force ./pilot-runs/1795306977-4242

Exit status: 0 restored (or nothing to do); 3 refused (changed since the commit, no pre-image,
manifest not signed by this host); 1 a restore failed; 2 not a committed run directory.")]
    Rollback(RollbackArgs),
    /// ed25519 keys: for approvers, policy signers and the host's run key.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Policy governance: signatures.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
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
    /// tell (dns, redis, postgresql, http, etcd, zookeeper).
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
    /// Commit although the pilot's verdict was block, production drifted, the pilot is older
    /// than max_age or a rollback could not undo it (each recorded in the journal).
    #[arg(long)]
    pub force: bool,
    /// Print every event of the live run as it happens.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Subcommand, Debug)]
pub enum JournalCommand {
    /// Check every entry's hash, signature and the chain; exit 1 naming the first bad entry.
    #[command(after_help = "The journal is /var/lib/pilot/journal.jsonl unless PILOT_JOURNAL says otherwise.
Entries are signed with the host's run key (/etc/pilot/run.key, or PILOT_RUN_KEY): an entry
edited and re-hashed, chain and head included, still fails its signature.

Examples:
  pilot journal verify
  pilot journal verify /backup/journal.jsonl --key /backup/old-run.key.pub

Exit status: 0 intact; 1 tampered (the first bad entry named); 2 no journal there.")]
    Verify {
        /// Journal file (default: $PILOT_JOURNAL or /var/lib/pilot/journal.jsonl).
        path: Option<PathBuf>,
        /// Another public key entries may be signed by (a former run key), repeatable.
        #[arg(long, value_name = "PUB")]
        key: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Write a new ed25519 secret key to FILE (mode 600) and its public key to FILE.pub.
    #[command(after_help = "Examples:
  pilot key new ~/.pilot/alice          an approver's key: give alice.pub to the policy's approvers
  pilot key new /etc/pilot/policy.key   a policy signer's key (policy_signers)

The host's run key (/etc/pilot/run.key, PILOT_RUN_KEY overrides) is made at the first pilot.
Exit status: 0 written; 2 FILE exists (never overwritten) or cannot be written.")]
    New {
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Sign a policy file: writes FILE.sig (checked whenever the policy is loaded).
    #[command(after_help = "A policy whose FILE.sig does not match it is refused. When the host's config
(policy_signers in /etc/pilot/pilot.toml) or a policy's [gate] policy_signers lists keys, every
policy in use must be signed by one of them: loosening max_risk then needs a signature.

Examples:
  pilot policy sign /etc/pilot/policies/site.toml --key /etc/pilot/policy.key

Exit status: 0 signed; 2 bad policy (file, line, key) or bad key.")]
    Sign {
        file: PathBuf,
        /// The signer's secret key (`pilot key new`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// Run directory of the pilot to approve.
    pub dir: PathBuf,
    /// Your secret key (`pilot key new FILE`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Why you approve (kept in the approval and the journal).
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// Run directory of a committed pilot.
    pub dir: PathBuf,
    /// Restore over paths changed since the commit (recorded in the journal).
    #[arg(long)]
    pub force: bool,
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
