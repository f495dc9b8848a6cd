"""Speed of one revision against another: bench_recurrent --small and bench_ntm, interleaved.

Runs each benchmark ``--rounds`` times per revision, alternating (before, after,
before, after, ...) in one sitting, each run in its own process from that
revision's checkout, and reports for every timed function the ratio of the median
(over rounds) of its median step time, after / before. A ratio below 1.10 is within
the 10 % a refactor may cost. Results: ``benchmarks/results/<name>.json`` and a
Markdown table printed and written beside it.

Usage (the "before" checkout is e.g. ``git worktree add /tmp/before <rev>``)::

  python -m benchmarks.compare_revisions --before=/tmp/before --name=core_redesign_cpu
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

from benchmarks import harness

BENCHMARKS = {
    "recurrent": ["-m", "benchmarks.bench_recurrent", "--small"],
    "ntm": ["-m", "benchmarks.bench_ntm"],
}
HERE = pathlib.Path(__file__).resolve().parent.parent


def _run(checkout: pathlib.Path, args: list[str], outdir: pathlib.Path, repeats: int) -> dict:
  subprocess.run([sys.executable, *args, f"--outdir={outdir}", f"--repeats={repeats}"],
                 cwd=checkout, check=True, stdout=subprocess.DEVNULL)
  (path,) = outdir.glob("*.json")
  return json.loads(path.read_text())


def _medians(section: str, result: dict) -> dict[str, float]:
  """Median step time of every timed function of one run, keyed ``<case>/<function>``."""
  data = result[section]
  if section == "recurrent":
    return {f"{case}/{name}": stats["median_s"]
            for case, run in data["runs"].items()
            for name, stats in run["jax"]["timings"].items()}
  return {name: stats["median_s"] for name, stats in data["jax"]["timings"].items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--before", required=True, help="checkout of the baseline revision")
  parser.add_argument("--after", default=str(HERE), help="checkout of the new revision")
  parser.add_argument("--name", required=True, help="results file stem")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=10, help="timing repeats per run")
  parser.add_argument("--benchmarks", default=",".join(BENCHMARKS),
                      help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
  args = parser.parse_args()
  checkouts = {"before": pathlib.Path(args.before), "after": pathlib.Path(args.after)}
  times: dict[str, dict[str, dict[str, list[float]]]] = {}
  with tempfile.TemporaryDirectory() as tmp:
    for round_index in range(args.rounds):
      for section in args.benchmarks.split(","):
        bench = BENCHMARKS[section]
        for revision, checkout in checkouts.items():
          outdir = pathlib.Path(tmp) / f"{section}_{revision}_{round_index}"
          outdir.mkdir()
          print(f"round {round_index}: {section} {revision}", flush=True)
          medians = _medians(section, _run(checkout, bench, outdir, args.repeats))
          for name, value in medians.items():
            times.setdefault(section, {}).setdefault(name, {}).setdefault(
                revision, []).append(value)
  rows = []
  for section, names in times.items():
    for name, by_revision in names.items():
      before = statistics.median(by_revision["before"])
      after = statistics.median(by_revision["after"])
      rows.append({"benchmark": section, "function": name, "before_s": before,
                   "after_s": after, "ratio": after / before,
                   "rounds_s": by_revision})
  revisions = {revision: subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                        cwd=checkout, capture_output=True, text=True
                                        ).stdout.strip()
               for revision, checkout in checkouts.items()}
  results = {"environment": harness.environment(), "revisions": revisions,
             "rounds": args.rounds, "repeats": args.repeats, "rows": rows,
             "note": "ratio = median over rounds of after / median over rounds of before; "
                     "rounds interleaved before/after in one sitting"}
  path = harness.RESULTS_DIR / f"{args.name}.json"
  path.write_text(json.dumps(results, indent=2) + "\n")
  table = ["| benchmark | function | before (ms) | after (ms) | after / before |",
           "|---|---|---|---|---|"]
  table += [f"| {r['benchmark']} | {r['function']} | {1e3 * r['before_s']:.2f} | "
            f"{1e3 * r['after_s']:.2f} | {r['ratio']:.3f} |" for r in rows]
  path.with_suffix(".md").write_text(
      f"Revisions {revisions}, {args.rounds} interleaved rounds, "
      f"{harness.environment().get('device', '')}\n\n" + "\n".join(table) + "\n")
  print("\n".join(table))
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
