"""Optax schedules for the noise scale c and the gradient-noise variance."""

from noisy_jax._src.schedules import gradient_noise_variance as gradient_noise_variance
from noisy_jax._src.schedules import noise_annealing as noise_annealing

__all__ = ("gradient_noise_variance", "noise_annealing")
