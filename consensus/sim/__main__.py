"""CLI: `python -m gmchain.consensus.sim --seeds N --nodes 4 --byzantine 1 --faults all --json`.

The last line printed with --json is one JSON object: seeds, violations, liveness_failures,
commits, virtual_seconds, wall_seconds (and failing seeds with their replay commands).
A failing seed prints the exact command that replays it bit for bit.
"""

from __future__ import annotations

import argparse
import json
import sys

from gmchain.consensus.mutations import Bug
from gmchain.consensus.sim.world import FAULT_KINDS, SimConfig, run_seed

__all__ = ["main"]


def _parse_faults(text: str) -> frozenset[str]:
    if text == "all":
        return frozenset(FAULT_KINDS)
    if text == "none":
        return frozenset()
    kinds = frozenset(k.strip() for k in text.split(",") if k.strip())
    unknown = kinds - set(FAULT_KINDS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown fault kinds: {sorted(unknown)}")
    return kinds


def main(argv: list[str] | None = None) -> int:
    import time  # the wall clock is for the report only; never imported by library modules

    ap = argparse.ArgumentParser(prog="python -m gmchain.consensus.sim", description=__doc__)
    ap.add_argument("--seeds", type=int, default=100, help="number of seeds to run")
    ap.add_argument("--seed", type=int, default=None, help="run exactly this seed")
    ap.add_argument("--seed-start", type=int, default=0)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--byzantine", type=int, default=1)
    ap.add_argument("--faults", type=_parse_faults, default=frozenset(FAULT_KINDS))
    ap.add_argument("--fault-ms", type=int, default=1500)
    ap.add_argument("--liveness-ms", type=int, default=12_000)
    ap.add_argument("--no-twins", action="store_true")
    ap.add_argument("--outage", type=int, default=30, help="percent of runs with a long outage")
    ap.add_argument("--twins-rate", type=int, default=40, help="percent of Byzantine nodes twinned")
    ap.add_argument("--behaviours", default="", help="comma list; default: drawn per seed")
    ap.add_argument("--bug", action="append", default=[], choices=[b.value for b in Bug])
    ap.add_argument(
        "--votes",
        choices=("mixed", "broadcast", "leader"),
        default="mixed",
        help="vote dissemination (L3): broadcast, to the next leader, or mixed by seed parity",
    )
    ap.add_argument("--reconfig", type=int, default=0, help="governance actions (epochs)")
    ap.add_argument("--spares", type=int, default=0, help="nodes outside genesis that may join")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if (
        args.nodes < 1
        or args.byzantine < 0
        or (args.byzantine and 3 * args.byzantine >= args.nodes)
    ):
        ap.error("need nodes >= 1 and nodes > 3 * byzantine")
    start = args.seed_start
    seeds = [args.seed] if args.seed is not None else list(range(start, start + args.seeds))
    t0 = time.perf_counter()
    violations = 0
    liveness = 0
    commits = 0
    epochs = 0
    virtual_ms = 0
    failing: list[dict[str, object]] = []
    for s in seeds:
        cfg = SimConfig(
            seed=s,
            nodes=args.nodes,
            byzantine=args.byzantine,
            faults=args.faults,
            bugs=frozenset(Bug(b) for b in args.bug),
            twins=not args.no_twins,
            twins_rate_percent=args.twins_rate,
            outage_percent=args.outage,
            behaviours=frozenset(x for x in args.behaviours.split(",") if x),
            fault_ms=args.fault_ms,
            liveness_ms=args.liveness_ms,
            votes=args.votes,
            reconfig=args.reconfig,
            spares=args.spares,
        )
        r = run_seed(cfg)
        violations += len(r.violations)
        liveness += int(r.liveness_failure)
        commits += r.commits
        epochs += r.epochs
        virtual_ms += r.virtual_ms
        if r.violations or r.liveness_failure:
            what = "; ".join(r.violations[:3]) or r.note or "liveness failure"
            print(f"FAIL seed {s}: {what}\n  replay: {r.command}", file=sys.stderr)
            failing.append({"seed": s, "problem": what, "replay": r.command})
    wall = time.perf_counter() - t0
    summary = {
        "seeds": len(seeds),
        "violations": violations,
        "liveness_failures": liveness,
        "commits": commits,
        "epochs": epochs,
        "virtual_seconds": round(virtual_ms / 1000, 3),
        "wall_seconds": round(wall, 3),
        "seeds_per_second": round(len(seeds) / wall, 2) if wall > 0 else None,
        "failing": failing[:20],
    }
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        for k, v in summary.items():
            print(f"{k}: {v}")
    return 1 if violations or liveness else 0


if __name__ == "__main__":
    sys.exit(main())
