r"""Learning curves and a table of final metrics for the runs under a directory.

  python -m experiments.report --workdir=runs [--order=reference,nan]

Finds every run (a directory holding ``config.json`` and ``metrics.jsonl``) under
``--workdir``, and for each experiment writes ``<name>_curves.png`` (mean and
spread over the runs of each variant, one line per variant), with
``train.unit_statistics`` also ``<name>_units.png`` (the saturation diagnostics of
every group of noisy units beside the training loss), and a Markdown table of the
final metrics next to the paper's numbers into ``report.md``, which it also prints.
"""

import json
import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from scipy import stats  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from experiments import metrics as metrics_lib  # pylint: disable=wrong-import-position
from experiments import validation  # pylint: disable=wrong-import-position

REPORT_FILE = "report.md"


def find_runs(workdir: str | pathlib.Path,
              order: tuple[str, ...] = ()) -> list[dict[str, Any]]:
  """Every run under ``workdir``: its config, metric records and final metrics (if done).

  Runs come sorted by path, except that variants named in ``order`` come first, in
  that order.
  """
  runs = []
  for config_path in sorted(pathlib.Path(workdir).rglob("config.json")):
    run_dir = config_path.parent
    final_path = run_dir / metrics_lib.FINAL_METRICS_FILE
    runs.append({
        "dir": run_dir,
        "config": json.loads(config_path.read_text()),
        "records": metrics_lib.read_metrics(run_dir),
        "final": json.loads(final_path.read_text()) if final_path.exists() else None,
        "resumes": _resume_history(run_dir),
    })
  rank = {variant: index for index, variant in enumerate(order)}
  return sorted(runs, key=lambda run: rank.get(run["config"]["variant"], len(rank)))


def _resume_history(run_dir: pathlib.Path) -> list[dict[str, Any]]:
  path = run_dir / metrics_lib.RESUME_HISTORY_FILE
  return metrics_lib.read_jsonl(path)[0] if path.exists() else []


def _curve(records, split: str, metric: str):
  rows = [(r["step"], np.asarray(r[metric], np.float64)) for r in records
          if r["split"] == split and metric in r]
  if not rows:
    return None, None
  steps = np.asarray([s for s, _ in rows])
  return steps, np.stack([v for _, v in rows])  # [points, runs]


def chance(run: dict[str, Any]) -> dict[str, float]:
  """The run's chance-level metrics (input_pipeline.chance_metrics); {} for older runs."""
  records = [r for r in run["records"] if r["split"] == "chance"]
  if records:
    return {k: float(np.mean(v)) for k, v in records[-1].items() if k not in ("step", "split")}
  return dict((run["final"] or {}).get("chance", {}))


def plot_experiment(name: str, runs: list[dict[str, Any]], path: pathlib.Path) -> None:
  """Eval metric, eval loss (NLL) and training loss against steps: mean, min..max band.

  A dotted line of the same colour marks the paper's number for the variant, a dashed
  grey line the chance level (:func:`chance`).
  """
  metric = runs[0]["config"]["eval"]["metric"]
  panels = [("eval", metric, f"evaluation {metric}")]
  if metric != "loss":
    panels.append(("eval", "loss", "evaluation loss (NLL)"))
  panels.append(("train", "loss", "training loss"))
  fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  panels = [(ax, *panel) for ax, panel in zip(axes, panels)]
  for ax, split, key, title in panels:
    for index, run in enumerate(runs):
      color = colors[index % len(colors)]
      steps, values = _curve(run["records"], split, key)
      if steps is None:
        continue
      ax.plot(steps, np.nanmean(values, axis=1), color=color,
              label=f"{run['config']['variant']} ({values.shape[1]} runs)")
      if values.shape[1] > 1:
        ax.fill_between(steps, np.nanmin(values, axis=1), np.nanmax(values, axis=1), alpha=0.2,
                        color=color, linewidth=0)
      paper = run["config"]["paper"]["value"]
      if (split, key) == ("eval", metric) and paper is not None and metric in (
          "error_pct", "accuracy_pct"):
        ax.axhline(paper, linestyle=":", linewidth=1.2, color=color)
    level = chance(runs[0]).get(key)
    if level is not None:
      ax.axhline(level, linestyle="--", linewidth=1.2, color="grey", label="chance")
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle(f"{name}: mean over runs, band = min..max, dotted = paper, dashed = chance")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# The saturation diagnostics (train.unit_statistics): the "units" records' fields.
UNIT_FIELDS = (("saturated", "fraction saturated, |x| >= x_t"),
               ("noise_std", "mean injected noise std"), ("p_spread", "std of p over units"))


def unit_groups(runs: list[dict[str, Any]]) -> list[str]:
  """The unit groups (``"<module>/<gate>"``) with statistics in any of ``runs``, sorted."""
  names = {key.rsplit("/", 1)[0] for run in runs for record in run["records"]
           if record["split"] == "units" for key in record if "/" in key}
  return sorted(names)


def plot_units(name: str, runs: list[dict[str, Any]], path: pathlib.Path) -> bool:
  """The saturation diagnostics beside the training loss: one row per unit group.

  Row 0 holds the training loss and the headline evaluation metric; each further
  row one group of units (an LSTM gate, an NTM head gate, ...), with its
  :data:`UNIT_FIELDS` in the columns. Mean over runs, band min..max, as
  :func:`plot_experiment`. Returns False (and writes nothing) without statistics.
  """
  groups = unit_groups(runs)
  if not groups:
    return False
  metric = runs[0]["config"]["eval"]["metric"]
  columns = len(UNIT_FIELDS)
  fig, axes = plt.subplots(1 + len(groups), columns, figsize=(4.5 * columns,
                                                              2.6 * (1 + len(groups))),
                           squeeze=False)
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  panels = [(axes[0, 0], "train", "loss", "training loss"),
            (axes[0, 1], "eval", metric, f"evaluation {metric}")]
  panels += [(axes[1 + row, column], "units", f"{group}/{field}", f"{group}: {title}")
             for row, group in enumerate(groups)
             for column, (field, title) in enumerate(UNIT_FIELDS)]
  for ax, split, key, title in panels:
    for index, run in enumerate(runs):
      steps, values = _curve(run["records"], split, key)
      if steps is None:
        continue
      color = colors[index % len(colors)]
      ax.plot(steps, np.nanmean(values, axis=1), color=color, label=run["config"]["variant"])
      if values.shape[1] > 1:
        ax.fill_between(steps, np.nanmin(values, axis=1), np.nanmax(values, axis=1),
                        alpha=0.2, color=color, linewidth=0)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
  axes[0, 0].legend(fontsize=8)
  axes[0, -1].axis("off")
  for ax in axes[-1]:
    ax.set_xlabel("step")
  fig.suptitle(f"{name}: saturation diagnostics of the noisy units (mean over runs, "
               "band = min..max)")
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return True


def _unit_lines(group: list[dict[str, Any]]) -> list[str]:
  """Per variant: each unit group's statistics at the last evaluation, means over runs."""
  lines = []
  for run in group:
    records = [r for r in run["records"] if r["split"] == "units"]
    if not records:
      continue
    last = records[-1]
    parts = [f"{name} {100 * np.mean(last[f'{name}/saturated']):.1f}% "
             f"{np.mean(last[f'{name}/noise_std']):.3g} {np.mean(last[f'{name}/p_spread']):.2f}"
             for name in unit_groups([run])]
    lines.append(f"- {run['config']['variant']}: units at step {last['step']} (saturated, "
                 f"mean noise std, spread of p): " + "; ".join(parts))
  return lines


def _format(value: float | None, digits: int = 2) -> str:
  return "-" if value is None else f"{value:.{digits}f}"


def paired_difference(values: np.ndarray, baseline: np.ndarray,
                      confidence: float = 0.95) -> tuple[float, float, float]:
  """Mean of the per-seed differences ``values - baseline`` and its t-interval.

  Run i of two variants of one experiment shares its seed (its initial parameters,
  and its data unless the data stream is the variant's ingredient), so the pairs'
  differences are what the variant's ingredient changes.

  Returns:
    ``(mean, low, high)``; ``low = high = mean`` for a single pair.
  """
  diff = np.asarray(values, np.float64) - np.asarray(baseline, np.float64)
  mean = float(diff.mean())
  if diff.size < 2:
    return mean, mean, mean
  interval = stats.ttest_1samp(diff, 0.0).confidence_interval(confidence)
  return mean, float(interval.low), float(interval.high)


def steps_to_success(run: dict[str, Any]) -> list[int | None]:
  """Per run: the first evaluation step whose metric meets the success threshold."""
  summary = run["final"]["summary"]
  steps, values = _curve(run["records"], "eval", summary["metric"])
  if steps is None:
    return [None] * summary["num_runs"]
  good = validation.meets_threshold(summary["metric"], values, summary["success_threshold"])
  return [int(steps[column.argmax()]) if column.any() else None for column in good.T]


def late_change(run: dict[str, Any], fraction: float = 0.2) -> tuple[int, float] | None:
  """How far the mean headline metric moved over the last ``fraction`` of the updates.

  Returns ``(step, final mean - mean at step)`` for the latest evaluation at or
  before ``(1 - fraction)`` of the run's steps, or None without such an evaluation.
  A change smaller than the seed spread says the budget was long enough.
  """
  summary = run["final"]["summary"]
  steps, values = _curve(run["records"], "eval", summary["metric"])
  if steps is None:
    return None
  early = steps <= (1 - fraction) * run["final"]["step"]
  if not early.any():
    return None
  index = np.flatnonzero(early)[-1]
  return int(steps[index]), float(summary["mean"] - np.nanmean(values[index]))


def _paired_lines(group: list[dict[str, Any]], metric: str) -> list[str]:
  """One line per variant after the first: its paired difference from the first."""
  base = group[0]
  lines = []
  for run in group[1:]:
    a, b = run["final"]["per_run"][metric], base["final"]["per_run"][metric]
    if len(a) != len(b) or run["config"]["seed"] != base["config"]["seed"]:
      continue  # not the same seeds: no pairs
    mean, low, high = paired_difference(a, b)
    lines.append(f"- {run['config']['variant']} - {base['config']['variant']}, {metric} "
                 f"paired by seed ({len(a)} pairs): {mean:+.2f}, 95% CI [{low:+.2f}, "
                 f"{high:+.2f}]")
  return lines


def table(runs: list[dict[str, Any]]) -> str:
  """A Markdown table of the final metrics of ``runs`` (one row per run directory)."""
  lines = []
  done = [r for r in runs if r["final"] is not None]
  for name in sorted({r["config"]["name"] for r in done}):
    group = [r for r in done if r["config"]["name"] == name]
    summary0 = group[0]["final"]["summary"]
    metric = summary0["metric"]
    direction = ">=" if metric in validation.HIGHER_IS_BETTER else "<="
    lines += [
        f"### {name} (step {group[0]['final']['step']})",
        "",
        f"| variant | runs | final {metric} mean ± std | per seed | best | success "
        f"({direction} {summary0['success_threshold']:g}) | chance | paper | paper source |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in group:
      s, paper = run["final"]["summary"], run["config"]["paper"]
      diverged = s.get("num_diverged", 0)  # runs frozen by train.on_nonfinite="freeze"
      per_seed = " ".join(_format(value, 1) for value in run["final"]["per_run"][metric])
      lines.append(
          f"| {run['config']['variant']} | {s['num_runs']} | {_format(s['mean'])} ± "
          f"{_format(s['std'])} | {per_seed}"
          f" | {_format(s['best'])} | {100 * s['success_rate']:.0f}%"
          f"{f' ({diverged} diverged)' if diverged else ''} | "
          f"{_format(chance(run).get(metric), 1)} | "
          f"{_format(paper['value'])} {paper['metric']} | {paper['source']} |")
    lines.append("")
    paired = _paired_lines(group, metric)
    lines += paired + ([""] if paired else [])
    for run in group:
      line = (f"- {run['config']['variant']}: first evaluation step at success, per seed: "
              + " ".join("-" if step is None else str(step) for step in steps_to_success(run)))
      change = late_change(run)
      if change is not None:
        line += f"; mean moved {change[1]:+.2f} since step {change[0]}"
      lines.append(line)
    lines.append("")
    units = _unit_lines(group)
    lines += units + ([""] if units else [])
    for run in group:  # what config.json alone does not show
      for change in run.get("resumes", []):
        lines.append(f"- {run['config']['variant']}: resumed at step {change['step']} with "
                     f"{change['field']} {change['old']!r} -> {change['new']!r} "
                     f"({change['time']})")
    if any(run.get("resumes") for run in group):
      lines.append("")
  return "\n".join(lines)


def make_report(workdir: str | pathlib.Path, order: tuple[str, ...] = ()) -> str:
  """Writes the plots and ``report.md`` for the runs under ``workdir``; returns the Markdown.

  Args:
    workdir: a run directory, or a parent of several.
    order: variants to list first, in this order (the others follow by path).
  """
  workdir = pathlib.Path(workdir)
  runs = find_runs(workdir, order)
  if not runs:
    raise FileNotFoundError(
        f"No runs under {workdir} (a run directory holds config.json and metrics.jsonl). "
        "Fix: pass the --workdir given to experiments.main, or a parent of several.")
  parts = []
  for name in sorted({r["config"]["name"] for r in runs}):
    group = [r for r in runs if r["config"]["name"] == name]
    path = workdir / f"{name}_curves.png"
    plot_experiment(name, group, path)
    parts.append(f"![{name}]({path.name})")
    units_path = workdir / f"{name}_units.png"
    if plot_units(name, group, units_path):
      parts.append(f"![{name}, saturation diagnostics]({units_path.name})")
  text = table(runs) + "\n" + "\n".join(parts) + "\n"
  (workdir / REPORT_FILE).write_text(text)
  return text


def main(argv):
  del argv
  print(make_report(flags.FLAGS.workdir, order=tuple(flags.FLAGS.order)))


if __name__ == "__main__":
  # Defined here, not at import, so that other absl programs can import this module.
  flags.DEFINE_string("workdir", None, "A run directory, or a parent of several.")
  flags.DEFINE_list("order", [], "Variants to list first, in this order; the first is the "
                    "baseline of the paired differences.")
  flags.mark_flag_as_required("workdir")
  app.run(main)
