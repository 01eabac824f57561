"""Importers of public viewing logs: mapping, scheduling, bad rows, and the real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from features.catalog import parse_title
from online_models.labels import outcome
from streams.cli import main
from streams.contract import MIN_TS_MS, validate_event
from streams.tools import importers
from streams.tools.importers import ImportReport, Viewing, viewing_events

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def _ml(user: str, movie: str, rating: str, ts: str) -> dict[str, str]:
    return {"userId": user, "movieId": movie, "rating": rating, "timestamp": ts}


def test_movielens_rating_mapping_and_time_shift():
    rep = ImportReport()
    rows = [_ml("1", "10", "4", "800000000"), _ml("1", "11", "3", "800000100")]
    evs = importers.movielens_events(rows, {"m10", "m11"}, rep)
    assert [e["event_type"] for e in evs] == ["play", "complete", "play", "stop"]
    assert all(e["ts"] >= MIN_TS_MS for e in evs)  # 1995 shifted past the 2000 floor
    assert (evs[0]["ts"] - 800_000_000_000 - importers.ML_SHIFT_MS) == 1
    assert importers.ML_SHIFT_MS % 86_400_000 == 0  # hour of day kept
    assert outcome(evs[1], None) == "positive"
    assert outcome(evs[3], None) == "abandon"
    assert evs[3]["position_s"] / evs[3]["duration_s"] == pytest.approx(3 / 6)
    assert rep.viewings == 2 and rep.events == 4 and not rep.bad


def test_movielens_bad_rows_are_counted_not_dropped_silently():
    rep = ImportReport()
    rows = [
        _ml("1", "10", "4", "800000000"),
        _ml("1", "10", "5", "800000050"),  # same user and movie again
        _ml("x", "10", "4", "800000000"),
        _ml("2", "10", "9", "800000000"),
        _ml("2", "10", "four", "800000000"),
        _ml("2", "99", "4", "800000000"),  # not in movies.csv
    ]
    evs = importers.movielens_events(rows, {"m10"}, rep)
    assert rep.rows == 6 and rep.viewings == 1 and len(evs) == 2
    assert rep.bad == {
        "duplicate_rating": 1,
        "bad_id": 1,
        "rating_out_of_range": 1,
        "bad_number": 1,
        "unknown_title": 1,
    }
    assert rep.as_dict()["bad_rows"] == 5


def test_movielens_catalog_genres_year_and_tags_pass_the_contract():
    rep = ImportReport()
    movies = [
        {"movieId": "1", "title": "Toy Story (1995)", "genres": "Animation|Sci-Fi"},
        {"movieId": "2", "title": "Odd", "genres": "(no genres listed)"},
        {"movieId": "", "title": "broken", "genres": ""},
    ]
    tags = [
        {"movieId": "1", "tag": "Pixar"},
        {"movieId": "1", "tag": "pixar "},
        {"movieId": "1", "tag": "funny!"},
        {"movieId": "1", "tag": "!!!"},
    ]
    cat = importers.movielens_catalog(movies, tags, rep)
    assert [c["title_id"] for c in cat] == ["m1", "m2"]
    toy = parse_title(cat[0])
    assert toy.name == "Toy Story" and toy.release_year == 1995
    assert toy.genres == ("animation", "sci-fi")
    assert toy.tags["user_tag"] == ("pixar", "funny")  # most used first
    assert parse_title(cat[1]).genres == ()
    assert rep.bad == {"movie_bad_row": 1, "tag_bad_row": 1} and rep.titles == 2


def _views(starts: list[int], watch_ms: int = 10_000) -> list[Viewing]:
    return [
        Viewing("u", f"t{i}", s, watch_ms, 10.0, 10.0, True, key=str(i))
        for i, s in enumerate(starts)
    ]


@pytest.mark.parametrize("overlap", [False, True])
def test_viewing_schedule_sequential_or_overlapping(overlap):
    evs = viewing_events(_views([1_000_000, 1_000_000, 1_000_500]), overlap=overlap)
    plays = [e["ts"] for e in evs if e["event_type"] == "play"]
    ends = [e["ts"] for e in evs if e["event_type"] == "complete"]
    assert len(plays) == len(ends) == 3 and len({e["event_id"] for e in evs}) == 6
    assert [e["ts"] for e in evs] == sorted(e["ts"] for e in evs)
    if overlap:  # every viewing lasts its watch time: later plays start first
        assert all(end - play == 10_000 for play, end in zip(plays, ends, strict=True))
        assert plays[2] < ends[0]
    else:  # each viewing ends before the next starts
        assert all(e < p for e, p in zip(ends, plays[1:], strict=False))
        assert ends[2] - plays[2] == 10_000  # the last one is not cut


def test_kuairand_rows_to_impressions_viewings_thumbs_and_catalog():
    def row(**kw: object) -> dict[str, str]:
        base = {
            "user_id": "7",
            "video_id": "5",
            "time_ms": "1649346288441",
            "is_click": "1",
            "long_view": "0",
            "play_time_ms": "30000",
            "duration_ms": "20000",
            "label": "1",
        }
        return {**base, **{k: str(v) for k, v in kw.items()}}

    rep = ImportReport()
    rows = [
        row(),  # watched past the runtime: complete
        row(video_id="6", time_ms="1649346388441", play_time_ms="5000", label="0"),
        row(video_id="6", time_ms="1649346488441", duration_ms="0", play_time_ms="2000"),
        row(video_id="8", time_ms="1649346588441", duration_ms="0", long_view="1"),
        row(video_id="9", time_ms="1649346688441", is_click="0"),  # shown, not opened
        row(video_id="x"),
    ]
    evs, cat = importers.kuairand_import(rows, rep)
    assert rep.bad == {"bad_video_id": 1} and rep.impressions == 5 and rep.viewings == 4
    ends = [e for e in evs if e["event_type"] in ("stop", "complete")]
    assert [(e["title_id"], e["event_type"]) for e in ends] == [
        ("v5", "complete"),
        ("v6", "stop"),
        ("v6", "stop"),  # runtime from the video's other row
        ("v8", "complete"),  # no runtime known: long_view decides
    ]
    assert ends[2]["duration_s"] == 20.0 and "duration_s" not in ends[3]
    assert [e["value"] for e in evs if e["event_type"] == "thumbs"] == [1, -1, 1, 1, 1]
    assert not [e for e in evs if e["title_id"] == "v9" and e["event_type"] == "play"]
    assert {c["title_id"]: c.get("runtime_s") for c in cat} == {
        "v5": 20.0,
        "v6": 20.0,
        "v8": None,
        "v9": 20.0,
    }
    for ev in evs:
        validate_event(ev)


def test_import_cli_writes_events_catalog_and_report(tmp_path, capsys):
    src = tmp_path / "ml"
    src.mkdir()
    (src / "movies.csv").write_text("movieId,title,genres\n1,A (2001),Drama\n2,B,Comedy\n")
    (src / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,5,900000000\n1,2,2,900000010\n1,3,4,900000020\n"
    )
    ev, cat, rep = tmp_path / "ev.jsonl", tmp_path / "cat.jsonl", tmp_path / "rep.json"
    args = ["import", "movielens", str(src), "--out", str(ev), "--catalog-out", str(cat)]
    assert main([*args, "--json", str(rep)]) == 0
    assert len(ev.read_text().splitlines()) == 4 and len(cat.read_text().splitlines()) == 2
    doc = json.loads(rep.read_text())
    assert doc["bad_by_reason"] == {"unknown_title": 1} and doc["viewings"] == 2
    assert "bad rows: 1" in capsys.readouterr().err


@pytest.mark.skipif(
    not (DATASETS / "movielens-latest-small").is_dir(),
    reason=f"shared datasets not found at {DATASETS} (see ../shared/datasets/README.md)",
)
def test_real_movielens_imports_every_row(tmp_path):
    ev, cat = tmp_path / "ev.jsonl", tmp_path / "cat.jsonl"
    src = DATASETS / "movielens-latest-small"
    args = ["import", "movielens", str(src), "--out", str(ev), "--catalog-out", str(cat)]
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["rows"] == 100_004 and doc["bad_rows"] == 0 and doc["events"] == 200_008


@pytest.mark.skipif(
    not (DATASETS / "kuairand-27k-feedback-subset").is_dir(),
    reason=f"shared datasets not found at {DATASETS} (see ../shared/datasets/README.md)",
)
def test_real_kuairand_imports_every_row(tmp_path):
    ev, cat = tmp_path / "ev.jsonl", tmp_path / "cat.jsonl"
    src = DATASETS / "kuairand-27k-feedback-subset" / "interactions.tsv"
    args = ["import", "kuairand", str(src), "--out", str(ev), "--catalog-out", str(cat)]
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["rows"] == 41_828 and doc["bad_rows"] == 0 and doc["impressions"] == 41_828


def test_an_imported_log_without_impressions_replays_with_the_click_head_abstaining():
    from features.catalog import Catalog
    from online_models.evaluation import replay

    rep = ImportReport()
    movies = [{"movieId": str(i), "title": f"M{i} (1999)", "genres": "Drama"} for i in range(30)]
    cat = Catalog()
    for rec in importers.movielens_catalog(movies, [], rep):
        cat.upsert(parse_title(rec))
    rows = [
        _ml(str(u), str((u * 7 + j) % 30), "5" if j % 3 else "2", str(900_000_000 + 100 * j))
        for u in range(20)
        for j in range(12)
    ]
    events = importers.movielens_events(rows, set(cat.titles), rep, overlap=True)
    out = replay(events, cat, k=5, min_history=2)
    click, watch = out["ranker"]["click"], out["ranker"]["watch"]
    assert click["examples"] > 0 and click["positives"] == click["examples"]
    assert click["abstains"] and click["auc"] is None and click["log_loss"] is None
    assert not watch["abstains"] and watch["auc"] is not None
    assert out["ranker"]["all"]["examples"] == watch["examples"]  # abstaining head not pooled
    assert out["model"]["all"]["positives"] > 0
