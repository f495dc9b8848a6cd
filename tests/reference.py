"""Float64 NumPy references written from the papers' equations.

Each function takes the standard-normal draw ``xi`` explicitly, so a test can feed
the library's own draw to both sides and compare numbers, not distributions.
"""

import math

import numpy as np

HALF_NORMAL_MEAN = math.sqrt(2.0 / math.pi)  # E|xi|, Gulcehre et al. 2016, Eq. 13


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def hard_sigmoid(x):
  # Eq. 3: max(min(0.25 x + 0.5, 1), 0).
  return np.maximum(np.minimum(0.25 * x + 0.5, 1.0), 0.0)


def hard_tanh(x):
  # Eq. 4: max(min(x, 1), -1).
  return np.maximum(np.minimum(x, 1.0), -1.0)


def h(x, kind):
  return {"hard_tanh": hard_tanh, "hard_sigmoid": hard_sigmoid, "tanh": np.tanh,
          "sigmoid": sigmoid}[kind](x)


def u(x, kind):
  # Eqs. 1-2: first-order Taylor expansions about 0.
  return x if kind in ("hard_tanh", "tanh") else 0.25 * x + 0.5


def x_t(kind):
  return 1.0 if kind in ("hard_tanh", "tanh") else 2.0


def sigma(x, p, c, kind):
  # Eq. 9 with Delta of Eq. 8.
  delta = h(x, kind) - u(x, kind)
  return c * (sigmoid(p * delta) - 0.5) ** 2


def direction(x, alpha):
  # d(x) = -sgn(x) sgn(1 - alpha), sgn(0) = 1, with sgn(1 - alpha) := +1 for alpha <= 1
  # (the reference code's convention; DESIGN.md).
  sgn_x = np.where(x >= 0, 1.0, -1.0)
  sgn_one_minus_alpha = np.where(alpha > 1, -1.0, 1.0)
  return -sgn_x * sgn_one_minus_alpha


def softplus(x):
  return np.logaddexp(0.0, x)


def nanil_sigma(x, xi, p, c, kind, nanil_scale="reference"):
  """NANIL's learned input-noise scale.

  "reference": caglar/noisy_units' NTanhPInp/NSigmoidPInp,
  c * softplus(p |Delta| / (|xi| + 1e-10)); "paper": Eq. 9.
  """
  if nanil_scale == "paper":
    return sigma(x, p, c, kind)
  delta = h(x, kind) - u(x, kind)
  return c * softplus(p * np.abs(delta) / (np.abs(xi) + 1e-10))


def noisy(x, xi, p, c, alpha, mode, kind, nanil_scale="reference"):
  """phi(x, xi) for every mode (Eqs. 12, 14, 15), float64."""
  x, xi = np.asarray(x, np.float64), np.asarray(xi, np.float64)
  if mode in ("nan", "nah"):
    eps = np.abs(xi) if mode == "nah" else xi
    return (alpha * h(x, kind) + (1 - alpha) * u(x, kind)
            + direction(x, alpha) * sigma(x, p, c, kind) * eps)
  if mode == "nani":
    return h(x + c * xi, kind)
  if mode == "nanil":
    return h(x + nanil_sigma(x, xi, p, c, kind, nanil_scale) * xi, kind)
  if mode == "nanis":
    return h(x + np.where(np.abs(x) >= x_t(kind), c * xi, 0.0), kind)
  raise ValueError(mode)


def expectation(x, p, c, alpha, mode, kind):
  """Test-time output, Eq. 13 (input-noise modes: noise replaced by its mean 0)."""
  x = np.asarray(x, np.float64)
  if mode in ("nan", "nah"):
    mean_eps = HALF_NORMAL_MEAN if mode == "nah" else 0.0
    return (alpha * h(x, kind) + (1 - alpha) * u(x, kind)
            + direction(x, alpha) * sigma(x, p, c, kind) * mean_eps)
  return h(x, kind)


def noise_annealing(t, c0=30.0, c_final=0.5, every=200):
  # Paper A Sec. 6.6: c / sqrt(t + 1), t incremented every 200 updates, floored.
  return max(c0 / math.sqrt(t // every + 1), c_final)


def gradient_noise_variance(t, eta, gamma=0.55):
  # Paper B Eq. 1.
  return eta / (1.0 + t) ** gamma
