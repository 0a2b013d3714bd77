//! The RustSec advisories of netmit's dependencies, kept in the repository
//! (`deny/advisory-db/`), for machines that cannot reach github.com, where the database
//! lives (these CI machines reach only the package registries).
//!
//! The snapshot holds the advisories of every crate in Cargo.lock that has any, and the
//! names of all crates the full database had advisories for at that commit. Before a
//! check the snapshot must cover Cargo.lock: a crate with advisories in the database that
//! is not in the snapshot (a dependency added since) fails with the refresh command.
//! `cargo xtask advisories-refresh PATH` rewrites the snapshot from a checkout of
//! <https://github.com/rustsec/advisory-db> (where the network allows a clone, or from
//! a copy brought in some other way).
//!
//! cargo-deny reads a database only as a git repository in its `db-path`, under a name
//! derived from the URL; [`prepare`] builds that repository under target/ from the
//! snapshot, committed at the snapshot's date and with `.git/HEAD` dated so too
//! (cargo-deny dates a database by the later of the two), so that its staleness limit
//! applies to the snapshot's real age: [`MAX_AGE`], past which the check fails until the
//! snapshot is refreshed.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail, ensure};

use crate::{target_dir, workspace_root};

/// Where the snapshot lives in the repository.
const SNAPSHOT_DIR: &str = "deny/advisory-db";
/// The names of every crate the database had advisories for.
const ALL_NAMES: &str = "crates-with-advisories.txt";
/// `commit SHA` and `date ISO-8601` of the database commit the snapshot was taken from.
const SOURCE: &str = "SOURCE";
/// The directory cargo-deny 0.20 expects for the default database URL
/// (`https://github.com/rustsec/advisory-db`) inside its `db-path`.
const DB_DIR_NAME: &str = "advisory-db-3157b0e258782691";

/// The oldest snapshot the check accepts (cargo-deny's `maximum-db-staleness`, RFC 3339
/// duration). Longer than cargo-deny's 90-day default because a refresh needs a machine
/// that reaches github.com; the age limit is printed with every check.
const MAX_AGE: &str = "P180D";
/// [`MAX_AGE`] for people.
pub const MAX_AGE_TEXT: &str = "180 days";

/// A database repository built from the snapshot, ready for `cargo deny --offline`.
pub struct Prepared {
    /// The cargo-deny configuration to pass with `--config`: deny.toml with `db-path`
    /// pointing at the built database.
    pub config: PathBuf,
    /// The snapshot's source commit and date, for the report.
    pub source: String,
}

/// The package names in Cargo.lock.
fn locked_names() -> Result<BTreeSet<String>> {
    let lock =
        fs::read_to_string(workspace_root().join("Cargo.lock")).context("reading Cargo.lock")?;
    Ok(lock
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .map(str::to_string)
        .collect())
}

fn snapshot() -> PathBuf {
    workspace_root().join(SNAPSHOT_DIR)
}

/// Checks that the snapshot covers Cargo.lock, then builds the database repository.
pub fn prepare() -> Result<Prepared> {
    let snap = snapshot();
    let source = fs::read_to_string(snap.join(SOURCE))
        .with_context(|| format!("reading {SNAPSHOT_DIR}/{SOURCE}"))?;
    let all: BTreeSet<String> = fs::read_to_string(snap.join(ALL_NAMES))
        .with_context(|| format!("reading {SNAPSHOT_DIR}/{ALL_NAMES}"))?
        .lines()
        .map(str::to_string)
        .collect();
    let missing: Vec<String> = locked_names()?
        .into_iter()
        .filter(|n| all.contains(n) && !snap.join("crates").join(n).is_dir())
        .collect();
    ensure!(
        missing.is_empty(),
        "the advisory snapshot in {SNAPSHOT_DIR} lacks the advisories of {} (dependencies \
         added since it was taken): run `cargo xtask advisories-refresh PATH` with a \
         checkout of https://github.com/rustsec/advisory-db",
        missing.join(", ")
    );
    let date = source
        .lines()
        .find_map(|l| l.strip_prefix("date "))
        .context("no `date` line in the snapshot's SOURCE")?
        .trim()
        .to_string();

    let root = target_dir().join("advisory-dbs");
    let db = root.join(DB_DIR_NAME);
    if db.exists() {
        fs::remove_dir_all(&db).with_context(|| format!("removing {}", db.display()))?;
    }
    copy_dir(&snap.join("crates"), &db.join("crates"))?;
    let git = |args: &[&str]| -> Result<()> {
        // No configuration but this (no hooks, templates or signing from root's or the
        // system's git config).
        let status = Command::new("git")
            .arg("-C")
            .arg(&db)
            .args([
                "-c",
                "user.name=netmit xtask",
                "-c",
                "user.email=xtask@invalid",
            ])
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "core.hooksPath=/dev/null",
            ])
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .output()
            .context("running git")?;
        ensure!(
            status.status.success(),
            "git {args:?} in {}: {}",
            db.display(),
            String::from_utf8_lossy(&status.stderr)
        );
        Ok(())
    };
    git(&["init", "--quiet"])?;
    git(&["add", "."])?;
    git(&["commit", "--quiet", "-m", "netmit's advisory snapshot"])?;
    let touched = Command::new("touch")
        .arg("-d")
        .arg(&date)
        .arg(db.join(".git/HEAD"))
        .status()
        .context("running touch")?;
    ensure!(
        touched.success(),
        "could not date {}/.git/HEAD",
        db.display()
    );

    let deny =
        fs::read_to_string(workspace_root().join("deny.toml")).context("reading deny.toml")?;
    let config = root.join("deny.toml");
    fs::write(&config, with_db_path(&deny, &root)?).context("writing the cargo-deny config")?;
    Ok(Prepared {
        config,
        source: source.split_whitespace().collect::<Vec<_>>().join(" "),
    })
}

/// deny.toml with `db-path` set in its `[advisories]` table.
fn with_db_path(deny: &str, db_path: &Path) -> Result<String> {
    ensure!(
        !deny.contains("db-path"),
        "deny.toml sets db-path itself; leave it to xtask"
    );
    ensure!(
        !deny.contains("maximum-db-staleness"),
        "deny.toml sets maximum-db-staleness itself; leave it to xtask"
    );
    let line = format!(
        "db-path = {:?}\nmaximum-db-staleness = \"{MAX_AGE}\"",
        db_path.display().to_string()
    );
    let Some(at) = deny.find("[advisories]\n") else {
        bail!("deny.toml has no [advisories] table");
    };
    let at = at + "[advisories]\n".len();
    Ok(format!("{}{line}\n{}", &deny[..at], &deny[at..]))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// `cargo xtask advisories-refresh PATH`: rewrites the snapshot from the advisory
/// database checkout at `db`.
pub fn refresh(db: &Path) -> Result<()> {
    let crates = db.join("crates");
    ensure!(
        crates.is_dir(),
        "{} has no crates/ directory: give the path of a checkout of \
         https://github.com/rustsec/advisory-db",
        db.display()
    );
    let out = |args: &[&str]| -> Result<String> {
        let o = Command::new("git").arg("-C").arg(db).args(args).output()?;
        ensure!(o.status.success(), "git {args:?} in {}", db.display());
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = out(&["rev-parse", "HEAD"])?;
    let date = out(&["show", "-s", "--format=%cI", "HEAD"])?;
    let mut all = Vec::new();
    for entry in fs::read_dir(&crates)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            all.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    all.sort();
    let locked = locked_names()?;
    let snap = snapshot();
    if snap.join("crates").exists() {
        fs::remove_dir_all(snap.join("crates"))?;
    }
    let mut kept = 0;
    for name in all.iter().filter(|n| locked.contains(*n)) {
        copy_dir(&crates.join(name), &snap.join("crates").join(name))?;
        kept += 1;
    }
    // The database's licence terms travel with its advisories.
    fs::copy(db.join("LICENSE.txt"), snap.join("LICENSE.txt")).context("copying LICENSE.txt")?;
    copy_dir(&db.join("LICENSES"), &snap.join("LICENSES"))?;
    fs::write(snap.join(ALL_NAMES), all.join("\n") + "\n")?;
    fs::write(snap.join(SOURCE), format!("commit {commit}\ndate {date}\n"))?;
    println!(
        "xtask: advisory snapshot from {commit} ({date}): {kept} of Cargo.lock's crates have \
         advisories; {} crates listed",
        all.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_path_goes_into_the_advisories_table() {
        let deny = "[graph]\nx = 1\n\n[advisories]\nversion = 2\n\n[bans]\n";
        let out = with_db_path(deny, Path::new("/t/advisory-dbs")).unwrap();
        assert_eq!(
            out,
            "[graph]\nx = 1\n\n[advisories]\ndb-path = \"/t/advisory-dbs\"\n\
             maximum-db-staleness = \"P180D\"\nversion = 2\n\n[bans]\n"
        );
        assert!(with_db_path("[bans]\n", Path::new("/t")).is_err());
        assert!(with_db_path("[advisories]\ndb-path = \"x\"\n", Path::new("/t")).is_err());
    }

    #[test]
    fn the_snapshot_covers_cargo_lock() {
        let snap = snapshot();
        let all: BTreeSet<String> = fs::read_to_string(snap.join(ALL_NAMES))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert!(all.len() > 500, "only {} names", all.len());
        for name in locked_names().unwrap() {
            if all.contains(&name) {
                assert!(
                    snap.join("crates").join(&name).is_dir(),
                    "{name} has advisories but none are in the snapshot"
                );
            }
        }
    }
}
