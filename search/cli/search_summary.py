"""What `genretune search` prints when a search ends or is interrupted: the best trials, the
Pareto front of a multi-objective search, and the commands to go on with."""

from __future__ import annotations

import shlex
from typing import Any

from genretune.data import InputError
from genretune.search.settings import (
    SearchSettings,
)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _best_value(s: SearchSettings, result) -> float:
    """A trial's best value of the search metric over its epochs."""
    values = result.metrics_dataframe[s.metric]
    return float(values.max() if s.mode == "max" else values.min())


def reported_results(s: SearchSettings, results) -> list:
    """The trials that reported the search metric at least once. A trial that never reported
    (started when the budget or a Ctrl-C ended the search) has neither config nor metrics."""
    out = []
    for r in results:
        df = r.metrics_dataframe
        if r.config is None or df is None or s.metric not in df:
            continue
        if df[s.metric].notna().any():
            out.append(r)
    return out


def summary(s: SearchSettings, results, interrupted: bool = False) -> list[str]:
    lines = [f"experiment: {s.experiment_path} ({len(results)} trials)"]
    errors = [r for r in results if r.error]
    if errors:
        lines.append(f"{len(errors)} trial(s) errored; see their error.txt files")
    reported = reported_results(s, results)
    if not reported:
        return [*lines, "no trial reported a result"]
    sign = 1 if s.mode == "max" else -1
    best = max(reported, key=lambda r: sign * _best_value(s, r))
    lines.append(
        f"best trial {best.metrics.get('trial_id')}: {s.metric} = {_fmt(_best_value(s, best))}"
    )
    lines += [f"  {k} = {_fmt(best.config[k])}" for k in s.space if k in best.config]
    if s.baseline:
        as_baseline = [
            r for r in reported if all(r.config.get(k) == v for k, v in s.baseline.items())
        ]
        if as_baseline:
            value = max(sign * _best_value(s, r) for r in as_baseline) * sign
            lines.append(f"baseline configuration: {s.metric} = {_fmt(value)}")
    storage = f" --storage-path {shlex.quote(s.storage_path)}"
    if interrupted:
        return [*lines, "next:", f"  {resume_command(s)}"]
    if s.objectives:
        lines += _front_lines(s)
        lines += [
            "next:",
            f"  genretune results {s.name}{storage} --pareto --plots plots/",
            f"  genretune export {s.name}{storage} --pareto --where "
            f'"{s.objectives[1][0]} >= ..." -o best.json',
            "  genretune train --config best.json",
        ]
        return lines
    lines += [
        "next:",
        f"  genretune results {s.name}{storage}",
        f"  genretune export {s.name}{storage} -o best.json",
        "  genretune train --config best.json",
    ]
    return lines


def _front_lines(s: SearchSettings) -> list[str]:
    """The Pareto front of a multi-objective search, read back from its experiment dir."""
    from genretune.results.experiment import load_experiment
    from genretune.results.pareto import pareto_front

    try:
        front = pareto_front(load_experiment(s.experiment_path))
    except InputError as exc:
        return [f"Pareto front: not available ({exc})"]
    names = [m for m, _ in s.objectives]
    lines = [f"Pareto front: {len(front)} trial(s) on {', '.join(names)}"]
    for _, row in front.iterrows():
        values = ", ".join(f"{m} {_fmt(float(row[m]))}" for m in names)
        lines.append(f"  {row['trial_id']}: {values}")
    return lines


def resume_command(s: SearchSettings) -> str:
    """The command that finishes an interrupted search, to run verbatim from any directory:
    the experiment's absolute storage path, and the cluster it ran on."""
    words = ["genretune", "search", "--resume", s.name, "--storage-path", s.storage_path]
    if s.address:
        words += ["--address", s.address]
    return shlex.join(words)
