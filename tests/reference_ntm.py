"""Float64 NumPy references for the NTM, written from Graves et al. (2014).

The addressing: single-head, single-example functions that follow the paper's
equations literally (explicit sums over locations, modulo-N indices); tests map them
over heads and batch. Shapes: memory (N, M), key (M,), weighting (N,).

The whole step (:func:`ntm_step`): those functions composed over a batch and the
heads, with the controller and the head-parameter layout written from the
docstrings of noisy_jax/_src/ntm.py and rnn.py, and the noisy units from
tests/reference.py fed the library's own draws.
"""

import numpy as np

from tests import reference

COSINE_EPS = 1e-8


def cosine_similarity(u, v, eps=COSINE_EPS):
  # Eq. 6, with eps in the denominator so a zero vector gives 0.
  u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
  return float(np.dot(u, v) / (np.sqrt(np.dot(u, u)) * np.sqrt(np.dot(v, v)) + eps))


def content_weighting(memory, content_key, beta, eps=COSINE_EPS):
  # Eq. 5: w_c(i) = exp(beta K[k, M(i)]) / sum_j exp(beta K[k, M(j)]).
  memory = np.asarray(memory, np.float64)
  scores = np.array([beta * cosine_similarity(content_key, row, eps) for row in memory])
  scores -= scores.max()  # same ratio, no overflow
  return np.exp(scores) / np.exp(scores).sum()


def interpolate(content_weighting, prev_weighting, gate):
  # Eq. 7: w_g = g w_c + (1 - g) w_{t-1}.
  return gate * np.asarray(content_weighting, np.float64) + (1.0 - gate) * np.asarray(
      prev_weighting, np.float64)


def shift(weighting, shift_weighting):
  # Eq. 8: w~(i) = sum_j w_g(j) s(i - j), indices modulo N; s is given on the
  # shifts -S..S and is 0 on every other offset.
  weighting = np.asarray(weighting, np.float64)
  n = weighting.shape[0]
  max_shift = len(shift_weighting) // 2
  s = np.zeros(n)
  for offset, prob in zip(range(-max_shift, max_shift + 1), shift_weighting):
    s[offset % n] += prob
  return np.array([sum(weighting[j] * s[(i - j) % n] for j in range(n)) for i in range(n)])


def sharpen(weighting, gamma):
  # Eq. 9: w(i) = w~(i)^gamma / sum_j w~(j)^gamma.
  powered = np.asarray(weighting, np.float64) ** gamma
  return powered / powered.sum()


def address(memory, prev_weighting, content_key, beta, gate, shift_weighting, gamma):
  # Fig. 2: content -> interpolation -> shift -> sharpening.
  content = content_weighting(memory, content_key, beta)
  return sharpen(shift(interpolate(content, prev_weighting, gate), shift_weighting), gamma)


def read(memory, weighting):
  # Eq. 2: r = sum_i w(i) M(i).
  memory = np.asarray(memory, np.float64)
  return sum(w * row for w, row in zip(np.asarray(weighting, np.float64), memory))


def write(memory, weighting, erase, add):
  # Eqs. 3-4 for W heads: weighting (W, N), erase and add (W, M). Every head
  # erases (M~(i) = M(i) prod_h [1 - w_h(i) e_h]), then every head adds
  # (M(i) = M~(i) + sum_h w_h(i) a_h).
  memory = np.array(memory, np.float64)
  for w, e in zip(weighting, erase):
    for i in range(memory.shape[0]):
      memory[i] = memory[i] * (1.0 - w[i] * np.asarray(e, np.float64))
  for w, a in zip(weighting, add):
    for i in range(memory.shape[0]):
      memory[i] = memory[i] + w[i] * np.asarray(a, np.float64)
  return memory


# The whole NTM step (noisy_jax._src.ntm.ntm_step), composed of the functions above
# and written from ntm.py's docstrings: the controller reads [x_t, r_{t-1}], a linear
# map of its output parameterises the heads, the heads address memory with Eqs. 5-9,
# the read heads read M_{t-1} (Eq. 2), then the write heads erase and add (Eqs. 3-4).

# Gates whose h is a sigmoid kind (the others are tanh units).
SIGMOID_GATES = ("input", "forget", "output", "interpolation", "erase")


def softplus(x):
  return np.logaddexp(0.0, x)


def softmax(logits):
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def clip(x, clip_value):
  return x if clip_value is None else np.clip(x, -clip_value, clip_value)


def unit(x, name, p, draws, noise, noisy_gates):
  """One named gate or tanh unit of the NTM, float64.

  Not in ``noisy_gates``: the plain h(x). Noisy: phi(x, xi) (Gulcehre et al., 2016,
  Eqs. 12, 14-15) with the draw ``draws[name]``, or its expectation (Eq. 13) when
  ``draws`` is None. ``noise`` maps "sigmoid" and "tanh" to ``(kind, mode, c, alpha)``.
  """
  kind, mode, c, alpha = noise["sigmoid" if name in SIGMOID_GATES else "tanh"]
  if name not in noisy_gates:
    return reference.h(np.asarray(x, np.float64), kind)
  if draws is None:
    return reference.expectation(x, p, c, alpha, mode, kind)
  return reference.noisy(x, draws[name], p, c, alpha, mode, kind)


def head_fields(params, num_read_heads, num_write_heads, memory_width, shift_range):
  """Splits the heads' parameters ``(B, P)`` by the layout of ntm.py's docstring.

  ``[content_key K*M | key_strength K | interpolation_gate K | shift_weighting K*(2S+1)
  | sharpening K | erase W*M | add W*M]`` (named keys, betas, gates, shifts, gammas, erase
  and add here), field by field over the ``K = R + W`` heads (read heads first), each
  field head by head. Returns a dict of ``(B, heads, width)`` arrays (width 1 for the scalars).
  """
  heads, batch = num_read_heads + num_write_heads, params.shape[0]
  layout = (("keys", heads, memory_width), ("betas", heads, 1), ("gates", heads, 1),
            ("shifts", heads, 2 * shift_range + 1), ("gammas", heads, 1),
            ("erase", num_write_heads, memory_width), ("add", num_write_heads, memory_width))
  fields, start = {}, 0
  for name, count, width in layout:
    fields[name] = params[:, start:start + count * width].reshape(batch, count, width)
    start += count * width
  assert start == params.shape[1], (start, params.shape)
  return fields


def lstm_controller(x, carry, weights, draws, noise, noisy_gates):
  """The noisy LSTM (rnn.py's docstrings): blocks [input, forget, output, candidate]."""
  c_prev, h_prev = carry
  hidden = h_prev.shape[-1]
  z = x @ weights["input_kernel"] + weights["bias"] + h_prev @ weights["recurrent_kernel"]
  block = lambda k: z[:, k * hidden:(k + 1) * hidden]
  p_gate = lambda k: weights["p_gates"][k * hidden:(k + 1) * hidden]
  i, f, o = (unit(block(k), name, p_gate(k), draws, noise, noisy_gates)
             for k, name in enumerate(("input", "forget", "output")))
  g = unit(block(3), "candidate", weights["p_candidate"], draws, noise, noisy_gates)
  c = f * c_prev + i * g
  return c, o * unit(c, "cell", weights["p_cell"], draws, noise, noisy_gates)


def ntm_step(state, inputs, weights, draws, *, controller, shift_range, noise, noisy_gates,
             clip_value):
  """One NTM step for a batch, float64.

  Args:
    state: dict with ``controller`` (the LSTM's ``(c, h)``, each ``(B, H)``, or
      ``()``), ``memory (B, N, M)``, ``reads (B, R, M)``, ``read_weighting (B, R, N)``,
      ``write_weighting (B, W, N)``, ``step (B,)``.
    inputs: ``(B, D)``.
    weights: dict named as ntm.py's docstring (``controller`` a dict of the LSTM's
      or the feed-forward layer's weights).
    draws: dict from gate name to that gate's standard-normal draw; None: every
      noisy unit at its expectation (deterministic).
    controller: ``"lstm"`` or ``"feedforward"``.
    shift_range: S.
    noise: ``{"sigmoid": (kind, mode, c, alpha), "tanh": (...)}``.
    noisy_gates: the names of the noisy units.
    clip_value: clip of the controller's input, state and output and of the heads'
      parameters; None: no clip.

  Returns:
    ``(new_state, output)``, ``output = [hidden, reads]`` of shape ``(B, H + R M)``.
  """
  w = {k: np.asarray(v, np.float64) for k, v in weights.items() if k != "controller"}
  w["controller"] = {k: np.asarray(v, np.float64) for k, v in weights["controller"].items()}
  memory = np.asarray(state["memory"], np.float64)
  batch = memory.shape[0]
  num_read_heads, num_write_heads = w["initial_reads"].shape[0], w["p_erase"].shape[0]
  heads = num_read_heads + num_write_heads

  # Step 0: the learned initial reads and (softmaxed) weightings replace the state's.
  reads = np.array(state["reads"], np.float64)
  prev = np.concatenate([state["read_weighting"], state["write_weighting"]],
                        axis=1).astype(np.float64)
  for b in range(batch):
    if state["step"][b] == 0:
      reads[b] = w["initial_reads"]
      prev[b] = softmax(np.concatenate([w["initial_read_logits"], w["initial_write_logits"]]))

  controller_in = clip(np.concatenate([np.asarray(inputs, np.float64),
                                       reads.reshape(batch, -1)], axis=-1), clip_value)
  if controller == "lstm":
    carry = tuple(np.asarray(v, np.float64) for v in state["controller"])
    c, h = lstm_controller(controller_in, carry, w["controller"], draws, noise, noisy_gates)
    controller_state = (clip(c, clip_value), clip(h, clip_value))
    hidden = controller_state[1]
  else:
    ff = w["controller"]
    hidden = clip(unit(controller_in @ ff["kernel"] + ff["bias"], "hidden", ff["p"], draws,
                       noise, noisy_gates), clip_value)
    controller_state = ()

  params = clip(hidden @ w["head_kernel"] + w["head_bias"], clip_value)
  fields = head_fields(params, num_read_heads, num_write_heads, memory.shape[-1], shift_range)
  content_key = np.tanh(fields["keys"])
  beta = softplus(fields["betas"][..., 0])
  gate = np.clip(unit(fields["gates"][..., 0], "interpolation", w["p_gate"], draws, noise,
                      noisy_gates), 0.0, 1.0)
  shift_weighting = softmax(fields["shifts"])
  gamma = 1.0 + softplus(fields["gammas"][..., 0])
  erase = np.clip(unit(fields["erase"], "erase", w["p_erase"], draws, noise, noisy_gates),
                  0.0, 1.0)
  add = np.tanh(fields["add"])

  weightings = np.array([[address(memory[b], prev[b, k], content_key[b, k], beta[b, k],
                                  gate[b, k], shift_weighting[b, k], gamma[b, k])
                          for k in range(heads)] for b in range(batch)])
  read_weighting, write_weighting = weightings[:, :num_read_heads], weightings[:, num_read_heads:]
  # The reads see M_{t-1}: the write below comes after them.
  new_reads = np.array([[read(memory[b], read_weighting[b, k]) for k in range(num_read_heads)]
                        for b in range(batch)])
  new_memory = np.stack([write(memory[b], write_weighting[b], erase[b], add[b])
                         for b in range(batch)])
  new_state = dict(controller=controller_state, memory=new_memory, reads=new_reads,
                   read_weighting=read_weighting, write_weighting=write_weighting,
                   step=np.asarray(state["step"]) + 1)
  return new_state, np.concatenate([hidden, new_reads.reshape(batch, -1)], axis=-1)
