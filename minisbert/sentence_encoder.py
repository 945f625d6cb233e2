"""The sentence encoder: tokenizer + BERT + pooling (+ L2 normalisation).

    sentence --tokenize--> ids (T,) --BERT--> token vectors (T, D) --pool--> u (D,)
                                                                  --normalise--> u / ||u||

``SentenceModel`` is the network part, an ``nnx.Module`` that the training loop
differentiates. ``SentenceEncoder`` adds the tokenizer and ``encode``, which turns a
list of strings into a numpy array exactly as the reference library's ``encode`` does
for the same model folder (same tokens, same pooling, same normalisation).

How ``encode`` lays sentences out in batches is its *batcher*'s job. ``SmartBatcher``, here,
is the paper's smart batching (sort by length, pad each batch to a bucket length);
``minisbert.fast.PackedBatcher`` packs several sentences into each row, for the same
vectors from fewer token slots: ``minisbert.fast.FastEncoder`` is this class with it.

Shapes: B batch, T tokens, D hidden size, N sentences in a call.
"""

from __future__ import annotations

import functools
import numbers
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from minisbert.batching import smart_batches
from minisbert.bert import BertEncoder
from minisbert.config import BertConfig, ConfigError, SentenceConfig
from minisbert.dense import Dense
from minisbert.io.checkpoint import check_model_folder
from minisbert.io.weights import check_file_params, load_params, param_shapes
from minisbert.pooling import normalize, pool
from minisbert.tokenizer import Tokenizer

REPO_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
CHUNK_SIZE = 16384  # sentences tokenized, sorted and encoded together; bounds memory


class SentenceModel(nnx.Module):
    """BERT, pooling, any Dense layers, and (optionally) normalisation: ids in, vectors out."""

    def __init__(self, config: BertConfig, sentence_config: SentenceConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.sentence_config = sentence_config
        self.bert = BertEncoder(config, rngs=rngs)
        self.dense = nnx.List([Dense(layer, rngs=rngs) for layer in sentence_config.dense])

    def __call__(
        self,
        input_ids: jax.Array,  # (B, T)
        attention_mask: jax.Array,  # (B, T)
    ) -> jax.Array:  # (B, D)
        token_embeddings = self.bert(input_ids, attention_mask)  # (B, T, D)
        return self.pool_and_project(token_embeddings, attention_mask)

    def pool_and_project(
        self,
        token_embeddings: jax.Array,  # (B, T, D)
        attention_mask: jax.Array,  # (B, T)
    ) -> jax.Array:  # (B, D'): K D for K pooling modes, or the last Dense layer's size
        """Token vectors to sentence vectors: pool, Dense layers, normalise."""
        u = pool(self.sentence_config.pooling, token_embeddings, attention_mask)  # (B, K D)
        for layer in self.dense:
            u = layer(u)  # (B, D_out)
        return normalize(u) if self.sentence_config.normalize else u


# Jitted once per (model structure, input shape). ``graphdef`` is static: it describes
# the module tree; ``state`` holds the parameter arrays that flow through the program.
@functools.partial(jax.jit, static_argnums=0)
def _sentence_embeddings(graphdef: Any, state: Any, input_ids: jax.Array, mask: jax.Array):
    return nnx.merge(graphdef, state)(input_ids, mask)  # (B, D)


@functools.partial(jax.jit, static_argnums=0)
def _token_embeddings(graphdef: Any, state: Any, input_ids: jax.Array, mask: jax.Array):
    return nnx.merge(graphdef, state).bert(input_ids, mask)  # (B, T, D)


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A path, or a model name looked up in $MINISBERT_WEIGHTS, ./weights, the repo's weights/."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    roots = [Path(os.environ["MINISBERT_WEIGHTS"])] if "MINISBERT_WEIGHTS" in os.environ else []
    roots += [Path("weights"), REPO_WEIGHTS]
    for root in roots:
        if (root / str(name_or_path)).is_dir():
            return root / str(name_or_path)
    raise FileNotFoundError(
        f"no model folder {str(name_or_path)!r} (looked in: {', '.join(str(r) for r in roots)}). "
        f"Fetch and convert it with `minisbert fetch {Path(str(name_or_path)).name}` "
        "(or `make weights` for all-MiniLM-L6-v2)."
    )


def open_model_folder(
    folder: Path, settings: str, read_settings: Any, length_field: str
) -> tuple[Any, BertConfig, Tokenizer]:
    """The checked files of a minisbert model folder, before any array is made: its own
    ``settings`` file (``sentence.json``; a cross-encoder's ``cross_encoder.json``), BERT's
    ``config.json`` and the tokenizer, each against the others: the maximum length
    (``length_field`` of the settings) against the position embeddings, the vocabulary
    against the embedding matrix. Shared by ``SentenceEncoder`` and ``CrossEncoder``."""
    check_model_folder(folder)  # not caught half-written
    for name in ("config.json", settings, "tokenizer.json", "model.safetensors"):
        if not (folder / name).exists():  # a link to a device is refused where it is read
            hint = (
                " This looks like a sentence-transformers folder: convert it with "
                f"`minisbert convert {folder} weights/NAME`."
                if (folder / "modules.json").is_file()
                else " Fetch or convert the model again."
            )
            raise FileNotFoundError(f"{folder / name}: missing from the model folder.{hint}")
    config = BertConfig.from_json(folder / "config.json")
    values = read_settings(folder / settings)
    max_length = getattr(values, length_field)
    if max_length > config.max_position_embeddings:
        raise ConfigError(
            f"{folder / settings}: {length_field} {max_length} exceeds the model's "
            f"{config.max_position_embeddings} position embeddings"
        )
    tokenizer = Tokenizer.from_file(folder / "tokenizer.json", max_length)
    if tokenizer.vocab_size > config.vocab_size:
        raise ConfigError(
            f"{folder / 'tokenizer.json'}: the tokenizer has {tokenizer.vocab_size} tokens but "
            f"the embedding matrix (embeddings.word_embeddings.embedding) has only "
            f"{config.vocab_size} rows; the tokenizer belongs to another model"
        )
    return values, config, tokenizer


def _as_sentence_list(sentences: Any) -> list[str]:
    """Accept a list, tuple, numpy array or any iterable of str; name the first bad item."""
    if sentences is None:
        raise TypeError("sentences is None; pass a string or a list of strings")
    if isinstance(sentences, bytes | bytearray):
        raise TypeError("sentences is bytes; decode it first, e.g. text.decode('utf-8')")
    if isinstance(sentences, np.ndarray):
        if sentences.ndim != 1:
            raise TypeError(
                f"sentences is a {sentences.ndim}-d numpy array; pass a 1-d array of strings "
                "(a 0-d array: str(sentences); a table: sentences.ravel())"
            )
        sentences = sentences.tolist()
    if not isinstance(sentences, Iterable):
        raise TypeError(
            f"sentences must be a string or an iterable of strings, not {type(sentences).__name__}"
        )
    items = list(sentences)
    for index, item in enumerate(items):
        if not isinstance(item, str):
            hint = " (decode bytes with .decode('utf-8'))" if isinstance(item, bytes) else ""
            raise TypeError(
                f"sentences[{index}] is {type(item).__name__}, not str{hint}: "
                "every item must be a string"
            )
    return [str(item) for item in items]


def _check_unicode(items: list[str], single: bool) -> None:
    """Refuse lone surrogates (left by a broken "\\ud83d" escape): no tokenizer can take them."""
    for index, item in enumerate(items):
        if item.isascii():
            continue
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as err:
            name = "the sentence" if single else f"sentences[{index}]"
            raise ValueError(
                f"{name} holds a lone surrogate {item[err.start]!r} at character {err.start}, "
                "which is not valid Unicode; repair it with "
                "text.encode('utf-8', 'replace').decode('utf-8')"
            ) from None


def _is_count(value: Any) -> bool:
    """A positive integer: numpy integers too, but not True (a bool is an int to Python)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


class Progress(Protocol):
    def update(self, n: int) -> None: ...


class Batcher(Protocol):
    """How ``encode`` turns sentences into forward passes: one array per sentence, in order
    ((D,) sentence vectors, or (T_i, D) token vectors with ``tokens``)."""

    def __call__(self, encoder: SentenceEncoder, sentences: list[str], batch_size: int,
                 tokens: bool, progress: Progress) -> list[np.ndarray]: ...  # fmt: skip


class SmartBatcher:
    """The paper's smart batching (its Table 7): sentences sorted by length, batches of
    ``batch_size`` padded to a bucket length (``minisbert.batching``), one jitted forward
    pass per batch. Sentences are tokenized ``CHUNK_SIZE`` at a time, which bounds memory."""

    def __call__(self, encoder: SentenceEncoder, sentences: list[str], batch_size: int,
                 tokens: bool, progress: Progress) -> list[np.ndarray]:  # fmt: skip
        graphdef, state = nnx.split(encoder.model)
        forward = _token_embeddings if tokens else _sentence_embeddings
        what = "token_embeddings" if tokens else "sentence_embedding"
        results: list[np.ndarray] = []
        for start in range(0, len(sentences), CHUNK_SIZE):
            token_ids = encoder.token_ids(sentences[start : start + CHUNK_SIZE])
            chunk: list[Any] = [None] * len(token_ids)
            pad = encoder.tokenizer.pad_token_id
            for batch in smart_batches(token_ids, batch_size, encoder.max_seq_length, pad):
                encoder.compiled_shapes.add((what, batch.input_ids.shape))
                out = forward(graphdef, state, batch.input_ids, batch.attention_mask)
                out = np.asarray(out, dtype=np.float32)  # (B, D) or (B, T, D)
                for row, i in enumerate(batch.indices):
                    chunk[i] = out[row, : len(token_ids[i])] if tokens else out[row]
                progress.update(len(batch.indices))
            results += chunk
        return results


class SentenceEncoder:
    """Tokenizer + ``SentenceModel``: strings in, sentence embeddings out."""

    # What makes encode's batcher when none is given (minisbert.fast.FastEncoder: the packed
    # one). Each encoder gets its own (its settings are its own).
    default_batcher: type = SmartBatcher

    def __init__(self, model: SentenceModel, tokenizer: Tokenizer, batcher: Batcher | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.batcher = batcher if batcher is not None else type(self).default_batcher()
        # The (what, shape) of every forward pass run: ("sentence_embedding" or
        # "token_embeddings", (B, T)) for padded batches; the batcher's own for others.
        self.compiled_shapes: set[tuple[str, tuple[int, ...]]] = set()

    @property
    def dim(self) -> int:  # D, or what pooling modes and Dense layers make of it
        return self.model.sentence_config.embedding_dim(self.model.config.hidden_size)

    @property
    def max_seq_length(self) -> int:
        return self.tokenizer.max_seq_length

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, seed: int = 0, batcher: Batcher | None = None
    ) -> SentenceEncoder:
        """Load a minisbert model folder (a name under weights/, or a path).

        Every file is checked before any computation: the config against the weights'
        names and shapes, the tokenizer's vocabulary against the embedding matrix.
        """
        folder = resolve_model_dir(name_or_path)
        sentence_config, config, tokenizer = open_model_folder(
            folder, "sentence.json", SentenceConfig.from_json, "max_seq_length"
        )
        # Build the model abstractly (no memory, no random init), compare its shapes with the
        # files' headers, and only then make its arrays and fill them from the files.
        model = nnx.eval_shape(lambda: SentenceModel(config, sentence_config, rngs=nnx.Rngs(seed)))
        check_file_params(param_shapes(model.bert), folder / "model.safetensors")
        if sentence_config.dense:
            check_file_params(param_shapes(model.dense), folder / "dense.safetensors")
        _materialize(model)
        load_params(model.bert, folder / "model.safetensors")
        if sentence_config.dense:  # the Dense layers' weights, kept apart from BERT's
            load_params(model.dense, folder / "dense.safetensors")
        model.eval()
        return cls(model, tokenizer, batcher)

    def encode(
        self,
        sentences: str | Iterable[str],
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        show_progress_bar: bool | None = None,
        output_value: str = "sentence_embedding",
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncate_dim: int | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Embed sentences: (N, D) float32, or (D,) for a single string.

        ``truncate_dim=d`` keeps the first d dimensions of each sentence embedding, (N, d), as
        sentence-transformers does for a Matryoshka model: cut after the model's own pipeline,
        so not re-normalised even where that pipeline normalises; ``normalize_embeddings=True``
        normalises the cut vectors.

        ``output_value="token_embeddings"`` returns a list of (T_i, D) arrays instead,
        one per sentence, without padding. ``normalize_embeddings=True`` L2-normalises
        the result (the model's own pipeline may already do so, as all-MiniLM-L6-v2's does).
        Sentences longer than ``max_seq_length`` tokens are truncated (with a warning).
        ``batch_size`` sentences go through the network at a time; how they are laid out in
        batches is ``self.batcher``'s choice (see the module docstring): the result is the
        same up to float rounding (about 1e-7), whichever batcher runs.

        ``prompt_name`` picks one of the model's prompts (``sentence.json``, from
        sentence-transformers' ``config_sentence_transformers.json``), ``prompt`` gives a text;
        either is put before every sentence, and its tokens are pooled with the sentence's.
        Without either, the model's default prompt, if it has one, is used.

        A ``batch_size`` larger than the number of sentences is clamped to it: a batch
        never holds more than them, so memory follows the input, and
        ``batch_size=10**9`` encodes 5 sentences exactly as ``batch_size=5`` does.
        """
        if output_value not in ("sentence_embedding", "token_embeddings"):
            raise ValueError(
                "output_value must be 'sentence_embedding' or 'token_embeddings', "
                f"not {output_value!r}"
            )
        if not _is_count(batch_size):
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        if truncate_dim is not None and not (_is_count(truncate_dim) and truncate_dim <= self.dim):
            raise ValueError(
                f"truncate_dim must be an integer in 1..{self.dim}, not {truncate_dim!r}"
            )
        single = isinstance(sentences, str)
        items = [sentences] if single else _as_sentence_list(sentences)
        prompt = self.prompt_text(prompt_name, prompt)
        if prompt:
            items = [prompt + item for item in items]
        _check_unicode(items, single)  # every input checked before any computation
        tokens = output_value == "token_embeddings"
        batch_size = min(int(batch_size), max(1, len(items)))

        self.model.eval()
        if show_progress_bar is None:
            show_progress_bar = len(items) >= 2048 and sys.stderr.isatty()
        progress = _progress(len(items), show_progress_bar)
        results = self.batcher(self, items, batch_size, tokens, progress)  # N arrays
        progress.close()

        if tokens:
            if normalize_embeddings:
                norms = [np.linalg.norm(r, axis=-1, keepdims=True) for r in results]  # (T_i, 1)
                results = [r / np.maximum(n, 1e-12) for r, n in zip(results, norms, strict=True)]
            return results[0] if single else results
        embeddings = np.stack(results) if results else np.zeros((0, self.dim), np.float32)  # (N, D)
        if truncate_dim is not None:
            embeddings = embeddings[:, :truncate_dim]  # (N, truncate_dim)
        if normalize_embeddings:
            embeddings = np.asarray(normalize(jnp.asarray(embeddings)))
        return embeddings[0] if single else embeddings

    def prompt_text(self, prompt_name: str | None, prompt: str | None) -> str:
        """The text ``encode`` puts before every sentence, chosen as sentence-transformers does:
        ``prompt`` if given, else the model's prompt named ``prompt_name``, else its default
        prompt (e5-small-v2 style models: "query: " or "passage: "), else none."""
        prompts = self.model.sentence_config.prompt_texts
        if prompt is not None:
            if not isinstance(prompt, str):
                raise TypeError(f"prompt must be a string, not {type(prompt).__name__}")
            return prompt
        if prompt_name is not None:
            if prompt_name not in prompts:
                raise ValueError(
                    f"prompt_name {prompt_name!r} is not one of this model's prompts "
                    f"{sorted(prompts)}; pass prompt='...' for a text of your own"
                )
            return prompts[prompt_name]
        default = self.model.sentence_config.default_prompt_name
        return prompts[default] if default is not None else ""

    def token_counts(self, sentences: list[str]) -> list[int]:
        """How many tokens each sentence has, [CLS] and [SEP] included, after truncation."""
        encodings = self.tokenizer.backend.encode_batch(sentences, add_special_tokens=True)
        return [len(e.ids) for e in encodings]

    def token_ids(self, sentences: list[str]) -> list[list[int]]:
        """Each sentence's token ids, truncated to ``max_seq_length`` (``Tokenizer.tokenize``
        warns about it once, as it does for the training data)."""
        return self.tokenizer.tokenize(sentences)


def _materialize(model: nnx.Module) -> None:
    """Give an abstract (eval_shape) model real zero arrays, to be overwritten by load_params."""
    state = nnx.state(model)
    for _, var in nnx.to_flat_state(state):
        value = var.get_value()
        if isinstance(value, jax.ShapeDtypeStruct):
            var.set_value(jnp.zeros(value.shape, value.dtype))
    nnx.update(model, state)


class _NoProgress:
    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


def _progress(total: int, show: bool) -> Any:
    if not show:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Encoding", unit="sent")
