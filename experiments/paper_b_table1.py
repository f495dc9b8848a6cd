r"""Paper B's Table 1 as the paper reports it: best and average over both learning rates.

  python -m experiments.paper_b_table1 --workdir=runs

Paper B pools the 20 runs at learning rate 0.1 and the 20 at 0.01 of each setting
into one row (best and average test accuracy over 40 runs). This finds the finished
``deep_mlp`` runs under ``--workdir``, pools the variants that differ only in the
learning rate, and prints a Markdown table next to the paper's numbers, with the
per-rate averages and the number of runs above 90 % beside them.
"""

import collections
from typing import Any

import numpy as np
from absl import app
from absl import flags

from configs import deep_mlp
from experiments import report


def pooled_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per ``(init, clipping, noise)`` with the accuracies of every rate pooled."""
  groups = collections.defaultdict(dict)
  for run in runs:
    config, final = run["config"], run["final"]
    if config["name"] != "deep_mlp" or final is None or config["variant"] == "smoke":
      continue
    init, clip, noise, rate = config["variant"].split("_")
    if rate[2:] in groups[(init, clip, noise)]:
      raise ValueError(
          f"Two finished runs of deep_mlp:{config['variant']} (one is {run.get('dir')}). "
          "Fix: pass a --workdir that holds one run per variant.")
    groups[(init, clip, noise)][rate[2:]] = np.asarray(final["per_run"]["accuracy_pct"])
  rows = []
  for (init, clip, noise), by_rate in groups.items():
    pooled = np.concatenate([by_rate[rate] for rate in sorted(by_rate)])
    rows.append({
        "setting": (init, clip, noise),
        "rates": {rate: float(values.mean()) for rate, values in sorted(by_rate.items())},
        "runs": pooled.size,
        "best": float(pooled.max()),
        "average": float(pooled.mean()),
        "above_90": int((pooled >= 90.0).sum()),
        "paper": deep_mlp.PAPER_TABLE1.get((init, clip, noise)),
    })
  order = {key: index for index, key in enumerate(deep_mlp.PAPER_TABLE1)}
  return sorted(rows, key=lambda row: order.get(row["setting"], len(order)))


def markdown(rows: list[dict[str, Any]]) -> str:
  """The pooled rows as a Markdown table (accuracy in %)."""
  lines = ["| setting | runs | best | average | average per rate | runs >= 90 % "
           "| paper best | paper average |",
           "|---|---|---|---|---|---|---|---|"]
  for row in rows:
    paper_best, paper_average = row["paper"] or (None, None)
    per_rate = ", ".join(f"lr {rate}: {value:.1f}" for rate, value in row["rates"].items())
    lines.append(
        f"| {' '.join(row['setting'])} | {row['runs']} | {row['best']:.1f} | "
        f"{row['average']:.1f} | {per_rate} | {row['above_90']} | "
        f"{'-' if paper_best is None else paper_best} | "
        f"{'-' if paper_average is None else paper_average} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  rows = pooled_rows(report.find_runs(flags.FLAGS.workdir))
  if not rows:
    raise app.UsageError(
        f"No finished deep_mlp runs under {flags.FLAGS.workdir}. Fix: pass the parent of the "
        "--workdir directories given to experiments.main for configs/deep_mlp.py.")
  print(markdown(rows), end="")


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "A parent directory of deep_mlp runs.")
  flags.mark_flag_as_required("workdir")
  app.run(main)
