//! Path globs for policies, on globset: `*` and `?` match within one path component, `**`
//! across components (`literal_separator`), as policies have always read.
use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).backslash_escape(true).build()
}

pub fn matcher(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    Ok(glob(pattern)?.compile_matcher())
}

pub fn set(patterns: &[String]) -> Result<GlobSet, globset::Error> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(glob(p)?);
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::matcher;

    fn matches(p: &str, s: &str) -> bool {
        matcher(p).unwrap().is_match(s)
    }

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
        assert!(matches("*batch_worker*", "python3 batch_worker.py"));
    }
}
