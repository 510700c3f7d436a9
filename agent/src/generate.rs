//! `pilot generate man|bash|zsh|fish [--dir DIR]`: man pages (clap_mangen) and shell
//! completions (clap_complete) made from the command-line definitions in cli.rs, so they never
//! drift from `--help`. The Debian package installs them (xtask/src/package.rs makes them with
//! the freshly built binary).
use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::{
    cli::{Cli, GenerateArgs, Generated},
    error::{FileError, GENERATED, OnPath as _},
};

pub fn run(args: GenerateArgs) -> Result<i32> {
    let files = match args.what {
        Generated::Man => man_pages()?,
        Generated::Bash => vec![completion(Shell::Bash)],
        Generated::Zsh => vec![completion(Shell::Zsh)],
        Generated::Fish => vec![completion(Shell::Fish)],
    };
    match &args.dir {
        // On stdout: the completion script, or pilot(1) (the first page).
        None => std::io::stdout().write_all(&files[0].1).context("writing to stdout")?,
        Some(dir) => {
            write_all(dir, &files)?;
            for (name, _) in &files {
                println!("{}", dir.join(name).display());
            }
        }
    }
    Ok(0)
}

/// The completion script for `shell`, under the name its shell looks for (pilot.bash, _pilot,
/// pilot.fish).
fn completion(shell: Shell) -> (String, Vec<u8>) {
    let mut cmd = without_hidden(Cli::command());
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "pilot", &mut script);
    (clap_complete::Generator::file_name(&shell, "pilot"), script)
}

/// `cmd` without its hidden subcommands: clap_complete offers them too
/// (https://github.com/clap-rs/clap/issues/1335), and clap cannot remove a subcommand, so the
/// root is put together again from its own arguments and visible subcommands.
fn without_hidden(cmd: clap::Command) -> clap::Command {
    let mut root = clap::Command::new("pilot")
        .version(env!("PILOT_VERSION"))
        .subcommand_required(true)
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = cmd.get_about() {
        root = root.about(about.clone());
    }
    for arg in cmd.get_arguments() {
        root = root.arg(arg.clone());
    }
    root
}

/// pilot.1, then one page per visible subcommand (pilot-run.1, pilot-journal-verify.1, ...).
fn man_pages() -> Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    add_pages(cmd, &mut pages)?;
    Ok(pages)
}

fn add_pages(cmd: clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    let subcommands: Vec<clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned().collect();
    let page = render(&cmd).context("rendering a man page")?;
    pages.push(page);
    for sub in subcommands {
        add_pages(sub, pages)?;
    }
    Ok(())
}

/// clap_mangen's sections, except the after-help text: clap_mangen fills it like prose, which
/// runs the examples' aligned columns together; here it is kept as written (no-fill), under
/// DETAILS.
fn render(cmd: &clap::Command) -> std::io::Result<(String, Vec<u8>)> {
    let mut man = clap_mangen::Man::new(cmd.clone()).manual("pilot manual").source(concat!("pilot ", env!("CARGO_PKG_VERSION")));
    if !env!("PILOT_COMMIT_DATE").is_empty() {
        man = man.date(env!("PILOT_COMMIT_DATE"));
    }
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut page)?;
    }
    if let Some(details) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        let mut roff = roff::Roff::new();
        roff.control("SH", ["DETAILS"]).control("nf", []).text([roff::roman(details.to_string())]).control("fi", []);
        roff.to_writer(&mut page)?;
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut page)?;
    }
    Ok((man.get_filename(), page))
}

fn write_all(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    std::fs::create_dir_all(dir).on("creating", dir, GENERATED).map_err(FileError::usage)?;
    for (name, bytes) in files {
        let path: PathBuf = dir.join(name);
        std::fs::write(&path, bytes).on("writing", &path, GENERATED).map_err(FileError::usage)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_man_page_per_visible_subcommand() {
        let pages = man_pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[0], "pilot.1");
        for want in ["pilot-run.1", "pilot-trace.1", "pilot-journal.1", "pilot-journal-verify.1", "pilot-generate.1"] {
            assert!(names.contains(&want), "{want} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("__") || n.contains("help")), "no internal or help pages: {names:?}");
        let run = String::from_utf8_lossy(&pages.iter().find(|(n, _)| n == "pilot-run.1").unwrap().1).into_owned();
        assert!(run.contains("\\-\\-timeout") && run.contains("Exit status"), "options and the after-help text:\n{run}");
    }

    #[test]
    fn completions_name_every_subcommand_but_the_internal_ones() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let (name, script) = completion(shell);
            let script = String::from_utf8(script).unwrap();
            assert!(script.contains("commit") && script.contains("ringbuf-kib"), "{name}");
            assert!(!script.contains("__sandbox"), "{name} offers an internal subcommand");
        }
        assert_eq!(completion(Shell::Zsh).0, "_pilot");
    }
}
