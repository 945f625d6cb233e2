"""Write tests/fixtures/st_layouts/st-VERSION-* from the installed sentence-transformers.

    .venv-ref/bin/python scripts/make_st_layout_fixtures.py       # the pinned release (6.2.0)
    .venv-ref-new/bin/python scripts/make_st_layout_fixtures.py   # the newest (6.3.0)

Each case is a random-weight model saved by the real library (``tests/st_models.py``);
only its JSON config files are kept (no weights, no tokenizer: the offline test adds a
tiny tokenizer and random safetensors), with ``expected.json``, the ``sentence.json``
minisbert must read from them, written from the case itself, not from minisbert's reader.
The layouts of older releases (2.x-5.x) were transcribed by hand into the same folder.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from st_models import Shape, build_st_model, layout_files  # noqa: E402

OUR_MODES = {"mean_sqrt_len_tokens": "mean_sqrt_len"}
OUR_ACTIVATIONS = {"Tanh": "tanh", "Identity": "identity", "GELU": "gelu", "ReLU": "relu"}

# fmt: skip on the statement's last line: ruff keeps the whole dict as written (not so on an entry).
CASES = {
    "mean-normalize-48": dict(pooling="mean", normalize=True, max_seq_length=48),
    "three-modes-dense-prompts": dict(
        pooling=("max", "mean", "weightedmean"), dense=((20, "GELU"),),
        prompts={"query": "query: ", "passage": "passage: "}, default_prompt_name="query",
    ),  # fmt: skip
    "lasttoken-sqrt-len": dict(pooling=("lasttoken", "mean_sqrt_len_tokens")),
}  # fmt: skip


def expected(case: dict) -> dict:
    """The SentenceConfig (as sentence.json) that the case describes."""
    pooling = case.get("pooling", "mean")
    modes = [OUR_MODES.get(m, m) for m in ((pooling,) if isinstance(pooling, str) else pooling)]
    values: dict = {
        "max_seq_length": case.get("max_seq_length") or Shape().max_position_embeddings,
        "pooling": modes[0] if len(modes) == 1 else modes,
        "normalize": case.get("normalize", False),
    }
    width = Shape().hidden_size * len(modes)
    dense = []
    for out_features, activation in case.get("dense", ()):
        dense.append({"in_features": width, "out_features": out_features, "bias": True,
                      "activation": OUR_ACTIVATIONS[activation]})  # fmt: skip
        width = out_features
    if dense:
        values["dense"] = dense
    # sentence-transformers 6.x saves empty "query" and "document" prompts unless given.
    values["prompts"] = {"query": "", "document": "", **case.get("prompts", {})}
    if case.get("default_prompt_name"):
        values["default_prompt_name"] = case["default_prompt_name"]
    return values


def main() -> None:
    import sentence_transformers

    version = ".".join(sentence_transformers.__version__.split(".")[:2])
    out_root = ROOT / "tests" / "fixtures" / "st_layouts"
    for name, case in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            saved = Path(tmp) / "model"
            build_st_model(saved, **case)
            out = out_root / f"st-{version}-{name}"
            shutil.rmtree(out, ignore_errors=True)
            for rel, content in layout_files(saved).items():
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                (out / rel).write_text(json.dumps(content, indent=2) + "\n")
            want = expected(case)
            (out / "expected.json").write_text(json.dumps(want, indent=2) + "\n")
            print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
