"""What the lessons share: finding weights, data and solutions, and running exercise checks.

Every lesson starts with the same set-up cell::

    from minisbert import lesson
    paths = lesson.setup()   # weights, data and solutions, wherever the notebook runs

so that Run All works from ``lessons/``, from the repository root, or from an empty folder.

Where things are looked for, first match wins:

- **weights** of ``all-MiniLM-L6-v2``: ``$MINISBERT_WEIGHTS``, ``./weights``, the repository's
  ``weights/`` (next to the ``minisbert`` package), then ``~/.cache/minisbert/weights``
  (``$MINISBERT_CACHE/weights``), where ``setup`` fetches them when they are nowhere.
- **data** (STS Benchmark, SICK, SNLI): ``$MINISBERT_DATA``, then ``~/.cache/minisbert/data``
  (``$MINISBERT_CACHE/data``; ``minisbert data fetch`` fills it, and the command line reads
  it: ``minisbert.data.data_folder``), then
  ``../shared/data`` and ``data/`` next to the repository. ``setup`` sets
  ``MINISBERT_DATA`` to the folder it found, so ``load_dataset`` finds it too.
- **solutions**: the ones the installed package carries (``minisbert/_lessons/solutions/``,
  shipped in the wheel from ``lessons/``), then ``lessons/solutions/`` of the repository that
  holds the ``minisbert`` package (an editable install or a clone on ``sys.path``), then
  ``$MINISBERT_LESSONS/solutions``. Never the working directory: a notebook may run anywhere.

``write_notebooks(folder)`` writes the lessons' notebooks into a folder (``minisbert lessons
DIR``): with minisbert installed, they are all a student needs.

``exercise(check, answer, lesson="01_...")`` runs an exercise's check. An unsolved exercise
(its function still raises ``NotImplementedError``) says so and hands back the reference
solution, so the rest of the lesson runs; a wrong answer fails with the check's
``AssertionError``. ``by_hand(fn, library_fn)`` makes a check fail when the student's
function is, or calls, the library function that the exercise asks them to write. Both see
through a decorator such as ``@nnx.jit`` to the function the student wrote.

``finetune(data=..., loss=..., ...)`` is what the training lessons repeat around
``train(config)``: a temporary output folder, the training, the trained model loaded back.
``within_tokens(examples, tokenizer, max_tokens)`` keeps the examples whose sentences all fit
one padded length, so that the train step compiles once, and ``write_examples(path,
examples)`` writes them to the file ``TrainConfig(data=...)`` reads.
``over_seeds(run, seeds)``, ``seed_table`` and ``beyond_noise`` repeat a run over several
seeds and say whether its effect is larger than the differences between seeds.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import inspect
import json
import os
import runpy
import shutil
import sys
import tempfile
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from minisbert.data.lines import DataError
from minisbert.data.loading import DATA_ENV, data_folder
from minisbert.io.cache import cache_dir
from minisbert.io.manifest import write_atomic, write_manifest

if TYPE_CHECKING:
    from minisbert.data.examples import PairExample, TripletExample
    from minisbert.sentence_encoder import SentenceEncoder
    from minisbert.tokenizer import Tokenizer
    from minisbert.train import TrainResult

REPO = Path(__file__).resolve().parent.parent  # the checkout, when minisbert is installed from one
MODEL = "all-MiniLM-L6-v2"
LESSONS_ENV = "MINISBERT_LESSONS"
DATA_MARKERS = ("stsbenchmark", "sick", "snli")  # a data folder holds at least one of these


@dataclasses.dataclass(frozen=True)
class LessonPaths:
    weights: Path  # the model folder of all-MiniLM-L6-v2
    data: Path  # holds stsbenchmark/, sick/, snli/
    solutions: Path | None  # lessons/solutions/, or None when no checkout is found


def setup(model: str = MODEL, *, download: bool = True) -> LessonPaths:
    """Find (or fetch) the weights and the data and the solutions; print where they are.

    Also pins float32 matrix products to full precision (``minisbert.precision``): a lesson
    compares computations at 1e-5, which a GPU's TF32 or a TPU's bfloat16 default would not
    meet, and its printed figures should not depend on the device."""
    from minisbert import precision

    precision.use("highest")
    paths = LessonPaths(
        weights=find_weights(model, download=download),
        data=find_data(download=download),
        solutions=solutions_dir(),
    )
    os.environ[DATA_ENV] = str(paths.data)  # load_dataset reads it
    print(
        f"weights:   {paths.weights}\ndata:      {paths.data}\n"
        f"solutions: {paths.solutions or 'not found (only needed for unsolved exercises)'}\n"
        "precision: float32 products at 'highest' on every device (minisbert/precision.py)"
    )
    return paths


def find_weights(model: str = MODEL, *, download: bool = True) -> Path:
    """The converted model folder; fetched into the cache when it is nowhere else."""
    from minisbert.sentence_encoder import resolve_model_dir

    try:
        return resolve_model_dir(model)
    except FileNotFoundError:
        pass
    cached = cache_dir() / "weights"
    # resolve_model_dir reads MINISBERT_WEIGHTS, so from_pretrained(model) finds the cache too.
    os.environ["MINISBERT_WEIGHTS"] = str(cached)
    if (cached / model).is_dir():
        return cached / model
    if not download:
        raise FileNotFoundError(f"no weights for {model}: run `minisbert fetch {model}`")
    from minisbert.io.fetch import fetch

    print(f"fetching {model} into {cached} (once)")
    return fetch(model, cached)


def _is_data(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).is_dir() for name in DATA_MARKERS)


def data_candidates() -> list[Path]:
    """Where the data is looked for when ``MINISBERT_DATA`` is unset, in order: first where
    the command line looks (``data_folder()``: the cache's ``data``), then beside the repo."""
    return [data_folder(), REPO.parent / "shared" / "data", REPO / "data"]


def find_data(*, download: bool = True) -> Path:
    """``$MINISBERT_DATA``, else the first of ``data_candidates()`` that holds data."""
    if os.environ.get(DATA_ENV):
        folder = Path(os.environ[DATA_ENV]).expanduser()
        if not _is_data(folder):
            raise DataError(
                f"{DATA_ENV}={folder} holds none of {', '.join(DATA_MARKERS)}/: "
                "point it at the data folder, or unset it to use the cache"
            )
        return folder
    for folder in data_candidates():
        if _is_data(folder):
            return folder
    cache = data_candidates()[0]
    hint = (
        f"no data found (looked in {', '.join(map(str, data_candidates()))}): run "
        f"`minisbert data fetch --dest {cache}`, or set {DATA_ENV} to a folder holding "
        "stsbenchmark/, sick/ and snli/"
    )
    if not download:
        raise DataError(hint)
    from minisbert.data import fetch_datasets

    print(f"fetching STS Benchmark, SICK and SNLI into {cache} (once)")
    try:
        fetch_datasets(cache)
    except (OSError, DataError) as err:
        raise DataError(f"{hint} (the download failed: {err})") from None
    return cache


def lessons_dir() -> Path | None:
    """The lessons the installed package carries (``minisbert/_lessons``, a wheel's copy of
    ``lessons/``), else ``lessons/`` of the checkout that holds minisbert."""
    packaged = importlib.resources.files("minisbert") / "_lessons"
    for folder in [packaged, REPO / "lessons"]:
        if isinstance(folder, Path) and folder.is_dir():  # not inside a zip
            return folder
    return None


def solutions_dir() -> Path | None:
    """The installed package's solutions, else the checkout's, else ``$MINISBERT_LESSONS``'s."""
    roots: list[Path | None] = [lessons_dir(), REPO / "lessons"]
    if os.environ.get(LESSONS_ENV):
        roots.append(Path(os.environ[LESSONS_ENV]).expanduser())
    for root in roots:
        if root is not None and (root / "solutions").is_dir():
            return root / "solutions"
    return None


# What each lesson's first cell installs where minisbert is missing (Colab), as the lessons
# in the repository say it: minisbert is not on a package index, so only the person who
# copied it knows its address. ``write_notebooks`` writes the address this minisbert was
# installed from in its place.
PLACEHOLDER_ADDRESS = "git+https://github.com/OWNER/minisbert"


def install_address(direct_url: str | None) -> str | None:
    """What ``pip install`` needs to install this minisbert again, from pip's record of where
    it came from (``direct_url.json``, PEP 610; None when pip installed it from an index):

        a git repository   git+URL@COMMIT   the same commit
        a folder           its path         a clone, installed with or without -e
        a file or URL      the URL          a wheel or an archive

    None when the record says nothing usable (``write_notebooks`` then keeps the
    placeholder, and the notebook's first cell asks for the address)."""
    if direct_url is None:
        return None
    try:
        record = json.loads(direct_url)
        url = record["url"]
    except (ValueError, KeyError, TypeError):
        return None
    if "vcs_info" in record:
        vcs = record["vcs_info"]
        return f"{vcs.get('vcs', 'git')}+{url}@{vcs['commit_id']}" if "commit_id" in vcs else None
    if "dir_info" in record and url.startswith("file://"):
        return url2pathname(urlparse(url).path)  # "My%20course" -> "My course"
    return url


def installed_address() -> str | None:
    """``install_address`` of the installed minisbert (None where it is not installed)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        return install_address(distribution("minisbert").read_text("direct_url.json"))
    except PackageNotFoundError:
        return None


def with_address(notebook: bytes, address: str | None) -> bytes:
    """The notebook (its JSON) with the placeholder's string literal in its code replaced by
    ``address`` as a Python string literal."""
    if address is None:
        return notebook
    content = json.loads(notebook)
    placeholder, literal = f'"{PLACEHOLDER_ADDRESS}"', json.dumps(address)  # valid Python too
    for cell in content["cells"]:
        if cell["cell_type"] == "code":
            cell["source"] = [line.replace(placeholder, literal) for line in cell["source"]]
    text = json.dumps(content, indent=1, sort_keys=True, ensure_ascii=False)
    return (text + "\n").encode("utf-8")  # as nbformat writes a notebook


def write_notebooks(folder: Path | str, *, overwrite: bool = False) -> list[Path]:
    """Write every lesson's notebook (``NN_topic.ipynb``) into ``folder``; return their paths.

    Refuses, before writing anything, when ``folder`` already holds one of them, unless
    ``overwrite``. Each is written beside its destination and swapped in whole. The notebooks
    need nothing else there: the solutions come from the installed package, and the first
    cell installs minisbert from where this one came from (``installed_address``) where it
    is missing, as on Colab.
    """
    source = lessons_dir()
    notebooks = sorted(source.glob("[0-9][0-9]_*.ipynb")) if source else []
    if not notebooks:
        raise FileNotFoundError(
            f"no lessons found in the installed minisbert ({REPO}): reinstall it from a wheel "
            "or a clone that has lessons/"
        )
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file: name a folder for the notebooks")
    present = [n.name for n in notebooks if (folder / n.name).exists()]
    if present and not overwrite:
        raise FileExistsError(
            f"{folder} already holds {len(present)} of the notebooks ({present[0]}, ...): pass "
            "--overwrite to replace them (your answers in them are lost), or name another folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    address = installed_address()
    written = []
    for notebook in notebooks:
        write_atomic(folder / notebook.name, with_address(notebook.read_bytes(), address))
        written.append(folder / notebook.name)
    return written


def load_solution(lesson: str) -> dict[str, Any]:
    """The names defined by ``lessons/solutions/<lesson>.py``."""
    folder = solutions_dir()
    if folder is None or not (folder / f"{lesson}.py").is_file():
        raise FileNotFoundError(
            f"the reference solution {lesson}.py was not found (in the installed minisbert, "
            f"{REPO}, or {LESSONS_ENV}): install minisbert from a wheel or a clone, or set "
            f"{LESSONS_ENV} to a clone's lessons/ folder"
        )
    return runpy.run_path(str(folder / f"{lesson}.py"))


def exercise(check: Callable[..., None], *answers: Callable[..., Any], lesson: str) -> Any:
    """Run ``check(*answers)``; return the answers, or the reference solution if unsolved.

    A wrong answer raises the check's ``AssertionError``. An answer that still raises
    ``NotImplementedError`` is replaced by the function of the same name in
    ``lessons/solutions/<lesson>.py``, which is checked in its place. One answer is
    returned as itself, several as a tuple.
    """
    try:
        check(*answers)
    except NotImplementedError as error:
        if not _raised_by(error, answers):  # raised by something the answer called
            raise
        names = ", ".join(a.__name__ for a in answers)
        print(
            f"Exercise not solved yet ({names}): using the reference solution so the lesson "
            "can go on. Write yours, then run this cell again."
        )
        solution = load_solution(lesson)
        answers = tuple(solution[a.__name__] for a in answers)
        check(*answers)
        print(f"The reference solution (solutions/{lesson}.py) passes the check.")
    else:
        print("Correct!")
    return answers[0] if len(answers) == 1 else answers


def _raised_by(error: BaseException, answers: tuple[Callable[..., Any], ...]) -> bool:
    """Whether ``error`` was raised in the body of one of ``answers`` (an unsolved stub)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    codes = {getattr(inspect.unwrap(a), "__code__", None) for a in answers}  # under @nnx.jit
    return tb is not None and tb.tb_frame.f_code in codes


def by_hand(fn: Callable[..., Any], *library: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, made to fail a check when it is, or calls, one of the ``library`` functions.

    While ``fn`` runs, every binding of a library function, in ``fn``'s globals and in the
    modules of the library function's package, is swapped for a stand-in that raises. So
    ``max_pooling(...)``, ``minisbert.pooling.max_pooling(...)`` and an alias all fail. A
    method (``CrossEncoder.tokenize_pairs``) is swapped in the classes that hold it, so a
    call on any instance fails too. So are the entries of a module's dictionaries that hold
    one (``POOLINGS["max"]``), directly or as a field of a record (``REGISTRY["mnrl"].function``).
    """
    for f in library:
        assert fn is not f, f"{_name(fn)} is the library's {_name(f)} itself: write your own"

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        with _forbidden(getattr(inspect.unwrap(fn), "__globals__", {}), library):
            return fn(*args, **kwargs)

    return guarded


def _module(f: Callable[..., Any]) -> str:
    """The module of ``f``; a method of a compiled class (``tokenizers.models.Model.tokenize``,
    in Rust) names none, so its class's."""
    return getattr(f, "__module__", None) or getattr(
        getattr(f, "__objclass__", None), "__module__", "?"
    )


def _name(f: Callable[..., Any]) -> str:
    return f"{_module(f)}.{getattr(f, '__qualname__', repr(f))}"


@contextmanager
def _forbidden(
    namespace: dict[str, Any], library: tuple[Callable[..., Any], ...]
) -> Iterator[None]:
    def stand_in(f: Callable[..., Any]) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(
                f"your function calls {_name(f)}: the exercise asks you to "
                "write it yourself, without the library's version"
            )

        return refuse

    packages = {_module(f).split(".")[0] for f in library}
    spaces = [namespace] + [
        vars(m)
        for name, m in list(sys.modules.items())
        if isinstance(m, types.ModuleType) and name.split(".")[0] in packages
    ]

    def forbidden(value: Any) -> bool:
        return any(value is f for f in library)

    def guarded_record(record: Any) -> Any:  # a frozen dataclass with a library function
        fields = {
            field.name: stand_in(getattr(record, field.name))
            for field in dataclasses.fields(record)
            if forbidden(getattr(record, field.name))
        }
        return dataclasses.replace(record, **fields) if fields else None

    swapped: list[tuple[dict[Any, Any], Any, Any]] = []
    methods: list[tuple[type, str, Any]] = []  # a class's namespace is read-only: setattr
    try:
        for space in spaces:
            for key, value in list(space.items()):
                if forbidden(value):
                    swapped.append((space, key, value))
                    space[key] = stand_in(value)
                elif isinstance(value, dict) and value is not space:  # POOLINGS, LOSSES
                    for entry, item in list(value.items()):
                        guarded = stand_in(item) if forbidden(item) else None
                        record = dataclasses.is_dataclass(item) and not isinstance(item, type)
                        if guarded is None and record:
                            guarded = guarded_record(item)
                        if guarded is not None:
                            swapped.append((value, entry, item))
                            value[entry] = guarded
                elif isinstance(value, type):  # a class (seen once per module that holds it)
                    for name, member in list(vars(value).items()):
                        if any(member is f for f in library):
                            methods.append((value, name, member))
                            setattr(value, name, stand_in(member))
        yield
    finally:
        for space, key, value in swapped:
            space[key] = value
        for cls, name, member in reversed(methods):
            setattr(cls, name, member)


# ---------------------------------------------------------------- training in a lesson


def read_through(weights: Path | str, pooling: str, folder: Path | str) -> Path:
    """A copy of the model folder ``weights`` at ``folder``: the same network and weights,
    its sentence vector read through ``pooling`` ("mean", "cls" or "max": the
    ``"pooling"`` of ``sentence.json``, lesson 4). Returns ``folder``.

    Lessons 8, 9 and 12 start training from all-MiniLM-L6-v2 read through [CLS]: a sentence
    vector nobody trained, as BERT's was before the paper's objectives.
    """
    folder = Path(folder)
    shutil.copytree(weights, folder)
    config_file = folder / "sentence.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["pooling"] = pooling
    config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
    write_manifest(folder)  # the copy's own checksums (minisbert.io.manifest)
    return folder


def sentences(example: PairExample | TripletExample) -> list[str]:
    """The texts of a pair (sentence1, sentence2) or of a triplet (anchor, positive, negative)."""
    if hasattr(example, "anchor"):
        return [example.anchor, example.positive, example.negative]  # type: ignore[union-attr]
    return [example.sentence1, example.sentence2]  # type: ignore[union-attr]


def within_tokens(
    examples: Sequence[Any], tokenizer: Tokenizer, max_tokens: int, *, limit: int | None = None
) -> list[Any]:
    """The examples (pairs or triplets) whose every sentence has at most ``max_tokens``
    tokens, [CLS] and [SEP] included, in their order; only the first ``limit`` when given.

    Why the training lessons filter: ``train(config)`` runs ``minisbert.train.train_step`` on
    padded batches (S, B, T), each padded to the bucket length of its longest sentence
    (``minisbert.batching``), and jit compiles the step once for every length it meets, a
    while each time on a CPU. Short sentences only, and (nearly) every batch pads to the same
    length: the step compiles once.
    """
    columns = list(zip(*(sentences(e) for e in examples), strict=True))  # one per field
    lengths = [[len(ids) for ids in tokenizer.tokenize(list(texts))] for texts in columns]
    kept = [e for e, *n in zip(examples, *lengths, strict=True) if max(n) <= max_tokens]
    return kept if limit is None else kept[:limit]


def write_examples(path: Path | str, examples: Sequence[Any]) -> Path:
    """Write pairs (with their labels, where they have one) or triplets to ``path`` as JSON
    lines, the columns ``read_examples`` (and so ``TrainConfig(data=...)``) reads back as the
    same examples. Written beside ``path`` and swapped in whole; returns ``path``."""
    path = Path(path)
    rows = []
    for e in examples:
        if hasattr(e, "anchor"):
            rows.append({"anchor": e.anchor, "positive": e.positive, "negative": e.negative})
        else:
            row = {"sentence1": e.sentence1, "sentence2": e.sentence2}
            rows.append(row if e.label is None else {**row, "label": e.label})
    part = path.with_name(f".{path.name}.part")
    with part.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    os.replace(part, path)
    return path


def finetune(
    *, loss_fn: Callable[..., Any] | None = None, **settings: Any
) -> tuple[SentenceEncoder, TrainResult]:
    """``train(TrainConfig(**settings), loss_fn=loss_fn)``; return the trained encoder and
    the run's ``TrainResult`` (``steps``, ``losses``, ``seconds_per_step``).

    What the training lessons repeat around ``train``, and nothing they teach: the run
    writes to a temporary folder, deleted once the trained model is loaded back (Adam's
    moments in a checkpoint and the model: a few hundred MB for all-MiniLM-L6-v2, printed);
    ``eval_data="none"``, since the lessons measure the trained model themselves; and the
    progress bar on. ``settings`` may override the last two. ``result.output`` names the
    deleted folder.
    """
    from minisbert.sentence_encoder import SentenceEncoder
    from minisbert.train import TrainConfig, train

    with tempfile.TemporaryDirectory(prefix="minisbert-run-") as folder:
        defaults = {"eval_data": "none", "progress": True}
        config = TrainConfig(**{**defaults, **settings}, output=str(Path(folder) / "run"))
        result = train(config, loss_fn=loss_fn)
        trained = SentenceEncoder.from_pretrained(result.output)
        size = sum(f.stat().st_size for f in result.output.rglob("*") if f.is_file())
    print(
        f"{result.steps} steps, {result.seconds_per_step:.2f} s per step (median); training "
        f"loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}; the run's folder "
        f"({size / 1e9:.2f} GB) deleted"
    )
    return trained, result


def over_seeds(run: Callable[[int], dict[str, float]], seeds: Sequence[int]) -> dict[str, Any]:
    """``run(seed)`` for each seed, its figures stacked: ``{name: (len(seeds),) array}``.

    One training run is one draw: the seed decides the classifier's start, the batch order
    and the dropout masks, and a gain smaller than the spread between seeds is noise.
    """
    import numpy as np

    runs = []
    for seed in seeds:
        print(f"seed {seed}:")
        runs.append(run(seed))
    return {name: np.array([figures[name] for figures in runs]) for name in runs[0]}


# One-sided 95% quantiles of Student's t with 1, 2, ... 9 degrees of freedom (seeds - 1);
# more seeds use the last, a little above their own.
T_95 = (6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833)


def beyond_noise(before: float, after: Any, *, lower_is_better: bool = False) -> bool:
    """Did every seed improve on ``before``, and is the mean gain above zero at 95%?

    ``after``: one figure per seed. The second half is a one-sided t-test: mean gain >
    t * SD / sqrt(n), with the t quantile for n - 1 degrees of freedom (``T_95``), not a
    fixed multiple of the SD, since the SD of a few seeds is itself a rough estimate (over
    3 seeds, t = 2.92). It assumes the seeds' gains are independent draws from one normal
    distribution. With a single seed (fast mode) only the first half can be asked: the
    one run improved.
    """
    import numpy as np

    gains = np.asarray(after, dtype=float).ravel() - before  # (seeds,)
    if lower_is_better:
        gains = -gains
    if gains.size < 2:
        return bool(np.all(gains > 0))
    t = T_95[min(gains.size - 1, len(T_95)) - 1]
    standard_error = float(np.std(gains, ddof=1)) / np.sqrt(gains.size)
    return bool(np.all(gains > 0) and gains.mean() > t * standard_error)


def seed_table(before: dict[str, float], after: dict[str, Any], *, digits: int = 2) -> None:
    """Print each figure before training, after it as mean ± standard deviation over the
    seeds, and the mean change (``beyond_noise`` says whether a change exceeds the noise)."""
    import numpy as np

    n = len(next(iter(after.values())))
    print(
        f"{'':>22} {'before':>9} {f'after ({n} seed' + ('s)' if n > 1 else ')'):>18} {'change':>8}"
    )
    for name, values in after.items():
        values = np.asarray(values, dtype=float)
        spread = f" ± {np.std(values, ddof=1):.{digits}f}" if n > 1 else ""
        change = values.mean() - before[name]
        print(
            f"{name:>22} {before[name]:9.{digits}f} {values.mean():>10.{digits}f}{spread:<8} "
            f"{change:+8.{digits}f}"
        )
