//! The graph's typed vocabulary: node kinds, edge kinds (effects) and node ids. Each serializes
//! as the string graph.json has always held (a contract), so the JSON is unchanged.
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a node is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    #[default]
    Process,
    File,
    Endpoint,
    ProcessGroup,
    Component,
    Filesystem,
    /// A host-wide setting (a sysctl, the clock, an interface, the mount table...).
    Host,
}

impl NodeKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            NodeKind::Process => "process",
            NodeKind::File => "file",
            NodeKind::Endpoint => "endpoint",
            NodeKind::ProcessGroup => "process_group",
            NodeKind::Component => "component",
            NodeKind::Filesystem => "filesystem",
            NodeKind::Host => "host",
        }
    }

    fn parse(s: &str) -> Option<NodeKind> {
        NodeKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    const ALL: [NodeKind; 7] = [
        NodeKind::Process,
        NodeKind::File,
        NodeKind::Endpoint,
        NodeKind::ProcessGroup,
        NodeKind::Component,
        NodeKind::Filesystem,
        NodeKind::Host,
    ];
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An effect, as an edge kind. Declared in the order an SRE reads them, destructive first:
/// `Ord` is that order (the text view and the report sort by it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeKind {
    Unlink,
    Rmdir,
    Rename,
    Truncate,
    Fill,
    Write,
    Signal,
    // Issue 16: changes to the host and to live processes, worst first.
    Netconf,
    Sysctl,
    Sysfs,
    Clock,
    Mount,
    Module,
    Swap,
    Cgroup,
    Setrlimit,
    Setpriority,
    Setaffinity,
    Chmod,
    Chown,
    Xattr,
    /// A file's times set (utimensat...): no data changed, but backups, `make` and rotation
    /// by age read them (issue 15).
    Utime,
    Link,
    Symlink,
    Create,
    Mkdir,
    /// A request the sink's protocol sessions understood (forwarded read, captured mutation...).
    Rpc,
    Send,
    Connect,
    Bind,
    Listen,
    Exec,
    #[default]
    Spawn,
}

impl EdgeKind {
    /// Every kind, in severity order.
    pub const ALL: [EdgeKind; 33] = [
        EdgeKind::Unlink,
        EdgeKind::Rmdir,
        EdgeKind::Rename,
        EdgeKind::Truncate,
        EdgeKind::Fill,
        EdgeKind::Write,
        EdgeKind::Signal,
        EdgeKind::Netconf,
        EdgeKind::Sysctl,
        EdgeKind::Sysfs,
        EdgeKind::Clock,
        EdgeKind::Mount,
        EdgeKind::Module,
        EdgeKind::Swap,
        EdgeKind::Cgroup,
        EdgeKind::Setrlimit,
        EdgeKind::Setpriority,
        EdgeKind::Setaffinity,
        EdgeKind::Chmod,
        EdgeKind::Chown,
        EdgeKind::Xattr,
        EdgeKind::Utime,
        EdgeKind::Link,
        EdgeKind::Symlink,
        EdgeKind::Create,
        EdgeKind::Mkdir,
        EdgeKind::Rpc,
        EdgeKind::Send,
        EdgeKind::Connect,
        EdgeKind::Bind,
        EdgeKind::Listen,
        EdgeKind::Exec,
        EdgeKind::Spawn,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Unlink => "unlink",
            EdgeKind::Rmdir => "rmdir",
            EdgeKind::Rename => "rename",
            EdgeKind::Truncate => "truncate",
            EdgeKind::Fill => "fill",
            EdgeKind::Write => "write",
            EdgeKind::Signal => "signal",
            EdgeKind::Netconf => "netconf",
            EdgeKind::Sysctl => "sysctl",
            EdgeKind::Sysfs => "sysfs",
            EdgeKind::Clock => "clock",
            EdgeKind::Mount => "mount",
            EdgeKind::Module => "module",
            EdgeKind::Swap => "swap",
            EdgeKind::Cgroup => "cgroup",
            EdgeKind::Setrlimit => "setrlimit",
            EdgeKind::Setpriority => "setpriority",
            EdgeKind::Setaffinity => "setaffinity",
            EdgeKind::Chmod => "chmod",
            EdgeKind::Chown => "chown",
            EdgeKind::Xattr => "xattr",
            EdgeKind::Utime => "utime",
            EdgeKind::Link => "link",
            EdgeKind::Symlink => "symlink",
            EdgeKind::Create => "create",
            EdgeKind::Mkdir => "mkdir",
            EdgeKind::Rpc => "rpc",
            EdgeKind::Send => "send",
            EdgeKind::Connect => "connect",
            EdgeKind::Bind => "bind",
            EdgeKind::Listen => "listen",
            EdgeKind::Exec => "exec",
            EdgeKind::Spawn => "spawn",
        }
    }

    pub fn parse(s: &str) -> Option<EdgeKind> {
        EdgeKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Changes data or a process: marked `!` in the text view and drawn as harm in the report.
    pub fn is_destructive(self) -> bool {
        self <= EdgeKind::Xattr
    }

    /// Issue 16: a change to the host (a `host` node) or to live processes.
    pub fn is_host_change(self) -> bool {
        (EdgeKind::Netconf..=EdgeKind::Setaffinity).contains(&self)
    }

    /// Effects on the network (a merge can move their target to another host's component).
    pub fn is_network(self) -> bool {
        matches!(self, EdgeKind::Connect | EdgeKind::Send)
    }
}

impl fmt::Display for EdgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A node's id: `KIND:KEY` (`process:PID:START_NS`, `file:/abs/path`,
/// `endpoint:FAMILY:LABEL`, `process_group:...`, `component:NAME`, `filesystem:MOUNT`), with a
/// `HOST/` prefix in merged graphs. Serialized as that string.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Merged graphs: the host the node is on.
    pub host: Option<String>,
    pub kind: NodeKind,
    /// What follows `KIND:`.
    pub key: String,
}

impl NodeId {
    pub fn new(kind: NodeKind, key: impl Into<String>) -> NodeId {
        NodeId { host: None, kind, key: key.into() }
    }

    /// A process is (pid, start time), never a bare pid.
    pub fn process(pid: u32, start_ns: u64) -> NodeId {
        NodeId::new(NodeKind::Process, format!("{pid}:{start_ns}"))
    }

    pub fn file(path: &str) -> NodeId {
        NodeId::new(NodeKind::File, path)
    }

    pub fn component(name: &str) -> NodeId {
        NodeId::new(NodeKind::Component, name)
    }

    pub fn filesystem(mount: &str) -> NodeId {
        NodeId::new(NodeKind::Filesystem, mount)
    }

    /// The same node, on `host` (merged graphs).
    pub fn on(&self, host: &str) -> NodeId {
        NodeId { host: Some(host.to_string()), ..self.clone() }
    }

    /// `process_group:own:PID`: the pilot's own process group.
    pub fn is_own_process_group(&self) -> bool {
        self.kind == NodeKind::ProcessGroup && self.key.starts_with("own:")
    }

    pub fn parse(s: &str) -> Option<NodeId> {
        // A host name has no ':'; every kind is followed by one.
        let (host, rest) = match s.split_once('/') {
            Some((h, rest)) if !h.contains(':') && !h.is_empty() => (Some(h.to_string()), rest),
            _ => (None, s),
        };
        let (kind, key) = rest.split_once(':')?;
        Some(NodeId { host, kind: NodeKind::parse(kind)?, key: key.to_string() })
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = &self.host {
            write!(f, "{h}/")?;
        }
        write!(f, "{}:{}", self.kind.as_str(), self.key)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        let s = String::deserialize(d)?;
        NodeId::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a node id (KIND:KEY)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_round_trip_as_strings() {
        for s in ["process:12:345", "file:/a:b/c", "endpoint:inet:127.0.0.1:80", "a/file:/x", "web1/component:db", "process_group:own:7"] {
            let id = NodeId::parse(s).unwrap();
            assert_eq!(id.to_string(), s);
            assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(NodeId::parse("a/file:/x").unwrap().host.as_deref(), Some("a"));
        assert!(NodeId::parse("file:/x").unwrap().host.is_none());
        assert!(NodeId::parse("nonsense").is_none());
    }

    #[test]
    fn kinds_serialize_as_before() {
        assert_eq!(serde_json::to_string(&NodeKind::ProcessGroup).unwrap(), "\"process_group\"");
        for k in EdgeKind::ALL {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
            assert_eq!(EdgeKind::parse(k.as_str()), Some(k));
        }
        assert!(EdgeKind::Xattr.is_destructive() && !EdgeKind::Link.is_destructive());
    }
}

// Unit tests build graphs from the strings graph.json holds.
#[cfg(test)]
mod from_str_for_tests {
    use super::*;
    use crate::snapshot::Hold;

    impl From<&str> for NodeId {
        fn from(s: &str) -> NodeId {
            NodeId::parse(s).unwrap_or_else(|| panic!("`{s}` is not a node id"))
        }
    }
    impl From<String> for NodeId {
        fn from(s: String) -> NodeId {
            NodeId::from(s.as_str())
        }
    }
    impl From<&NodeId> for NodeId {
        fn from(id: &NodeId) -> NodeId {
            id.clone()
        }
    }
    impl From<&str> for NodeKind {
        fn from(s: &str) -> NodeKind {
            NodeKind::parse(s).unwrap_or_else(|| panic!("`{s}` is not a node kind"))
        }
    }
    impl From<&str> for EdgeKind {
        fn from(s: &str) -> EdgeKind {
            EdgeKind::parse(s).unwrap_or_else(|| panic!("`{s}` is not an edge kind"))
        }
    }
    impl From<&str> for Hold {
        fn from(s: &str) -> Hold {
            serde_json::from_value(serde_json::Value::String(s.into())).unwrap_or_else(|_| panic!("`{s}` is not a hold"))
        }
    }
}
