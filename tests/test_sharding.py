"""Data parallelism: 4 simulated CPU devices give the loss and gradients of one device.

JAX reads ``JAX_NUM_CPU_DEVICES`` once, when it starts, so the 4-device half runs in a
subprocess with it set before ``import jax``. (Several *processes*: tests/test_distributed.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SCRIPT = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
sys.path.insert(0, sys.argv[1])
from tiny import TINY_CONFIG
from minisbert.config import SentenceConfig
from minisbert.losses import cosine_similarity_loss, multiple_negatives_ranking_loss
from minisbert.sentence_encoder import SentenceModel
from minisbert.fast import sharding
from minisbert.fast.training import embed_packed_sides, packed_batch
from minisbert.train import Trainable, compute_loss, seed_dropout
from minisbert.training_data import TrainingData

assert len(jax.devices()) == 4, jax.devices()
rng = np.random.default_rng(0)
S, B, T = 2, 8, 8
input_ids = rng.integers(5, 99, size=(S, B, T)).astype(np.int32)
mask = np.ones((S, B, T), np.int32)
mask[:, :, 5:] = rng.integers(0, 2, size=(S, B, 3))  # some padding
scores = rng.random(B).astype(np.float32)
# The same sentences packed, as minisbert train feeds them: 16 sentences in 8 rows of 16.
data = TrainingData(
    sides=[[list(input_ids[s, b][mask[s, b] == 1]) for b in range(B)] for s in range(S)],
    labels=scores, max_length=16, pad_token_id=0,
)
packed, _ = packed_batch(data, np.arange(B), 0, B, 16, (8,))

def loss_and_grads(devices, loss_name, train_mode, packing=False):
    model = SentenceModel(TINY_CONFIG, SentenceConfig(32), rngs=nnx.Rngs(0))
    trainable = Trainable(model)
    seed_dropout(trainable, 0)
    trainable.train() if train_mode else trainable.eval()
    mesh = sharding.make_mesh(devices)
    nnx.update(trainable, sharding.replicate(nnx.state(trainable), mesh))
    ids, m, labels = sharding.shard_batch(input_ids, mask, scores, mesh)
    rows, _ = sharding.shard_packed(packed, None, mesh)
    if loss_name == "mnrl":
        fn, labels = multiple_negatives_ranking_loss, None  # in-batch negatives: needs all rows
    else:
        fn = cosine_similarity_loss

    @nnx.jit
    def step(t, ids, m, labels):
        return nnx.value_and_grad(lambda t: compute_loss(t, ids, m, labels, fn))(t)

    @nnx.jit
    def packed_step(t, rows, labels):
        loss = lambda t: compute_loss(t, rows, None, labels, fn, embed_packed_sides)  # noqa: E731
        return nnx.value_and_grad(loss)(t)

    if packing:
        loss, grads = packed_step(trainable, rows, labels)
        spec = str(rows.input_ids.sharding.spec)
    else:
        loss, grads = step(trainable, ids, m, labels)
        spec = str(ids.sharding.spec)
    flat = {".".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(grads)}
    return float(loss), flat, spec

out = {}
cases = (("cosine", False, False), ("mnrl", True, False), ("cosine", False, True),
         ("mnrl", True, True))
for loss_name, train_mode, packing in cases:
    one, g1, _ = loss_and_grads(jax.devices()[:1], loss_name, train_mode, packing)
    four, g4, spec = loss_and_grads(jax.devices(), loss_name, train_mode, packing)
    out[f"{loss_name}/{'train' if train_mode else 'eval'}{'/packed' if packing else ''}"] = {
        "loss_1": one, "loss_4": four, "spec": spec,
        "grad_max_diff": max(float(np.max(np.abs(g1[k] - g4[k]))) for k in g1),
        "grad_max": max(float(np.max(np.abs(g1[k]))) for k in g1),
    }
try:
    sharding.check_batch_size(6, sharding.make_mesh())
except ValueError as err:
    out["uneven"] = str(err)
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def four_devices() -> dict:
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="4", JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(TESTS)], capture_output=True, text=True, env=env,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


# cosine without dropout; mnrl (in-batch negatives from every device) with dropout on, which
# also checks that the dropout masks do not depend on how the batch is split.
# "packed": the rows minisbert train feeds its train step (minisbert.fast.packing), split by row.
@pytest.mark.slow  # the long tier: make test-slow
@pytest.mark.parametrize(
    "case", ["cosine/eval", "mnrl/train", "cosine/eval/packed", "mnrl/train/packed"]
)
def test_four_devices_give_the_one_device_loss_and_gradients(four_devices, case):
    r = four_devices[case]
    assert "data" in r["spec"]  # the batch really was split across the devices
    # Same maths, different order of float32 sums: agree to ~1e-6 relative.
    assert abs(r["loss_1"] - r["loss_4"]) <= 1e-5 * max(1.0, abs(r["loss_1"]))
    assert r["grad_max_diff"] <= 1e-5 * max(1.0, r["grad_max"])


@pytest.mark.slow  # the long tier: it shares the 4-device subprocess of the tests above
def test_a_batch_that_does_not_split_evenly_is_refused(four_devices):
    assert "batch size 6 does not split evenly over 4 devices" in four_devices["uneven"]
