"""Runs every benchmark module ``benchmarks/bench_*.py`` (each has ``main(outdir)``).

Usage: ``python -m benchmarks.run_all [--only NAME ...] [--outdir DIR]``.
"""

import argparse
import importlib
import pathlib


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--only", nargs="*", help="benchmark names, e.g. activations")
  parser.add_argument("--outdir", default=None, help="results folder (default benchmarks/results)")
  args = parser.parse_args()
  names = sorted(p.stem[len("bench_"):] for p in pathlib.Path(__file__).parent.glob("bench_*.py"))
  for name in args.only or names:
    if name not in names:
      raise SystemExit(f"Unknown benchmark {name!r}; available: {', '.join(names)}")
    print(f"== {name}", flush=True)
    importlib.import_module(f"benchmarks.bench_{name}").main(args.outdir)


if __name__ == "__main__":
  main()
