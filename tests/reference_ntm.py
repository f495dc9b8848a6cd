"""Float64 NumPy references for the NTM addressing, written from Graves et al. (2014).

Single-head, single-example functions that follow the paper's equations literally
(explicit sums over locations, modulo-N indices); tests map them over heads and
batch. Shapes: memory (N, M), key (M,), weighting (N,).
"""

import numpy as np

COSINE_EPS = 1e-8


def cosine_similarity(u, v, eps=COSINE_EPS):
  # Eq. 6, with eps in the denominator so a zero vector gives 0.
  u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
  return float(np.dot(u, v) / (np.sqrt(np.dot(u, u)) * np.sqrt(np.dot(v, v)) + eps))


def content_weighting(memory, key, beta, eps=COSINE_EPS):
  # Eq. 5: w_c(i) = exp(beta K[k, M(i)]) / sum_j exp(beta K[k, M(j)]).
  memory = np.asarray(memory, np.float64)
  scores = np.array([beta * cosine_similarity(key, row, eps) for row in memory])
  scores -= scores.max()  # same ratio, no overflow
  return np.exp(scores) / np.exp(scores).sum()


def interpolate(content_weights, prev_weights, gate):
  # Eq. 7: w_g = g w_c + (1 - g) w_{t-1}.
  return gate * np.asarray(content_weights, np.float64) + (1.0 - gate) * np.asarray(
      prev_weights, np.float64)


def shift(weights, shift_weights):
  # Eq. 8: w~(i) = sum_j w_g(j) s(i - j), indices modulo N; s is given on the
  # shifts -S..S and is 0 on every other offset.
  weights = np.asarray(weights, np.float64)
  n = weights.shape[0]
  max_shift = len(shift_weights) // 2
  s = np.zeros(n)
  for offset, prob in zip(range(-max_shift, max_shift + 1), shift_weights):
    s[offset % n] += prob
  return np.array([sum(weights[j] * s[(i - j) % n] for j in range(n)) for i in range(n)])


def sharpen(weights, gamma):
  # Eq. 9: w(i) = w~(i)^gamma / sum_j w~(j)^gamma.
  powered = np.asarray(weights, np.float64) ** gamma
  return powered / powered.sum()


def address(memory, prev_weights, key, beta, gate, shift_weights, gamma):
  # Fig. 2: content -> interpolation -> shift -> sharpening.
  content = content_weighting(memory, key, beta)
  return sharpen(shift(interpolate(content, prev_weights, gate), shift_weights), gamma)


def read(memory, weights):
  # Eq. 2: r = sum_i w(i) M(i).
  memory = np.asarray(memory, np.float64)
  return sum(w * row for w, row in zip(np.asarray(weights, np.float64), memory))


def write(memory, weights, erase, add):
  # Eqs. 3-4 for W heads: weights (W, N), erase and add (W, M). Every head
  # erases (M~(i) = M(i) prod_h [1 - w_h(i) e_h]), then every head adds
  # (M(i) = M~(i) + sum_h w_h(i) a_h).
  memory = np.array(memory, np.float64)
  for w, e in zip(weights, erase):
    for i in range(memory.shape[0]):
      memory[i] = memory[i] * (1.0 - w[i] * np.asarray(e, np.float64))
  for w, a in zip(weights, add):
    for i in range(memory.shape[0]):
      memory[i] = memory[i] + w[i] * np.asarray(a, np.float64)
  return memory
