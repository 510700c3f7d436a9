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
    /// Key ranges deleted as a whole, `[from, to)` (`to` None: no end), in order.
    deleted: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Revisions the pilot's captured writes made (etcd's revision, ZooKeeper's zxid).
    bumps: u64,
}

/// Is `k` in `[from, to)` (`to` None: no end)?
fn in_range(k: &[u8], from: &[u8], to: Option<&[u8]>) -> bool {
    k >= from && to.is_none_or(|t| k < t)
}

/// The first key after every key starting with `p` (None: no such key, the prefix covers the
/// rest of the keyspace), as etcd's `WithPrefix` computes a range end.
pub fn prefix_end(p: &[u8]) -> Option<Vec<u8>> {
    let mut end = p.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
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
        self.delete_range(space, prefix, prefix_end(prefix).as_deref());
    }

    /// Delete every key in `[from, to)` (`to` None: no end).
    pub fn delete_range(&self, space: &str, from: &[u8], to: Option<&[u8]>) {
        self.with(space, |s| {
            s.keys.retain(|k, _| !in_range(k, from, to));
            s.deleted.push((from.to_vec(), to.map(<[u8]>::to_vec)));
        });
    }

    /// One more revision made by the pilot in this space: how many so far, this one included.
    pub fn bump(&self, space: &str) -> u64 {
        let mut n = 0;
        self.with(space, |s| {
            s.bumps += 1;
            n = s.bumps;
        });
        n
    }

    /// Revisions the pilot made in this space.
    pub fn bumps(&self, space: &str) -> u64 {
        self.spaces.lock().unwrap_or_else(|e| e.into_inner()).get(space).map_or(0, |s| s.bumps)
    }

    /// Was anything in `[from, to)` deleted as part of a range?
    pub fn range_deleted(&self, space: &str, from: &[u8], to: Option<&[u8]>) -> bool {
        let spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = spaces.get(space) else { return false };
        // Two ranges overlap when each starts before the other ends.
        s.deleted.iter().any(|(f, t)| to.is_none_or(|to| f.as_slice() < to) && t.as_deref().is_none_or(|t| from < t))
    }

    /// What the shadow knows of each key in `[from, to)` it holds an entry for.
    pub fn written_in(&self, space: &str, from: &[u8], to: Option<&[u8]>) -> Vec<(Vec<u8>, Lookup)> {
        let spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = spaces.get(space) else { return Vec::new() };
        s.keys.range(from.to_vec()..).take_while(|(k, _)| to.is_none_or(|t| k.as_slice() < t)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn get(&self, space: &str, key: &[u8]) -> Lookup {
        let spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = spaces.get(space) else { return Lookup::Live };
        if let Some(l) = s.keys.get(key) {
            return l.clone();
        }
        if s.deleted.iter().any(|(f, t)| in_range(key, f, t.as_deref())) {
            return Lookup::Deleted;
        }
        Lookup::Live
    }

    /// Did the pilot change anything in this space (a range read may then differ)?
    pub fn any(&self, space: &str) -> bool {
        self.spaces.lock().unwrap_or_else(|e| e.into_inner()).get(space).is_some_and(|s| !s.keys.is_empty() || !s.deleted.is_empty())
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

    #[test]
    fn ranges_and_prefix_ends() {
        assert_eq!(prefix_end(b"/app/"), Some(b"/app0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b""), None);
        let s = Shadow::default();
        s.put("e", b"/app/x", b"1".to_vec());
        s.put("e", b"/b", b"2".to_vec());
        s.delete_prefix("e", b"/app/");
        assert_eq!(s.get("e", b"/app/x"), Lookup::Deleted);
        assert_eq!(s.get("e", b"/b"), Lookup::Value(b"2".to_vec()));
        assert!(s.range_deleted("e", b"/a", Some(b"/b")));
        assert!(!s.range_deleted("e", b"/b", None));
        s.delete_range("e", b"/b", None);
        assert_eq!(s.get("e", b"/zzz"), Lookup::Deleted);
        assert_eq!(s.written_in("e", b"", None), Vec::new());
        assert_eq!((s.bump("e"), s.bump("e"), s.bumps("e"), s.bumps("other")), (1, 2, 2, 0));
    }
}
