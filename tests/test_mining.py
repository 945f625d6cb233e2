"""Hard-negative mining (minisbert/mining.py): the choice of negatives on hand-made embeddings,
where every score is known, then `minisbert mine` on the tiny model, its file read back by
training. tests/test_mine_live.py compares with sentence-transformers' mine_hard_negatives."""

from __future__ import annotations

import json
import zlib
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
from tiny import ONE_LAYER, random_model_dir

from minisbert.cli import main
from minisbert.data import DataError, PairExample, TripletExample, load_dataset
from minisbert.mining import MiningOptions, anchor_positive_pairs, mine_negatives, mine_triplets

NO_OWN_TEXT = -1


def on_circle(scores: list[float]) -> np.ndarray:
    """Unit vectors whose cosine with (1, 0), the anchor, is each of ``scores``: (N, 2)."""
    s = np.asarray(scores, dtype=np.float64)
    return np.stack([s, np.sqrt(1 - s**2)], axis=1).astype(np.float32)


ANCHOR = np.array([[1.0, 0.0]], dtype=np.float32)  # (1, 2)


def mine_one(corpus_scores: list[float], positives: list[int], own: int = NO_OWN_TEXT, **options):
    """The negatives (corpus rows) of one anchor and their scores."""
    found = mine_negatives(ANCHOR, on_circle(corpus_scores), [positives], [own],
                           MiningOptions(**options))  # fmt: skip
    ids = [int(i) for i in found.ids[0] if i >= 0]
    return ids, found


# ---------------------------------------------------------------- the choice of negatives


def test_top_takes_the_nearest_that_are_not_positives():
    #       row:  0    1    2    3    4    5
    scores = [0.9, 0.5, 0.8, 0.7, 0.1, 0.6]
    ids, found = mine_one(scores, positives=[1], num_negatives=3, range_max=10)
    assert ids == [0, 2, 3]  # the positive 1 (0.5) ranks below them anyway
    np.testing.assert_allclose(found.scores[0], [0.9, 0.8, 0.7], atol=1e-6)
    np.testing.assert_allclose(found.hardest_positive, [0.5], atol=1e-6)


def test_every_positive_and_the_anchors_own_text_are_excluded():
    scores = [0.99, 0.95, 0.9, 0.8, 0.7, 0.6]
    ids, found = mine_one(scores, positives=[2, 0], own=1, num_negatives=3, range_max=10)
    assert ids == [3, 4, 5]
    # the margins measure from the hardest (lowest-scoring) positive: row 2, 0.9
    np.testing.assert_allclose(found.hardest_positive, [0.9], atol=1e-6)
    ids, _ = mine_one(scores, positives=[2, 0], own=1, num_negatives=3, absolute_margin=0.15)
    assert ids == [4, 5]  # 0.8 + 0.15 > 0.9


def test_the_range_counts_ranks_after_the_exclusions():
    scores = [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6]
    # rows 0 and 2 are positives; ranked, the rest are 1, 3, 4, 5, 6, 7 (ranks 0..5)
    ids, _ = mine_one(scores, positives=[0, 2], num_negatives=2, range_min=1, range_max=4)
    assert ids == [3, 4]  # ranks 1 and 2
    ids, _ = mine_one(scores, positives=[0, 2], num_negatives=3, range_min=2, range_max=5)
    assert ids == [4, 5, 6]


def test_fewer_negatives_than_asked_are_marked_minus_one():
    ids, found = mine_one([0.9, 0.5, 0.4], positives=[0], num_negatives=3, range_max=5)
    assert ids == [1, 2]
    assert found.ids[0, 2] == -1 and found.scores[0, 2] == -np.inf


@pytest.mark.parametrize("positive", [0.5, -0.2])
def test_margins_when_the_positive_scores_above_or_below_zero(positive):
    """A negative must score below the positive p: by m (absolute), by r |p| (relative), for
    either sign of p. The form p (1 - r) would put the threshold above p when p < 0."""
    p = positive
    offsets = [0.3, 0.01, -0.005, -0.015, -0.025, -0.045, -0.06, -0.3]  # s - p of each candidate
    scores = [p, *(p + d for d in offsets)]  # row 0 is the positive

    def kept(**margin):
        every = dict(num_negatives=len(offsets), range_max=len(scores) + 1)
        ids, _ = mine_one(scores, positives=[0], **every, **margin)
        return sorted(offsets[i - 1] for i in ids)

    assert kept() == sorted(offsets)
    assert kept(absolute_margin=0.0) == [-0.3, -0.06, -0.045, -0.025, -0.015, -0.005]
    assert kept(absolute_margin=0.04) == [-0.3, -0.06, -0.045]
    # r = 0.1: 0.1 |p| below p, 0.05 for p = 0.5, 0.02 for p = -0.2. The form p (1 - r) would
    # be 0.02 *above* p = -0.2, keeping -0.015, -0.005 and 0.01: candidates nearer the anchor
    # than its positive.
    below = {0.5: [-0.3, -0.06], -0.2: [-0.3, -0.06, -0.045, -0.025]}[p]
    assert kept(relative_margin=0.1) == below
    assert kept(absolute_margin=0.04, relative_margin=0.1) == [d for d in below if d < -0.04]


def test_random_draws_from_the_window_by_seed_and_in_score_order():
    rng = np.random.default_rng(0)
    anchors = rng.normal(size=(40, 8)).astype(np.float32)
    corpus = rng.normal(size=(120, 8)).astype(np.float32)
    positives, own = [[i] for i in range(40)], [NO_OWN_TEXT] * 40
    window = dict(range_min=2, range_max=12)

    def draw(seed, chunk_size=None, sampling="random"):
        options = MiningOptions(num_negatives=3, sampling=sampling, seed=seed, **window)
        return mine_negatives(anchors, corpus, positives, own, options, chunk_size=chunk_size)

    every_rank = MiningOptions(num_negatives=10, **window)  # the whole window, best first
    top10 = mine_negatives(anchors, corpus, positives, own, every_rank)
    first, again, other = draw(seed=1), draw(seed=1, chunk_size=7), draw(seed=2)
    np.testing.assert_array_equal(first.ids, again.ids)  # the seed and the anchor decide
    assert (first.ids != other.ids).any(axis=1).mean() > 0.5  # another seed, other draws
    for a in range(40):
        assert set(first.ids[a]) <= set(top10.ids[a])  # drawn from the window's ranks
        assert list(first.scores[a]) == sorted(first.scores[a], reverse=True)
    assert (first.ids != draw(seed=1, sampling="top").ids).any()  # not simply the top


def test_chunks_give_the_one_chunk_result():
    rng = np.random.default_rng(1)
    anchors = rng.normal(size=(50, 16)).astype(np.float32)
    corpus = rng.normal(size=(300, 16)).astype(np.float32)
    corpus[:50] = anchors + 0.5 * corpus[:50]  # two positives near each anchor, as in real
    corpus[50:100] = anchors + 1.0 * corpus[50:100]  # data; this one the hardest
    positives = [[i, 50 + i] for i in range(50)]
    own = [i + 100 if i % 3 == 0 else NO_OWN_TEXT for i in range(50)]
    corpus[100:150:3] = anchors[::3]  # the anchor's own text in the corpus
    options = MiningOptions(num_negatives=4, range_min=1, relative_margin=0.05)
    whole = mine_negatives(anchors, corpus, positives, own, options, chunk_size=50)
    for chunk_size in (1, 7):
        parts = mine_negatives(anchors, corpus, positives, own, options, chunk_size=chunk_size)
        np.testing.assert_array_equal(parts.ids, whole.ids)
        np.testing.assert_allclose(parts.scores, whole.scores, atol=1e-6)
    assert (whole.ids >= 0).sum() > 100  # something was mined
    for a in range(50):  # and nothing excluded
        assert not set(whole.ids[a].tolist()) & {*positives[a], own[a]} - {-1}


def test_a_corpus_smaller_than_the_range():
    ids, _ = mine_one([0.3, 0.2], positives=[1], num_negatives=2, range_max=50)
    assert ids == [0]


def test_the_default_range_max_is_sentence_transformers():
    assert MiningOptions(num_negatives=3).range_max_for(most_positives=1) == 4
    for margin in (dict(absolute_margin=0.0), dict(relative_margin=0.05)):  # ten times the room
        assert MiningOptions(num_negatives=3, range_min=2, **margin).range_max_for(2) == 34
    assert MiningOptions(range_max=7, absolute_margin=0.1).range_max_for(2) == 7  # as given


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(num_negatives=0, range_min=0, range_max=5), "num_negatives 0: must be at least 1"),
        (dict(num_negatives=1, range_min=-1, range_max=5), "range_min -1: must be 0 or more"),
        (dict(num_negatives=1, range_min=5, range_max=5), "must be below range_max 5"),
        (dict(num_negatives=4, range_min=2, range_max=5), "leaves 3 ranks, fewer than"),
        (dict(num_negatives=1, range_min=0, range_max=5, relative_margin=float("nan")), "0 or"),
        (dict(num_negatives=1, range_min=0, range_max=5, absolute_margin=-0.1), "0 or more"),
        (dict(num_negatives=1, range_min=0, range_max=5, sampling="best"), "top, random"),
    ],
)
def test_bad_options_are_refused_in_one_line(options, message):
    with pytest.raises(ValueError, match=message) as caught:
        MiningOptions(**options)
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- sentences in, triplets out


class CircleEncoder:
    """An encoder that knows each text's vector: its cosine with the anchors' (1, 0)."""

    model = SimpleNamespace(sentence_config=SimpleNamespace(prompt_texts={}))

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def encode(self, texts, **options):  # noqa: ANN001, ANN003, ANN201 - a stand-in
        return on_circle([self.scores.get(t, 1.0) for t in texts])  # an anchor is (1, 0)


def test_triplets_come_by_anchor_then_positive_then_score():
    encoder = CircleEncoder({"p1": 0.9, "p2": 0.5, "p3": 0.8, "x": 0.7, "y": 0.6})
    pairs = [("a", "p1"), ("b", "p3"), ("a", "p2"), ("a", "p1"), ("b", "x"), ("c", "y")]
    triplets = mine_triplets(encoder, pairs, MiningOptions(num_negatives=2, range_max=6))
    assert [(t.anchor, t.positive, t.negative) for t in triplets] == [
        ("a", "p1", "p3"), ("a", "p1", "x"),  # a's positives p1, p2 are never its negatives
        ("a", "p2", "p3"), ("a", "p2", "x"),  # the repeated pair (a, p1) counts once
        ("b", "p3", "p1"), ("b", "p3", "y"),
        ("b", "x", "p1"), ("b", "x", "y"),
        ("c", "y", "p1"), ("c", "y", "p3"),
    ]  # fmt: skip


def test_pairs_come_from_triplets_and_unlabelled_pairs_only():
    assert anchor_positive_pairs([TripletExample("a", "p", "n")], "d") == [("a", "p")]
    assert anchor_positive_pairs([PairExample("a", "p")], "d") == [("a", "p")]
    with pytest.raises(DataError, match="d.tsv:7: a labelled pair"):
        anchor_positive_pairs([PairExample("a", "p", 4.5, line=7)], "d.tsv")


def test_triplets_files_round_trip_any_text(tmp_path):
    from minisbert.data.files import write_triplets

    odd = TripletExample('a "quoted"\ttab', "a line\nbreak, comma", "日本語 😀 \u2028 \\")
    triplets = [odd, TripletExample("a", "b", "c")]
    path = write_triplets(tmp_path / "t.jsonl", triplets)
    assert load_dataset(str(path)) == triplets
    with pytest.raises(DataError, match="name the file \\*.jsonl"):
        write_triplets(tmp_path / "t.tsv", triplets)
    assert [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]


# ---------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def tiny_pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mine")
    words = "the cat dog sat on mat a is run".split()
    rng = np.random.default_rng(3)
    lines = ["sentence1\tsentence2"]
    for _ in range(30):
        a, b = (" ".join(rng.choice(words, rng.integers(2, 5))) for _ in range(2))
        lines.append(f"{a}\t{b}")
    (root / "pairs.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "scored.tsv").write_text("sentence1\tsentence2\tscore\na cat\ta dog\t0.5\n")
    return random_model_dir(root / "tiny", ONE_LAYER), root / "pairs.tsv"


class HashEncoder:
    """A stand-in for the model, for the command's plumbing without a compile: each text's
    vector is drawn from a generator seeded by the text."""

    model = SimpleNamespace(sentence_config=SimpleNamespace(prompt_texts={}))

    def encode(self, texts, **options):  # noqa: ANN001, ANN003, ANN201 - a stand-in
        seeds = [zlib.crc32(t.encode("utf-8")) for t in texts]
        return np.stack([np.random.default_rng(s).normal(size=8) for s in seeds])


def check_mined(pairs_file, out, num_negatives, every_pair=True):
    """The file at ``out`` holds triplets of ``pairs_file``'s pairs and mined negatives, which
    `minisbert train --loss mnrl` reads; ``num_negatives`` for each pair (``every_pair``), or
    at most that many."""
    from minisbert.data import load_dataset, read_pairs
    from minisbert.sentence_encoder import SentenceEncoder
    from minisbert.train_config import TrainConfig
    from minisbert.training_data import load_training_data

    pairs = [(p.sentence1, p.sentence2) for p in read_pairs(pairs_file)]
    triplets = load_dataset(str(out))
    assert triplets and all(isinstance(t, TripletExample) for t in triplets)
    corpus, positives = {p for _, p in pairs}, {(a, p) for a, p in pairs}
    for t in triplets:
        assert (t.anchor, t.positive) in positives and t.negative in corpus
        assert (t.anchor, t.negative) not in positives and t.negative != t.anchor
    per_pair = Counter((t.anchor, t.positive) for t in triplets)
    if every_pair:  # 30 pairs: enough candidates for each
        assert set(per_pair.values()) == {num_negatives} and len(per_pair) == len(set(pairs))
    assert max(per_pair.values()) <= num_negatives
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert list(rows[0]) == ["anchor", "positive", "negative"] and len(rows) == len(triplets)

    model = pairs_file.with_name("tiny")
    config = TrainConfig(model=str(model), data=str(out), loss="mnrl")
    tokenizer = SentenceEncoder.from_pretrained(model).tokenizer
    data = load_training_data(config, tokenizer)  # what `minisbert train` reads
    assert len(data.sides) == 3 and len(data.sides[0]) == len(triplets)
    return triplets


def test_mine_writes_triplets_that_training_reads(tiny_pairs, tmp_path, capsys, monkeypatch):
    import minisbert.cli

    monkeypatch.setattr(minisbert.cli, "_encoder", lambda name: HashEncoder())
    model, pairs_file = tiny_pairs
    out = tmp_path / "hard.jsonl"
    argv = ["mine", "--model", str(model), "--data", str(pairs_file), "--output", str(out),
            "--num-negatives", "2", "--range-min", "1"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith(f"wrote {out}: ")
    triplets = check_mined(pairs_file, out, 2)
    assert main([*argv, "--sampling", "random", "--seed", "5"]) == 0
    assert load_dataset(str(out)) != triplets  # drawn, not the top
    assert [p.name for p in tmp_path.iterdir()] == ["hard.jsonl"]  # written whole, in place


@pytest.mark.slow  # encoding compiles the tiny model (about 3 s on 2 cores)
def test_mine_with_the_tiny_model(tiny_pairs, tmp_path, capsys):
    model, pairs_file = tiny_pairs
    out = tmp_path / "hard.jsonl"
    argv = ["mine", "--model", str(model), "--data", str(pairs_file), "--output", str(out),
            "--num-negatives", "3", "--relative-margin", "0.0"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    check_mined(pairs_file, out, 3, every_pair=False)  # the margin leaves some with fewer


@pytest.mark.parametrize(
    ("extra", "output", "message"),
    [
        ([], "out.tsv", "name it *.jsonl"),
        ([], "PAIRS", "is the --data file"),
        (["--range-min", "4", "--range-max", "4"], "out.jsonl", "must be below range_max 4"),
        (["--data", "SCORED"], "out.jsonl", "scored.tsv:2: a labelled pair"),
    ],
)
def test_mine_refuses_in_one_line_and_writes_nothing(tiny_pairs, tmp_path, capsys, extra,
                                                      output, message):  # fmt: skip
    model, pairs_file = tiny_pairs
    out = pairs_file if output == "PAIRS" else tmp_path / output
    before = pairs_file.read_bytes()
    extra = [str(pairs_file.with_name("scored.tsv")) if x == "SCORED" else x for x in extra]
    argv = ["mine", "--model", str(model), "--data", str(pairs_file), "--output", str(out), *extra]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("minisbert mine: error: ")
    assert message in err
    assert pairs_file.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == []


BAD_FLAGS = ["--num-negatives 0", "--range-min -1", "--relative-margin x",
             "--absolute-margin -0.1", "--sampling best", "--seed -3"]  # fmt: skip


@pytest.mark.parametrize("flag", BAD_FLAGS)
def test_mine_refuses_bad_flags(tiny_pairs, tmp_path, capsys, flag):
    model, pairs_file = tiny_pairs
    argv = ["mine", "--data", str(pairs_file), "--output", str(tmp_path / "o.jsonl")]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, *flag.split()])
    assert exit_.value.code == 2
    assert "minisbert mine: error: argument " + flag.split()[0] in capsys.readouterr().err
