"""Histogram of the optimized-HLO ops of each benchmarked training computation.

``python -m benchmarks.compiled_ops OUT.json`` from a revision's checkout compiles the
gradient of every module the recurrent and NTM benchmarks time (noisy, deterministic
and plain NTM; LSTM/GRU layers; cells under ``noisy_rnn``) and writes, per module, how
many times each XLA op occurs in the compiled program. Two revisions whose histograms
agree compile to the same kernels, so their speed differs only by measurement noise,
which on a shared 2-core machine is larger than the 10 % a timing can resolve. The
``new`` switch lets the same script run on revisions before the ``UnitNoise`` fields.
"""
import collections, json, re, sys
import jax, jax.numpy as jnp
import noisy_jax, noisy_jax.nn
new = hasattr(noisy_jax, "UnitNoise")
def plain_kw():
  return (dict(sigmoid=noisy_jax.UnitNoise("sigmoid", "nah"), tanh=noisy_jax.UnitNoise("tanh", "nan"))
          if new else dict(sigmoid_kind="sigmoid", tanh_kind="tanh"))
B, T, D, H = 16, 50, 32, 64
xs = jax.random.normal(jax.random.key(0), (B, T, D))
ntm_kw = dict(features=100, memory_size=128, memory_width=20)
mods = {
  "ntm_noisy": noisy_jax.nn.noisy_rnn(noisy_jax.nn.NTMCell(**ntm_kw)),
  "ntm_det": noisy_jax.nn.noisy_rnn(noisy_jax.nn.NTMCell(**ntm_kw, deterministic=True)),
  "ntm_plain": noisy_jax.nn.noisy_rnn(noisy_jax.nn.NTMCell(**ntm_kw, noisy_gates=(), **plain_kw())),
  "lstm_layer": noisy_jax.nn.NoisyLSTM(H), "gru_layer": noisy_jax.nn.NoisyGRU(H),
  "lstm_layer_det": noisy_jax.nn.NoisyLSTM(H, deterministic=True),
  "lstm_cell_rnn": noisy_jax.nn.noisy_rnn(noisy_jax.nn.NoisyLSTMCell(H)),
  "gru_cell_rnn": noisy_jax.nn.noisy_rnn(noisy_jax.nn.NoisyGRUCell(H)),
}
out = {}
for name, m in mods.items():
  v = m.init({"params": jax.random.key(1), "noise": jax.random.key(2)}, xs)
  loss = lambda v, key: jnp.sum(m.apply(v, xs, rngs={"noise": key}) ** 2)
  txt = jax.jit(jax.value_and_grad(loss)).lower(v, jax.random.key(3)).compile().as_text()
  ops = collections.Counter(re.findall(r" ([a-z][a-z0-9-]*)\(", txt))
  out[name] = dict(ops)
json.dump(out, open(sys.argv[1], "w"), indent=1, sort_keys=True)
print("done", "new" if new else "old")
