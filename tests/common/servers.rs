//! Real servers from Debian's packages for tests/rpc.rs, each started once per test binary
//! on loopback with a port chosen at run time, in a scratch directory of its own, and stopped
//! by PID when the test binary exits (atexit): Redis (redis-server, with a Unix socket too),
//! PostgreSQL 15 (initdb into a temp dir, run as user postgres by setpriv, TCP and a socket dir), dnsmasq
//! (on a loopback address of its own, port 53, knowing one name nothing else knows) and a
//! small HTTP key-value API (tests/helpers/http_store.py).
#![allow(dead_code)]

use std::{
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Mutex, Once, OnceLock},
    time::{Duration, Instant},
};

static PIDS: Mutex<Vec<(i32, i32)>> = Mutex::new(Vec::new());
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn stop_all() {
    for (pid, sig) in PIDS.lock().map(|p| p.clone()).unwrap_or_default() {
        unsafe { libc::kill(pid, sig) };
    }
    std::thread::sleep(Duration::from_millis(300));
    for d in DIRS.lock().map(|d| d.clone()).unwrap_or_default() {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Stop `pid` with `sig` when the test binary exits.
pub fn stop_at_exit(pid: i32, sig: i32) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| unsafe {
        libc::atexit(stop_all);
    });
    PIDS.lock().unwrap().push((pid, sig));
}

/// A scratch directory every server user can reach, removed at exit.
pub fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(format!("/tmp/pilot-rpc-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    DIRS.lock().unwrap().push(d.clone());
    d
}

/// A loopback port no other server of this test binary was given, below the kernel's
/// ephemeral range (ip_local_port_range, 32768-60999 by default). A port from `bind(:0)` is
/// free only until it is closed: the outgoing connections of the other tests draw from the same
/// ephemeral range, and one of them took an etcd peer port in the gap before etcd bound it
/// (the member exited, "etcd cluster did not come up within 120 s").
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Each test binary starts at a place of its own (binaries run one after another, but a
    // server a crashed one left behind keeps its ports).
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(u32::MAX, (std::process::id() * 97) % SPAN, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}-{}", LOW + SPAN);
}

/// 120 s: a limit that only turns a hang into a failure (three ZooKeeper JVMs electing a
/// leader take over 30 s in a VM guest under TCG).
fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let _ = wait_until_or(what, || Ok(ok()));
}

/// `wait_until`, given up early when `ok` says why it never will be (Err).
fn wait_until_or(what: &str, mut ok: impl FnMut() -> Result<bool, String>) -> Result<(), String> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if ok()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not come up within 120 s");
}

pub fn require(bin: &str) {
    assert!(Path::new(bin).exists(), "{bin} is missing: `cargo xtask bootstrap` installs it (Debian packages)");
}

/// What each server's tests run, at Debian's paths (the VM image of `cargo xtask vm-test`
/// holds them: xtask/src/vm/servers.rs).
pub const REDIS: &[&str] = &["/usr/bin/redis-server", "/usr/bin/redis-cli"];
pub const POSTGRES: &[&str] = &["/usr/lib/postgresql/15/bin/initdb", "/usr/lib/postgresql/15/bin/postgres", "/usr/lib/postgresql/15/bin/psql"];
pub const PG_TOOLS: &[&str] = &["/usr/lib/postgresql/15/bin/pg_dump", "/usr/lib/postgresql/15/bin/pg_basebackup"];
pub const DNSMASQ: &[&str] = &["/usr/sbin/dnsmasq", "/usr/bin/getent", "/usr/bin/unshare"];
pub const HTTP: &[&str] = &["/usr/bin/python3", "/usr/bin/curl"];
pub const ETCD: &[&str] = &["/usr/bin/etcd", "/usr/bin/etcdctl"];
pub const ZOOKEEPER: &[&str] = &["/usr/bin/java", "/usr/share/java/zookeeper.jar", "/usr/share/zookeeper/bin/zkCli.sh"];

/// True when every one of `needs` is there. When one is absent (a VM image built on a host
/// without it) the test is skipped, never passed silently: it says so on stderr, past
/// libtest's capture, as `SKIP <test>: <why>` (one write, so that lines of parallel tests do
/// not interleave), which `cargo xtask vm-test` shows as skip with the reason.
pub fn present(needs: &[&[&str]]) -> bool {
    let missing: Vec<&str> = needs.iter().flat_map(|n| n.iter()).copied().filter(|b| !Path::new(b).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    let test = std::thread::current().name().unwrap_or("rpc").to_string();
    let line = format!("SKIP {test}: {} missing (Debian packages `cargo xtask bootstrap` installs)\n", missing.join(", "));
    use std::io::Write;
    let _ = std::io::stderr().write_all(line.as_bytes());
    false
}

pub struct Redis {
    pub port: u16,
    pub sock: PathBuf,
    pub pid: i32,
}

impl Redis {
    /// The binary's shared instance.
    pub fn shared() -> &'static Redis {
        static R: OnceLock<Redis> = OnceLock::new();
        R.get_or_init(|| Redis::start("redis"))
    }

    /// One of its own (for SHUTDOWN).
    pub fn start(name: &str) -> Redis {
        require("/usr/bin/redis-server");
        let dir = scratch(name);
        let port = free_port();
        let sock = dir.join("redis.sock");
        let child = Command::new("/usr/bin/redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--unixsocketperm", "777"])
            .arg("--unixsocket")
            .arg(&sock)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        let pid = child.id() as i32;
        stop_at_exit(pid, libc::SIGKILL);
        let r = Redis { port, sock, pid };
        wait_until("redis-server", || r.cli(&["PING"]).trim() == "PONG");
        r
    }

    /// redis-cli against it, without pilot.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn alive(&self) -> bool {
        self.cli(&["PING"]).trim() == "PONG"
    }
}

pub struct Postgres {
    pub port: u16,
    pub sockdir: PathBuf,
}

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// setpriv's arguments to run a program as user postgres (postgres refuses to run as root).
const AS_POSTGRES: &[&str] = &["--reuid=postgres", "--regid=postgres", "--clear-groups", "--"];

impl Postgres {
    pub fn shared() -> &'static Postgres {
        static P: OnceLock<Postgres> = OnceLock::new();
        P.get_or_init(Postgres::start)
    }

    fn start() -> Postgres {
        require(&format!("{PG_BIN}/postgres"));
        let dir = scratch("pg");
        let data = dir.join("data");
        // setpriv, not runuser: no PAM session, which the VM guest has no configuration for.
        let st = Command::new("setpriv")
            .args(AS_POSTGRES)
            .args([&format!("{PG_BIN}/initdb"), "-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .expect("initdb");
        assert!(st.success(), "initdb failed");
        let port = free_port();
        let child = Command::new("setpriv")
            .args(AS_POSTGRES)
            .args([&format!("{PG_BIN}/postgres"), "-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-k"])
            .arg(&dir)
            .arg("-D")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting postgres");
        stop_at_exit(child.id() as i32, libc::SIGTERM);
        let p = Postgres { port, sockdir: dir };
        wait_until("postgres", || p.sql("SELECT 1").trim() == "1");
        // The postmaster itself (setpriv execs it, but a wrapper may sit between): by its PID too.
        if let Some(pid) = std::fs::read_to_string(data.join("postmaster.pid")).ok().and_then(|t| t.lines().next()?.trim().parse().ok()) {
            stop_at_exit(pid, libc::SIGINT);
        }
        p
    }

    /// psql over TCP, without pilot: tuples only, unaligned.
    pub fn sql(&self, q: &str) -> String {
        let out = Command::new(format!("{PG_BIN}/psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-tAc", q])
            .output()
            .expect("psql");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

pub struct Dns {
    pub addr: Ipv4Addr,
    /// A resolv.conf naming it (bind-mounted over /etc/resolv.conf in a mount namespace).
    pub resolv: PathBuf,
    /// A name only it knows, and its address.
    pub name: String,
    pub answer: String,
}

impl Dns {
    pub fn shared() -> &'static Dns {
        static D: OnceLock<Dns> = OnceLock::new();
        D.get_or_init(Dns::start)
    }

    fn start() -> Dns {
        require("/usr/sbin/dnsmasq");
        let dir = scratch("dns");
        let p = std::process::id();
        let addr = Ipv4Addr::new(127, 53, (p >> 8) as u8, (p & 0xff).max(2) as u8);
        let name = format!("db-{p}.pilot-test.internal");
        let answer = "127.9.8.7".to_string();
        let child = Command::new("/usr/sbin/dnsmasq")
            .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces", "--port=53", "--log-facility=-"])
            .arg(format!("--listen-address={addr}"))
            .arg(format!("--address=/{name}/{answer}"))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dnsmasq");
        stop_at_exit(child.id() as i32, libc::SIGTERM);
        let resolv = dir.join("resolv.conf");
        std::fs::write(&resolv, format!("nameserver {addr}\noptions timeout:2 attempts:1\n")).unwrap();
        let d = Dns { addr, resolv, name, answer };
        wait_until("dnsmasq", || d.answers());
        d
    }

    /// Does it answer an A query for its name (a hand-made query: header, name, A, IN)?
    fn answers(&self) -> bool {
        let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in self.name.split('.') {
            q.push(label.len() as u8);
            q.extend(label.as_bytes());
        }
        q.extend([0, 0, 1, 0, 1]);
        let Ok(s) = std::net::UdpSocket::bind("127.0.0.1:0") else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
        let mut buf = [0u8; 512];
        s.send_to(&q, (self.addr, 53)).is_ok() && s.recv(&mut buf).is_ok_and(|n| n > 12 && buf[0] == 0x12)
    }
}

pub struct Http {
    pub port: u16,
}

impl Http {
    pub fn shared() -> &'static Http {
        static H: OnceLock<Http> = OnceLock::new();
        H.get_or_init(|| {
            let port = free_port();
            // The workspace root lexically (parent, not `..`): the VM image has no agent/ directory.
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("/")).join("tests/helpers/http_store.py");
            let mut child = Command::new("/usr/bin/python3").arg(&script).arg(port.to_string()).stdout(Stdio::piped()).spawn().expect("python3");
            stop_at_exit(child.id() as i32, libc::SIGKILL);
            let mut out = child.stdout.take().unwrap();
            let mut buf = [0u8; 6];
            use std::io::Read;
            let _ = out.read_exact(&mut buf);
            Http { port }
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// curl without pilot: (status, body).
    pub fn curl(&self, args: &[&str]) -> String {
        let out = Command::new("curl").args(["-s"]).args(args).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// An etcd cluster of `n` members (etcd-server 3.4), each on loopback ports of its own, data in
/// a scratch directory, stopped by PID at exit.
pub struct Etcd {
    /// Client URLs, one per member (`http://127.0.0.1:PORT`).
    pub clients: Vec<String>,
    pub client_ports: Vec<u16>,
    pub names: Vec<String>,
    pub pids: Vec<i32>,
}

impl Etcd {
    /// The binary's shared 3-member cluster.
    pub fn shared() -> &'static Etcd {
        static E: OnceLock<Etcd> = OnceLock::new();
        E.get_or_init(|| Etcd::start("etcd", 3, &[]))
    }

    /// A cluster of its own (membership changes in controls). A member that exits before the
    /// cluster is healthy (a port taken by someone else) restarts the whole cluster on new ports,
    /// three times at most.
    pub fn start(name: &str, n: usize, extra: &[&str]) -> Etcd {
        require("/usr/bin/etcd");
        for attempt in 1..=3 {
            match Etcd::try_start(name, n, extra) {
                Ok(e) => return e,
                Err(why) => eprintln!("etcd cluster {name}, attempt {attempt}: {why}"),
            }
        }
        panic!("etcd cluster {name} did not come up in three attempts (see the lines above)");
    }

    fn try_start(name: &str, n: usize, extra: &[&str]) -> Result<Etcd, String> {
        let dir = scratch(name);
        let peers: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let client_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let names: Vec<String> = (0..n).map(|i| format!("{name}-m{i}")).collect();
        let initial: Vec<String> = (0..n).map(|i| format!("{}=http://127.0.0.1:{}", names[i], peers[i])).collect();
        let mut children = Vec::new();
        for i in 0..n {
            let child = Command::new("/usr/bin/etcd")
                .arg("--name")
                .arg(&names[i])
                .arg("--data-dir")
                .arg(dir.join(&names[i]))
                .arg(format!("--listen-client-urls=http://127.0.0.1:{}", client_ports[i]))
                .arg(format!("--advertise-client-urls=http://127.0.0.1:{}", client_ports[i]))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{}", peers[i]))
                .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{}", peers[i]))
                .arg(format!("--initial-cluster={}", initial.join(",")))
                .arg(format!("--initial-cluster-token={name}-{}", std::process::id()))
                .args(["--initial-cluster-state=new", "--log-level=error"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting etcd");
            stop_at_exit(child.id() as i32, libc::SIGKILL);
            children.push(child);
        }
        let pids = children.iter().map(|c| c.id() as i32).collect();
        let e = Etcd { clients: client_ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect(), client_ports, names, pids };
        let exited = |children: &mut Vec<std::process::Child>| children.iter_mut().enumerate().find_map(|(i, c)| c.try_wait().ok().flatten().map(|s| (i, s)));
        let healthy = wait_until_or("etcd cluster", || match exited(&mut children) {
            Some((i, status)) => Err(format!("member {} exited ({status}) before the cluster was healthy", e.names[i])),
            None => Ok(e.ctl(&["endpoint", "health", "--cluster"]).matches("is healthy").count() == n),
        });
        if healthy.is_err() {
            for c in &mut children {
                let _ = c.kill();
                let _ = c.wait();
                // Reaped: its pid may be reused, and stop_all must not signal that process.
                PIDS.lock().unwrap().retain(|&(pid, _)| pid != c.id() as i32);
            }
        }
        healthy.map(|_| e)
    }

    /// Every member's client URL, comma-separated (etcdctl --endpoints).
    pub fn endpoints(&self) -> String {
        self.clients.join(",")
    }

    /// etcdctl (API 3) against the cluster, without pilot: stdout and stderr.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new("/usr/bin/etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints()))
            .args(["--dial-timeout=3s", "--command-timeout=5s"])
            .args(args)
            .output()
            .expect("etcdctl");
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    /// The id (hex) of member `i`, from `member list`.
    pub fn member_id(&self, i: usize) -> String {
        let list = self.ctl(&["member", "list"]);
        list.lines().find(|l| l.contains(&format!(", {},", self.names[i]))).and_then(|l| l.split(',').next()).unwrap_or("").trim().to_string()
    }

    /// Stop member `i` (SIGKILL, by PID).
    pub fn kill(&self, i: usize) {
        unsafe { libc::kill(self.pids[i], libc::SIGKILL) };
    }
}

/// The classpath Debian's zookeeper scripts use (zkEnv.sh).
pub const ZK_CLASSPATH: &str = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar";
/// JVM flags that start it faster and keep it out of /tmp/hsperfdata.
pub const ZK_JVM: &str = "-Xmx128m -XX:-UsePerfData -XX:TieredStopAtLevel=1";

/// A ZooKeeper ensemble of `n` servers (zookeeper 3.8), loopback ports chosen at run time, data
/// in a scratch directory, stopped by PID at exit.
pub struct ZooKeeper {
    pub ports: Vec<u16>,
    pub pids: Vec<i32>,
}

impl ZooKeeper {
    pub fn shared() -> &'static ZooKeeper {
        static Z: OnceLock<ZooKeeper> = OnceLock::new();
        Z.get_or_init(|| ZooKeeper::start("zk", 3))
    }

    pub fn start(name: &str, n: usize) -> ZooKeeper {
        require("/usr/share/java/zookeeper.jar");
        let dir = scratch(name);
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let quorum: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let servers: String = quorum.iter().enumerate().map(|(i, (q, e))| format!("server.{}=127.0.0.1:{q}:{e}\n", i + 1)).collect();
        let mut pids = Vec::new();
        for i in 0..n {
            let data = dir.join(format!("zk{}", i + 1));
            std::fs::create_dir_all(&data).unwrap();
            std::fs::write(data.join("myid"), format!("{}\n", i + 1)).unwrap();
            let cfg = dir.join(format!("zoo{}.cfg", i + 1));
            std::fs::write(
                &cfg,
                format!(
                    "tickTime=500\ninitLimit=20\nsyncLimit=10\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=*\n{servers}",
                    data.display(),
                    ports[i]
                ),
            )
            .unwrap();
            let child = Command::new("/usr/bin/java")
                .args(["-cp", ZK_CLASSPATH])
                .args(ZK_JVM.split(' '))
                .arg(format!("-Dzookeeper.log.dir={}", dir.display()))
                .arg("-Dzookeeper.root.logger=WARN,CONSOLE")
                .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting zookeeper");
            let pid = child.id() as i32;
            stop_at_exit(pid, libc::SIGKILL);
            pids.push(pid);
        }
        let z = ZooKeeper { ports, pids };
        wait_until("zookeeper ensemble", || (0..n).all(|i| z.word(i, "srvr").contains("Mode: ")));
        z
    }

    /// A four-letter word to server `i`.
    pub fn word(&self, i: usize, w: &str) -> String {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.ports[i])) else { return String::new() };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(w.as_bytes());
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// `-server` of server `i`.
    pub fn server(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    /// zkCli.sh against server `i`, without pilot: stdout.
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = Command::new("/usr/share/zookeeper/bin/zkCli.sh")
            .env("CLIENT_JVMFLAGS", ZK_JVM)
            .args(["-server", &self.server(i)])
            .args(args)
            .output()
            .expect("zkCli.sh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
