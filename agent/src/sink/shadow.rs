//! The shadow layer: within one run, what the pilot's captured mutations would have made of
//! key-value resources, so that later reads see the pilot's own writes (PILOT's ZooKeeper
//! wrapper keeps a shadow subtree the same way). One space per server and protocol
//! (`Session::space`); keys are bytes (Redis keys, etcd keys, znode paths). Used by the Redis
//! module for string keys; the etcd and ZooKeeper modules use the same calls (a prefix delete
//! is etcd's ranged DeleteRange, ZooKeeper's deleteall, Redis's FLUSHDB).
use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

/// What the shadow knows of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Untouched by the pilot: ask the live server.
    Live,
    /// The pilot wrote this value.
    Value(Vec<u8>),
    /// The pilot deleted it (or a prefix, or the whole space, holding it).
    Deleted,
    /// The pilot changed it in a way the shadow does not model (a hash field, a list push):
    /// answer from live, but say the answer may differ.
    Changed,
}

#[derive(Default)]
struct Space {
    keys: BTreeMap<Vec<u8>, Lookup>,
    /// Prefixes deleted as a whole (empty: everything), in order.
    deleted_prefixes: Vec<Vec<u8>>,
}

#[derive(Default)]
pub struct Shadow {
    spaces: Mutex<HashMap<String, Space>>,
}

impl Shadow {
    pub fn put(&self, space: &str, key: &[u8], value: Vec<u8>) {
        self.with(space, |s| {
            s.keys.insert(key.to_vec(), Lookup::Value(value));
        });
    }

    pub fn delete(&self, space: &str, key: &[u8]) {
        self.with(space, |s| {
            s.keys.insert(key.to_vec(), Lookup::Deleted);
        });
    }

    /// A change the shadow does not model: reads of `key` go live and may differ.
    pub fn touch(&self, space: &str, key: &[u8]) {
        self.with(space, |s| {
            let e = s.keys.entry(key.to_vec()).or_insert(Lookup::Changed);
            if *e == Lookup::Live {
                *e = Lookup::Changed;
            }
        });
    }

    /// Delete every key under `prefix` (empty: the whole space).
    pub fn delete_prefix(&self, space: &str, prefix: &[u8]) {
        self.with(space, |s| {
            s.keys.retain(|k, _| !k.starts_with(prefix));
            s.deleted_prefixes.push(prefix.to_vec());
        });
    }

    pub fn get(&self, space: &str, key: &[u8]) -> Lookup {
        let spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = spaces.get(space) else { return Lookup::Live };
        if let Some(l) = s.keys.get(key) {
            return l.clone();
        }
        if s.deleted_prefixes.iter().any(|p| key.starts_with(p)) {
            return Lookup::Deleted;
        }
        Lookup::Live
    }

    /// Did the pilot change anything in this space (a range read may then differ)?
    pub fn any(&self, space: &str) -> bool {
        self.spaces.lock().unwrap_or_else(|e| e.into_inner()).get(space).is_some_and(|s| !s.keys.is_empty() || !s.deleted_prefixes.is_empty())
    }

    /// Keys the pilot wrote under `prefix` (for range reads merged with live answers).
    pub fn written_under(&self, space: &str, prefix: &[u8]) -> Vec<(Vec<u8>, Lookup)> {
        let spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = spaces.get(space) else { return Vec::new() };
        s.keys.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn with(&self, space: &str, f: impl FnOnce(&mut Space)) {
        let mut spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        f(spaces.entry(space.to_string()).or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_writes_deletes_and_prefix_deletes() {
        let s = Shadow::default();
        assert_eq!(s.get("r", b"a"), Lookup::Live);
        s.put("r", b"a", b"1".to_vec());
        assert_eq!(s.get("r", b"a"), Lookup::Value(b"1".to_vec()));
        assert_eq!(s.get("other", b"a"), Lookup::Live, "spaces are apart");
        s.delete_prefix("r", b"");
        assert_eq!(s.get("r", b"a"), Lookup::Deleted);
        s.put("r", b"a", b"2".to_vec());
        assert_eq!(s.get("r", b"a"), Lookup::Value(b"2".to_vec()), "a write after a flush");
        s.touch("r", b"h");
        assert_eq!(s.get("r", b"h"), Lookup::Changed);
        assert_eq!(s.written_under("r", b"").len(), 2);
    }
}
