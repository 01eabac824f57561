"""Tags from synopses: a ridge classifier per catalog dimension over the text model's vectors.

For each dimension (genre, tone, pacing, theme, narrative, setting, audience)
the tagger fits a one-vs-rest ridge regression from synopsis embeddings
(:mod:`online_models.text_model`, centred on the training mean) to one-hot
editorial tags, on the titles whose editors tagged that dimension. A score is
clipped to [0, 1] and reported as the tag's confidence (a linear-probability
reading, not a calibrated probability). Single-valued dimensions keep their
best value when it reaches ``min_confidence``; multi-valued ones (genre, theme:
more than one value was seen per title in training) keep every value at or
above ``multi_threshold``, at least the best one.

:func:`merge_tags` joins editorial and derived tags: editorial wins (a
dimension an editor tagged keeps exactly the editor's values), derived tags
fill the other dimensions and are marked ``"source": "derived"``.

:func:`tag_title` is what a worker does to a catalog record on arrival: derived
tags for the dimensions that neither the editors nor the record's own
``derived_tags`` fill, added to the title's ``tag_keys`` (the vocabulary of
content similarity). A worker's tagger is a file (:meth:`SynopsisTagger.to_bytes`,
``reelstream tags train``): the safe checkpoint codec, tied to the text model's id.

:class:`KeywordTagger` is the baseline: a tag when its name appears in the text.
:func:`evaluate` predicts the hidden tags of held-out titles and reports precision
and recall per dimension beside a bag-of-words ridge and the keyword baseline
(``reelstream tags eval``, streams/tools/catalog_intel_cli.py).

>>> recs = [{"title_id": f"t{i}", "name": "x", "genres": [g], "tags": {}, "synopsis": s}
...         for i, (g, s) in enumerate([("horror", "a haunted house of ghosts"),
...             ("comedy", "jokes and hilarious pratfalls")] * 5)]
>>> tagger = SynopsisTagger().fit(recs)
>>> [t.value for t in tagger.predict(["a ghost in a haunted mansion"])[0]["genre"]]
['horror']
>>> merge_tags({"genre": ["comedy"]}, tagger.predict(["spooky ghosts"])[0])["genre"]
[{'value': 'comedy', 'confidence': 1.0, 'source': 'editorial'}]
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.catalog import TAG_RE, Title
from online_models import checkpoint
from online_models.text_model import TextModel, load_text_model

TAGGER_VERSION = "reelstream-tagger-1"
MAX_TAGGER_BYTES = 64 * 1024 * 1024

DIMENSIONS = ("genre", "tone", "pacing", "theme", "narrative", "setting", "audience")


@dataclass(frozen=True, slots=True)
class DerivedTag:
    value: str
    confidence: float


Derived = dict[str, list[DerivedTag]]


def editorial_tags(rec: Mapping[str, Any]) -> dict[str, list[str]]:
    """A catalog record's editorial tags by dimension (genres under ``genre``)."""
    out: dict[str, list[str]] = {}
    if rec.get("genres"):
        out["genre"] = list(rec["genres"])
    for dim, values in (rec.get("tags") or {}).items():
        if dim != "genre" and values:
            out[dim] = list(values)
    return out


def record_text(rec: Mapping[str, Any]) -> str:
    return str(rec.get("synopsis") or "")


class SynopsisTagger:
    """Fit on tagged records, predict tags with confidences for texts."""

    def __init__(
        self,
        model: TextModel | None = None,
        ridge: float = 1.0,
        min_confidence: float = 0.15,
        multi_threshold: float = 0.4,
    ) -> None:
        self.model = model or load_text_model()
        self.ridge = ridge
        self.min_confidence = min_confidence
        self.multi_threshold = multi_threshold
        self.mean = np.zeros(self.model.dim, dtype=np.float32)
        self.heads: dict[str, tuple[list[str], np.ndarray, int]] = {}  # values, W, max per title

    def features(self, texts: Sequence[str]) -> np.ndarray:
        x = self.model.embed(list(texts)) - self.mean
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
        return np.hstack([x, np.ones((len(texts), 1), dtype=np.float32)])  # bias column

    def fit(self, records: Iterable[Mapping[str, Any]]) -> SynopsisTagger:
        recs = [r for r in records if record_text(r)]
        if not recs:
            raise ValueError("no records with a synopsis to learn from")
        raw = self.model.embed([record_text(r) for r in recs])
        self.mean = raw.mean(axis=0)
        x = self.features([record_text(r) for r in recs])
        tags = [editorial_tags(r) for r in recs]
        self.heads = {}
        for dim in DIMENSIONS:
            rows = [i for i, t in enumerate(tags) if t.get(dim)]
            if not rows:
                continue
            values = sorted({v for i in rows for v in tags[i][dim]})
            col = {v: j for j, v in enumerate(values)}
            y = np.zeros((len(rows), len(values)), dtype=np.float32)
            for r, i in enumerate(rows):
                for v in tags[i][dim]:
                    y[r, col[v]] = 1.0
            xd = x[rows]
            reg = self.ridge * np.eye(xd.shape[1], dtype=np.float32)
            reg[-1, -1] = 0.0  # do not shrink the bias
            w = np.linalg.solve(xd.T @ xd + reg, xd.T @ y)
            most = max(len(tags[i][dim]) for i in rows)
            self.heads[dim] = (values, w.astype(np.float32), most)
        return self

    def predict(self, texts: Sequence[str]) -> list[Derived]:
        if not texts:
            return []
        x = self.features(texts)
        out: list[Derived] = [{} for _ in texts]
        for dim, (values, w, most) in self.heads.items():
            scores = np.clip(x @ w, 0.0, 1.0)
            for i in range(len(texts)):
                order = np.argsort(-scores[i], kind="stable")
                best = int(order[0])
                if scores[i, best] < self.min_confidence:
                    continue
                picks = [best]
                if most > 1:
                    picks += [
                        int(j) for j in order[1:most] if scores[i, int(j)] >= self.multi_threshold
                    ]
                out[i][dim] = [DerivedTag(values[j], round(float(scores[i, j]), 4)) for j in picks]
        return out

    def to_bytes(self, trained_on: int = 0) -> bytes:
        """The fitted tagger as a file (checkpoint codec: JSON and typed arrays, no pickle)."""
        state = {
            "text_model": self.model.model_id,
            "mean": np.asarray(self.mean, dtype=np.float32),
            "ridge": float(self.ridge),
            "min_confidence": float(self.min_confidence),
            "multi_threshold": float(self.multi_threshold),
            "trained_on": int(trained_on),
            "heads": {
                dim: {"values": values, "w": w, "most": most}
                for dim, (values, w, most) in self.heads.items()
            },
        }
        return checkpoint.encode(state, {}, model_version=TAGGER_VERSION)

    @classmethod
    def from_bytes(cls, raw: bytes, model: TextModel | None = None) -> SynopsisTagger:
        """A tagger file back, every field checked; ValueError when it is not one of ours
        or was fitted on another text model's vectors."""
        if len(raw) > MAX_TAGGER_BYTES:
            raise ValueError(f"a tagger file is at most {MAX_TAGGER_BYTES} bytes")
        ck = checkpoint.decode(raw)  # CheckpointError is a ValueError
        if ck.model_version != TAGGER_VERSION:
            raise ValueError(f"not a tagger file ({ck.model_version or 'no version'})")
        st = ck.state
        model = model or load_text_model()
        if st.get("text_model") != model.model_id:
            raise ValueError(
                f"fitted on text model {st.get('text_model')!r}; this worker has {model.model_id}"
            )
        nums = [st.get(k) for k in ("ridge", "min_confidence", "multi_threshold")]
        if not all(isinstance(v, float) and 0 <= v < 1e6 for v in nums):
            raise ValueError("ridge and thresholds must be non-negative numbers")
        tagger = cls(model, *nums)  # type: ignore[arg-type]
        mean = st.get("mean")
        if not isinstance(mean, np.ndarray) or mean.shape != (model.dim,):
            raise ValueError(f"mean must be a float vector of {model.dim}")
        tagger.mean = mean.astype(np.float32)
        heads = st.get("heads")
        if not isinstance(heads, dict) or not set(heads) <= set(DIMENSIONS):
            raise ValueError(f"heads must be an object keyed by {', '.join(DIMENSIONS)}")
        for dim, head in heads.items():
            values, w, most = (
                head.get(k) if isinstance(head, dict) else None for k in ["values", "w", "most"]
            )
            if (
                not isinstance(values, list)
                or not values
                or not all(isinstance(v, str) and TAG_RE.match(v) for v in values)
            ):
                raise ValueError(f"{dim}: values must be tag names")
            if not isinstance(w, np.ndarray) or w.shape != (model.dim + 1, len(values)):
                raise ValueError(f"{dim}: weights must be {model.dim + 1} x {len(values)}")
            if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= len(values):
                raise ValueError(f"{dim}: most must be from 1 to {len(values)}")
            if not np.isfinite(w).all():
                raise ValueError(f"{dim}: weights must be finite")
            tagger.heads[dim] = (values, w.astype(np.float32), most)
        return tagger


def tag_title(title: Title, tagger: SynopsisTagger) -> tuple[Title, str]:
    """(title with derived tags, outcome) for a catalog record on arrival.

    Outcomes: ``tagged`` (derived tags added), ``complete`` (every dimension the tagger
    knows already has editorial or derived tags: nothing to compute), ``unsure`` (no value
    reached the confidence floor), ``no_synopsis``.
    Editorial tags win, then the record's own ``derived_tags``; the worker's fill the rest.
    """
    filled = {d for d, v in title.tags.items() if v} | set(title.derived_tags)
    if title.genres:
        filled.add("genre")
    open_dims = [d for d in tagger.heads if d not in filled]
    if not open_dims:
        return title, "complete"
    if not title.synopsis.strip():
        return title, "no_synopsis"
    derived = tagger.predict([title.synopsis])[0]
    added = {
        d: tuple((t.value, t.confidence) for t in derived[d]) for d in open_dims if derived.get(d)
    }
    if not added:
        return title, "unsure"
    keys = title.tag_keys + tuple(f"{d}:{v}" for d, pairs in added.items() for v, _ in pairs)
    return (
        dataclasses.replace(
            title,
            derived_tags={**title.derived_tags, **added},
            tag_keys=tuple(dict.fromkeys(keys)),
        ),
        "tagged",
    )


class KeywordTagger:
    """Baseline: a tag whenever its name (hyphens as spaces or kept) appears as words."""

    def __init__(self, vocabulary: Mapping[str, Iterable[str]]) -> None:
        self.patterns = {
            dim: [
                (
                    v,
                    re.compile(
                        r"\b(" + "|".join({re.escape(v), re.escape(v.replace("-", " "))}) + r")\b"
                    ),
                )
                for v in values
            ]
            for dim, values in vocabulary.items()
        }

    def predict(self, texts: Sequence[str]) -> list[Derived]:
        out: list[Derived] = []
        for text in texts:
            low = text.lower()
            found: Derived = {}
            for dim, pats in self.patterns.items():
                hits = [DerivedTag(v, 1.0) for v, p in pats if p.search(low)]
                if hits:
                    found[dim] = hits
            out.append(found)
        return out


def merge_tags(
    editorial: Mapping[str, Sequence[str]], derived: Derived
) -> dict[str, list[dict[str, Any]]]:
    """Editorial wins per dimension; derived tags fill the rest, marked as derived."""
    out: dict[str, list[dict[str, Any]]] = {}
    for dim in dict.fromkeys([*editorial, *derived]):
        if editorial.get(dim):
            out[dim] = [
                {"value": v, "confidence": 1.0, "source": "editorial"} for v in editorial[dim]
            ]
        elif derived.get(dim):
            out[dim] = [
                {"value": t.value, "confidence": t.confidence, "source": "derived"}
                for t in derived[dim]
            ]
    return out


@dataclass
class Scores:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0


def split_records(
    records: Sequence[Mapping[str, Any]], holdout: float, seed: int
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(train, held out) by series, so episodes of one show never straddle the split."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(str(r.get("series_id") or r["title_id"]), []).append(r)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    cut = round(len(keys) * (1 - holdout))
    train = [r for k in keys[:cut] for r in groups[k]]
    test = [r for k in keys[cut:] for r in groups[k]]
    return train, test


def score(
    truth: Sequence[Mapping[str, Sequence[str]]], predicted: Sequence[Derived]
) -> dict[str, Scores]:
    out = {dim: Scores() for dim in DIMENSIONS}
    for t, p in zip(truth, predicted, strict=True):
        for dim in DIMENSIONS:
            want = set(t.get(dim, ()))
            got = {d.value for d in p.get(dim, ())}
            out[dim].tp += len(want & got)
            out[dim].fp += len(got - want)
            out[dim].fn += len(want - got)
    return out


class BagOfWords:
    """Baseline featuriser: L2-normalised word counts over the training vocabulary.

    Same ridge heads as the text model, so the comparison isolates the representation:
    it learns the training wordings but knows nothing of words it never saw.
    """

    model_id = "bag-of-words"

    def __init__(self, texts: Iterable[str]) -> None:
        vocab = sorted({w for t in texts for w in _words(t)})
        self.index = {w: i for i, w in enumerate(vocab)}

    @property
    def dim(self) -> int:
        return len(self.index)

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in _words(t):
                j = self.index.get(w)
                if j is not None:
                    out[i, j] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def evaluate(
    train: Sequence[Mapping[str, Any]],
    test: Sequence[Mapping[str, Any]],
    train_texts: Sequence[str] | None = None,
    test_texts: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Fit on ``train``, predict the hidden tags of ``test``: per-dimension P/R for the
    text model, a bag-of-words ridge and the keyword baseline. Texts default to synopses."""
    train_texts = list(train_texts or [record_text(r) for r in train])
    test_texts = list(test_texts or [record_text(r) for r in test])
    train = [{**r, "synopsis": t} for r, t in zip(train, train_texts, strict=True)]
    truth = [editorial_tags(r) for r in test]
    vocab: dict[str, set[str]] = {}
    for r in train:
        for dim, values in editorial_tags(r).items():
            vocab.setdefault(dim, set()).update(values)
    taggers: dict[str, Any] = {
        "model": SynopsisTagger().fit(train),
        "bow": SynopsisTagger(model=BagOfWords(train_texts)).fit(train),  # type: ignore[arg-type]
        "keyword": KeywordTagger({d: sorted(v) for d, v in vocab.items()}),
    }
    scores = {name: score(truth, t.predict(test_texts)) for name, t in taggers.items()}
    return {
        "model": taggers["model"].model.model_id,
        "train_titles": len(train),
        "held_out_titles": len(test),
        "dimensions": {
            dim: {
                "support": scores["model"][dim].tp + scores["model"][dim].fn,
                **{
                    f"{name}_{m}": round(getattr(scores[name][dim], m), 3)
                    for name in taggers
                    for m in ("precision", "recall")
                },
            }
            for dim in DIMENSIONS
        },
    }


def format_report(report: Mapping[str, Any]) -> str:
    lines = [
        f"model {report['model']}: trained on {report['train_titles']} titles, "
        f"tags of {report['held_out_titles']} held out",
        f"{'dimension':<10} {'support':>7}"
        + "".join(f" {n + ' P':>9} {n + ' R':>9}" for n in ("model", "bow", "keyword")),
    ]
    for dim, s in report["dimensions"].items():
        lines.append(
            f"{dim:<10} {s['support']:>7}"
            + "".join(
                f" {s[n + '_precision']:>9.3f} {s[n + '_recall']:>9.3f}"
                for n in ("model", "bow", "keyword")
            )
        )
    return "\n".join(lines)
