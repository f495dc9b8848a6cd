"""What a backward pass saves, read through jax's public ``print_saved_residuals``."""

import contextlib
import io
import re


def saved_residuals(fn, *args) -> list[tuple[str, tuple[int, ...], str]]:
  """Returns ``(dtype, shape, description)`` of each residual ``jax.grad(fn)`` would keep."""
  from jax.ad_checkpoint import print_saved_residuals

  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    print_saved_residuals(fn, *args)
  residuals = []
  for line in out.getvalue().splitlines():
    match = re.match(r"\s*(\w+)\[([\d,\s]*)\]\s*(.*)", line)
    if match:
      shape = tuple(int(d) for d in match.group(2).split(",") if d.strip())
      residuals.append((match.group(1), shape, match.group(3)))
  return residuals
