import pytest

from features.catalog import Catalog, CatalogError, parse_title
from streams.tools.synthetic import SimConfig, Simulation


def test_synthetic_catalog_follows_the_contract():
    sim = Simulation(SimConfig(users=5, titles=60, seed=3))
    titles = [parse_title(rec) for rec in sim.catalog]
    assert len(titles) == 60
    assert all(t.tag_keys for t in titles)
    series = [t for t in titles if t.series_id]
    assert series, "the generator links episodes into series"
    assert {t.kind for t in series} == {"episode"}


@pytest.mark.parametrize(
    ("rec", "message"),
    [
        ("x", "JSON object"),
        ({"name": "A"}, "title_id"),
        ({"title_id": "t/../x", "name": "A"}, "title_id"),
        ({"title_id": "t1"}, "name"),
        ({"title_id": "t1", "name": "A", "genres": "drama"}, "genres"),
        ({"title_id": "t1", "name": "A", "tags": {"Tone!": ["dark"]}}, "dimension"),
        ({"title_id": "t1", "name": "A", "runtime_s": -5}, "runtime_s"),
        ({"title_id": "t1", "name": "A", "kind": "podcast"}, "kind"),
        ({"title_id": "t1", "name": "A", "artwork": [{"style": "x"}]}, "artwork"),
    ],
)
def test_bad_records_say_what_is_wrong(rec, message):
    with pytest.raises(CatalogError, match=message):
        parse_title(rec)


def test_catalog_version_moves_on_change():
    cat = Catalog()
    v0 = cat.version
    cat.upsert(parse_title({"title_id": "t1", "name": "A"}))
    cat.remove("t1")
    cat.remove("t1")
    assert cat.version == v0 + 2
    assert "t1" not in cat
