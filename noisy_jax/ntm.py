"""Neural Turing Machine (Graves et al., 2014) with noisy controller gates (Gulcehre et al., 2016).

The pure maths: the addressing functions (one per equation of the paper) and the
step, :func:`ntm_step`, with its state, parameters and controllers. The cells that
hold the parameters are ``noisy_jax.nn.NTMCell`` (Linen) and
``noisy_jax.nnx.NTMCell`` (NNX).
"""

import warnings as _warnings

from noisy_jax._src.addressing import address as address
from noisy_jax._src.addressing import content_weighting as content_weighting
from noisy_jax._src.addressing import cosine_similarity as cosine_similarity
from noisy_jax._src.addressing import interpolate as interpolate
from noisy_jax._src.addressing import read as read
from noisy_jax._src.addressing import sharpen as sharpen
from noisy_jax._src.addressing import shift as shift
from noisy_jax._src.addressing import write as write
from noisy_jax._src.ntm import CONTROLLERS as CONTROLLERS
from noisy_jax._src.ntm import ControllerSpec as ControllerSpec
from noisy_jax._src.ntm import FeedForwardWeights as FeedForwardWeights
from noisy_jax._src.ntm import HeadParams as HeadParams
from noisy_jax._src.ntm import NTMState as NTMState
from noisy_jax._src.ntm import NTMWeights as NTMWeights
from noisy_jax._src.ntm import controller_spec as controller_spec
from noisy_jax._src.ntm import gate_names as gate_names
from noisy_jax._src.ntm import head_layout as head_layout
from noisy_jax._src.ntm import initial_state as initial_state
from noisy_jax._src.ntm import ntm_step as ntm_step
from noisy_jax._src.ntm import weight_shapes as weight_shapes

__all__ = (
    "CONTROLLERS",
    "ControllerSpec",
    "FeedForwardWeights",
    "HeadParams",
    "NTMState",
    "NTMWeights",
    "address",
    "content_weighting",
    "controller_spec",
    "cosine_similarity",
    "gate_names",
    "head_layout",
    "initial_state",
    "interpolate",
    "ntm_step",
    "read",
    "sharpen",
    "shift",
    "weight_shapes",
    "write",
)


def _linen_cell():
  from noisy_jax import nn  # pylint: disable=import-outside-toplevel
  return nn.NTMCell


def _nnx_cell():
  from noisy_jax import nnx  # pylint: disable=import-outside-toplevel
  return nnx.NTMCell


def _unit_noise():
  from noisy_jax._src import activations  # pylint: disable=import-outside-toplevel
  return activations.UnitNoise


# Names that moved, kept for one release: old name -> (new name, its value).
_MOVED = {
    "NTMCell": ("noisy_jax.nn.NTMCell", _linen_cell),
    "NNXNTMCell": ("noisy_jax.nnx.NTMCell", _nnx_cell),
    "GateNoise": ("noisy_jax.UnitNoise", _unit_noise),
}


def __getattr__(name: str):
  if name in _MOVED:
    new_name, value = _MOVED[name]
    _warnings.warn(f"noisy_jax.ntm.{name} is deprecated; use {new_name}.",
                   DeprecationWarning, stacklevel=2)
    return value()
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
