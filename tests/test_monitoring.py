"""The shipped Grafana dashboard and Prometheus alert rules (deploy/monitoring/; issue 14 item 3).

1. Every metric name either file uses is exported by a real running node's /metrics (a node of a
   two-validator chain, started in-process with `node.daemon.start_node`, so the P2P metrics
   are there too; its peer never comes up, which changes no metric's presence).
2. `promtool check rules`, `promtool check config` and the rule unit tests
   (`promtool test rules deploy/monitoring/gmchain-alerts.test.yml`) pass. promtool comes with
   Debian's `prometheus` package; the test is skipped, saying so, only when it is absent.
3. The dashboard has the panels docs/ops.md promises, each with a query.

The drill that a node which falls behind trips the catching-up alert is
tests/test_monitoring_drill.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from gmchain.node.cluster import init_cluster
from gmchain.node.config import load_config
from gmchain.node.daemon import start_node
from tests.cluster_helpers import free_port_block

ROOT = Path(__file__).resolve().parent.parent
MON = ROOT / "deploy" / "monitoring"
RULES = MON / "gmchain-alerts.yml"
RULE_TESTS = MON / "gmchain-alerts.test.yml"
DASHBOARD = MON / "gmchain-dashboard.json"
PROM_CONFIG = MON / "prometheus.yml"

# Series Prometheus makes itself for every target (not exported by the node).
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}

__all__ = ["exported_names", "metric_names", "rule_exprs"]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers outside label matchers, ranges,
    grouping clauses and string literals that are not function calls or keywords."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\b(?:group_left|group_right)\b", " ", e)
    out = set()
    for m in re.finditer(r"(?<![0-9.\w])[A-Za-z_:][A-Za-z0-9_:]*", e):
        name = m.group(0)
        if re.match(r"\s*\(", e[m.end() :]) or name.lower() in _KEYWORDS:
            continue  # a function call or an operator keyword
        out.add(name)
    return out


def rule_exprs(text: str) -> list[str]:
    """Every rule's `expr` (the rules file keeps each on one line; checked below)."""
    return [m.group(1).strip() for m in re.finditer(r"^\s+expr:\s*(.+)$", text, re.M)]


def dashboard_exprs(doc: dict[str, object]) -> list[str]:
    panels = doc["panels"]
    assert isinstance(panels, list)
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def exported_names(exposition: str) -> set[str]:
    """Every sample name a /metrics text can hold: each `# TYPE` family with the suffixes of its
    type (a family with no sample yet, e.g. a labelled counter nothing counted, still counts)."""
    names: set[str] = set()
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", exposition, re.M):
        name, kind = m.groups()
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
        elif kind == "summary":
            names |= {f"{name}_sum", f"{name}_count", f"{name}_created"}
        elif kind == "counter":
            base = name.removesuffix("_total")
            names |= {f"{base}_total", f"{base}_created"}
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", exposition, re.M))
    return names


def test_metric_names_are_found_in_promql() -> None:
    """The extractor itself: names in, functions, labels, ranges and keywords out."""
    got = metric_names(
        'histogram_quantile(0.99, sum by (le, instance) (rate(a_bucket{instance=~"$i"}[5m])))'
        ' * on (instance) group_left (name) b_info > 1e9 and on (instance) c{x="y"} > 0'
    )
    assert got == {"a_bucket", "b_info", "c"}
    assert metric_names("time() - gmchain_last_block_timestamp_seconds") == {
        "gmchain_last_block_timestamp_seconds"
    }


def test_every_rule_expr_is_on_one_line() -> None:
    text = RULES.read_text()
    rules = re.findall(r"^\s+- (?:alert|record):", text, re.M)
    exprs = rule_exprs(text)
    assert len(rules) == len(exprs) >= 7
    for e in exprs:
        assert e and not e.endswith(("|", ">", "|-", ">-")), f"multi-line expr: {e!r}"


async def test_every_metric_the_dashboard_and_alerts_use_is_exported(tmp_path: Path) -> None:
    base_rpc = free_port_block(2)
    init_cluster(tmp_path / "c", validators=2, base_rpc=base_rpc, base_p2p=free_port_block(2))
    cfg = replace(load_config(tmp_path / "c" / "node0" / "config.toml"), p2p_port=0)
    handle = await start_node(cfg, rpc_port=0)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(handle.rpc_url + "/metrics") as resp,
        ):
            assert resp.status == 200
            exposition = await resp.text()
    finally:
        await handle.stop()
    exported = exported_names(exposition)
    assert "gmchain_p2p_handshake_refusals_total" in exported  # a node with peers was scraped

    used: dict[str, set[str]] = {}
    for e in rule_exprs(RULES.read_text()):
        for n in metric_names(e):
            used.setdefault(n, set()).add(RULES.name)
    doc = json.loads(DASHBOARD.read_text())
    for e in dashboard_exprs(doc):
        for n in metric_names(e):
            used.setdefault(n, set()).add(DASHBOARD.name)
    missing = {n: sorted(w) for n, w in used.items() if n not in exported | PROMETHEUS_OWN}
    assert not missing, f"metrics used but not exported by a running node: {missing}"
    # what the operator alerts on (issue 14 item 3) is both exported and used
    for name in (
        "gmchain_catching_up",
        "gmchain_sync_lag_blocks",
        "gmchain_last_block_timestamp_seconds",
        "gmchain_round_timeouts_total",
        "gmchain_failed_receipts_total",
        "gmchain_disk_free_bytes",
        "gmchain_build_info",
        "gmchain_node_info",
        "process_resident_memory_bytes",
    ):
        assert name in exported and name in used, name
    _check_the_metrics_table(exposition)
    node_info = re.search(r"^gmchain_node_info\{([^}]*)\} 1\.0$", exposition, re.M)
    assert node_info is not None and 'name="node0"' in node_info.group(1)
    build = re.search(r"^gmchain_build_info\{([^}]*)\} 1\.0$", exposition, re.M)
    assert build is not None
    for label in ("version", "commit", "python", "openssl"):
        assert f'{label}="' in build.group(1)


def _check_the_metrics_table(exposition: str) -> None:
    """docs/ops.md "Metrics" names every family the node exports, and nothing else."""
    doc = (ROOT / "docs" / "ops.md").read_text()
    section = doc.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    documented = {n for row in rows for n in re.findall(r"`(gmchain_[a-z0-9_]+)`", row)}
    families = set(re.findall(r"^# TYPE (\S+) \S+$", exposition, re.M))
    own = {f for f in families if f.startswith("gmchain_") and not f.endswith("_created")}
    assert documented == own, (sorted(own - documented), sorted(documented - own))
    process_row = next(r for r in section.splitlines() if r.startswith("| `process_*`"))
    for f in families:
        if f.startswith("process_"):
            assert f"`{f}`" in process_row, f
    gc_row = next(r for r in section.splitlines() if r.startswith("| `python_gc_*`"))
    gc_families = {f for f in families if f.startswith("python_gc_")}
    assert gc_families, "the node exports no python_gc_* family"
    for f in gc_families:
        assert f"`{f}_total`" in gc_row or f"`{f}`" in gc_row, f


def test_dashboard_has_the_promised_panels() -> None:
    doc = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in doc["panels"]]
    for want in (
        "Block height",
        "Committed TPS",
        "Commit latency",
        "Peers",
        "Round timeouts",
        "Catching up and lag",
        "Disk free",
        "RPC errors by code",
        "Mempool size",
        "Resident memory",
    ):
        assert any(t.startswith(want) for t in titles), (want, titles)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for p in doc["panels"]:
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return tool


@pytest.mark.parametrize(
    "args",
    [
        ("check", "rules", str(RULES)),
        ("check", "config", str(PROM_CONFIG)),
        ("test", "rules", str(RULE_TESTS)),
    ],
    ids=["check-rules", "check-config", "test-rules"],
)
def test_promtool_accepts_the_shipped_files(args: tuple[str, ...]) -> None:
    out = subprocess.run(
        [_promtool(), *args], capture_output=True, text=True, cwd=MON, timeout=120, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
