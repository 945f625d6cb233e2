"""Training data: which examples each loss needs, tokenized and cut into batches.

Shapes: S sides of an example (2 for pairs, 3 for triplets), B batch, T tokens, N examples.

A loss names the kinds of data it trains on (``minisbert.losses.registry``): scored pairs
(cosine), class pairs (softmax), 0/1 pairs (contrastive), triplets, unlabelled pairs
(in-batch negatives). ``load_training_data`` reads ``--data``, checks that the run's loss
(resolved once, ``losses.get_loss``) can train on it, and tokenizes every side once. Each
epoch visits the examples in an order drawn from ``numpy.random.default_rng([seed, epoch])``
(``epoch_order``); the short last batch is dropped, so every batch has B examples.
``TrainingData.batch`` pads each side of a batch to a bucket length (``minisbert.batching``):
(S, B, T).

**Batches without repeated texts.** A loss with in-batch negatives (MNRL: every other
example's positive is a negative) is taught that two copies of one text differ, when a text
appears twice in a batch: a false negative. So for these losses (``in_batch_negatives`` in
``minisbert.losses.registry``), unless ``--allow-duplicates``, ``TrainingData.order`` turns the
epoch's shuffle into batches that hold no text twice, in any side (``distinct_batches``). It is
still a function of (seed, epoch) alone, with N // B batches an epoch, so the schedule, the
checkpoints and ``--resume`` see the same steps and batches as before.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from minisbert.batching import bucket_length
from minisbert.data import DataError, PairExample, TripletExample, load_dataset
from minisbert.io import checkpoint
from minisbert.losses import DATA_KINDS, Loss, get_loss
from minisbert.tokenizer import Tokenizer, pad_batch
from minisbert.train_config import TrainConfig

LossFn = Callable[..., jax.Array]


def data_kinds(examples: list[Any]) -> set[str]:
    """The kinds of training data ``examples`` are (keys of ``losses.DATA_KINDS``)."""
    if all(isinstance(e, TripletExample) for e in examples):
        return {"triplets"}
    labels = [e.label for e in examples]
    if all(label is None for label in labels):
        return {"unlabelled pairs"}
    if all(isinstance(label, int) for label in labels):
        return {"class pairs", "0/1 pairs"} if set(labels) <= {0, 1} else {"class pairs"}
    if all(isinstance(label, float) for label in labels):
        return {"scored pairs"}
    raise DataError("the examples mix labelled and unlabelled pairs, or scores and classes")


@dataclasses.dataclass
class TrainingData:
    """Token ids of every side of every example, and the labels, ready to batch."""

    sides: list[list[list[int]]]  # S columns, each N lists of token ids
    labels: np.ndarray | None  # (N,) float32 scores or int32 classes; None if unlabelled
    max_length: int
    pad_token_id: int
    num_classes: int = 0  # C, for softmax
    fingerprint: str = ""  # sha256 of the examples as loaded, checked by --resume
    distinct_texts: bool = False  # batches without a repeated text (``order``)
    _orders: dict[tuple[int, int, int], np.ndarray] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )  # the latest epochs' orders (building one is a pass over the data); a copy starts empty

    def __len__(self) -> int:
        return len(self.sides[0])

    def order(self, seed: int, epoch: int, batch_size: int) -> np.ndarray:  # (N,)
        """The order epoch ``epoch`` visits the examples in, for batches of ``batch_size``:
        ``epoch_order``'s shuffle, rearranged by ``distinct_batches`` when ``distinct_texts``."""
        key = (seed, epoch, batch_size)
        if key not in self._orders:
            order = epoch_order(seed, epoch, len(self))
            if self.distinct_texts:
                texts = self.text_ids()
                order = distinct_batches(order, texts, batch_size)
                repeats = repeated_batches(order, texts, batch_size)
                if repeats:
                    print(f"epoch {epoch + 1}: {repeats} of {len(self) // batch_size} batches "
                          "hold a text twice: the data repeats a text about as often as there "
                          "are batches", file=sys.stderr)  # fmt: skip
            while len(self._orders) >= 2:  # the one before is kept: a run may look back once
                del self._orders[next(iter(self._orders))]
            self._orders[key] = order
        return self._orders[key]

    def text_ids(self) -> np.ndarray:  # (N, S)
        """Each side's text as a number, equal numbers for equal token ids: the texts as the
        model sees them (two strings that tokenize alike embed alike)."""
        numbers: dict[tuple[int, ...], int] = {}
        columns = [[numbers.setdefault(tuple(ids), len(numbers)) for ids in side]
                   for side in self.sides]  # fmt: skip
        return np.array(columns, dtype=np.int64).T.reshape(len(self), len(self.sides))

    def sentences(self, order: np.ndarray, index: int, batch_size: int) -> list[list[int]]:
        """The S * B token-id lists of batch ``index`` of an epoch, side after side."""
        rows = order[index * batch_size : (index + 1) * batch_size]  # (B,)
        return [side[i] for side in self.sides for i in rows]

    def labels_of(self, order: np.ndarray, index: int, batch_size: int) -> np.ndarray | None:
        """The labels of batch ``index`` of an epoch: (B,), or None."""
        rows = order[index * batch_size : (index + 1) * batch_size]  # (B,)
        return None if self.labels is None else self.labels[rows]

    def batch(
        self, order: np.ndarray, index: int, batch_size: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Batch ``index`` of an epoch, padded: input_ids and attention_mask (S, B, T), labels (B,).

        T is the bucket of the batch's longest sentence (any side), so jit compiles one
        train step per bucket length.
        """
        sentences = self.sentences(order, index, batch_size)  # S * B lists
        T = bucket_length(max(len(ids) for ids in sentences), self.max_length)
        ids, mask = pad_batch(sentences, T, self.pad_token_id)  # (S * B, T) each
        S = len(self.sides)
        shape = (S, batch_size, T)
        return ids.reshape(shape), mask.reshape(shape), self.labels_of(order, index, batch_size)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:  # (n,)
    """The shuffled order of epoch ``epoch``: a function of (seed, epoch) alone, so resumable."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def distinct_batches(
    order: np.ndarray,  # (N,) the shuffled examples
    texts: np.ndarray,  # (N, S) each side's text id (``TrainingData.text_ids``)
    batch_size: int,
) -> np.ndarray:  # (N,): N // B batches, then the examples left over
    """``order`` rearranged so that none of its N // B batches holds a text twice, in any side.

    Each batch is filled greedily in the shuffled order: it takes the next example none of
    whose texts it holds yet; an example it skips waits, first in line for the next batch.
    This is the rule of sentence-transformers' NoDuplicatesBatchSampler (a seeded shuffle,
    no value twice in a batch across its text columns, skipped examples first for the next
    batch). Unlike it, texts are compared as token ids, and an epoch keeps N // B batches:
    where the examples left cannot complete a batch (at the end of an epoch, most often),
    one that is left is swapped into an earlier batch for a member of it that fits here.
    Where even that fails (a text in nearly as many examples as there are batches) the batch
    is completed in order, repeats and all (``repeated_batches`` counts them).
    """
    sets = [frozenset(row) for row in texts.tolist()]  # (N,) each example's texts
    waiting: deque[int] = deque()  # skipped, in the order they were skipped
    fresh = iter(order.tolist())
    batches: list[list[int]] = []
    for _ in range(len(order) // batch_size):
        batch: list[int] = []
        seen: set[int] = set()  # the texts the batch holds
        waiting = deque(i for i in waiting if not _take(i, batch, seen, sets[i], batch_size))
        while len(batch) < batch_size and (i := next(fresh, None)) is not None:
            if not _take(i, batch, seen, sets[i], batch_size):
                waiting.append(i)
        while len(batch) < batch_size and waiting:  # stuck: swap, else take a repeat
            swapped = _swap_in(waiting, batches, sets, seen)
            i = swapped if swapped is not None else waiting.popleft()
            batch.append(i)
            seen.update(sets[i])
        batches.append(batch)
    left = [*waiting, *fresh]
    return np.array([i for batch in batches for i in batch] + left, dtype=order.dtype)


def _take(i: int, batch: list[int], seen: set[int], texts: frozenset[int], size: int) -> bool:
    """Put example ``i`` (of ``texts``) into ``batch`` if it has room and holds none of them."""
    if len(batch) == size or not seen.isdisjoint(texts):
        return False
    batch.append(i)
    seen.update(texts)
    return True


def _swap_in(
    waiting: deque[int], batches: list[list[int]], sets: list[frozenset[int]], seen: set[int]
) -> int | None:
    """An example of an earlier batch that fits a batch holding the texts ``seen``, replaced
    there by a waiting one that fits in its place (removed from ``waiting``); None if none."""
    for x in list(waiting):
        for batch in batches:
            held = set().union(*(sets[j] for j in batch))
            for place, y in enumerate(batch):
                if seen.isdisjoint(sets[y]) and sets[x].isdisjoint(held - sets[y]):
                    batch[place] = x
                    waiting.remove(x)
                    return y
    return None


def repeated_batches(order: np.ndarray, texts: np.ndarray, batch_size: int) -> int:
    """How many of ``order``'s N // B batches hold a text twice (in any side)."""
    count = 0
    for index in range(len(order) // batch_size):
        rows = order[index * batch_size : (index + 1) * batch_size]  # (B,)
        held = [set(row) for row in texts[rows].tolist()]  # (B,)
        count += sum(map(len, held)) != len(set().union(*held))
    return count


def load_training_data(
    config: TrainConfig, tokenizer: Tokenizer, loss: Loss | None = None
) -> TrainingData:
    """Load ``config.data``, check that ``config.loss`` can train on it, and tokenize it.

    ``loss`` is ``config.loss`` as the run resolved it; without it, it is resolved here.
    stsb and sick scores are rescaled to [0, 1] (cosine compares them with cos(u, v)).
    Contrastive losses need 0/1 labels and are refused on scored data: minisbert does not
    invent a threshold that turns a similarity score into "similar" / "dissimilar".
    """
    loss = loss if loss is not None else get_loss(config.loss)
    examples = load_dataset(config.data, config.split, normalize=True)
    if not examples:
        raise DataError(f"--data {config.data} ({config.split}) has no examples")
    kinds = data_kinds(examples)
    needs = loss.data
    if not kinds & set(needs):
        wanted = "; or ".join(f"{kind} ({DATA_KINDS[kind]})" for kind in needs)
        raise ValueError(
            f"--loss {config.loss} needs {wanted}. --data {config.data} gives "
            f"{' / '.join(sorted(kinds))}"
            + ("; for scores use --loss cosine or cosent" if "scored pairs" in kinds else "")
        )
    if isinstance(examples[0], TripletExample):
        columns = [[e.anchor for e in examples], [e.positive for e in examples],
                   [e.negative for e in examples]]  # fmt: skip
        labels = None
    else:
        columns = [[e.sentence1 for e in examples], [e.sentence2 for e in examples]]
        labels = _labels(examples, config, loss.head)
    return TrainingData(
        sides=[tokenizer.tokenize(column) for column in columns],
        labels=labels,
        max_length=tokenizer.max_seq_length,
        pad_token_id=tokenizer.pad_token_id,
        num_classes=int(labels.max()) + 1 if loss.head else 0,  # type: ignore[union-attr]
        fingerprint=checkpoint.data_fingerprint(examples),
        distinct_texts=loss.in_batch_negatives and not config.allow_duplicates,
    )


def _labels(
    examples: list[PairExample], config: TrainConfig, head: bool
) -> np.ndarray | None:  # (N,)
    """The labels as an array, refused (naming the row) where the loss cannot train on them
    (``head``: the loss classifies them, so they must be class ids 0..C-1)."""
    if examples[0].label is None:
        return None

    def row(i: int) -> str:  # where example i came from
        line = examples[i].line
        return f"--data {config.data}" + (f", line {line}" if line else f", example {i + 1}")

    if isinstance(examples[0].label, int):
        classes = np.array([e.label for e in examples], dtype=np.int32)
        if head and classes.min() < 0:
            i = int(np.argmin(classes))
            raise DataError(f"{row(i)}: label {classes[i]} is negative; class ids are 0..C-1")
        missing = sorted(set(range(classes.max())) - set(classes.tolist()))
        if head and missing:  # a typo such as 11 for 1 makes 12 classes
            i = int(np.argmax(classes))
            raise DataError(
                f"{row(i)}: label {classes[i]} is the largest class id, but no example has class "
                f"{', '.join(map(str, missing[:5]))}: --loss softmax needs class ids 0..C-1, "
                "each with examples; fix or renumber the labels"
            )
        return classes
    scores = np.array([e.label for e in examples], dtype=np.float32)
    outside = np.flatnonzero((scores < 0) | (scores > 1))
    if config.loss == "cosine" and outside.size:
        i = int(outside[0])
        raise DataError(
            f"{row(i)}: score {scores[i]:g} is outside [0, 1]. --loss cosine regresses "
            f"cos(u, v) onto the score, so scores must lie in [0, 1]; these lie in "
            f"[{scores.min():g}, {scores.max():g}]: rescale them"
        )
    return scores
