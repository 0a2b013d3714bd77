//! `netmit __generate DIR` (hidden): writes the man pages and shell completions from the
//! clap definitions in args.rs, so that they say what `--help` says. `cargo xtask dist`
//! runs it on the binary it packages; nothing is written by hand.
//!
//! Layout of DIR: `man/netmit.8` and `man/netmit-SUBCOMMAND[-SUBCOMMAND].8` for every
//! visible subcommand at every depth (section 8: netmit is an
//! administration command that runs as root), `completions/netmit.bash`,
//! `completions/_netmit` (zsh) and `completions/netmit.fish`.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context;
use clap::{Args, Command, CommandFactory};
use clap_complete::Shell;

use crate::args::Cli;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to write man/ and completions/ into (created if missing).
    pub dir: PathBuf,
}

/// The section of every page: system administration commands.
const SECTION: &str = "8";

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    for path in write_all(&args.dir)? {
        println!("{}", path.display());
    }
    Ok(())
}

/// The subcommands a user sees (the hidden generator and clap's `help` are not pages).
pub fn visible_subcommands(cmd: &Command) -> Vec<&Command> {
    cmd.get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
        .collect()
}

/// The command as users see it: without hidden subcommands, which clap_complete would
/// otherwise offer. `help_subcommands: false` leaves out clap's `help` subcommands, which
/// the man pages would otherwise list as `netmit-tune-help(8)`, a page nobody writes.
fn public_command(help_subcommands: bool) -> Command {
    fn without_help(cmd: Command) -> Command {
        cmd.disable_help_subcommand(true)
            .mut_subcommands(without_help)
    }
    let full = Cli::command();
    let subs = full.get_subcommands().filter(|c| !c.is_hide_set()).cloned();
    let subs: Vec<Command> = if help_subcommands {
        subs.collect()
    } else {
        subs.map(without_help).collect()
    };
    let mut public = Command::new("netmit")
        .bin_name("netmit")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .subcommand_required(true)
        .disable_help_subcommand(!help_subcommands)
        .subcommands(subs);
    if let Some(about) = full.get_about() {
        public = public.about(about.clone());
    }
    if let Some(long) = full.get_long_about() {
        public = public.long_about(long.clone());
    }
    public.build();
    public
}

/// Writes every page and completion file below `dir`; returns the paths written.
pub fn write_all(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut cmd = public_command(true);
    let pages = public_command(false);
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut written = Vec::new();
    let mut write = |path: PathBuf, bytes: Vec<u8>| -> anyhow::Result<()> {
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
        Ok(())
    };
    write(man.join("netmit.8"), render_page(pages.clone())?)?;
    for (name, page) in nested_pages(&pages) {
        write(man.join(format!("{name}.8")), render_page(page)?)?;
    }
    for (shell, file) in [
        (Shell::Bash, "netmit.bash"),
        (Shell::Zsh, "_netmit"),
        (Shell::Fish, "netmit.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "netmit", &mut buf);
        write(completions.join(file), buf)?;
    }
    Ok(written)
}

/// One page per visible subcommand at every depth, named as clap_mangen refers to them
/// from the parent's SUBCOMMANDS section (`netmit-tune(8)` lists `netmit-tune-set(8)`):
/// the page's NAME reads `netmit-tune-set`, as git's pages do, and its SYNOPSIS
/// `netmit tune set` (from bin_name).
fn nested_pages(root: &Command) -> Vec<(String, Command)> {
    let mut pages = Vec::new();
    let mut stack: Vec<(String, String, &Command)> = visible_subcommands(root)
        .into_iter()
        .rev()
        .map(|c| {
            (
                format!("netmit-{}", c.get_name()),
                format!("netmit {}", c.get_name()),
                c,
            )
        })
        .collect();
    while let Some((name, bin, cmd)) = stack.pop() {
        for sub in visible_subcommands(cmd).into_iter().rev() {
            stack.push((
                format!("{name}-{}", sub.get_name()),
                format!("{bin} {}", sub.get_name()),
                sub,
            ));
        }
        pages.push((name.clone(), cmd.clone().name(name).bin_name(bin)));
    }
    pages
}

fn render_page(cmd: Command) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .section(SECTION)
        .manual("netmit manual")
        .source(concat!("netmit ", env!("CARGO_PKG_VERSION")))
        .render(&mut buf)
        .context("rendering a man page")?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_has_a_page_and_is_completed() {
        let scratch =
            Scratch(std::env::temp_dir().join(format!("netmit-generate-{}", std::process::id())));
        let dir = scratch.0.clone();
        let _ = fs::remove_dir_all(&dir);
        let written = write_all(&dir).unwrap();
        let cmd = Cli::command();
        let subs = visible_subcommands(&cmd);
        assert!(subs.iter().all(|c| c.get_name() != "__generate"));
        assert!(subs.len() >= 10, "only {} subcommands", subs.len());
        let read = |p: PathBuf| fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        let main_page = read(dir.join("man/netmit.8"));
        assert!(main_page.contains(".TH netmit 8"), "{main_page}");
        let completions: Vec<(&str, String)> = ["netmit.bash", "_netmit", "netmit.fish"]
            .into_iter()
            .map(|f| (f, read(dir.join("completions").join(f))))
            .collect();
        for sub in &subs {
            let name = sub.get_name();
            let page = read(dir.join(format!("man/netmit-{name}.8")));
            assert!(
                page.contains(&format!(".TH netmit-{name} 8")),
                "{name}: {page}"
            );
            // The page carries the subcommand's own help text.
            let about = sub.get_about().unwrap().to_string();
            // (Words roff would escape, such as `netmit's`, end the comparison.)
            let first_words: String = about
                .split_whitespace()
                .take_while(|w| w.chars().all(char::is_alphanumeric))
                .take(3)
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                page.contains(&first_words),
                "netmit-{name}.8 lacks `{first_words}`"
            );
            assert!(main_page.contains(name), "netmit.8 does not list {name}");
            for (file, text) in &completions {
                assert!(text.contains(name), "{file} does not complete `{name}`");
            }
        }
        // Every nested subcommand has its page, and every page another page refers to
        // (`netmit\-tune\-set(8)` in roff) exists.
        let tune = cmd.find_subcommand("tune").unwrap();
        assert!(tune.find_subcommand("set").is_some());
        let pages = nested_pages(&public_command(false));
        assert!(pages.iter().any(|(n, _)| n == "netmit-tune-set"));
        assert!(pages.len() > subs.len(), "no nested pages");
        let mut refs = 0;
        for path in &written {
            let text = read(path.clone());
            for (at, _) in text.match_indices("(8)") {
                let start = text[..at].rfind(char::is_whitespace).map_or(0, |i| i + 1);
                let name = text[start..at]
                    .trim_start_matches("\\fB")
                    .trim_start_matches("\\fI")
                    .replace("\\-", "-");
                if !name.starts_with("netmit") {
                    continue;
                }
                refs += 1;
                assert!(
                    dir.join(format!("man/{name}.8")).is_file(),
                    "{} refers to {name}(8), which has no page",
                    path.display()
                );
            }
        }
        assert!(refs >= pages.len(), "only {refs} page references found");
        // Nothing hidden leaks into what users read, nor clap's `help` pseudo-pages.
        assert!(pages.iter().all(|(n, _)| !n.ends_with("-help")));
        assert!(!dir.join("man/netmit-__generate.8").exists());
        for (file, text) in &completions {
            assert!(
                !text.contains("__generate"),
                "{file} offers the hidden __generate"
            );
        }
        assert_eq!(written.len(), 1 + pages.len() + 3);
    }

    /// The test's output directory, removed however the test ends.
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}
