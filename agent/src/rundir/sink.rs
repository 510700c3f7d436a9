//! sink.json: what the network sink caught of the pilot's traffic.
use serde::{Deserialize, Serialize};

/// Everything the sink caught, one entry per connection or datagram source.
pub type SinkLog = Vec<Caught>;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Caught {
    pub proto: String,
    /// The pilot's side of the connection (or the datagrams' source).
    pub from: String,
    pub bytes: u64,
    /// Connections, or datagrams for UDP.
    pub count: u64,
    pub first_unix_ms: u128,
    /// The first bytes, printable ASCII kept, the rest as \xNN.
    pub head: String,
}
