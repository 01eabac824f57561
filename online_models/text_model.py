"""The text model behind derived tags: WordLlama's static 256-d token embeddings, offline.

The ``wordllama`` wheel (MIT, pinned in pyproject.toml) ships the embedding
matrix (``weights/l2_supercat_256.safetensors``) and its tokenizer
(``tokenizers/l2_supercat_tokenizer_config.json``). ``WordLlama.load()`` in
that release looks for the tokenizer under another file name and then tries a
model hub, so this module does not call it: it opens the two packaged files
itself with ``safetensors`` and ``tokenizers``, checks their SHA-256 against
the digests pinned below (a mismatch raises :class:`ModelFileError`), and
embeds a text as the L2-normalised mean of its token vectors, which is what
WordLlama's own ``embed(norm=True)`` computes. Nothing is downloaded, ever.

Why this model and not all-MiniLM-L6-v2: docs/catalog-intelligence.md has the
measurements (install size and time, load time, cost per synopsis).

>>> model = load_text_model()
>>> v = model.embed(["a haunted house", "a spooky mansion", "a tax audit"])
>>> v.shape
(3, 256)
>>> bool(v[0] @ v[1] > v[0] @ v[2])
True
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WORDLLAMA_VERSION = "0.4.0.post1"
WEIGHTS_FILE = "weights/l2_supercat_256.safetensors"
TOKENIZER_FILE = "tokenizers/l2_supercat_tokenizer_config.json"
SHA256 = {
    WEIGHTS_FILE: "64b47a2dc493cb8e85944076601189739852d7b64e0e1eedcb1937a251cd9fd5",
    TOKENIZER_FILE: "93248f2a9ec36c7b35f700a033d5f36228aae48db61aee31007fa49062cdeb68",
}
TENSOR_KEY = "embedding.weight"
MODEL_ID = f"wordllama-{WORDLLAMA_VERSION}-l2_supercat_256"


class ModelFileError(RuntimeError):
    """The packaged model files are missing, of another version, or not the pinned bytes."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_dir() -> Path:
    """Where the installed ``wordllama`` keeps its files (found without importing it)."""
    try:
        dist = importlib.metadata.distribution("wordllama")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelFileError("wordllama is not installed (pip install -e .)") from exc
    if dist.version != WORDLLAMA_VERSION:
        raise ModelFileError(f"wordllama {dist.version} installed; pinned {WORDLLAMA_VERSION}")
    return Path(str(dist.locate_file("wordllama")))


@dataclass
class TextModel:
    """Mean-pooled static token embeddings; ``embed`` returns unit rows (float32)."""

    matrix: np.ndarray  # vocabulary x dim
    tokenizer: object
    model_id: str = MODEL_ID

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)  # type: ignore[attr-defined]
        for i, enc in enumerate(encodings):
            ids = enc.ids
            if ids:
                v = self.matrix[ids].mean(axis=0)
                norm = float(np.linalg.norm(v))
                if norm > 0:
                    out[i] = v / norm
        return out


_LOCK = threading.Lock()
_CACHE: dict[str, TextModel] = {}


def load_text_model(root: Path | None = None, verify: bool = True) -> TextModel:
    """The pinned model, loaded once per process; digests checked on first load."""
    key = str(root)
    with _LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = _CACHE[key] = _load(root or package_dir(), verify)
        return model


def _load(root: Path, verify: bool) -> TextModel:
    from safetensors import safe_open
    from tokenizers import Tokenizer

    for rel, digest in SHA256.items():
        path = root / rel
        if not path.is_file():
            raise ModelFileError(f"missing model file {path}")
        if verify and _sha256(path) != digest:
            raise ModelFileError(f"{path}: SHA-256 differs from the pinned digest")
    with safe_open(str(root / WEIGHTS_FILE), framework="np") as fh:
        matrix = np.ascontiguousarray(fh.get_tensor(TENSOR_KEY), dtype=np.float32)
    tokenizer = Tokenizer.from_file(str(root / TOKENIZER_FILE))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return TextModel(matrix, tokenizer)
