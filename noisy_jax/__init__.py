"""noisy_jax: noisy activation functions and annealed gradient noise for JAX."""

from noisy_jax import activations as activations
from noisy_jax import nn as nn
from noisy_jax import nnx as nnx
from noisy_jax import ntm as ntm
from noisy_jax import optim as optim
from noisy_jax import rnn as rnn
from noisy_jax import schedules as schedules
from noisy_jax import tasks as tasks
from noisy_jax.activations import UnitNoise as UnitNoise
from noisy_jax.activations import hard_sigmoid as hard_sigmoid
from noisy_jax.activations import hard_tanh as hard_tanh
from noisy_jax.activations import noisy_activation as noisy_activation
from noisy_jax.activations import noisy_hard_sigmoid as noisy_hard_sigmoid
from noisy_jax.activations import noisy_hard_tanh as noisy_hard_tanh
from noisy_jax.activations import p_init as p_init

__version__ = "0.1.0"

__all__ = (
    "UnitNoise",
    "activations",
    "hard_sigmoid",
    "hard_tanh",
    "nn",
    "nnx",
    "noisy_activation",
    "noisy_hard_sigmoid",
    "noisy_hard_tanh",
    "ntm",
    "optim",
    "p_init",
    "rnn",
    "schedules",
    "tasks",
)
