"""PNG plots of an experiment (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from genretune.output_files import Outputs, atomic_outputs
from genretune.results import experiment_dir as layout
from genretune.results.experiment import Experiment

TOP_N = 5


def _save(fig, path: Path) -> None:
    """Lay the figure out, write it to path, and free it (also when the write fails)."""
    try:
        fig.tight_layout()
        fig.savefig(path)
    finally:
        _pyplot().close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ordered_history(exp: Experiment) -> pd.DataFrame:
    return exp.history.sort_values("timestamp").reset_index(drop=True)


def plot_search_progress(exp: Experiment, path: Path) -> Path:
    """Best-so-far objective against wall time and against cumulative trial-epochs."""
    plt = _pyplot()
    h = _ordered_history(exp)
    best = h[exp.metric].cummax() if exp.mode == "max" else h[exp.metric].cummin()
    seconds = h["timestamp"] - h["timestamp"].min()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    for ax, x, label in (
        (axes[0], seconds / 60, "wall time (minutes)"),
        (axes[1], np.arange(1, len(h) + 1), "cumulative trial-epochs"),
    ):
        ax.scatter(x, h[exp.metric], s=8, color="0.7", label="every epoch")
        ax.step(x, best, where="post", color="C0", lw=2, label="best so far")
        ax.set_xlabel(label)
        ax.set_ylabel(exp.metric)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Search progress: {exp.path.name} ({len(exp.trials)} trials)")
    _save(fig, path)
    return path


def plot_learning_curves(exp: Experiment, path: Path, metric: str = "val_f1") -> Path:
    """Validation curves of the top trials in colour; the others in grey, ending where ASHA or
    patience stopped them (x)."""
    plt = _pyplot()
    top = list(exp.trials["trial_id"].head(TOP_N))
    fig, ax = plt.subplots(figsize=(8.5, 5), dpi=120)
    for trial_id, df in exp.history.groupby("trial_id"):
        if trial_id in top:
            continue
        ax.plot(df["training_iteration"], df[metric], color="0.75", lw=1)
        ax.scatter(
            df["training_iteration"].iloc[-1:], df[metric].iloc[-1:], marker="x", color="0.5", s=25
        )
    for rank, trial_id in enumerate(top):
        df = exp.history[exp.history["trial_id"] == trial_id]
        ax.plot(
            df["training_iteration"],
            df[metric],
            lw=2,
            color=f"C{rank}",
            label=f"#{rank + 1} {trial_id}",
        )
    ax.scatter([], [], marker="x", color="0.5", label="other trials: stopped here")
    ax.set_xlabel("epoch (training_iteration)")
    ax.set_ylabel(metric)
    ax.set_title(f"Learning curves, top {len(top)} trials by {exp.metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return path


def _category_order(label: str) -> tuple:
    try:
        return (label == "None", float(label), label)
    except ValueError:
        return (label == "None", float("inf"), label)


def plot_params(exp: Experiment, path: Path) -> Path:
    """Each searched parameter against the trial's objective."""
    plt = _pyplot()
    params = [p for p in exp.searched if p in exp.trials]
    objective = exp.metric if exp.metric in exp.trials else f"best_{exp.metric}"
    cols = min(4, max(1, len(params)))
    rows = int(np.ceil(len(params) / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), dpi=120, squeeze=False)
    for ax, param in zip(axes.flat, params, strict=False):
        values = exp.trials[param]
        y = exp.trials[objective]
        spec = exp.settings["space"].get(param, "")
        if "Categorical" in str(spec) or values.dtype == object:
            labels = [str(v) for v in values.astype(object).where(values.notna(), None)]
            cats = sorted(set(labels), key=_category_order)
            x = [cats.index(v) for v in labels]
            ax.set_xticks(range(len(cats)), cats)
        else:
            x = values.astype(float)
            if '"log": true' in str(spec).lower() or "'log': True" in str(spec):
                ax.set_xscale("log")
        ax.scatter(x, y, s=22, alpha=0.8)
        ax.set_xlabel(param)
        ax.set_ylabel(objective)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(params) :]:
        ax.set_axis_off()
    fig.suptitle("Searched parameters vs objective (one point per trial)")
    _save(fig, path)
    return path


def plot_importances(exp: Experiment, path: Path) -> Path | None:
    """Optuna parameter importances from the persisted study (None if it cannot tell yet)."""
    import optuna

    url = layout.study_url(exp.path, exp.settings)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return None  # no study to read (opening it would create an empty one)
    try:
        study = optuna.load_study(study_name=layout.study_name(exp.path, exp.settings), storage=url)
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, KeyError):
        return None
    if not importances:
        return None
    plt = _pyplot()
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5), dpi=120)
    ax.barh(names, [importances[n] for n in names], color="C0")
    ax.set_xlabel("importance (fANOVA, share of objective variance)")
    ax.set_title(f"Parameter importances ({len(study.trials)} Optuna trials)")
    ax.grid(alpha=0.3, axis="x")
    _save(fig, path)
    return path


def _matches(table, point: dict) -> np.ndarray:
    """Rows whose parameters equal `point` (None matches a missing value)."""
    mask = np.ones(len(table), dtype=bool)
    for key, value in point.items():
        if key not in table:
            continue
        column = table[key]
        if value is None:
            mask &= column.isna().to_numpy()
        else:
            mask &= (column.astype(object) == value).fillna(False).to_numpy(dtype=bool)
    return mask


def plot_pareto(exp: Experiment, path: Path) -> Path:
    """Every finished trial on the first two objectives, the Pareto front joined and
    highlighted, the baseline marked."""
    from genretune.results.pareto import non_dominated, objective_table, objectives_of

    plt = _pyplot()
    table = objective_table(exp)
    objectives = objectives_of(exp)
    (x_metric, x_mode), (y_metric, y_mode) = objectives[:2]
    modes = [m for _, m in objectives]
    metrics = [m for m, _ in objectives]
    front = table[non_dominated(table[metrics].to_numpy(dtype=float), modes)]
    fig, ax = plt.subplots(figsize=(6.5, 5), dpi=120)
    ax.scatter(table[x_metric], table[y_metric], s=22, color="0.6", label="trials")
    line = front.sort_values(x_metric)
    # Two objectives: the front is a staircase, joined. Three: its points seen on the first
    # two are not a line (a point may be on the front for the third alone), so not joined.
    style = "-o" if len(metrics) == 2 else "o"
    ax.plot(line[x_metric], line[y_metric], style, color="C3", label="Pareto front", zorder=4)
    baseline = exp.settings.get("baseline") or {}
    if baseline:
        rows = table[_matches(table, baseline)]
        if len(rows):
            ax.scatter(rows[x_metric], rows[y_metric], s=140, marker="*", color="C0",
                       zorder=5, label="baseline")  # fmt: skip
    ax.set_xlabel(f"{x_metric} ({x_mode})")
    ax.set_ylabel(f"{y_metric} ({y_mode})")
    if len(metrics) > 2:
        ax.set_title(f"front over {', '.join(metrics)} (first two shown)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return path


# The files write_plots may write, in its order.
PLOT_FILES = (
    "search_progress.png",
    "learning_curves.png",
    "params_vs_objective.png",
    "param_importances.png",
    "pareto_front.png",
    "best_trial_decision_rules.png",
)


def plot_files(exp: Experiment) -> tuple[str, ...]:
    """The PLOT_FILES write_plots may write for this experiment."""
    several = len(exp.settings.get("objectives") or []) >= 2
    return tuple(f for f in PLOT_FILES if several or f != "pareto_front.png")


def write_plots(
    exp: Experiment,
    out_dir: Path,
    decision_plot: bool = True,
    outputs: Outputs | None = None,
    flag: str = "--plots",
) -> list[Path]:
    """The plots of `exp` in `out_dir` (the paths written there), all or nothing: rendered into
    a staging directory of `outputs` and renamed into `out_dir` with the command's other
    outputs; without `outputs`, on their own. A plot of the same name is replaced, other
    files in `out_dir` are left as they are."""
    if outputs is None:
        with atomic_outputs() as own:
            return write_plots(exp, out_dir, decision_plot, own, flag)
    with outputs.directory(out_dir, flag) as staging:
        progress, curves, params, importances, pareto, decision = (staging / f for f in PLOT_FILES)
        written = [
            plot_search_progress(exp, progress),
            plot_learning_curves(exp, curves),
            plot_params(exp, params),
        ]
        importance = plot_importances(exp, importances)
        if importance:
            written.append(importance)
        if len(exp.settings.get("objectives") or []) >= 2:
            written.append(plot_pareto(exp, pareto))
        if decision_plot:
            from genretune.results.export import best_trial_decision_plot

            written.append(best_trial_decision_plot(exp, decision))
    return [out_dir / p.name for p in written]
