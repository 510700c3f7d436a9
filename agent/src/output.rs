//! Where events go: `events.jsonl` streamed to disk (never held in memory), `--export
//! jsonl:PATH` (the same lines, for a log shipper), `-v` lines on stderr, and `summary.json`
//! at the end.
use std::{
    fs::{self, File, OpenOptions},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::{error::UsageError, event::Event};

pub struct Output {
    dir: Option<PathBuf>,
    events: Option<BufWriter<File>>,
    export: Option<BufWriter<File>>,
    verbose: bool,
    line: Vec<u8>,
}

impl Output {
    pub fn create(dir: Option<&Path>, export: Option<&Path>, verbose: bool) -> Result<Output> {
        let events = match dir {
            Some(dir) => {
                fs::create_dir_all(dir).map_err(|e| {
                    UsageError::new(format!("cannot create output directory {}: {e}", dir.display()))
                })?;
                let path = dir.join("events.jsonl");
                Some(File::create(&path).with_context(|| format!("creating {}", path.display()))?)
            }
            None => None,
        };
        let export = match export {
            Some(path) => Some(OpenOptions::new().create(true).append(true).open(path).map_err(|e| {
                UsageError::new(format!("--export jsonl:{}: {e}: give a writable file", path.display()))
            })?),
            None => None,
        };
        let buffered = |f: File| BufWriter::with_capacity(1 << 16, f);
        Ok(Output {
            dir: dir.map(Path::to_path_buf),
            events: events.map(buffered),
            export: export.map(buffered),
            verbose,
            line: Vec::with_capacity(512),
        })
    }

    pub fn event(&mut self, e: &Event) -> Result<()> {
        if self.events.is_some() || self.export.is_some() {
            self.line.clear();
            serde_json::to_writer(&mut self.line, e)?;
            self.line.push(b'\n');
            for w in [self.events.as_mut(), self.export.as_mut()].into_iter().flatten() {
                w.write_all(&self.line)?;
            }
        }
        if self.verbose {
            eprintln!("{}", crate::account::line(e));
        }
        Ok(())
    }

    /// Push exported lines out (called once per poll, not per event).
    pub fn flush_export(&mut self) -> Result<()> {
        if let Some(w) = self.export.as_mut() {
            w.flush().context("writing the --export file")?;
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

    /// Flush events.jsonl and the export, and write summary.json.
    pub fn finish(&mut self, summary: &impl Serialize) -> Result<()> {
        for w in [self.events.as_mut(), self.export.as_mut()].into_iter().flatten() {
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
