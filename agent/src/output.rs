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

use crate::{
    error::{EXPORT, FileError, OnPath, RUN_DIR, kept_in},
    event::Event,
    filestate::Hashed,
};

pub struct Output {
    dir: Option<PathBuf>,
    events: Option<BufWriter<Hashed>>,
    export: Option<BufWriter<File>>,
    export_path: Option<PathBuf>,
    verbose: bool,
    line: Vec<u8>,
}

impl Output {
    pub fn create(dir: Option<&Path>, export: Option<&Path>, verbose: bool) -> Result<Output> {
        let export_path = export.map(Path::to_path_buf);
        let events = match dir {
            Some(dir) => {
                fs::create_dir_all(dir).on("creating", dir, RUN_DIR).map_err(FileError::usage)?;
                let path = dir.join("events.jsonl");
                Some(File::create(&path).on("creating", &path, RUN_DIR)?)
            }
            None => None,
        };
        let export = match export {
            Some(path) => Some(OpenOptions::new().create(true).append(true).open(path).on("opening", path, EXPORT).map_err(FileError::usage)?),
            None => None,
        };
        Ok(Output {
            dir: dir.map(Path::to_path_buf),
            events: events.map(|f| BufWriter::with_capacity(1 << 16, Hashed::new(f))),
            export: export.map(|f| BufWriter::with_capacity(1 << 16, f)),
            export_path,
            verbose,
            line: Vec::with_capacity(512),
        })
    }

    pub fn event(&mut self, e: &Event) -> Result<()> {
        if self.events.is_some() || self.export.is_some() {
            self.line.clear();
            serde_json::to_writer(&mut self.line, e).context("encoding an event")?;
            self.line.push(b'\n');
            if let Some(w) = self.events.as_mut()
                && let Err(e) = w.write_all(&self.line)
            {
                return Err(self.events_error(e).into());
            }
            if let Some(w) = self.export.as_mut()
                && let Err(e) = w.write_all(&self.line)
            {
                return Err(self.export_error(e).into());
            }
        }
        if self.verbose {
            eprintln!("{}", crate::account::line(e));
        }
        Ok(())
    }

    /// Push exported lines out (called once per poll, not per event).
    pub fn flush_export(&mut self) -> Result<()> {
        if let Some(w) = self.export.as_mut()
            && let Err(e) = w.flush()
        {
            return Err(self.export_error(e).into());
        }
        Ok(())
    }

    /// Write another file of the run directory by streaming it through `write` (nothing
    /// without `--out`): a big graph is never a string in memory. Whole or removed, like
    /// `write_file`.
    pub fn write_file_with(&self, name: &str, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        Ok(write_whole_with(dir, name, write)?)
    }

    /// Write another file of the run directory (nothing without `--out`).
    pub fn write_file(&self, name: &str, text: &str) -> Result<()> {
        if let Some(dir) = &self.dir {
            write_whole(dir, name, text)?;
        }
        Ok(())
    }

    /// Flush events.jsonl and the export, and write summary.json.
    pub fn finish(&mut self, summary: &impl Serialize) -> Result<()> {
        if let Some(w) = self.events.as_mut()
            && let Err(e) = w.flush().and_then(|_| w.get_ref().remember())
        {
            return Err(self.events_error(e).into());
        }
        self.flush_export()?;
        if let Some(dir) = &self.dir {
            let mut text = serde_json::to_string_pretty(summary).context("encoding summary.json")?;
            text.push('\n');
            write_whole(dir, "summary.json", &text)?;
        }
        Ok(())
    }

    /// events.jsonl could not be written: it stays, cut short (its lines are still events),
    /// beside what else is there.
    fn events_error(&self, e: std::io::Error) -> FileError {
        let dir = self.dir.as_deref().unwrap_or(Path::new("."));
        let path = dir.join("events.jsonl");
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let kept = kept_in(dir, None)
            .into_iter()
            .map(|f| if f == "events.jsonl" { format!("events.jsonl (cut short at {size} bytes)") } else { f })
            .collect();
        FileError::new("writing", &path, e, RUN_DIR).kept(kept)
    }

    fn export_error(&self, e: std::io::Error) -> FileError {
        FileError::new("writing", self.export_path.as_deref().unwrap_or(Path::new("?")), e, EXPORT)
    }
}

/// Write a whole file of the run directory, streamed from `write` (a big file is never a
/// string in memory first); one that cannot be written whole is removed (readers would take
/// half a JSON document for a damaged run), and the error says what is kept.
pub fn write_whole_with(dir: &Path, name: &str, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> std::result::Result<(), FileError> {
    let path = dir.join(name);
    let written = File::create(&path).and_then(|f| {
        let mut w = BufWriter::with_capacity(1 << 16, Hashed::new(f));
        write(&mut w)?;
        w.flush()?;
        w.get_ref().remember()
    });
    written.map_err(|e| {
        let _ = fs::remove_file(&path);
        FileError::new("writing", &path, e, RUN_DIR).kept(kept_in(dir, Some(name)))
    })
}

pub fn write_whole(dir: &Path, name: &str, text: &str) -> std::result::Result<(), FileError> {
    write_whole_with(dir, name, |w| w.write_all(text.as_bytes()))
}

