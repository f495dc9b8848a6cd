"""Annealed gradient noise (Neelakantan et al., 2015) as optax transformations."""

from noisy_jax._src.optim import GradientNoiseState as GradientNoiseState
from noisy_jax._src.optim import add_gradient_noise as add_gradient_noise
from noisy_jax._src.optim import noisy_sgd as noisy_sgd

__all__ = ("GradientNoiseState", "add_gradient_noise", "noisy_sgd")
