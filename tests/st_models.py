"""Random-weight sentence-transformers folders, built and saved by the real library.

Used by the live conversion tests (under .venv-ref and .venv-ref-new) and by
``scripts/make_st_layout_fixtures.py``. The model is a ``transformers.BertModel`` of a
given shape with random weights, the tiny WordPiece tokenizer of ``tiny.py`` (vocab 99,
padded up to the model's vocabulary), and then the sentence-transformers modules asked
for (Pooling of one or several modes, Dense layers, Normalize), saved with
``SentenceTransformer.save`` exactly as a user's model would be.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tiny import tiny_tokenizer

# sentence-transformers' names of the pooling modes (since 2.x), in the order of its forward().
ST_POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")


@dataclasses.dataclass(frozen=True)
class Shape:
    hidden_size: int = 36
    num_attention_heads: int = 3
    num_hidden_layers: int = 2
    intermediate_size: int = 50
    max_position_embeddings: int = 64
    vocab_size: int = 99


def build_st_model(
    path: Path,
    shape: Shape = Shape(),
    pooling: str | tuple[str, ...] = "mean",
    dense: tuple[tuple[int, str], ...] = (),  # (out_features, activation class) per layer
    normalize: bool = False,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    max_seq_length: int | None = None,
    seed: int = 0,
):
    """Save a random sentence-transformers model at ``path``; return the loaded model."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    hf_dir = path.parent / f"{path.name}-hf"
    config = BertConfig(**dataclasses.asdict(shape), hidden_act="gelu")
    bert = BertModel(config, add_pooling_layer=False)
    # Default init (std 0.02) makes every token vector nearly the same; larger weights
    # make the poolings differ, so that a wrong mode is caught. Std 1/sqrt(D) keeps deep
    # random models from amplifying float rounding into chaos (as trained models do not).
    with torch.no_grad():
        for name, param in bert.named_parameters():
            if "LayerNorm" not in name:
                param.normal_(0.0, shape.hidden_size**-0.5)
    bert.save_pretrained(hf_dir, safe_serialization=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tiny_tokenizer(),
        unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
        cls_token="[CLS]", mask_token="[MASK]",
        model_max_length=shape.max_position_embeddings,
    )  # fmt: skip
    tokenizer.save_pretrained(hf_dir)

    transformer = models.Transformer(str(hf_dir), max_seq_length=max_seq_length)
    modules = [transformer, models.Pooling(shape.hidden_size, pooling_mode=pooling)]
    width = shape.hidden_size * (1 if isinstance(pooling, str) else len(pooling))
    for out_features, activation in dense:
        act = getattr(torch.nn, activation)()
        modules.append(models.Dense(width, out_features, activation_function=act))
        width = out_features
    if normalize:
        modules.append(models.Normalize())
    model = SentenceTransformer(
        modules=modules, prompts=prompts, default_prompt_name=default_prompt_name, device="cpu"
    )
    model.save(str(path))
    return model


def layout_files(path: Path) -> dict[str, object]:
    """Every JSON config file of a saved folder, by relative path (the fixture's content)."""
    return {
        str(p.relative_to(path)): json.loads(p.read_text())
        for p in sorted(path.rglob("*.json"))
        if p.name not in ("tokenizer.json",)
    }
