//! The OCI image for the DaemonSet, written by hand as an OCI image layout (image-spec
//! 1.1: `oci-layout`, `index.json`, content-addressed `blobs/sha256/`) and archived with
//! tar: no registry, no base image to pull and no container engine needed to build it.
//!
//! The one layer holds the stripped binary, the preload library and exactly the shared
//! libraries the binary loads (as `ldd` resolves them on the build host, with the dynamic
//! loader at its ELF interpreter path), so the image runs the same binary as the package.
//! `podman load -i netmit_VERSION_oci.tar` imports it as `IMAGE:VERSION`; `verify` does
//! that and runs `netmit --version` and `netmit check` in it, when podman is installed.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, ensure};

use super::{
    BIN_PATH, Build, IMAGE, PRELOAD_PATH, install, install_bytes, output, sha256, under, which,
};

/// What `build` made.
pub struct Image {
    pub archive: PathBuf,
    pub manifest_digest: String,
    pub config_digest: String,
    /// The files of the layer.
    pub files: Vec<String>,
}

pub fn reference(version: &str) -> String {
    format!("{IMAGE}:{version}")
}

pub fn build(b: &Build) -> Result<Image> {
    let rootfs = b.out.join("oci-rootfs");
    install(&b.binary, &under(&rootfs, BIN_PATH), 0o755)?;
    install(&b.preload, &under(&rootfs, PRELOAD_PATH), 0o644)?;
    output(
        Command::new("strip")
            .arg("--strip-all")
            .arg(under(&rootfs, BIN_PATH)),
    )?;
    output(
        Command::new("strip")
            .arg("--strip-unneeded")
            .arg(under(&rootfs, PRELOAD_PATH)),
    )?;
    let mut files = vec![BIN_PATH.to_string(), PRELOAD_PATH.to_string()];
    for lib in shared_libraries(&b.binary)? {
        let real =
            fs::canonicalize(&lib).with_context(|| format!("resolving {}", lib.display()))?;
        let path = lib.to_str().context("non-UTF-8 library path")?;
        install(&real, &under(&rootfs, path), 0o755)?;
        files.push(path.to_string());
    }
    // Mount points of the DaemonSet (and of podman), and a writable-if-mounted /tmp.
    for d in ["etc/netmit", "run/netmit", "sys", "proc", "dev", "tmp"] {
        fs::create_dir_all(rootfs.join(d))?;
    }
    files.sort();

    let layout = b.out.join("oci-layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let layer_tar = b.out.join("layer.tar");
    // Reproducible: sorted names, fixed times and owners.
    output(
        Command::new("tar")
            .args([
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
            ])
            .args([
                "--format=posix",
                "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
            ])
            .arg("-cf")
            .arg(&layer_tar)
            .arg("-C")
            .arg(&rootfs)
            .arg("."),
    )?;
    let diff_id = sha256(&layer_tar)?;
    output(
        Command::new("gzip")
            .args(["-9", "-n", "-f"])
            .arg(&layer_tar),
    )?;
    let layer_gz = b.out.join("layer.tar.gz");
    let (layer_digest, layer_size) = add_blob(&blobs, &fs::read(&layer_gz)?)?;
    fs::remove_file(&layer_gz)?;

    let version = &b.version;
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{{"Entrypoint":["{BIN_PATH}"],"Cmd":["--help"],"Env":["PATH=/usr/bin:/bin"],"Labels":{{"org.opencontainers.image.title":"netmit","org.opencontainers.image.version":"{version}","org.opencontainers.image.description":"netmit daemon and CLI (deploy/kubernetes/daemonset.yaml)"}}}},"rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}},"history":[{{"created":"1970-01-01T00:00:00Z","created_by":"cargo xtask dist"}}]}}"#
    );
    let (config_digest, config_size) = add_blob(&blobs, config.as_bytes())?;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{layer_digest}","size":{layer_size}}}]}}"#
    );
    let (manifest_digest, manifest_size) = add_blob(&blobs, manifest.as_bytes())?;
    let name = reference(version);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{manifest_digest}","size":{manifest_size},"platform":{{"architecture":"amd64","os":"linux"}},"annotations":{{"org.opencontainers.image.ref.name":"{name}","io.containerd.image.name":"{name}"}}}}]}}"#
    );
    install_bytes(index.as_bytes(), &layout.join("index.json"), 0o644)?;
    install_bytes(
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        &layout.join("oci-layout"),
        0o644,
    )?;

    let archive = b.out.join(format!("netmit_{version}_oci.tar"));
    output(
        Command::new("tar")
            .args([
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
            ])
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(&layout)
            .args(["oci-layout", "index.json", "blobs"]),
    )?;
    fs::remove_dir_all(&layout)?;
    fs::remove_dir_all(&rootfs)?;
    Ok(Image {
        archive,
        manifest_digest: format!("sha256:{manifest_digest}"),
        config_digest: format!("sha256:{config_digest}"),
        files,
    })
}

/// Writes a blob under its digest; returns (hex digest, size).
fn add_blob(blobs: &Path, bytes: &[u8]) -> Result<(String, usize)> {
    let tmp = blobs.join("incoming");
    fs::write(&tmp, bytes)?;
    let digest = sha256(&tmp)?;
    fs::rename(&tmp, blobs.join(&digest))?;
    Ok((digest, bytes.len()))
}

/// The shared objects `binary` loads, as absolute paths (ldd's `=> /path` column and the
/// interpreter line); refuses a library ldd cannot find.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = output(Command::new("ldd").arg(binary))?;
    let mut libs = Vec::new();
    for line in out.lines().map(str::trim) {
        ensure!(
            !line.contains("not found"),
            "ldd {}: {line}",
            binary.display()
        );
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    ensure!(
        libs.iter()
            .any(|l| l.to_string_lossy().contains("ld-linux")),
        "ldd {} shows no dynamic loader:\n{out}",
        binary.display()
    );
    Ok(libs)
}

/// Loads the archive with podman and runs `netmit --version` and `netmit check` in it with
/// the DaemonSet's privileges (host network, bpffs, three capabilities, read-only root);
/// the image is removed again afterwards. Skipped, with the reason, without podman.
pub fn verify(b: &Build, image: &Image) -> Result<()> {
    if which("podman").is_none() {
        println!("xtask: dist: podman not installed (apt-get install podman): image not run");
        return Ok(());
    }
    let name = reference(&b.version);
    let loaded = output(
        Command::new("podman")
            .arg("load")
            .arg("-i")
            .arg(&image.archive),
    )?;
    ensure!(
        loaded.contains(&name),
        "podman load did not name the image {name}: {loaded}"
    );
    let result = run_in_image(&name, &b.version, &b.out);
    let _ = Command::new("podman")
        .args(["rmi", "--force"])
        .arg(&name)
        .output();
    result
}

/// How podman runs the image on this host: the DaemonSet's privileges, and what the host
/// makes necessary on top (each part says why).
struct Podman {
    /// `--ulimit`s no caller needs privilege for: podman's defaults (`nofile` 1048576, its
    /// own `nproc`) are above the hard limits of a caller without CAP_SYS_RESOURCE (a
    /// sandbox or CI container), and the runtime's setrlimit then fails ("OCI permission
    /// denied"); the open-files limit in force and a modest process limit are not.
    ulimits: Vec<String>,
    /// A seccomp profile: the runtime's default, with bpf(2) and perf_event_open(2)
    /// allowed under CAP_BPF and CAP_PERFMON as containerd 1.7 and Docker 23 allow them
    /// (the DaemonSet's `RuntimeDefault`); None where the default allows them already.
    seccomp: Option<PathBuf>,
    /// `runc` where the default runtime (crun 1.8) cannot start a container here: it
    /// refuses a hybrid cgroup layout, and sets `nproc` even to the value in force, which
    /// fails without CAP_SYS_RESOURCE.
    runtime: Option<&'static str>,
}

impl Podman {
    fn new(dir: &Path) -> Result<Podman> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(std::io::Error::last_os_error())
                .context("reading this process's open-files limit");
        }
        let nofile = lim.rlim_cur.min(1 << 20);
        let ulimits = vec![
            format!("--ulimit=nofile={nofile}:{nofile}"),
            // netmit runs a handful of threads; a low limit is one any caller may set.
            "--ulimit=nproc=4096:4096".to_string(),
        ];
        Ok(Podman {
            ulimits,
            seccomp: seccomp_profile(dir)?,
            runtime: None,
        })
    }

    fn run(&self, name: &str, args: &[&str]) -> Result<std::process::Output> {
        let mut cmd = Command::new("podman");
        cmd.arg("run");
        if let Some(runtime) = self.runtime {
            cmd.arg(format!("--runtime={runtime}"));
        }
        cmd.args(["--rm", "--network=host", "--read-only"])
            .args(["--cap-drop=all", "--cap-add=BPF,PERFMON,NET_ADMIN"])
            .args(["--security-opt=apparmor=unconfined"])
            .args(&self.ulimits);
        if let Some(profile) = &self.seccomp {
            cmd.arg(format!("--security-opt=seccomp={}", profile.display()));
        }
        cmd.args(["-v", "/sys/fs/bpf:/sys/fs/bpf"])
            .arg(name)
            .args(args);
        cmd.output().context("running podman")
    }
}

/// The default seccomp profile of the installed containers-common, with bpf(2) allowed
/// under CAP_BPF and perf_event_open(2) under CAP_PERFMON, written into `dir`; None when
/// the installed profile allows them already or there is none to amend (then the
/// runtime's built-in default applies).
fn seccomp_profile(dir: &Path) -> Result<Option<PathBuf>> {
    const DEFAULT: &str = "/usr/share/containers/seccomp.json";
    let Ok(text) = fs::read_to_string(DEFAULT) else {
        return Ok(None);
    };
    let mut profile: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {DEFAULT}"))?;
    let Some(rules) = profile["syscalls"].as_array_mut() else {
        return Ok(None);
    };
    let grants = [("bpf", "CAP_BPF"), ("perf_event_open", "CAP_PERFMON")];
    let granted = |rule: &serde_json::Value, call: &str, cap: &str| {
        rule["action"] == "SCMP_ACT_ALLOW"
            && rule["names"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n == call))
            && rule["includes"]["caps"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c == cap))
    };
    if grants
        .iter()
        .all(|(call, cap)| rules.iter().any(|r| granted(r, call, cap)))
    {
        return Ok(None);
    }
    // The calls leave the rules that refuse them without CAP_SYS_ADMIN (the profile's
    // default action still refuses them without the new capability).
    for rule in rules.iter_mut() {
        if rule["action"] != "SCMP_ACT_ALLOW"
            && let Some(names) = rule["names"].as_array_mut()
        {
            names.retain(|n| !grants.iter().any(|(call, _)| n == call));
        }
    }
    for (call, cap) in grants {
        rules.push(serde_json::json!({
            "names": [call],
            "action": "SCMP_ACT_ALLOW",
            "includes": { "caps": [cap] },
        }));
    }
    let path = dir.join("seccomp-bpf-caps.json");
    fs::write(&path, serde_json::to_vec_pretty(&profile)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
}

fn run_in_image(name: &str, version: &str, scratch: &Path) -> Result<()> {
    let mut podman = Podman::new(scratch)?;
    let mut out = podman.run(name, &["--version"])?;
    if !out.status.success()
        && String::from_utf8_lossy(&out.stderr).contains("OCI")
        && which("runc").is_some()
    {
        podman.runtime = Some("runc");
        out = podman.run(name, &["--version"])?;
    }
    let result = check_in_image(&podman, name, version, out);
    if let Some(profile) = &podman.seccomp {
        let _ = fs::remove_file(profile);
    }
    result
}

fn check_in_image(
    podman: &Podman,
    name: &str,
    version: &str,
    out: std::process::Output,
) -> Result<()> {
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A host where the runtime itself cannot start containers (a container without
    // CAP_SYS_RESOURCE, where crun's setrlimit is refused): the image loaded, running it
    // is not possible here. Said with the runtime's own words.
    if !out.status.success() && stderr.contains("OCI permission denied") {
        println!(
            "xtask: dist: podman loaded {name} but cannot run containers on this host, so \
             --version and check were not run in it: {}",
            stderr.trim()
        );
        return Ok(());
    }
    ensure!(
        out.status.success() && text.trim() == format!("netmit {version}"),
        "`podman run {name} --version`: {} {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let out = podman.run(name, &["check"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "`podman run {name} check` ({}): {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    println!("xtask: dist: podman run {name}: --version and check pass; check says:");
    for line in text.lines() {
        println!("  {line}");
    }
    Ok(())
}
