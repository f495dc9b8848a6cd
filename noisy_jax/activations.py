"""Noisy activation functions (Gulcehre et al., 2016)."""

from noisy_jax._src.activations import DEFAULT_NANIL_SCALE as DEFAULT_NANIL_SCALE
from noisy_jax._src.activations import HALF_NORMAL_MEAN as HALF_NORMAL_MEAN
from noisy_jax._src.activations import KINDS as KINDS
from noisy_jax._src.activations import MODES as MODES
from noisy_jax._src.activations import NANIL_SCALES as NANIL_SCALES
from noisy_jax._src.activations import SIGMOID_UNIT as SIGMOID_UNIT
from noisy_jax._src.activations import TANH_UNIT as TANH_UNIT
from noisy_jax._src.activations import UnitNoise as UnitNoise
from noisy_jax._src.activations import UnitStatistics as UnitStatistics
from noisy_jax._src.activations import activation as activation
from noisy_jax._src.activations import hard_sigmoid as hard_sigmoid
from noisy_jax._src.activations import hard_tanh as hard_tanh
from noisy_jax._src.activations import linearization as linearization
from noisy_jax._src.activations import noisy_activation as noisy_activation
from noisy_jax._src.activations import noisy_hard_sigmoid as noisy_hard_sigmoid
from noisy_jax._src.activations import noisy_hard_tanh as noisy_hard_tanh
from noisy_jax._src.activations import noise_std as noise_std
from noisy_jax._src.activations import p_init as p_init
from noisy_jax._src.activations import reference_defaults as reference_defaults
from noisy_jax._src.activations import saturated as saturated
from noisy_jax._src.activations import saturation as saturation
from noisy_jax._src.activations import threshold as threshold
from noisy_jax._src.activations import unit_statistics as unit_statistics

__all__ = (
    "DEFAULT_NANIL_SCALE",
    "HALF_NORMAL_MEAN",
    "KINDS",
    "MODES",
    "NANIL_SCALES",
    "SIGMOID_UNIT",
    "TANH_UNIT",
    "UnitNoise",
    "UnitStatistics",
    "activation",
    "hard_sigmoid",
    "hard_tanh",
    "linearization",
    "noisy_activation",
    "noisy_hard_sigmoid",
    "noisy_hard_tanh",
    "noise_std",
    "p_init",
    "reference_defaults",
    "saturated",
    "saturation",
    "threshold",
    "unit_statistics",
)
