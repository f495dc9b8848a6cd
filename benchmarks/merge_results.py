"""Merges results files of separate benchmark runs into one, and writes its tables.

``benchmarks/gpu.sh`` runs each piece of the suite (one benchmark module with some of
its options: one dtype, one shape) in its own process and results folder, so that a
piece that fails or runs out of time costs only its own numbers. This script merges
those ``<device>.json`` files, in the order given, section by section (dicts key by
key, lists as their union in order, any other value from the later file), stores each
section in ``<outdir>/<device>.json`` as ``harness.save`` does (other sections there
are kept), and writes each section's table, drawn by its module's ``table``, into
``<outdir>/<device>.md``. The device is the one the results name, not this machine's,
so the tables of a GPU run can be rebuilt on a CPU.

Usage: ``python -m benchmarks.merge_results --outdir DIR RESULTS.json [RESULTS.json ...]``
(``--outdir benchmarks/results`` updates the committed results of that device).
"""

import argparse
import importlib
import json
import pathlib
from typing import Any

from benchmarks import harness


def merge(earlier: Any, later: Any) -> Any:
  """``later`` merged into ``earlier``: dicts key by key, lists as their union, else ``later``."""
  if isinstance(earlier, dict) and isinstance(later, dict):
    return {**earlier, **{key: merge(earlier[key], value) if key in earlier else value
                          for key, value in later.items()}}
  if isinstance(earlier, list) and isinstance(later, list):
    return earlier + [item for item in later if item not in earlier]
  return later


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("results", nargs="+", type=pathlib.Path, help="results files, in run order")
  parser.add_argument("--outdir", required=True, type=pathlib.Path)
  args = parser.parse_args()
  merged: dict[str, Any] = {}
  for path in args.results:
    merged = merge(merged, json.loads(path.read_text()))
  slugs = {harness.device_slug(section["environment"]) for section in merged.values()}
  if len(slugs) != 1:
    raise SystemExit(f"The results name several devices ({', '.join(sorted(slugs))}); "
                     "merge each device's files apart.")
  for name, section in merged.items():
    env = section["environment"]
    module = importlib.import_module(f"benchmarks.bench_{name}")
    path = harness.save(name, {k: v for k, v in section.items() if k != "environment"},
                        args.outdir, env=env)
    tables = args.outdir / f"{harness.device_slug(env)}.md"
    harness.update_markdown(f"bench_{name}", module.MARKDOWN_HEADING, module.table(section),
                            tables, env=env)
    print(f"{name}: {path}, {tables}")


if __name__ == "__main__":
  main()
