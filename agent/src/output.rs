//! Where events go: `events.jsonl` streamed to disk (never held in memory), `-v` lines on
//! stderr, and `summary.json` at the end.
use std::{
    fs::{self, File},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::{error::UsageError, event::Event};

pub struct Output {
    dir: Option<PathBuf>,
    events: Option<BufWriter<File>>,
    verbose: bool,
}

impl Output {
    pub fn create(dir: Option<&Path>, verbose: bool) -> Result<Output> {
        let events = match dir {
            Some(dir) => {
                fs::create_dir_all(dir).map_err(|e| {
                    UsageError::new(format!("cannot create output directory {}: {e}", dir.display()))
                })?;
                let path = dir.join("events.jsonl");
                Some(BufWriter::with_capacity(
                    1 << 16,
                    File::create(&path).with_context(|| format!("creating {}", path.display()))?,
                ))
            }
            None => None,
        };
        Ok(Output { dir: dir.map(Path::to_path_buf), events, verbose })
    }

    pub fn event(&mut self, e: &Event) -> Result<()> {
        if let Some(w) = self.events.as_mut() {
            serde_json::to_writer(&mut *w, e)?;
            w.write_all(b"\n")?;
        }
        if self.verbose {
            eprintln!("{}", crate::account::line(e));
        }
        Ok(())
    }

    /// Write another file of the run directory (nothing without `--out`).
    pub fn write_file(&self, name: &str, text: &str) -> Result<()> {
        if let Some(dir) = &self.dir {
            let path = dir.join(name);
            fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// Flush events.jsonl and write summary.json.
    pub fn finish(&mut self, summary: &impl Serialize) -> Result<()> {
        if let Some(w) = self.events.as_mut() {
            w.flush()?;
        }
        if let Some(dir) = &self.dir {
            let path = dir.join("summary.json");
            let mut text = serde_json::to_string_pretty(summary)?;
            text.push('\n');
            fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}
