#!/usr/bin/env python3
"""Checks the files in deploy/ against each other, the docs and the code.

    python3 deploy/check.py

Always (Python 3.11+ with PyYAML):
  - every YAML file parses; the JSON dashboard parses;
  - every PromQL expression in the alert rules and the Grafana dashboard uses only the
    metrics of docs/metrics.md (plus `up`), with their documented labels and label values;
  - the dashboard has the ${DS_PROMETHEUS} data source variable, the `device` variable
    from netmit_mode, unique panel ids, and every query uses the variable;
  - the example configuration and the ConfigMap's copy parse as TOML, their keys are
    fields of the daemon's file structs (netmit-user/src/daemon/config.rs) and of
    PolicyConfig and friends (netmit-user/src/control/), and the example's values are the
    code's defaults.
When the tools are there (otherwise reported as skipped):
  - promtool: check config, check rules, test rules, and the dashboard's expressions
    parsed as recording rules;
  - systemd-analyze verify on the unit (ExecStart pointed at an existing binary);
  - kubernetes_validate (pip install kubernetes-validate) on the manifests;
  - the steering rules parsed by a built netmit (target/release or $NETMIT).
Always, against what `cargo xtask dist` builds (the constants of xtask/src/dist/mod.rs):
  - the DaemonSet runs image IMAGE:VERSION (the workspace version) with BIN_PATH and
    CONFIG_PATH; the unit's ExecStart, ExecReload and ExecStopPost use BIN_PATH and
    CONFIG_PATH; and, when target/dist/MANIFEST exists, it names the same image.
Prints one line per check and "N passed, N failed, N skipped"; exits 1 on a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
PROM = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "netmit-dashboard.json"
UNIT = DEPLOY / "systemd" / "netmit.service"
EXAMPLE = DEPLOY / "netmit.toml.example"
DAEMONSET = DEPLOY / "kubernetes" / "daemonset.yaml"

# Labels Prometheus adds to every series, and the histogram bucket label.
TARGET_LABELS = {"job", "instance"}
counts = {"passed": 0, "failed": 0, "skipped": 0}


def report(status: str, what: str, detail: str = "") -> None:
    counts[status] += 1
    word = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip"}[status]
    print(f"{word} {what}" + (f": {detail}" if detail else ""))


def check(what: str, problems: list[str]) -> None:
    if problems:
        report("failed", what, "\n       ".join([""] + problems))
    else:
        report("passed", what)


# ------------------------------------------------------------------ docs/metrics.md


def documented_metrics() -> dict[str, dict]:
    """Metric name -> {"type", "labels", "values": {label: set}} from the docs table."""
    metrics = {}
    for line in (ROOT / "docs" / "metrics.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`netmit_"):
            continue
        name, mtype, labels_cell, meaning = cells
        labels, values = set(), {}
        # `mode` (`interrupt`, `defer`, `suspend`) or `from`/`to` or `kind`
        for m in re.finditer(r"`(\w+)`(?:/`(\w+)`)?(?:\s*\(([^)]*)\))?", labels_cell):
            for label in filter(None, (m.group(1), m.group(2))):
                labels.add(label)
                if m.group(3):
                    values[label] = set(re.findall(r"`(\w+)`", m.group(3)))
        # Values listed in the meaning column: "by steering verdict (unmatched, pass, ...)",
        # "failed operations by kind (`sample`, `apply`, ...)".
        for m in re.finditer(r"\b(\w+) \(([^)]*)\)", meaning):
            if m.group(1) in labels and m.group(1) not in values:
                values[m.group(1)] = {v.strip(" `") for v in m.group(2).split(",")}
        metrics[name.strip("`")] = {"type": mtype.split()[0], "labels": labels, "values": values}
    return metrics


def series_names(metrics: dict[str, dict]) -> dict[str, set[str]]:
    """Every series name a scrape can contain -> its labels (histograms expand)."""
    names = {"up": set()}
    for name, m in metrics.items():
        if m["type"] == "histogram":
            names[name + "_bucket"] = m["labels"] | {"le"}
            names[name + "_sum"] = m["labels"]
            names[name + "_count"] = m["labels"]
        else:
            names[name] = m["labels"]
    return names


# ------------------------------------------------------------------ PromQL


def check_expr(expr: str, metrics: dict[str, dict]) -> list[str]:
    names = series_names(metrics)
    all_labels = set().union(*names.values()) | TARGET_LABELS
    problems = []
    # Selectors: name{matchers}; matchers with a metric name are checked against it.
    for m in re.finditer(r"\b([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}", expr):
        name, body = m.group(1), m.group(2)
        if name in ("by", "without", "on", "ignoring", "group_left", "group_right"):
            continue
        base = metric_of(name, metrics) if name else None
        for lm in re.finditer(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', body):
            label, op, value = lm.groups()
            if label == "__name__":
                continue
            allowed = (names.get(name, set()) if name else all_labels) | TARGET_LABELS
            if label not in allowed:
                problems.append(f"label {label!r} is not a label of {name or 'any metric'}: {expr!r}")
                continue
            known = metrics[base]["values"].get(label) if base else None
            if known and op in ("=", "!=") and "$" not in value and value not in known:
                problems.append(f"{label}={value!r} is not a documented value ({sorted(known)})")
    # Metric names outside of strings.
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}", "{}", bare)
    for name in re.findall(r"\b(netmit_\w+)", bare):
        if name not in names:
            problems.append(f"unknown metric {name!r} (not in docs/metrics.md)")
    for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", bare):
        for label in filter(None, (s.strip() for s in clause.split(","))):
            if label not in all_labels:
                problems.append(f"grouping label {label!r} is not a documented label")
    return problems


def metric_of(series: str, metrics: dict[str, dict]) -> str | None:
    for suffix in ("", "_bucket", "_sum", "_count"):
        if series.endswith(suffix) and series[: len(series) - len(suffix)] in metrics:
            return series[: len(series) - len(suffix)]
    return None


def alert_exprs() -> list[tuple[str, str]]:
    doc = yaml.safe_load((PROM / "netmit-alerts.yml").read_text())
    return [
        (rule.get("alert") or rule.get("record"), rule["expr"])
        for group in doc["groups"]
        for rule in group["rules"]
    ]


def dashboard_panels(dashboard: dict) -> list[dict]:
    out = []
    for p in dashboard.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    exprs = []
    for p in dashboard_panels(dashboard):
        for t in p.get("targets", []):
            exprs.append((f"panel {p['id']} {p['title']!r} {t['refId']}", t["expr"]))
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var["definition"].strip())
            exprs.append((f"variable {var['name']}", m.group(1) if m else var["definition"]))
    return exprs


def grafana_to_promql(expr: str) -> str:
    """Replaces Grafana's variables so that promtool can parse the expression."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    expr = expr.replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


# ------------------------------------------------------------------ checks


def check_yaml() -> None:
    problems = []
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        try:
            list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as e:
            problems.append(f"{path.relative_to(ROOT)}: {e}")
    check("YAML files parse", problems)


def check_promql(metrics: dict[str, dict], dashboard: dict) -> None:
    for source, exprs in (("alert rules", alert_exprs()), ("dashboard", dashboard_exprs(dashboard))):
        problems = []
        for where, expr in exprs:
            problems += [f"{where}: {p}" for p in check_expr(expr, metrics)]
        check(f"{source} use only documented metrics, labels and values ({len(exprs)} expressions)", problems)
    # The variable query's label must belong to its metric.
    problems = []
    names = series_names(metrics)
    for var in dashboard["templating"]["list"]:
        m = re.fullmatch(r"label_values\((\w+)(?:\{.*\})?,\s*(\w+)\)", var.get("definition", "").strip())
        if m and m.group(2) not in names.get(m.group(1), set()) | TARGET_LABELS:
            problems.append(f"variable {var['name']}: {m.group(2)} is not a label of {m.group(1)}")
    check("dashboard variables query labels their metrics have", problems)


def check_dashboard(dashboard: dict) -> None:
    problems = []
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables.get("DS_PROMETHEUS")
    if not ds or ds["type"] != "datasource" or ds["query"] != "prometheus":
        problems.append("no datasource variable DS_PROMETHEUS of type prometheus")
    device = variables.get("device", {})
    if not device.get("definition", "").startswith("label_values(netmit_mode"):
        problems.append("the device variable does not come from label_values(netmit_mode, device)")
    if not 36 <= dashboard.get("schemaVersion", 0) <= 41:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')} (expected about 39)")
    ids = [p["id"] for p in dashboard_panels(dashboard)]
    if len(ids) != len(set(ids)):
        problems.append("panel ids are not unique")
    for p in dashboard_panels(dashboard):
        g = p["gridPos"]
        if g["x"] + g["w"] > 24:
            problems.append(f"panel {p['id']} is wider than the grid")
        for t in [p] * (p["type"] != "row") + p.get("targets", []):
            if t.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
                problems.append(f"panel {p['id']} {p['title']!r}: datasource is not ${{DS_PROMETHEUS}}")
                break
    check("dashboard structure (data source variable, device variable, ids, grid)", problems)


def policy_structs() -> tuple[dict[str, list[str]], dict[str, dict]]:
    """Field names of the policy structs and the literal values of their Default impls."""
    src = "\n".join(
        (ROOT / "netmit-user" / "src" / "control" / f).read_text() for f in ("config.rs", "mode.rs")
    )
    fields, defaults = {}, {}
    for m in re.finditer(r"pub struct (\w+) \{(.*?)\n\}", src, re.S):
        fields[m.group(1)] = re.findall(r"^\s*pub (\w+):", m.group(2), re.M)
    for m in re.finditer(r"impl Default for (\w+) \{.*?\{\s*\w+ \{(.*?)\n\s*\}\s*\}\s*\}", src, re.S):
        values = {}
        for f, v in re.findall(r"^\s*(\w+): ([^,\n]+),", m.group(2), re.M):
            if re.fullmatch(r"[\d_]+", v):
                values[f] = int(v.replace("_", ""))
            elif v in ("true", "false"):
                values[f] = v == "true"
            elif re.fullmatch(r"Mode::\w+", v):
                values[f] = v.split("::")[1].lower()
        defaults[m.group(1)] = values
    return fields, defaults


POLICY_TABLES = {
    ("policy",): "PolicyConfig",
    ("policy", "defer"): "DeferThresholds",
    ("policy", "suspend"): "SuspendThresholds",
    ("policy", "modes"): "ModeTable",
    ("policy", "modes", "interrupt"): "ModeSettings",
    ("policy", "modes", "defer"): "ModeSettings",
    ("policy", "modes", "suspend"): "ModeSettings",
}


def daemon_keys() -> tuple[dict[str, list[str]], dict] | None:
    """Keys of the daemon's file (RawConfig, RawInterface) and its defaults, if the daemon
    module is there."""
    path = ROOT / "netmit-user" / "src" / "daemon" / "config.rs"
    if not path.is_file():
        return None
    src = path.read_text()
    keys = {}
    for name in ("RawConfig", "RawInterface"):
        m = re.search(rf"struct {name} \{{(.*?)\n\}}", src, re.S)
        keys[name] = re.findall(r"^\s*(\w+):", m.group(1), re.M) if m else []
    defaults = {}
    m = re.search(r'DEFAULT_METRICS_ADDRESS: &str = "([^"]+)"', src)
    if m:
        defaults["metrics_address"] = m.group(1)
    m = re.search(r"DEFAULT_INTERVAL: Duration = Duration::from_secs\((\d+)\)", src)
    if m:
        defaults["interval"] = f"{m.group(1)}s"
    return keys, defaults


def check_config(what: str, config: dict, fields: dict, defaults: dict | None) -> list[str]:
    """Keys against the Rust structs; with `defaults`, values against the defaults too."""
    problems = []
    daemon = daemon_keys()
    if daemon:
        keys, daemon_defaults = daemon
        for key, value in config.items():
            if key not in keys["RawConfig"]:
                problems.append(f"{what}: {key} is not a top-level key (RawConfig)")
            elif defaults is not None and key in daemon_defaults and value != daemon_defaults[key]:
                problems.append(f"{what}: {key} = {value!r}, but the default is {daemon_defaults[key]!r}")
        for i, iface in enumerate(config.get("interface", [])):
            for key in iface:
                if key not in keys["RawInterface"]:
                    problems.append(f"{what}: interface[{i}].{key} is not a key of [[interface]]")
    for i, iface in enumerate(config.get("interface", [])):
        if "max_mode" in iface and "max_mode" not in fields["PolicyConfig"]:
            problems.append(f"{what}: interface[{i}].max_mode: PolicyConfig has no max_mode")
        for path, struct_name in POLICY_TABLES.items():
            table = iface
            for key in path:
                table = table.get(key, {}) if isinstance(table, dict) else {}
            for key, value in table.items():
                where = f"interface[{i}].{'.'.join(path)}.{key}"
                if key not in fields[struct_name]:
                    problems.append(f"{what}: {where} is not a field of {struct_name}")
                elif defaults is not None and not isinstance(value, dict):
                    expected = defaults.get(struct_name, {}).get(key)
                    if expected is not None and value != expected:
                        problems.append(f"{what}: {where} = {value!r}, but the default is {expected!r}")
    return problems


def commented_mode_tables(text: str) -> str:
    """The example's commented-out [interface.policy.modes.X] tables, uncommented, as an
    [[interface]] of their own."""
    lines, inside = ["[[interface]]", 'name = "x"'], False
    for line in text.splitlines():
        if line.startswith("# [interface.policy.modes."):
            inside = True
        elif not line.startswith("#"):
            inside = False
        if inside and line.startswith("# ") and not line.startswith("#  "):
            lines.append(line[2:])
    return "\n".join(lines)


def check_toml() -> list[dict]:
    fields, defaults = policy_structs()
    configs, problems = [], []
    for what, text, strict in (
        (EXAMPLE.name, EXAMPLE.read_text(), True),
        ("ConfigMap netmit.toml", configmap_toml(), False),
    ):
        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            problems.append(f"{what}: {e}")
            continue
        configs.append(config)
        problems += check_config(what, config, fields, defaults if strict else None)
        if strict:
            # The commented-out mode tables must parse and name real fields too.
            try:
                problems += check_config(
                    f"{what} (commented mode tables)", tomllib.loads(commented_mode_tables(text)), fields, None
                )
            except tomllib.TOMLDecodeError as e:
                problems.append(f"{what} (commented mode tables): {e}")
    what = "configurations parse; keys are fields of the Rust structs, example values are the defaults"
    if daemon_keys() is None:
        what += " (policy only: no netmit-user/src/daemon/config.rs)"
    check(what, problems)
    return configs


def configmap_toml() -> str:
    for doc in yaml.safe_load_all(DAEMONSET.read_text()):
        if doc and doc.get("kind") == "ConfigMap":
            return doc["data"]["netmit.toml"]
    return ""


# ------------------------------------------------------------------ external tools


def run(cmd: list[str], cwd: Path | None = None) -> tuple[int, str]:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return p.returncode, (p.stdout + p.stderr).strip()


def check_promtool(dashboard: dict) -> None:
    if not shutil.which("promtool"):
        for what in ("promtool check config", "promtool check rules", "promtool test rules"):
            report("skipped", what, "promtool not found (Debian: apt-get install prometheus)")
        return
    for what, cmd in (
        ("promtool check config prometheus.yml", ["promtool", "check", "config", "prometheus.yml"]),
        ("promtool check rules netmit-alerts.yml", ["promtool", "check", "rules", "netmit-alerts.yml"]),
        ("promtool test rules netmit-alerts.test.yml", ["promtool", "test", "rules", "netmit-alerts.test.yml"]),
    ):
        rc, out = run(cmd, cwd=PROM)
        report("passed" if rc == 0 else "failed", what, "" if rc == 0 else out)
    rules = [
        {"record": f"netmit:dashboard_expr_{i}", "expr": grafana_to_promql(expr)}
        for i, (_, expr) in enumerate(dashboard_exprs(dashboard))
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
        f.flush()
        rc, out = run(["promtool", "check", "rules", f.name])
    report("passed" if rc == 0 else "failed", f"dashboard expressions parse as PromQL ({len(rules)})",
           "" if rc == 0 else out)


def check_systemd() -> None:
    if not shutil.which("systemd-analyze"):
        report("skipped", "systemd-analyze verify", "systemd-analyze not found")
        return
    # verify insists that ExecStart= exists: point it at a built netmit, or at true(1).
    binary = find_netmit() or shutil.which("true")
    with tempfile.TemporaryDirectory() as d:
        unit = Path(d) / UNIT.name
        unit.write_text(UNIT.read_text().replace(dist_constants().get("BIN_PATH", "/usr/bin/netmit"), str(binary)))
        rc, out = run(["systemd-analyze", "verify", str(unit)])
    # verify exits 0 on many warnings (an unknown value is "ignoring"): any output fails.
    ok = rc == 0 and not out
    report("passed" if ok else "failed", "systemd-analyze verify netmit.service", "" if ok else out)


def check_kubernetes() -> None:
    try:
        import kubernetes_validate  # noqa: PLC0415
    except ImportError:
        report("skipped", "kubernetes schema validation", "pip install kubernetes-validate")
        return
    problems = []
    for doc in yaml.safe_load_all(DAEMONSET.read_text()):
        for version in ("1.30.0", "1.33.0"):
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{doc['kind']} ({version}): {e.message} at {list(e.path)}")
    check("daemonset.yaml validates against Kubernetes 1.30 and 1.33 schemas (strict)", problems)


def find_netmit() -> Path | None:
    for candidate in (os.environ.get("NETMIT"), ROOT / "target" / "release" / "netmit"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def check_steer_rules(configs: list[dict]) -> None:
    netmit = find_netmit()
    if not netmit:
        report("skipped", "steering rules parse", "no netmit binary (cargo build --release, or NETMIT=path)")
        return
    rules = [r for c in configs for i in c.get("interface", []) for r in i.get("steer", [])]
    with tempfile.NamedTemporaryFile(suffix=".pcap") as pcap:
        # An empty capture: only the rules are parsed (command-line errors exit with 2).
        pcap.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        pcap.flush()
        cmd = [str(netmit), "classify", "--pcap", pcap.name]
        for rule in rules:
            cmd += ["--steer", rule]
        rc, out = run(cmd)
    if rc == 2:
        report("failed", f"steering rules parse ({len(rules)})", out)
    elif rc != 0:
        report("skipped", "steering rules parse", f"netmit classify failed for another reason: {out}")
    else:
        shown = netmit.relative_to(ROOT) if netmit.is_relative_to(ROOT) else netmit
        report("passed", f"steering rules parse ({len(rules)}, by {shown})")


DIST = ROOT / "xtask" / "src" / "dist" / "mod.rs"


def dist_constants() -> dict[str, str]:
    """The `pub const NAME: &str = "...";` values of xtask's dist module."""
    consts = dict(re.findall(r'pub const (\w+): &str = "([^"]*)";', DIST.read_text()))
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    consts["VERSION"] = cargo["workspace"]["package"]["version"]
    return consts


def check_dist() -> None:
    c = dist_constants()
    missing = [k for k in ("IMAGE", "BIN_PATH", "CONFIG_PATH") if k not in c]
    if missing:
        report("failed", "xtask dist constants", f"not found in {DIST}: {missing}")
        return
    image = f"{c['IMAGE']}:{c['VERSION']}"
    problems = []
    for doc in yaml.safe_load_all(DAEMONSET.read_text()):
        if not doc or doc.get("kind") != "DaemonSet":
            continue
        for ctr in doc["spec"]["template"]["spec"]["containers"]:
            if ctr.get("image") != image:
                problems.append(f"container {ctr['name']} runs {ctr.get('image')}, dist builds {image}")
            cmd = ctr.get("command", [])
            if cmd[:1] != [c["BIN_PATH"]]:
                problems.append(f"container {ctr['name']} runs {cmd[:1]}, the image has {c['BIN_PATH']}")
            if c["CONFIG_PATH"] not in cmd:
                problems.append(f"container {ctr['name']} does not pass {c['CONFIG_PATH']}")
            mounts = {m["mountPath"] for m in ctr.get("volumeMounts", [])}
            if str(Path(c["CONFIG_PATH"]).parent) not in mounts:
                problems.append(f"nothing is mounted at {Path(c['CONFIG_PATH']).parent}")
    unit = UNIT.read_text()
    for key in ("ExecStart=", "ExecReload=", "ExecStopPost="):
        for line in (l for l in unit.splitlines() if l.startswith(key)):
            if "netmit" in line and c["BIN_PATH"] not in line:
                problems.append(f"unit: {line} does not use {c['BIN_PATH']}")
    if f"ExecStart={c['BIN_PATH']} daemon --config {c['CONFIG_PATH']}" not in unit:
        problems.append(f"unit: ExecStart is not `{c['BIN_PATH']} daemon --config {c['CONFIG_PATH']}`")
    manifest = ROOT / "target" / "dist" / "MANIFEST"
    if manifest.exists() and f"image: {image} " not in manifest.read_text():
        problems.append(f"{manifest} does not name {image}")
    check(f"DaemonSet and unit match what xtask dist builds ({image}, {c['BIN_PATH']})", problems)


def main() -> int:
    metrics = documented_metrics()
    if not metrics:
        print("FAIL could not read the metrics table of docs/metrics.md")
        return 1
    check_yaml()
    try:
        dashboard = json.loads(DASHBOARD.read_text())
        report("passed", "dashboard JSON parses")
    except json.JSONDecodeError as e:
        report("failed", "dashboard JSON parses", str(e))
        return 1
    check_promql(metrics, dashboard)
    check_dashboard(dashboard)
    configs = check_toml()
    check_promtool(dashboard)
    check_systemd()
    check_kubernetes()
    check_steer_rules(configs)
    check_dist()
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
