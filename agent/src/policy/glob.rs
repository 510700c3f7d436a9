//! Path globs for policies: `*` matches within one path component, `**` across components,
//! `?` one character.

pub fn matches(pattern: &str, path: &str) -> bool {
    match_bytes(pattern.as_bytes(), path.as_bytes())
}

fn match_bytes(p: &[u8], s: &[u8]) -> bool {
    if p.is_empty() {
        return s.is_empty();
    }
    if p.starts_with(b"**") {
        let rest = p[2..].strip_prefix(b"/").unwrap_or(&p[2..]);
        // `**` may match nothing (also swallowing its slash) or any run of characters.
        return (0..=s.len()).any(|i| match_bytes(rest, &s[i..]) || match_bytes(&p[2..], &s[i..]));
    }
    match p[0] {
        b'*' => (0..=s.len()).take_while(|&i| i == 0 || s[i - 1] != b'/').any(|i| match_bytes(&p[1..], &s[i..])),
        b'?' => !s.is_empty() && s[0] != b'/' && match_bytes(&p[1..], &s[1..]),
        c => !s.is_empty() && s[0] == c && match_bytes(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        assert!(matches("/var/lib/hdfs/**", "/var/lib/hdfs/data/current/blk_1"));
        assert!(matches("/var/lib/hdfs/**", "/var/lib/hdfs/x"));
        assert!(!matches("/var/lib/hdfs/**", "/var/lib/hdfs2/x"));
        assert!(matches("/etc/*.conf", "/etc/app.conf"));
        assert!(!matches("/etc/*.conf", "/etc/sub/app.conf"));
        assert!(matches("**/java", "/usr/lib/jvm/bin/java"));
        assert!(matches("/data/seg-??.log", "/data/seg-01.log"));
        assert!(matches("/srv/**/wal", "/srv/wal"));
    }
}
