"""Fine-tuning: the siamese train step and the loop that runs it.

Shapes: S sides of an example (2 for pairs, 3 for triplets), B batch, T tokens, D hidden.

One step (``train_step``), for a batch of pairs (u side, v side) or triplets:

    e_s  = model(input_ids[s], attention_mask[s])        s = 1..S, the SAME module each time
    loss = loss_fn([classifier,] e_1, ..., e_S, [labels])
    g    = grad(loss), clipped at global norm 1; AdamW   (minisbert.optimizer)

Calling one module on every side is what makes the network *siamese*: u and v come from
the same weights, and the gradient of both sides flows into them. The SoftmaxClassifier of
the NLI objective is trained with the encoder (it is part of ``Trainable``) and then thrown
away, as in the paper.

**How batches become steps** is a ``Steps`` object's job. ``PaddedSteps`` (the default
here) pads each side of a batch, (S, B, T), and runs ``train_step``: what this file shows.
``minisbert.fast.PackedSteps`` packs the batch's S * B sentences several to a row, splits
the batch across devices, and runs this same ``train_step`` with another ``embed`` (its
packed rows through the same ``BertEncoder``); it is what ``minisbert train`` runs:
``train(config, steps=PackedSteps())``. With dropout off the two give the same losses,
gradients and weights (tests/test_packing.py); see **Determinism** for dropout on.
``minisbert.grad_cache.CachedSteps`` embeds a batch M sentences at a time through a gradient
cache (``config.mini_batch_size``, ``--mini-batch-size M``), in memory that grows with M, not
with the batch; ``train`` runs it whenever M is below the batch size.

**Your own loss.** ``train(config, loss_fn=f)`` trains with ``f`` instead of the registry
loss named by ``config.loss``; ``config.loss`` still says which data ``f`` gets and how it
is called, so ``f`` must take the same arguments: ``f(u, v, scores)`` for cosine/cosent,
``f(u, v, labels)`` for contrastive, ``f(classifier, u, v, labels)`` for softmax,
``f(anchor, positive, negative)`` for triplet/mnrl (``f(anchor, positive)`` for mnrl on
unlabelled pairs). ``f`` must be jittable and return a scalar. On the command line,
``--loss my_losses.py:my_loss`` does the same (``minisbert.losses.registry``).

**Determinism.** The same config, seed and ``Steps`` give bit-identical losses and weights
on the same machine (the shuffle, the dropout keys and the classifier all come from
``seed``). ``PaddedSteps`` and ``PackedSteps`` compute the same function: with dropout off
they give the same losses, gradients and weights to float rounding (tests/test_packing.py).
With dropout on they draw masks for differently shaped arrays, so each path's run is
reproducible but the two end on different weights. ``dropout_bits=16`` (``--dropout-bits
16``) draws every mask from half the random bits on either path (``minisbert.dropout``);
it changes the masks, so a resumed run must keep it. Another CPU or jaxlib may round float
sums in another order, so the last bits can differ.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from minisbert import run_guard
from minisbert.dropout import set_dropout_rate, use_16bit_dropout
from minisbert.evaluate import eval_examples
from minisbert.io import checkpoint
from minisbert.losses import SoftmaxClassifier, get_loss, make_loss
from minisbert.losses.registry import check_loss_value
from minisbert.optimizer import group_schedule, make_optimizer
from minisbert.sentence_encoder import SentenceEncoder, SentenceModel, resolve_model_dir
from minisbert.train_config import PROBE_RATIO, TrainConfig
from minisbert.training_data import LossFn, TrainingData, epoch_order, load_training_data

__all__ = ["PaddedSteps", "Steps", "TrainConfig", "Trainable", "TrainingError",
           "TrainResult", "compute_loss", "epoch_order", "train", "train_step"]  # fmt: skip


class TrainingError(RuntimeError):
    """Training cannot go on: a NaN or infinite loss, or a resume that does not fit the run."""


@dataclasses.dataclass
class TrainResult:
    output: Path
    steps: int  # steps done, in total
    losses: list[float]  # one per step run by this call
    metrics: dict[str, float]  # the final evaluation, if any
    seconds_per_step: float  # median wall time of a step (compiling steps are the outliers)


# How a batch becomes the sides' sentence vectors: (model, input_ids, attention_mask) -> (S, B, D).
Embed = Callable[[SentenceModel, Any, Any], jax.Array]


class Trainable(nnx.Module):
    """Everything the optimiser updates: the sentence model and, for softmax, its classifier."""

    def __init__(self, model: SentenceModel, classifier: SoftmaxClassifier | None = None):
        self.model = model
        self.classifier = classifier


# ---------------------------------------------------------------- the step


def embed_sides(
    model: SentenceModel,
    input_ids: jax.Array,  # (S, B, T)
    attention_mask: jax.Array,  # (S, B, T)
) -> jax.Array:  # (S, B, D)
    """Every side through the same model, one padded forward pass each: the siamese network."""
    return jnp.stack([model(input_ids[s], attention_mask[s]) for s in range(input_ids.shape[0])])


def compute_loss(
    trainable: Trainable,
    input_ids: jax.Array,  # (S, B, T)
    attention_mask: jax.Array,  # (S, B, T)
    labels: jax.Array | None,  # (B,) or None
    loss_fn: LossFn,
    embed: Embed = embed_sides,
) -> jax.Array:  # ()
    """Embed every side with the same model, then hand the embeddings to the loss.

    ``embed`` is how the batch becomes sentence vectors (S, B, D): ``embed_sides`` here; the
    speed path passes its own (``minisbert.fast.training.embed_packed_sides``: the sides'
    sentences packed several to a row, its ``PackedBatch`` as ``input_ids``, no mask)."""
    sides = embed(trainable.model, input_ids, attention_mask)  # (S, B, D)
    head = [trainable.classifier] if trainable.classifier is not None else []
    tail = [labels] if labels is not None else []
    return loss_fn(*head, *sides, *tail)  # each side (B, D)


# Donating the model and the optimiser lets XLA write the new parameters and Adam's moments
# over the old ones instead of into new buffers (the arrays passed in are deleted).
@nnx.jit(static_argnames=("loss_fn", "embed"), donate_argnames=("trainable", "optimizer"))
def train_step(
    trainable: Trainable,
    optimizer: nnx.Optimizer,
    input_ids: jax.Array,  # (S, B, T)
    attention_mask: jax.Array,  # (S, B, T)
    labels: jax.Array | None,  # (B,)
    loss_fn: LossFn,
    embed: Embed = embed_sides,
) -> jax.Array:  # () the loss before the update
    """One optimiser step. Updates ``trainable`` and ``optimizer`` in place (nnx.jit does)."""

    def loss_of(t: Trainable) -> jax.Array:
        return compute_loss(t, input_ids, attention_mask, labels, loss_fn, embed)

    loss, grads = nnx.value_and_grad(loss_of)(trainable)  # grads: same tree as the Params
    optimizer.update(trainable, grads)
    return loss


class Steps(Protocol):
    """How a run turns its examples into optimiser steps (``PaddedSteps``, or
    ``minisbert.fast.PackedSteps``)."""

    def prepare(
        self, data: TrainingData, config: TrainConfig, total: int,
        trainable: Trainable, optimizer: nnx.Optimizer,
    ) -> None: ...  # fmt: skip

    def batch(self, data: TrainingData, order: np.ndarray, index: int, batch_size: int) -> Any: ...

    def step(
        self, trainable: Trainable, optimizer: nnx.Optimizer, batch: Any, loss_fn: LossFn
    ) -> jax.Array: ...


class PaddedSteps:
    """Padded batches (S, B, T) and ``train_step``, on the default device."""

    def prepare(self, data, config, total, trainable, optimizer) -> None:  # noqa: ANN001
        pass  # nothing to plan: each batch is padded to its own bucket length

    def batch(self, data: TrainingData, order: np.ndarray, index: int, batch_size: int) -> Any:
        return data.batch(order, index, batch_size)  # input_ids, attention_mask, labels

    def step(self, trainable, optimizer, batch, loss_fn) -> jax.Array:  # noqa: ANN001
        input_ids, attention_mask, labels = batch
        return train_step(trainable, optimizer, input_ids, attention_mask, labels, loss_fn)


# ---------------------------------------------------------------- the loop


def train(
    config: TrainConfig,
    *,
    steps: Steps | None = None,
    loss_fn: LossFn | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.data``; the trained model ends in ``config.output``.

    ``steps`` says how batches are laid out and stepped (default ``PaddedSteps()``, or
    ``grad_cache.CachedSteps()`` for a ``config.mini_batch_size`` below the batch size);
    ``loss_fn`` replaces the registry loss (see the module docstring); ``on_step(step,
    loss)`` is called after every step, and raising in it stops the run as a crash would.

    ``minisbert.run_guard`` guards the run: --output must be empty, this run's own, or
    ``config.overwrite`` (never the --model folder); one run per folder at a time; SIGINT
    and SIGTERM stop it before the next step with ``TrainingInterrupted``.
    """
    base_dir = resolve_model_dir(config.model)
    # Of several processes, process 0 alone writes, and alone checks --output: another that
    # looked would race process 0's marker (a file being written, not yet a training folder).
    writes = jax.process_index() == 0
    output = Path(config.output).expanduser()
    if writes:
        run_guard.check_output(output, base_dir, config.overwrite)
        output = checkpoint.prepare_output(config.output)  # fails before any work if unwritable
    with run_guard.RunGuard(output, base_dir, config, writes=writes) as guard:
        run = Run(config, output, base_dir, _steps_for(config, steps), loss_fn)
        return _loop(run, guard, on_step)


def _steps_for(config: TrainConfig, steps: Steps | None) -> Steps:
    """``steps``, or the default for ``config``; refused where it would not do what the config
    says (a mini_batch_size below the batch size needs ``CachedSteps``)."""
    from minisbert.grad_cache import CachedSteps, uses_cache  # it imports this module

    if config.cross_encoder:  # one side of pairs, not sentence vectors: nothing to cache
        from minisbert.cross_encoder_training import PairSteps

        if uses_cache(config.mini_batch_size, config.batch_size):
            raise ValueError(
                "--mini-batch-size caches sentence vectors for in-batch losses; a cross-encoder "
                "has none: drop it (or lower --batch-size)"
            )
        if steps is not None and not getattr(steps, "for_pairs", False):
            raise ValueError(
                f"a cross-encoder trains with Steps that lay out pairs (PairSteps, or "
                f"fast.pairs.PackedPairSteps), not {type(steps).__name__}; leave steps out"
            )
        return steps or PairSteps()
    if not uses_cache(config.mini_batch_size, config.batch_size):
        return steps or PaddedSteps()
    if steps is None:
        return CachedSteps()
    if not isinstance(steps, CachedSteps):
        raise ValueError(
            f"mini_batch_size={config.mini_batch_size} trains with grad_cache.CachedSteps, not "
            f"{type(steps).__name__}; pass steps=CachedSteps() or leave steps out"
        )
    return steps


def _loop(
    run: Run, guard: run_guard.RunGuard, on_step: Callable[[int, float], None] | None
) -> TrainResult:
    """The training loop: a batch, a step, then the bookkeeping (``Run``'s methods)."""
    config, data = run.config, run.data
    progress = _progress(run.total, run.start, config.progress and run.writes)
    run.trainable.train()  # dropout on
    for step in range(run.start, run.total):
        if guard.stop_requested:  # Ctrl-C or SIGTERM: stop here, between two steps
            progress.close()
            raise guard.interrupted(step, run.total, run.last_good)
        epoch, index = divmod(step, run.steps_per_epoch)
        if step == run.start and config.progress and run.writes:  # the wait before the bar moves
            progress.write(COMPILING, file=sys.stderr)
        began = time.perf_counter()
        batch = run.steps.batch(data, data.order(config.seed, epoch, config.batch_size), index,
                                config.batch_size)  # fmt: skip
        loss = float(_local(run.steps.step(run.trainable, run.optimizer, batch, run.loss_fn)))
        run.times.append(time.perf_counter() - began)
        run.check_finite_loss(loss, step)
        run.losses.append(loss)
        progress.set_postfix(loss=f"{loss:.4f}", lr=f"{float(run.schedule(step)):.2e}",
                             refresh=False)  # fmt: skip
        progress.update(1)
        done = step + 1
        if config.eval_steps and done % config.eval_steps == 0 and done < run.total and run.writes:
            progress.write(f"step {done}: {run.evaluate()}")
        if (done % config.checkpoint_steps == 0 or done == run.total) and run.writes:
            run.save_checkpoint(done, loss)
        if on_step is not None:
            on_step(done, loss)
    progress.close()
    if guard.stop_requested:
        raise guard.interrupted(run.total, run.total, run.last_good)
    return run.finish()


class Run:
    """A run's state and bookkeeping: the model and data, the optimiser, resuming from a
    checkpoint, NaN checks, evaluation, checkpoints and the final model.

    Made in two steps: build everything a run from step 0 needs (``_load``, ``_build_model``,
    ``_build_optimizer``), then, with --resume, restore the saved step into it (``_restore``).
    """

    def __init__(
        self, config: TrainConfig, output: Path, base_dir: Path, steps: Steps,
        loss_fn: LossFn | None = None,
    ) -> None:  # fmt: skip
        self.config, self.output, self.base_dir, self.steps = config, output, base_dir, steps
        self.writes = jax.process_index() == 0  # of several processes, process 0 alone writes
        self.folder = output / checkpoint.CHECKPOINTS
        saved = self._checkpoint_to_resume()
        self._load(loss_fn)
        self._build_model(loss_fn)
        self._build_optimizer()
        self._restore(saved)
        steps.prepare(self.data, config, self.total, self.trainable, self.optimizer)
        self.losses: list[float] = []
        self.times: list[float] = []

    def _checkpoint_to_resume(self) -> Path | None:
        """With --resume, the newest checkpoint that matches its manifest (None if there is
        none). Without it, a folder holding checkpoints is refused: the runs would mix."""
        saved = checkpoint.latest_checkpoint(self.folder)
        if saved is not None and not self.config.resume:
            raise TrainingError(
                f"{self.output} already holds checkpoints of a run ({saved.name}); pass --resume "
                "to continue it, or choose another --output"
            )
        return checkpoint.verified_checkpoint(self.folder) if self.config.resume else None

    def _load(self, loss_fn: LossFn | None) -> None:
        """The model to start from, the loss, the data, what to evaluate on, and the steps.

        The loss is resolved here, once (a ``FILE.py:FUNCTION`` file runs once), and passed
        on: the data check, the step's function and the classifier all read this one."""
        config = self.config
        if config.cross_encoder:
            return self._load_pairs(loss_fn)
        self.encoder = SentenceEncoder.from_pretrained(self.base_dir)
        self.objective = get_loss(config.loss)  # its function, its data, whether it has a head
        self.data = load_training_data(config, self.encoder.tokenizer, self.objective)
        self.loss_fn = make_loss(self.objective, config.loss, loss_fn=loss_fn,
                                 margin=config.margin, scale=config.scale,
                                 distance=config.distance,
                                 matryoshka_dims=config.matryoshka_dims,
                                 matryoshka_weights=config.matryoshka_weights,
                                 embedding_dim=self.encoder.dim)  # fmt: skip
        self.evaluation = eval_examples(config.eval_data, config.data)
        self._count_steps()

    def _load_pairs(self, loss_fn: LossFn | None) -> None:
        """``_load`` for a cross-encoder (``minisbert.cross_encoder_training``): the pairs
        read together, a loss on their logits chosen by the data, and its evaluation."""
        from minisbert import cross_encoder_training as pairs

        config = self.config
        if config.loss != TrainConfig.loss:
            raise ValueError(
                f"--loss {config.loss} with --cross-encoder: a cross-encoder's loss follows its "
                "data (binary cross-entropy on scores, cross-entropy on classes); drop --loss"
            )
        examples, labels, num_labels = pairs.read_pairs(config)
        self.encoder = pairs.start_model(self.base_dir, num_labels, config.seed, config.data)
        self.data = pairs.pair_data(config, examples, labels, self.encoder)
        self.objective = None
        self.loss_fn = loss_fn or pairs.pair_loss(num_labels)  # loss(logits, labels)
        self.evaluation = pairs.eval_examples(config.eval_data, config.data, num_labels)
        self._count_steps()

    def _count_steps(self) -> None:
        config = self.config
        self.steps_per_epoch = len(self.data) // config.batch_size  # the short last is dropped
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.data)} examples make no batch of {config.batch_size}")
        total = config.epochs * self.steps_per_epoch
        self.total = min(total, config.max_steps) if config.max_steps else total

    def _build_model(self, loss_fn: LossFn | None) -> None:
        """What the optimiser updates: the encoder and, for a loss with parameters of its
        own, a new softmax classifier; the loss tried on it; every dropout layer seeded."""
        config, classifier = self.config, None
        if self.objective is not None and self.objective.head:
            classifier = SoftmaxClassifier(
                self.encoder.dim, self.data.num_classes, concat=config.concat,
                rngs=nnx.Rngs(config.seed),
            )  # fmt: skip
        self.trainable = Trainable(self.encoder.model, classifier)
        self._check_loss(loss_fn)
        rate = config.dropout_rate(self.encoder.num_labels if config.cross_encoder else None)
        if rate is not None:  # --dropout, or a cross-encoder's on scores; else the model's own
            set_dropout_rate(self.trainable, rate)
        if config.dropout_bits == 16:  # the same masks' distribution from half the random bits
            use_16bit_dropout(self.trainable)
        seed_dropout(self.trainable, config.seed)

    def _build_optimizer(self) -> None:
        """AdamW and its schedule, a head learning alone first; then room on the disk for
        the checkpoints."""
        config, classifier = self.config, self.trainable.classifier
        self.probe_steps = config.probe_steps  # the head alone first: PROBE_RATIO by default
        if self.probe_steps is None:
            self.probe_steps = round(PROBE_RATIO * self.total) if classifier is not None else 0
        self.optimizer = nnx.Optimizer(self.trainable, self._optimizer(classifier), wrt=nnx.Param)
        self.schedule = group_schedule(config.peak_lr(), self.total, self.probe_steps,
                                       config.warmup_ratio)  # fmt: skip
        if self.writes:
            self._check_disk()

    def _restore(self, saved: Path | None) -> None:
        """With --resume, go on from ``saved``: its settings and data checked to be this
        run's, then its weights, optimiser state and dropout keys restored, and its step."""
        self.start, self.last_good = 0, saved
        if not self.config.resume:
            return
        if saved is None:
            print(f"--resume: no complete checkpoint in {self.folder}; starting from step 0")
            return
        state = checkpoint.read_state(saved)
        _check_same_run(self.config, state, saved, self.data)
        checkpoint.restore_checkpoint(saved, self.trainable, self.optimizer)
        self.start = state["step"]

    def _check_loss(self, loss_fn: LossFn | None) -> None:
        """Call the loss once on the first batch's shapes, abstractly (``nnx.eval_shape``: no
        compute, nothing compiled): a loss that raises or returns no scalar stops here, in one
        line, rather than inside the jitted step."""
        steps, embed = PaddedSteps(), embed_sides
        if self.config.cross_encoder:
            from minisbert.cross_encoder_training import PairSteps, pair_logits

            steps, embed = PairSteps(), pair_logits
        first = np.arange(len(self.data))
        inputs, attention_mask, labels = steps.batch(self.data, first, 0, self.config.batch_size)
        value = nnx.eval_shape(
            lambda t: compute_loss(t, inputs, attention_mask, labels, self.loss_fn, embed),
            self.trainable,
        )
        name = getattr(loss_fn, "__name__", repr(loss_fn))
        if loss_fn is None:
            name = "--cross-encoder's" if self.config.cross_encoder else self.config.loss
        check_loss_value(value, name if loss_fn is None else f"loss_fn={name}")

    def _optimizer(self, classifier: SoftmaxClassifier | None) -> Any:
        """AdamW; a loss's own parameters (the softmax head) start random: their own rate."""
        config, probe = self.config, self.probe_steps
        head_lr = None
        if classifier is not None and (config.head_lr is not None or probe):
            head_lr = config.head_lr if config.head_lr is not None else config.peak_lr()
        if probe and (classifier is None or probe >= self.total):
            raise ValueError(
                f"--probe-steps {probe} needs a loss with its own parameters "
                f"(--loss softmax) and fewer steps than the run's {self.total}"
            )
        return make_optimizer(
            config.peak_lr(), self.total, head_lr=head_lr, probe_steps=probe,
            warmup_ratio=config.warmup_ratio, weight_decay=config.weight_decay,
            max_grad_norm=config.max_grad_norm,
        )  # fmt: skip

    def _check_disk(self) -> None:
        """At most keep_checkpoints + 1 checkpoints (parameters and Adam's moments) exist at
        once, then the model: a full disk fails now, not after an hour of training."""
        params = sum(x.nbytes for x in jax.tree.leaves(nnx.state(self.trainable, nnx.Param)))
        state = params + sum(x.nbytes for x in jax.tree.leaves(nnx.state(self.optimizer)))
        keep = max(self.config.keep_checkpoints, 1) + 1
        checkpoint.check_free_space(self.output, keep * state + params)

    def check_finite_loss(self, loss: float, step: int) -> None:
        if not math.isfinite(loss):
            epoch, index = divmod(step, self.steps_per_epoch)
            where = self.last_good or "none (no checkpoint written yet)"
            raise TrainingError(
                f"the loss is {loss} at step {step + 1} (epoch {epoch + 1}, batch index {index} "
                f"in the epoch); stopped without saving. Last good checkpoint: {where}"
            )

    def evaluate(self) -> dict[str, float]:
        """Evaluate with dropout off, then switch it back on."""
        if self.evaluation is None:
            return {}
        name, examples, evaluate = self.evaluation
        model = _local(self.trainable.model)  # this process's copy, of a run of several
        if self.config.cross_encoder:
            from minisbert.cross_encoder import CrossEncoder

            metrics = evaluate(CrossEncoder(model, self.encoder.tokenizer, self.encoder.config),
                               examples)  # fmt: skip
        else:
            metrics = evaluate(SentenceEncoder(model, self.encoder.tokenizer), examples)
        self.trainable.train()
        return {f"{Path(name).stem}_{k}": round(v, 4) for k, v in metrics.items()}

    def save_checkpoint(self, done: int, loss: float) -> None:
        config, n = self.config, self.steps_per_epoch
        try:
            self.last_good = checkpoint.save_checkpoint(
                self.folder, done, _local(self.trainable), _local(self.optimizer),
                {"epoch": done // n, "batch_in_epoch": done % n, "steps_per_epoch": n,
                 "total_steps": self.total,
                 "shuffle": {"seed": config.seed, "rule": "default_rng([seed, epoch])",
                             "distinct_texts": self.data.distinct_texts},
                 "num_classes": self.data.num_classes, "loss_value": loss,
                 "data_sha256": self.data.fingerprint, "config": config.to_dict()},
            )  # fmt: skip
        except checkpoint.NonFiniteWeights as err:
            raise TrainingError(
                f"{err}: training diverged; stopped without saving. Last good checkpoint: "
                f"{self.last_good if self.last_good is not None else 'none'}"
            ) from None
        except OSError as err:  # a full disk, most often
            where = self.last_good if self.last_good is not None else "none"
            raise checkpoint.OutputError(
                f"could not write the checkpoint of step {done} ({err}). Last complete "
                f"checkpoint: {where}; free some space, then run again with --resume"
            ) from None
        checkpoint.prune_checkpoints(self.folder, config.keep_checkpoints)

    def finish(self) -> TrainResult:
        """Evaluate, write the trained model (process 0 of several), and report."""
        metrics = self.evaluate() if self.writes else {}
        if metrics:
            print(metrics_table(metrics))
        if self.writes:
            trainable = _local(self.trainable)
            if self.config.cross_encoder:
                checkpoint.save_cross_encoder(self.output, trainable.model, self.encoder.config,
                                              self.base_dir)  # fmt: skip
            else:
                checkpoint.save_model(self.output, trainable.model, self.base_dir,
                                      trainable.classifier)  # fmt: skip
        # The median, not the mean: the few steps that compile a new shape take seconds and
        # would swamp a mean of steps that take a fraction of one.
        median = float(np.median(self.times)) if self.times else 0.0
        return TrainResult(self.output, self.total, self.losses, metrics, median)


def _local(tree: Any) -> Any:
    """A module or array as this process's copy. In a run of several processes
    (``minisbert.fast.distributed``) the weights and the loss are replicated over every
    process's devices, and such an array cannot be read whole; each process holds all of it,
    so its own copy is the value. In one process: ``tree`` itself."""
    if jax.process_count() == 1:
        return tree

    def copy(x: Any) -> Any:
        replicated = isinstance(x, jax.Array) and not x.is_fully_addressable
        return x.addressable_data(0) if replicated else x

    if isinstance(tree, nnx.Module):
        graphdef, state = nnx.split(tree)
        return nnx.merge(graphdef, jax.tree.map(copy, state))
    return copy(tree)


def metrics_table(metrics: dict[str, float]) -> str:
    """The final evaluation, a metric a row, x100: correlations come x100 from evaluate.py,
    accuracies, F1, precision and recall come as fractions. A threshold is a cosine."""
    rows = ["final evaluation:", f"  {'metric':<36} {'x100':>8}"]
    for name, value in metrics.items():
        if name.endswith("threshold"):
            shown = f"{value:8.4f} (cosine, not x100)"
        elif "pearson" in name or "spearman" in name:
            shown = f"{value:8.2f}"
        else:
            shown = f"{100 * value:8.2f}"
        rows.append(f"  {name:<36} {shown}")
    return "\n".join(rows)


def seed_dropout(model: nnx.Module, seed: int) -> None:
    """Give every dropout layer its own key, derived from ``seed``, and reset its counter."""
    streams = [node for _, node in nnx.iter_graph(model) if isinstance(node, nnx.RngStream)]
    for i, stream in enumerate(streams):
        stream.key.set_value(jax.random.fold_in(jax.random.key(seed), i))
        stream.count.set_value(jnp.zeros((), jnp.uint32))


def _check_same_run(
    config: TrainConfig, state: dict[str, Any], path: Path, data: TrainingData
) -> None:
    """Refuse to resume ``path`` (whose state.json is ``state``) with other settings or data."""
    fingerprint = data.fingerprint
    now, saved = config.to_dict(), state["config"]
    for name in TrainConfig.MATH_FIELDS:
        default = TrainConfig.__dataclass_fields__[name].default  # a setting path's state lacks
        if now[name] != saved.get(name, default):
            raise TrainingError(
                f"--resume: {path} was trained with {name}={saved.get(name)!r}, this command "
                f"has {name}={now[name]!r}; resume with the same settings"
            )
    # Checkpoints from before batches without repeated texts had their repeats.
    distinct = state.get("shuffle", {}).get("distinct_texts", False)
    if distinct != data.distinct_texts:
        had, has = ("without", "with") if distinct else ("with", "without")
        raise TrainingError(
            f"--resume: {path} was trained on batches {had} repeated texts, this command "
            f"would give batches {has}; resume with{'out' if distinct else ''} "
            "--allow-duplicates, so that it goes on with the same batches"
        )
    before = state.get("data_sha256", fingerprint)  # no fingerprint saved: nothing to compare
    if before != fingerprint and not config.allow_data_change:
        raise TrainingError(
            f"--resume: the training data --data {config.data} changed since {path} (sha256 of "
            f"its examples {before[:12]}... then, {fingerprint[:12]}... now); restore it, or "
            "pass --allow-data-change to go on with the new data"
        )


COMPILING = "compiling the training step (about 10-30 s on a CPU, once per batch shape)..."


def _progress(total: int, start: int, show: bool) -> Any:
    # The plain text bar: tqdm.auto would want ipywidgets in a notebook and warn without it.
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="Training", unit="step", disable=not show)
