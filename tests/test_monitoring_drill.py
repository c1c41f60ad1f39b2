"""Drill (issue 14, acceptance): a node that falls behind trips the catching-up alert.

Real processes: a 4-validator cluster (`gmchain cluster` code, tests/cluster_helpers.py) under a
steady load, every P2P session through a TCP proxy (tests/faultproxy.py). A scraper thread reads
the victim's /metrics every second (Prometheus' `up` is 1 when the scrape answered, else 0).
The victim is killed while the others commit, then restarted with its links cut (so it stays
behind long enough to be seen at a 1 s scrape interval: a restarted node that reaches its peers
at once catches up within a second or two here), then healed; it catches up.

The scraped series then go to `promtool test rules` (Debian's `prometheus` package):
1. the shipped GmchainCatchingUp `expr` (read from deploy/monitoring/gmchain-alerts.yml, not
   copied) evaluates to the victim at exactly the scrapes where it reported catching up, and to
   nothing where it did not; the GmchainNodeDown `expr` selects it while it was killed;
2. the shipped rules, with only GmchainCatchingUp's `for:` shortened from minutes to the
   drill's seconds, fire GmchainCatchingUp (labelled with the node's name) after the victim has
   been catching up that long, and no longer once it caught up. The `for:` durations of the
   shipped file are checked by its own unit tests (deploy/monitoring/gmchain-alerts.test.yml).
Deadlines are failure bounds only (a loaded 2-core machine).
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster_helpers import Cluster, LoadGen, check_invariants, running_cluster, wait_until
from tests.test_monitoring import RULES, rule_exprs

pytestmark = pytest.mark.slow

SCRAPE_S = 1.0  # the scrape interval the drill's series are written with
ALERT_FOR_S = 3  # GmchainCatchingUp's `for:` in the drill's copy of the rules
BEHIND_BLOCKS = 20  # the others commit at least this many blocks while the victim is down
ISOLATED_SCRAPES = ALERT_FOR_S + 3  # scrapes that report catching up before the links heal


@dataclass
class Scrape:
    at: int  # the scrape's index: its time in the series is at * SCRAPE_S
    up: bool
    values: dict[str, float]  # the unlabelled gmchain_* samples (empty when not up)


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in re.finditer(r"^(gmchain_[a-z_]+) (\S+)$", text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


class Scraper:
    """Scrapes one node's /metrics every SCRAPE_S on a thread, like Prometheus would."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.scrapes: list[Scrape] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def start(self) -> Scraper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        start = time.monotonic()
        i = 0
        while not self._stop.is_set():
            self.scrapes.append(Scrape(at=i, up=False, values={}))
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=SCRAPE_S * 0.8)
                try:
                    conn.request("GET", "/metrics")
                    resp = conn.getresponse()
                    if resp.status == 200:
                        values = parse_metrics(resp.read().decode())
                        self.scrapes[-1] = Scrape(at=i, up=True, values=values)
                finally:
                    conn.close()
            except (OSError, http.client.HTTPException):
                pass
            i += 1
            # on the 1 s grid: a late scrape does not shift the later ones
            self._stop.wait(max(0.0, start + i * SCRAPE_S - time.monotonic()))

    def last(self) -> Scrape | None:
        return self.scrapes[-1] if self.scrapes else None


def series_values(scrapes: list[Scrape], metric: str) -> str:
    """promtool's value notation: the sample where the scrape answered, `stale` at the first
    failed scrape after an answered one (as Prometheus marks it), `_` after that."""
    out = []
    prev_up = False
    for s in scrapes:
        if s.up and metric in s.values:
            out.append(repr(s.values[metric]))
        else:
            out.append("stale" if prev_up else "_")
        prev_up = s.up
    return " ".join(out)


def drill_rules(text: str) -> str:
    """The shipped rules with only GmchainCatchingUp's `for:` shortened to ALERT_FOR_S."""
    head, sep, tail = text.partition("- alert: GmchainCatchingUp\n")
    assert sep, "the rules file has no GmchainCatchingUp alert"
    new_tail, n = re.subn(r"(\n\s+for: )\S+", rf"\g<1>{ALERT_FOR_S}s", tail, count=1)
    assert n == 1
    return head + sep + new_tail


def test_a_node_that_falls_behind_trips_the_catching_up_alert(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    exprs = {
        name: e
        for name, e in zip(
            re.findall(r"- alert: (\w+)", RULES.read_text()),
            rule_exprs(RULES.read_text()),
            strict=True,
        )
    }
    with running_cluster(tmp_path / "c", proxied=True) as (c, net):
        assert net is not None
        victim, live = c.validators[3], c.validators[:3]
        load = LoadGen(c, live, rate=30).start()
        scraper = Scraper(c.rpc_port(victim)).start()
        try:
            wait_until(
                lambda: any(s.values.get("gmchain_catching_up") == 0.0 for s in scraper.scrapes),
                60,
                f"a scrape of {victim} in sync before the kill",
            )
            assert c.kill(victim)
            killed_at = len(scraper.scrapes)
            down_at = max(h or 0 for h in c.heights(live).values())
            c.wait_height(down_at + BEHIND_BLOCKS, live, timeout_s=120)
            links = [f"{a}>{b}" for a, b in c.dial_pairs() if victim in (a, b)]
            net.cut(links)
            c.start([victim])

            def reported_behind() -> bool:
                ups = [s for s in scraper.scrapes[killed_at:] if s.up][-ISOLATED_SCRAPES:]
                return len(ups) == ISOLATED_SCRAPES and all(
                    s.values.get("gmchain_catching_up") == 1.0 for s in ups
                )

            wait_until(reported_behind, 120, f"{ISOLATED_SCRAPES} scrapes of {victim} behind")
            net.heal(links)
            target = max(h or 0 for h in c.heights(live).values())

            def caught_up() -> bool:
                s = scraper.last()
                return (
                    s is not None
                    and s.up
                    and s.values.get("gmchain_catching_up") == 0.0
                    and s.values.get("gmchain_block_height", 0) >= target
                )

            wait_until(caught_up, 120, f"{victim} to catch up to {target}")
            n = len(scraper.scrapes)
            wait_until(lambda: len(scraper.scrapes) >= n + ALERT_FOR_S + 1, 30, "scrapes after")
        finally:
            scraper.stop()
            load.stop()
        check_invariants(c, load.acked, expiry=load.expiry)
        _check_with_promtool(promtool, c, victim, scraper.scrapes, exprs, tmp_path)
        _check_the_story(c, victim, live)


_DOWN_REASONS = "eof|connection_error|idle_timeout|peer_closed|write_timeout"


def _check_the_story(c: Cluster, victim: str, live: list[str]) -> None:
    """The logs tell what happened (node/opslog.py): the others saw the victim leave and timed
    out the rounds it led; the victim said it was catching up and when it had caught up."""
    for name in live:
        text = c.log(name)
        assert re.search(
            rf"peer disconnected: {victim} \(\w+\) at \S+ \({_DOWN_REASONS}\)",
            text,
        ), name
        assert re.search(rf"peer connected: {victim} \(", text), name
    timeouts = "".join(c.log(n) for n in live)
    assert re.search(rf"round \d+ timed out waiting for leader {victim} \(", timeouts)
    text = c.log(victim)
    assert "catching up: the node has not heard any peer's certificates yet" in text
    assert re.search(r"caught up: height \d+ -> \d+", text), text[-3000:]
    port = c.rpc_port(live[0])
    metrics = parse_metrics(_get(port, "/metrics"))
    assert metrics["gmchain_round_timeouts_total"] >= 1, metrics


def _get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def _check_with_promtool(
    promtool: str,
    c: Cluster,
    victim: str,
    scrapes: list[Scrape],
    exprs: dict[str, str],
    tmp_path: Path,
) -> None:
    instance = f"127.0.0.1:{c.rpc_port(victim)}"
    sel = f'{{job="gmchain", instance="{instance}"}}'
    behind = [s.at for s in scrapes if s.up and s.values.get("gmchain_catching_up") == 1.0]
    synced = [s.at for s in scrapes if s.up and s.values.get("gmchain_catching_up") == 0.0]
    down = [s.at for s in scrapes if not s.up]
    lags = [s.values.get("gmchain_sync_lag_blocks", 0) for s in scrapes if s.up]
    print(
        f"\n{len(scrapes)} scrapes of {victim}: {len(down)} down, {len(behind)} catching up,"
        f" {len(synced)} in sync; largest lag {max(lags):.0f} blocks"
    )
    assert behind and synced and down
    assert synced[0] < down[0] < behind[0] < synced[-1]

    lines = [
        "rule_files: [drill-rules.yml]",
        "evaluation_interval: 1s",
        "tests:",
        f"  - interval: {int(SCRAPE_S)}s",
        "    input_series:",
        f"      - series: 'up{sel}'",
        f"        values: '{' '.join('1' if s.up else '0' for s in scrapes)}'",
        f"      - series: 'gmchain_catching_up{sel}'",
        f"        values: '{series_values(scrapes, 'gmchain_catching_up')}'",
        '      - series: \'gmchain_node_info{job="gmchain", instance="' + instance + '",'
        f' name="{victim}", node_id="x", chain_id="x", role="validator"}}\'',
        f"        values: '{' '.join('1' if s.up else '_' for s in scrapes)}'",
        "    promql_expr_test:",
    ]
    labels = f'{{instance="{instance}", job="gmchain", name="{victim}"}}'
    for s in scrapes:
        lines += [f"      - expr: '{exprs['GmchainCatchingUp']}'", f"        eval_time: {s.at}s"]
        if s.at in behind:
            lines += [
                "        exp_samples:",
                f"          - labels: '{labels}'",
                "            value: 1",
            ]
        else:
            lines += ["        exp_samples: []"]
    for at in down[1:]:  # (the first failed scrape: `up` is 0 from then on)
        lines += [
            f"      - expr: '{exprs['GmchainNodeDown']}'",
            f"        eval_time: {at}s",
            "        exp_samples:",
            f"          - labels: 'up{sel}'",
            "            value: 0",
        ]
    # The alert, `for:` ALERT_FOR_S: firing once the victim has reported catching up at
    # ALERT_FOR_S + 1 consecutive scrapes, and not after it caught up.
    run = _first_run(behind, ALERT_FOR_S + 1)
    annotations = _annotations(RULES.read_text(), "GmchainCatchingUp", victim, instance)
    alert = [
        "    alert_rule_test:",
        f"      - eval_time: {run}s",
        "        alertname: GmchainCatchingUp",
        "        exp_alerts:",
        f"          - exp_labels: {{severity: warning, instance: '{instance}', job: gmchain,"
        f" name: {victim}}}",
        "            exp_annotations:",
        *(f"              {k}: {json.dumps(v)}" for k, v in annotations.items()),
        f"      - eval_time: {synced[-1]}s",
        "        alertname: GmchainCatchingUp",
        "        exp_alerts: []",
        f"      - eval_time: {synced[0]}s",
        "        alertname: GmchainCatchingUp",
        "        exp_alerts: []",
    ]
    (tmp_path / "drill-rules.yml").write_text(drill_rules(RULES.read_text()))
    test_file = tmp_path / "drill-test.yml"
    test_file.write_text("\n".join(lines + alert) + "\n")
    out = subprocess.run(
        [promtool, "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def _annotations(rules: str, alert: str, name: str, instance: str) -> dict[str, str]:
    """The alert's summary and description as Prometheus renders them for this node."""
    block = rules.split(f"- alert: {alert}\n", 1)[1].split("- alert:", 1)[0]
    out = {}
    for key in ("summary", "description"):
        m = re.search(rf'^\s+{key}: "(.*)"$', block, re.M)
        assert m is not None, (alert, key)
        text = m.group(1).replace("{{ $labels.name }}", name)
        out[key] = text.replace("{{ $labels.instance }}", instance)
    return out


def _first_run(ats: list[int], length: int) -> int:
    """The index of the last scrape of the first run of `length` consecutive scrape indexes."""
    for i in range(len(ats) - length + 1):
        if ats[i + length - 1] - ats[i] == length - 1:
            return ats[i + length - 1]
    raise AssertionError(f"no {length} consecutive catching-up scrapes in {ats}")
