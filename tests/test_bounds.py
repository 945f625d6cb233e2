"""Bounds before allocation: what is read from outside is checked before anything is built.

1. config.json sizes have limits (and the parameter count one), refused in one line;
2. a safetensors file's header is read alone (bounded) and compared with the config before
   any array of the model is made; a file whose size disagrees with it is named truncated;
3. JSON and tokenizer files are read only if regular files, and only up to a limit;
4. integer weights are refused by conversion, not silently cast to float32;
5. a loss from a file that returns no scalar, or raises, stops the run in one line;
6. a run that stops before writing anything leaves its folder as it found it.

The 10^6-layer config and the links to /dev/zero run through the `minisbert` command in
subprocesses (started together, to share the two cores), under an address-space limit so
that a regression fails with a MemoryError instead of exhausting the machine.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from runs import train_args
from tiny import TINY_CONFIG, random_model_dir, write_pairs

from minisbert import SentenceEncoder, sentence_encoder
from minisbert.cli import main
from minisbert.config import MAX_SIZES, BertConfig, ConfigError, DenseConfig
from minisbert.io.bounded import UnreadableFile, read_bytes_bounded, read_json_bounded
from minisbert.io.convert import (
    checkpoint_to_minisbert,
    dense_to_minisbert,
    expected_params,
    minisbert_to_checkpoint,
)
from minisbert.io.weights import (
    MAX_HEADER_BYTES,
    WeightsError,
    read_safetensors,
    read_safetensors_header,
    write_safetensors_atomic,
)
from minisbert.losses import LossError
from minisbert.losses.registry import load_file_loss
from minisbert.run_guard import LOCK, MARKER, RunGuard
from minisbert.tokenizer import Tokenizer
from minisbert.train import TrainConfig, train

MINISBERT = Path(sys.executable).parent / "minisbert"
GiB = 1 << 30


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return random_model_dir(tmp_path_factory.mktemp("bounds") / "tiny")


def write_config(path: Path, **changes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**TINY_CONFIG.to_dict(), **changes}))
    return path


# ---------------------------------------------------------------- the command line, bounded


def cli_cases(root: Path, tiny: Path) -> dict[str, tuple[list[str], str]]:
    """Each case: the `minisbert` arguments, and what its one line of stderr must say."""
    # A whole Hugging Face folder of the tiny model, but whose config.json says 10^6 layers.
    layers = write_config(root / "layers" / "config.json", num_hidden_layers=10**6).parent
    (layers / "tokenizer.json").symlink_to(tiny / "tokenizer.json")
    checkpoint = minisbert_to_checkpoint(read_safetensors(tiny / "model.safetensors"), TINY_CONFIG)
    write_safetensors_atomic(checkpoint, layers / "model.safetensors")

    zero = root / "zero"  # a sentence-transformers folder whose Pooling config is /dev/zero
    write_config(zero / "config.json")
    modules = [("", "Transformer"), ("1_Pooling", "Pooling")]
    (zero / "modules.json").write_text(json.dumps([
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(modules)
    ]))  # fmt: skip
    (zero / "1_Pooling").mkdir()
    (zero / "1_Pooling" / "config.json").symlink_to("/dev/zero")
    zero_model = root / "zero-model"  # a minisbert folder whose config.json is /dev/zero
    zero_model.mkdir()
    for name in ("sentence.json", "tokenizer.json", "model.safetensors"):
        (zero_model / name).symlink_to(tiny / name)
    (zero_model / "config.json").symlink_to("/dev/zero")

    sentences = root / "sentences.txt"
    sentences.write_text("the cat sat\n")
    encode = ["encode", str(sentences), "-o", str(root / "out.npy"), "--model"]
    limit = "num_hidden_layers is 1000000, above minisbert's limit of 256"
    device = "(a link to /dev/zero) is a character device, not a regular file; refused without "
    device += "reading it"
    return {
        "convert-layers": (["convert", str(layers), str(root / "a")],
                           f"{layers / 'config.json'}: {limit}"),
        "convert-dev-zero": (["convert", str(zero), str(root / "b")],
                             f"{zero / '1_Pooling' / 'config.json'} {device}"),
        "encode-dev-zero": ([*encode, str(zero_model)], f"{zero_model / 'config.json'} {device}"),
    }  # fmt: skip


def _limit_memory() -> None:
    # Above what minisbert needs to start and refuse (about 0.25 GiB resident), far below what
    # the unbounded reads took (5.6 GB, 23 GB): a regression ends in a MemoryError, not a swap.
    resource.setrlimit(resource.RLIMIT_AS, (4 * GiB, 4 * GiB))


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, tiny) -> dict[str, dict]:
    """Run every case at once; per case: rc, stderr, wall seconds, peak resident bytes."""
    root = tmp_path_factory.mktemp("cli-bounds")
    cases = cli_cases(root, tiny)
    started, runs = {}, {}
    for name, (args, _) in cases.items():
        err = open(root / f"{name}.err", "w+b")  # noqa: SIM115 - read back after wait4
        process = subprocess.Popen([str(MINISBERT), *args], stdout=subprocess.DEVNULL,
                                   stderr=err, preexec_fn=_limit_memory)  # fmt: skip
        started[process.pid] = (name, time.monotonic(), err, process)
    deadline = time.monotonic() + 120  # a hang guard: the fixed runs take seconds
    while started:
        for pid, (name, began, err, process) in list(started.items()):
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done == 0 and time.monotonic() < deadline:
                continue
            if done == 0:  # hung: kill it, and reap it for its figures
                process.kill()
                done, status, usage = os.wait4(pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not reap
            err.seek(0)
            runs[name] = {
                "rc": process.returncode,
                "stderr": err.read().decode("utf-8", "replace"),
                "seconds": time.monotonic() - began,
                "peak_rss": usage.ru_maxrss * 1024,  # Linux reports KiB
                "expected": cases[name][1],
            }
            err.close()
            del started[pid]
        time.sleep(0.05)
    return runs


@pytest.mark.skipif(sys.platform != "linux", reason="/dev/zero, RLIMIT_AS and ru_maxrss in KiB")
@pytest.mark.parametrize("case", ["convert-layers", "convert-dev-zero", "encode-dev-zero"])
def test_the_command_refuses_in_one_line_at_once_and_small(cli_runs, case):
    run = cli_runs[case]
    err = run["stderr"]
    command = case.split("-")[0]
    assert run["rc"] == 1, err[-2000:]
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-2000:]
    assert err.strip() == f"minisbert {command}: error: {run['expected']}"
    # Limits, not timings: before the fix the layers took 62 s and 5.6 GB, /dev/zero 23 GB.
    assert run["seconds"] < 30 and run["peak_rss"] < 1.5 * GiB, run


# ---------------------------------------------------------------- 1. config limits


@pytest.mark.parametrize("name", list(MAX_SIZES))
def test_each_size_above_its_limit_names_file_value_and_limit(tmp_path, name):
    value = MAX_SIZES[name] + 1
    path = write_config(tmp_path / "config.json", **{name: value})
    with pytest.raises(ConfigError) as info:
        BertConfig.from_json(path)
    limit = MAX_SIZES[name]
    assert str(info.value) == f"{path}: {name} is {value}, above minisbert's limit of {limit}"


def test_more_heads_than_hidden_units_is_refused(tmp_path):
    path = write_config(tmp_path / "config.json", hidden_size=36, num_attention_heads=72)
    with pytest.raises(ConfigError, match=r"config.json: num_attention_heads 72 is more than "
                                          r"hidden_size 36"):  # fmt: skip
        BertConfig.from_json(path)


def test_the_parameter_count_is_bounded_before_anything_is_built(tmp_path):
    # Every size within its limit, but 256 layers of D 16384: 8.2e11 parameters.
    path = write_config(tmp_path / "config.json", hidden_size=16384, num_attention_heads=16,
                        intermediate_size=65536, num_hidden_layers=256)  # fmt: skip
    message = r"config.json: the config describes 8.25e\+11 parameters, above minisbert's limit"
    with pytest.raises(ConfigError, match=message + r" of 2e\+10 \(80 GB of float32\)"):
        BertConfig.from_json(path)


@pytest.mark.parametrize("config", [TINY_CONFIG, BertConfig()], ids=["tiny", "MiniLM-L6"])
def test_the_parameter_count_is_the_models(config):
    assert config.parameter_count == sum(
        int(np.prod(s.shape)) for s in expected_params(config).values()
    )


def test_a_dense_layer_has_limits_too():
    with pytest.raises(ConfigError, match=r"dense out_features is 1048577, above"):
        DenseConfig(384, 2**20 + 1)


# ---------------------------------------------------------------- 2. the header first


def test_the_header_gives_every_name_dtype_and_shape(tiny):
    arrays = read_safetensors(tiny / "model.safetensors")
    header = read_safetensors_header(tiny / "model.safetensors")
    assert header == {k: (str(v.dtype), v.shape) for k, v in arrays.items()}


def test_a_huge_vocabulary_beside_a_small_file_stops_before_the_model_is_built(
    tiny, tmp_path, monkeypatch
):
    """vocab_size 2^22 (within the limit) would be 2^22 x 36 zeros, made before the file's
    shapes were compared; now the header is compared first, and nothing is built."""
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("sentence.json", "tokenizer.json", "model.safetensors"):
        (folder / name).symlink_to(tiny / name)
    write_config(folder / "config.json", vocab_size=2**22)

    def boom(model):
        raise AssertionError("the model's arrays were made before the header was checked")

    monkeypatch.setattr(sentence_encoder, "_materialize", boom)
    with pytest.raises(WeightsError) as info:
        SentenceEncoder.from_pretrained(folder)
    assert str(info.value) == (
        f"{folder / 'model.safetensors'}: tensor 'embeddings.word_embeddings.embedding' has "
        "shape (99, 36), the config needs (4194304, 36)"
    )


def test_a_file_shorter_than_its_header_says_is_named_truncated(tiny, tmp_path):
    path = tmp_path / "model.safetensors"
    data = (tiny / "model.safetensors").read_bytes()
    path.write_bytes(data[:-4])
    end = len(data) - 8 - int.from_bytes(data[:8], "little")
    with pytest.raises(WeightsError, match=rf"^{path}: not a readable safetensors file "
                       rf"\(truncated: the header describes {end} bytes of tensors, the file "
                       rf"holds {end - 4}\)"):  # fmt: skip
        read_safetensors(path)
    path.write_bytes(data + b"\0" * 3)
    with pytest.raises(WeightsError, match=r"\(3 bytes after the last tensor\)"):
        read_safetensors(path)


def test_a_header_length_over_the_limit_is_refused_unread(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes((2**40).to_bytes(8, "little") + b"{}")
    with pytest.raises(WeightsError, match=rf"a header of {2**40} bytes, over the "
                                           rf"{MAX_HEADER_BYTES} allowed"):  # fmt: skip
        read_safetensors_header(path)


# ---------------------------------------------------------------- 3. bounded reads


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev/zero")
def test_devices_fifos_and_folders_are_refused_before_reading(tmp_path):
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo.json")  # opening it for reading would wait for a writer
    (tmp_path / "folder.json").mkdir()
    for name, kind in [("zero.json", "a character device"), ("fifo.json", "a named pipe"),
                       ("folder.json", "a folder")]:  # fmt: skip
        with pytest.raises(UnreadableFile, match=rf"{name}.* is {kind}.*, not a regular file"):
            read_json_bounded(tmp_path / name)


def test_a_file_over_its_limit_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY_CONFIG.to_dict()) + " " * (1 << 20))
    with pytest.raises(ConfigError, match=rf"config.json: {path.stat().st_size} bytes, more than "
                                          r"the 1048576 allowed for config.json"):  # fmt: skip
        BertConfig.from_json(path)
    assert read_bytes_bounded(path, limit=2 << 20) == path.read_bytes()


def test_a_tokenizer_json_over_64_mb_is_refused_unread(tiny, tmp_path):
    path = tmp_path / "tokenizer.json"
    with open(path, "wb") as f:
        f.truncate(64 * (1 << 20) + 1)  # sparse: no disk, and nothing read
    with pytest.raises(ConfigError, match=r"tokenizer.json: 67108865 bytes, more than the "
                                          r"67108864 allowed"):  # fmt: skip
        Tokenizer.from_file(path, 32)
    assert Tokenizer.from_file(tiny / "tokenizer.json", 32).tokens("the cats") == [
        "[CLS]", "the", "cat", "##s", "[SEP]",
    ]  # fmt: skip


# ---------------------------------------------------------------- 4. integer weights


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool"])
def test_integer_weights_are_refused_by_conversion(dtype):
    tensors = minisbert_to_checkpoint(read_safetensors_fixture(), TINY_CONFIG)
    name = "encoder.layer.0.attention.self.query.weight"
    tensors[name] = tensors[name].astype(dtype)
    with pytest.raises(
        WeightsError,
        match=rf"^src: tensor '{name}' has dtype {dtype}; a weight "
        r"must be float16, bfloat16, float32 or float64",
    ):
        checkpoint_to_minisbert(tensors, TINY_CONFIG, "src")
    dense = {"linear.weight": np.ones((4, 36), dtype), "linear.bias": np.zeros(4, np.float32)}
    with pytest.raises(WeightsError, match=r"tensor 'linear.weight' has dtype"):
        dense_to_minisbert(dense, 0, DenseConfig(36, 4), Path("dense"))


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_float_weights_of_any_width_convert_to_float32(dtype):
    params = read_safetensors_fixture()
    tensors = {k: v.astype(dtype) for k, v in minisbert_to_checkpoint(params, TINY_CONFIG).items()}
    converted = checkpoint_to_minisbert(tensors, TINY_CONFIG, "src")
    assert all(v.dtype == np.float32 for v in converted.values())


_PARAMS: dict[str, np.ndarray] = {}


def read_safetensors_fixture() -> dict[str, np.ndarray]:
    if not _PARAMS:
        rng = np.random.default_rng(0)
        for name, shape in expected_params(TINY_CONFIG).items():
            _PARAMS[name] = rng.normal(0, 0.02, shape.shape).astype(np.float32)
    return dict(_PARAMS)


# ---------------------------------------------------------------- 5. a user's loss

BAD_LOSSES = """
import jax.numpy as jnp

def vector(u, v, scores):
    return jnp.sum(u * v, axis=-1) - scores

def nothing(u, v, scores):
    return None

def a_float(u, v, scores):
    return 0.5

def an_integer(u, v, scores):
    return jnp.sum(scores > 0.5)

def raises(u, v, scores):
    settings = {}
    return settings["x"] * jnp.mean(u)
"""


@pytest.fixture
def bad_losses(tmp_path) -> Path:
    path = tmp_path / "bad_losses.py"
    path.write_text(BAD_LOSSES)
    return path


@pytest.mark.parametrize("name, got", [("vector", "shape (4,)"), ("nothing", "None"),
                                       ("a_float", "a float"),
                                       ("an_integer", "a scalar of dtype int32")])  # fmt: skip
def test_a_loss_that_returns_no_scalar_is_named(bad_losses, name, got):
    u, v, scores = jnp.ones((4, 8)), jnp.ones((4, 8)), jnp.ones(4)
    loss = load_file_loss(f"{bad_losses}:{name}").function
    with pytest.raises(LossError) as info:
        loss(u, v, scores)
    assert str(info.value) == (
        f"{bad_losses}:{name}: a loss must return a scalar jax array of floats, got {got}"
    )


def test_a_loss_that_raises_names_the_file_function_and_line(bad_losses):
    loss = load_file_loss(f"{bad_losses}:raises").function
    with pytest.raises(LossError) as info:
        loss(jnp.ones((4, 8)), jnp.ones((4, 8)), jnp.ones(4))
    line = BAD_LOSSES.splitlines().index('    return settings["x"] * jnp.mean(u)') + 1
    assert str(info.value) == f"{bad_losses}:raises raised KeyError: 'x' (at {bad_losses}:{line})"


@pytest.fixture(scope="module")
def training(tmp_path_factory, tiny) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train-bounds")
    return {"model": tiny, "scores": write_pairs(root / "scores.tsv")}


@pytest.mark.parametrize("name, message", [
    ("vector", "a loss must return a scalar jax array of floats, got shape (8,)"),
    ("raises", "raised KeyError: 'x' (at "),
])  # fmt: skip
def test_a_bad_loss_stops_train_in_one_line_and_leaves_no_files(
    training, bad_losses, tmp_path, capsys, name, message
):
    """Found by tracing the loss once before the jitted step; the new --output is left empty."""
    output = tmp_path / "run"
    assert main(train_args(training, output, "scores", f"{bad_losses}:{name}")) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"minisbert train: error: {bad_losses}:{name}")
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in output.iterdir()) == []


def dot_products(u, v, scores):  # (B,): one loss per pair, not their mean
    return jnp.sum(u * v, axis=-1) - scores


def test_a_python_loss_fn_is_checked_before_the_first_step(training, tmp_path):
    config = TrainConfig(model=str(training["model"]), data=str(training["scores"]),
                         loss="cosine", output=str(tmp_path / "run"), batch_size=8, epochs=1,
                         eval_data="none", progress=False)  # fmt: skip
    with pytest.raises(LossError) as info:
        train(config, loss_fn=dot_products)
    assert str(info.value) == (
        "loss_fn=dot_products: a loss must return a scalar jax array of floats, got shape (8,)"
    )


# ---------------------------------------------------------------- 6. the run's own files


def test_a_run_refused_before_writing_takes_back_its_marker_and_lock(training, tmp_path, capsys):
    output = tmp_path / "new"
    assert main(train_args(training, output, "scores", "triplet")) == 1  # scored pairs: wrong data
    assert "--loss triplet needs triplets" in capsys.readouterr().err
    assert list(output.iterdir()) == []


def test_the_guard_keeps_the_marker_of_a_run_that_wrote_and_drops_every_lock(tmp_path):
    finished, failed, resumed = (tmp_path / name for name in ("finished", "failed", "resumed"))
    for folder in (finished, failed, resumed):
        folder.mkdir()
    with RunGuard(finished, tmp_path, None):
        (finished / "model.safetensors").write_bytes(b"")
    assert sorted(p.name for p in finished.iterdir()) == [MARKER, "model.safetensors"]

    with pytest.raises(RuntimeError), RunGuard(failed, tmp_path, None):
        (failed / "checkpoints").mkdir()
        raise RuntimeError("a crash after the first checkpoint")
    assert sorted(p.name for p in failed.iterdir()) == [MARKER, "checkpoints"]

    (resumed / MARKER).write_text("{}")  # an earlier run's: never removed
    with pytest.raises(RuntimeError), RunGuard(resumed, tmp_path, None):
        raise RuntimeError("refused before writing")
    assert sorted(p.name for p in resumed.iterdir()) == [MARKER]
    assert not any((f / LOCK).exists() for f in (finished, failed, resumed))
