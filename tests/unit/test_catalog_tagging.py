"""Tagging on catalog arrival: the tagger file, the follower's hot path, content similarity."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from features.catalog import Catalog
from online_models.tagger import SynopsisTagger, editorial_tags, tag_title
from online_models.text_model import TextModel, load_text_model
from online_models.titles import TitleIndex
from streams.adapters.catalog_follower import CatalogFollower
from streams.metrics import REGISTRY
from streams.settings import Settings
from streams.tools.synthetic import SimConfig, Simulation


@pytest.fixture(scope="module")
def catalog_records():
    return Simulation(SimConfig(users=1, titles=300, seed=11)).catalog


@pytest.fixture(scope="module")
def tagger(catalog_records):
    return SynopsisTagger().fit(r for r in catalog_records if editorial_tags(r))


def tagging_count(outcome: str) -> float:
    return REGISTRY.get_sample_value("reelstream_catalog_tagging_total", {"outcome": outcome}) or 0


def untagged(rec: dict, title_id: str, **extra) -> bytes:
    """The record as an editor might send it: genres only, a synopsis, no other tags."""
    out = {k: rec[k] for k in ("name", "kind", "synopsis", "genres", "runtime_s")}
    return orjson.dumps({**out, "title_id": title_id, "tags": {}, **extra})


def test_a_tagger_file_round_trips_and_foreign_files_are_refused(tagger, catalog_records):
    blob = tagger.to_bytes(trained_on=300)
    back = SynopsisTagger.from_bytes(blob)
    texts = [r["synopsis"] for r in catalog_records[:20]]
    assert back.predict(texts) == tagger.predict(texts)
    model = load_text_model()
    other = TextModel(model.matrix, model.tokenizer, model_id="another-encoder")
    with pytest.raises(ValueError, match="another-encoder"):
        SynopsisTagger.from_bytes(blob, model=other)
    with pytest.raises(ValueError, match="not a tagger file"):
        from online_models import checkpoint

        SynopsisTagger.from_bytes(checkpoint.encode({}, {}, model_version="ranker"))
    doc = orjson.loads(blob)
    doc["state"]["heads"]["tone"]["most"] = 99
    with pytest.raises(ValueError, match="most must be"):
        SynopsisTagger.from_bytes(orjson.dumps(doc))


def test_an_arriving_record_gets_derived_tags_and_editorial_tags_win(tagger, catalog_records):
    follower = CatalogFollower(Settings(), Catalog(), tagger=tagger)
    rec = catalog_records[0]
    before = tagging_count("tagged")
    assert follower.apply(b"n1", untagged(rec, "new1", tags={"tone": ["light"]})) is None
    t = follower.catalog.get("new1")
    assert tagging_count("tagged") == before + 1
    assert t.genres == tuple(rec["genres"]) and "genre" not in t.derived_tags
    assert t.tags["tone"] == ("light",) and "tone" not in t.derived_tags  # the editors' tone
    assert {"pacing", "setting", "narrative"} <= set(t.derived_tags)
    for dim, pairs in t.derived_tags.items():
        for value, conf in pairs:
            assert f"{dim}:{value}" in t.tag_keys and 0 < conf <= 1
    # A record's own derived tags (from `reelstream tags derive`) are kept as sent.
    own = {"pacing": [{"value": "slow", "confidence": 0.5}]}
    follower.apply(b"n2", untagged(rec, "new2", derived_tags=own))
    assert follower.catalog.get("new2").derived_tags["pacing"] == (("slow", 0.5),)


def test_derived_tags_reach_content_similarity_at_once(tagger, catalog_records):
    catalog = Catalog()
    follower = CatalogFollower(Settings(), catalog, tagger=tagger)
    index = TitleIndex(catalog)
    for rec in catalog_records[:50]:
        follower.apply(rec["title_id"].encode(), orjson.dumps(rec))
    index.sync()
    src = catalog_records[60]
    follower.apply(b"fresh", untagged(src, "fresh"))
    index.sync()  # what the engine does before its next score
    fresh = catalog.get("fresh")
    derived_keys = {f"{d}:{v}" for d, pairs in fresh.derived_tags.items() for v, _ in pairs}
    assert derived_keys
    m = index.tag_matrix.tocsr()
    row = m[index.index["fresh"]]
    cols = {index.tags[j] for j in row.indices}
    assert derived_keys <= cols
    # Some title shares a derived tag (and no genre) with it: similar only through them.
    sims = (m @ row.T).toarray().ravel()
    genre_free = [
        i
        for i, t in enumerate(index.titles)
        if t is not None and not set(t.genres) & set(fresh.genres) and sims[i] > 0
    ]
    assert genre_free


def test_a_failing_tagger_keeps_the_record_and_says_why(tagger, catalog_records, caplog):
    class Broken:
        heads = tagger.heads

        def predict(self, texts):
            raise RuntimeError("tokenizer exploded")

    follower = CatalogFollower(Settings(), Catalog(), tagger=Broken())  # type: ignore[arg-type]
    before = tagging_count("failed")
    for i, rec in enumerate(catalog_records[:3]):
        assert follower.apply(b"k", untagged(rec, f"b{i}")) is None
    assert tagging_count("failed") == before + 3
    t = follower.catalog.get("b2")
    assert (
        t is not None and t.derived_tags == {} and t.genres == tuple(catalog_records[2]["genres"])
    )
    assert "tokenizer exploded" in caplog.text and "kept its editorial tags" in caplog.text


def test_complete_and_synopsis_less_records_skip_the_model(tagger, catalog_records):
    rec = next(r for r in catalog_records if set(editorial_tags(r)) >= set(tagger.heads))
    from features.catalog import parse_title

    title, outcome = tag_title(parse_title(rec), tagger)
    assert outcome == "complete" and title.derived_tags == {}
    bare = parse_title({**orjson.loads(untagged(rec, "x")), "synopsis": ""})
    assert tag_title(bare, tagger)[1] == "no_synopsis"


def test_the_worker_loads_its_tagger_file_or_runs_without(tagger, tmp_path):
    gauge = "reelstream_catalog_tagger_loaded"
    good = tmp_path / "tagger.bin"
    good.write_bytes(tagger.to_bytes())
    follower = CatalogFollower(Settings(tagger_file=str(good)), Catalog())
    follower.load_tagger()
    assert follower.tagger is not None and REGISTRY.get_sample_value(gauge) == 1
    w = follower.tagger.heads["tone"][1]
    assert np.array_equal(w, tagger.heads["tone"][1])
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00garbage")
    follower = CatalogFollower(Settings(tagger_file=str(bad)), Catalog())
    follower.load_tagger()
    assert follower.tagger is None and REGISTRY.get_sample_value(gauge) == 0
    follower = CatalogFollower(Settings(tagger_file=str(tmp_path)), Catalog())  # a directory
    follower.load_tagger()
    assert follower.tagger is None
