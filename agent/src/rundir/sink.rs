//! sink.json: what the network sink caught of the pilot's traffic.
use serde::{Deserialize, Serialize};

/// Everything the sink caught, one entry per connection or datagram source.
pub type SinkLog = Vec<Caught>;

/// One entry of sink.json: a connection (TCP, Unix) or a datagram source (UDP). The first six
/// fields are the original contract; the rest were added with the protocol sessions.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Caught {
    /// tcp, udp or unix.
    pub proto: String,
    /// The pilot's side of the connection (or the datagrams' source).
    pub from: String,
    /// Bytes the pilot sent.
    pub bytes: u64,
    /// Connections, or datagrams for UDP.
    pub count: u64,
    pub first_unix_ms: u128,
    /// The first bytes, printable ASCII kept, the rest as \xNN.
    pub head: String,
    /// Where the pilot meant it to go: `127.0.0.1:6379`, `[::1]:53`, `unix:/run/redis.sock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The live component listening there (from the host snapshot), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The protocol the sink spoke: dns, redis, postgresql, http; opaque when none (tls: TLS
    /// it cannot see into).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The pilot's process that made the connection (pid, start time), when it was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ns: Option<u64>,
    /// Of `bytes`, those sent on to the destination (reads going through).
    #[serde(default)]
    pub bytes_forwarded: u64,
    /// Bytes the pilot got back: relayed from the destination or made up by the sink.
    #[serde(default)]
    pub bytes_answered: u64,
    /// Its requests, aggregated by operation and resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rpc: Vec<Rpc>,
}

/// Requests of one kind on one connection: the rpc effects of the graph.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Rpc {
    pub protocol: String,
    /// As the protocol names it: `GET`, `CONFIG SET`, `DROP TABLE`, `POST /v1/drain`, `A`.
    pub operation: String,
    /// What it names: key, table, URL path, DNS name; empty when none.
    pub resource: String,
    pub access: Access,
    /// For mutations: how bad, as the default policy's severities go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    pub disposition: Disposition,
    pub requests: u64,
    /// Request bytes, and reply bytes the pilot got.
    pub bytes: u64,
    pub reply_bytes: u64,
    /// A read of something the pilot changed earlier in the run, answered by the live server
    /// (no shadow for it): its answer may differ from what a live run would see.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub may_differ: bool,
    /// Why a read that looks like more is one (a temporary replication slot: dropped with its
    /// session), or what a captured request would have done live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub first_unix_ms: u128,
    #[serde(default)]
    pub last_unix_ms: u128,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Cannot change server state.
    Read,
    Mutation,
    /// The module could not tell: captured, never forwarded (fail closed).
    Unclassified,
    /// Bytes in a protocol the sink does not speak (or TLS): blackholed.
    Opaque,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Creates or changes data (SET, INSERT, PUT).
    Write,
    /// Destroys data (DEL, FLUSHALL, DROP, TRUNCATE, DELETE).
    Delete,
    /// Changes the server itself: shutdown, configuration, replication, membership.
    Admin,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    /// Sent to the original destination; its answer relayed.
    Forwarded,
    /// Not sent; answered by the sink.
    Captured,
    /// A read answered from the pilot's own earlier writes (the shadow layer).
    Shadowed,
    /// Read and recorded, never answered (a protocol the sink does not speak, `--rpc off`).
    Blackholed,
}

