from collections import defaultdict

from streams.contract import validate_event
from streams.tools.synthetic import SimConfig, Simulation


def test_same_seed_same_traffic_other_seed_other_traffic():
    a = list(Simulation(SimConfig(users=50, titles=80, seed=5)).events(limit=2000))
    b = list(Simulation(SimConfig(users=50, titles=80, seed=5)).events(limit=2000))
    c = list(Simulation(SimConfig(users=50, titles=80, seed=6)).events(limit=2000))
    assert a == b
    assert a != c


def test_events_are_valid_ordered_and_unique():
    events = list(Simulation(SimConfig(users=80, titles=100, seed=1)).events(limit=5000))
    for ev in events:
        validate_event(ev)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    types = {e["event_type"] for e in events}
    assert {
        "play",
        "progress",
        "pause",
        "seek",
        "intro_skip",
        "complete",
        "stop",
        "impression",
        "click",
        "thumbs",
    } <= types


def test_abandonment_depends_on_planted_taste():
    sim = Simulation(SimConfig(users=200, titles=150, seed=2))
    outcome = defaultdict(list)
    for ev in sim.events(limit=40_000):
        if ev["event_type"] in ("complete", "stop"):
            user = sim.users[int(ev["user_id"][1:])]
            matched = sim.affinity(user, ev["title_id"]) >= 1.0
            outcome[matched].append(ev["event_type"] == "complete")
    rate = {k: sum(v) / len(v) for k, v in outcome.items()}
    assert rate[True] > rate[False] + 0.3


def test_evening_is_busier_than_early_morning_in_local_time():
    sim = Simulation(SimConfig(users=300, titles=80, seed=4))
    tz = {u.user_id: u.tz_hours for u in sim.users}
    hours = defaultdict(int)
    for ev in sim.events(limit=30_000):
        if ev["event_type"] == "impression":
            hours[(ev["ts"] // 3_600_000 + tz[ev["user_id"]]) % 24] += 1
    assert sum(hours[h] for h in (19, 20, 21)) > 4 * sum(hours[h] for h in (3, 4, 5))


def test_ground_truth_names_each_users_favourites():
    sim = Simulation(SimConfig(users=10, titles=30, seed=9))
    truth = sim.ground_truth()
    assert len(truth["users"]) == 10
    assert all(len(u["favorite_tags"]) == 4 for u in truth["users"].values())


def test_a_run_tag_changes_only_the_event_ids():
    from itertools import islice

    base = list(islice(Simulation(SimConfig(users=20, titles=30, seed=3)).events(), 50))
    again = list(islice(Simulation(SimConfig(users=20, titles=30, seed=3, run="b")).events(), 50))
    assert base[0]["event_id"].startswith("e3-0")  # the default keeps the ids replays hold
    assert all(
        a["event_id"] == f"e3.b-{b['event_id'][3:]}" for a, b in zip(again, base, strict=True)
    )
    assert all(validate_event(e)["event_id"] == e["event_id"] for e in again)
    strip = [{k: v for k, v in e.items() if k != "event_id"} for e in base]
    assert [{k: v for k, v in e.items() if k != "event_id"} for e in again] == strip
