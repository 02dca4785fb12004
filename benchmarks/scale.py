"""Scale: a 1,000-trial search on 32 workers, measured part by part.

    python benchmarks/scale.py                        # all parts (about 25 minutes on 2 cores)
    python benchmarks/scale.py --parts searcher --trials 1000

Parts:
  searcher    the default's searcher and scheduler objects driven as the simulator drives them,
              with the SQLite study storage a real search uses, 32 workers, to 1,000 and 3,000
              trials: per-call latency of suggest, on_trial_result and on_trial_complete
              (median, p95, max) as trials accumulate, and driver CPU per trial-epoch.

Writes --json (default benchmarks/results/scale.json, with the command line and the commit)
and a .png of each latency against trial count.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _commit() -> str:
    res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).parent)  # fmt: skip
    return res.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="searcher")
    parser.add_argument("--trials", default="1000,3000", help="searcher part: trial counts")
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flags", default="", help="extra genretune search flags (searcher)")
    parser.add_argument("--json", type=Path, default=RESULTS / "scale.json")
    args = parser.parse_args()
    from scale.searcher import at, run_searcher_part

    out: dict = {"argv": sys.argv, "commit": _commit()}
    if "searcher" in args.parts.split(","):
        counts = [int(n) for n in args.trials.split(",")]
        result = run_searcher_part(max(counts), args.workers, args.seed, args.flags.split())
        out["searcher_run"] = result
        out["searcher"] = {str(n): at(result, n) for n in counts}
        for n in counts:
            row = out["searcher"][str(n)]
            print(f"at {n} trials: " + ", ".join(
                f"{k} median {v['median']} p95 {v['p95']} max {v['max']}" for k, v in row.items()
            ))  # fmt: skip
        print(f"driver CPU per trial-epoch: {result['driver_cpu_ms_per_trial_epoch']} ms "
              f"({result['trial_epochs']} trial-epochs, {result['wall_s']} s)")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
