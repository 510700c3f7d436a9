//! Tracepoint field offsets, read from the running kernel's tracefs format files: layouts move
//! between kernels (6.18's sched_process_fork differs from 6.1's; sched_process_exit gained
//! `group_dead`), so nothing here is hard-coded.
use std::{fs, path::Path};

use anyhow::{Context, Result, bail};

use agent_common::NO_OFFSET;

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Make sure tracefs is mounted at its standard place (aya looks tracepoint ids up there).
/// systemd mounts it on most hosts; minimal images and CI containers may not.
pub fn ensure_mounted() -> Result<()> {
    if Path::new(TRACEFS).join("events").is_dir() || Path::new("/sys/kernel/debug/tracing/events").is_dir() {
        return Ok(());
    }
    let target = std::ffi::CString::new(TRACEFS)?;
    let fstype = std::ffi::CString::new("tracefs")?;
    let rc = unsafe {
        libc::mount(fstype.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null())
    };
    if rc != 0 {
        bail!(
            "tracefs is not mounted and mounting it at {TRACEFS} failed ({}): mount it with \
             `mount -t tracefs nodev {TRACEFS}`",
            std::io::Error::last_os_error()
        );
    }
    tracing::info!("mounted tracefs at {TRACEFS}");
    Ok(())
}

/// Offsets of the fields of one tracepoint's record.
pub struct Format {
    fields: Vec<(String, u16)>,
}

impl Format {
    pub fn read(category: &str, name: &str) -> Result<Format> {
        let base = if Path::new(TRACEFS).join("events").is_dir() { TRACEFS } else { "/sys/kernel/debug/tracing" };
        let path = format!("{base}/events/{category}/{name}/format");
        let text = fs::read_to_string(&path)
            .with_context(|| format!("reading {path}: the tracepoint {category}:{name} is missing (`sudo pilot doctor` says what this kernel lacks)"))?;
        Ok(Format::parse(&text))
    }

    pub fn parse(text: &str) -> Format {
        let fields = text.lines().filter_map(parse_field).collect();
        Format { fields }
    }

    /// Offset of `field`, or NO_OFFSET when this kernel's record has no such field.
    pub fn offset(&self, field: &str) -> u16 {
        self.fields.iter().find(|(n, _)| n == field).map(|(_, o)| *o).unwrap_or(NO_OFFSET)
    }

    pub fn require(&self, field: &str) -> Result<u16> {
        match self.offset(field) {
            NO_OFFSET => bail!("this kernel's tracepoint has no field `{field}`"),
            o => Ok(o),
        }
    }
}

/// `\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;` -> ("child_pid", 20)
fn parse_field(line: &str) -> Option<(String, u16)> {
    let line = line.trim();
    let decl = line.strip_prefix("field:")?.split(';').next()?;
    let name = decl.split_whitespace().last()?;
    let name = name.split('[').next()?.to_string();
    let offset = line.split("offset:").nth(1)?.split(';').next()?.trim().parse().ok()?;
    Some((name, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORK_618: &str = "name: sched_process_fork
ID: 300
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:char comm[16];\toffset:24;\tsize:16;\tsigned:0;
\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;
";

    #[test]
    fn parses_offsets_of_a_618_layout() {
        let f = Format::parse(FORK_618);
        assert_eq!(f.offset("parent_pid"), 12);
        assert_eq!(f.offset("child_pid"), 20);
        assert_eq!(f.offset("parent_comm"), 8);
        assert_eq!(f.offset("comm"), 24);
        assert_eq!(f.offset("group_dead"), NO_OFFSET);
        assert!(f.require("group_dead").is_err());
    }
}
