"""Training throughput: pairs per second of one optimiser step, minisbert vs sentence-transformers.

Both sides train all-MiniLM-L6-v2 with the cosine regression objective (CosineSimilarityLoss)
on the same STS-b train batches of 16 pairs, in the same order, with dropout on, AdamW at
lr 2e-5 and the gradient clipped at norm 1:

    minisbert              what ``minisbert train`` runs: the data tokenized once before
                           training, then per step: pack the batch's 32 sentences into rows
                           (minisbert.fast.packing), minisbert.train.train_step, one jitted program
                           per row bucket (the row length and buckets ``minisbert train``
                           plans for one epoch of these batches), with the allocator settings
                           of minisbert.fast.host_memory
    sentence-transformers  the loop its ``fit`` runs: tokenize both sides (each padded to its
                           longest sentence), loss(features, labels), backward, clip, step

Warm-up steps come first and are not timed: for minisbert one step of each row bucket the
timed batches use (each compiles once), for sentence-transformers a few steps (torch's
first-call costs). Then the same ``n_steps`` batches are timed on both sides.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def _batches(
    n_steps: int, batch_size: int
) -> tuple[list[tuple[list[str], list[str], np.ndarray]], list]:
    pairs = load_stsb_train()
    order = np.random.default_rng(0).permutation(len(pairs))
    batches = []
    for b in range(n_steps):
        rows = [pairs[i] for i in order[b * batch_size : (b + 1) * batch_size]]
        batches.append(
            (
                [p.sentence1 for p in rows],
                [p.sentence2 for p in rows],
                np.array([p.label for p in rows], np.float32),
            )
        )
    return batches, pairs


def load_stsb_train() -> list:
    from minisbert.data import load_dataset

    return load_dataset("stsb", "train", normalize=True)  # scores in [0, 1]


def stsb_training_data(tokenizer, batch_size: int) -> tuple:
    """STS-b train as ``minisbert train`` prepares it, in the order ``_batches`` uses, with the
    row length and row buckets it plans for one epoch (the timed batches are its first
    steps): a real run's shapes, not a 60-step run's. Returns (data, order, batch), where
    ``batch(i)`` is packed batch i and its labels, as ``minisbert.fast.PackedSteps`` makes it."""
    from minisbert.fast.packing import rows_needed
    from minisbert.fast.training import packed_batch, plan_rows, row_length
    from minisbert.train import TrainConfig
    from minisbert.training_data import load_training_data

    data = load_training_data(TrainConfig(data="stsb", loss="cosine"), tokenizer)
    order = np.random.default_rng(0).permutation(len(data))  # the order _batches uses
    L = row_length(data)
    needed = [
        rows_needed([len(ids) for ids in data.sentences(order, i, batch_size)], L)
        for i in range(len(data) // batch_size)
    ]
    buckets = plan_rows(needed)
    data.row_length, data.row_buckets = L, buckets  # for bench.profile's report

    def batch(i: int) -> tuple:
        return packed_batch(data, order, i, batch_size, L, buckets)

    return data, order, batch


def minisbert_pairs_per_second(
    model_dir: Path, batches: list, batch_size: int, keep_memory: bool = True
) -> float:
    from flax import nnx

    from minisbert.fast import use_16bit_dropout
    from minisbert.fast.host_memory import keep_freed_memory
    from minisbert.fast.training import packed_train_step as train_step
    from minisbert.losses import cosine_similarity_loss
    from minisbert.optimizer import make_optimizer
    from minisbert.sentence_encoder import SentenceEncoder
    from minisbert.train import Trainable

    if keep_memory:
        keep_freed_memory()  # as ``minisbert train`` does, before JAX first computes
    encoder = SentenceEncoder.from_pretrained(model_dir)
    trainable = Trainable(use_16bit_dropout(encoder.model))  # as minisbert train's PackedSteps
    optimizer = nnx.Optimizer(trainable, make_optimizer(2e-5, 10_000), wrt=nnx.Param)
    trainable.train()
    data, order, packed_batch = stsb_training_data(encoder.tokenizer, batch_size)
    first = data.sentences(order, 0, batch_size)
    assert first[:batch_size] == encoder.tokenizer.tokenize(batches[0][0])  # the same pairs

    # Warm-up: compile each row bucket once.
    seen: set[int] = set()
    for i in range(len(batches)):
        packed, labels = packed_batch(i)
        if packed.input_ids.shape[0] not in seen:
            seen.add(packed.input_ids.shape[0])
            train_step(
                trainable, optimizer, packed, labels, cosine_similarity_loss
            ).block_until_ready()

    start = time.perf_counter()
    for i in range(len(batches)):  # packing counts: it is part of a training step
        packed, labels = packed_batch(i)
        loss = train_step(trainable, optimizer, packed, labels, cosine_similarity_loss)
    loss.block_until_ready()
    return len(batches) * batch_size / (time.perf_counter() - start)


def reference_pairs_per_second(
    st_dir: Path, batches: list, batch_size: int, warmup: int = 3
) -> float:
    import torch
    from sentence_transformers import SentenceTransformer, losses

    model = SentenceTransformer(str(st_dir), device="cpu")
    loss_fn = losses.CosineSimilarityLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
    model.train()

    def step(s1: list[str], s2: list[str], labels: np.ndarray) -> None:
        features = [model.tokenize(s1), model.tokenize(s2)]
        loss = loss_fn(features, torch.from_numpy(labels))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    for s1, s2, labels in batches[:warmup]:
        step(s1, s2, labels)
    start = time.perf_counter()
    for s1, s2, labels in batches:
        step(s1, s2, labels)
    return len(batches) * batch_size / (time.perf_counter() - start)
