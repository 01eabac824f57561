"""The score sink holds unwritten scores and retries; the recovery rebuilds an emptied Redis."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError

from streams.adapters.redis_recovery import RedisRecovery
from streams.adapters.redis_sink import Backoff, ScoreSink
from streams.settings import Settings


class FakeRedis:
    """The few commands the sink and the recovery use; ``down`` makes every call fail."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise RedisConnectionError("Connection refused")

    def pipeline(self, transaction: bool = False) -> FakePipe:
        return FakePipe(self)

    async def exists(self, key: str) -> int:
        self._check()
        return int(key in self.data)

    async def set(self, key: str, value, nx: bool = False, ex: int | None = None):
        self._check()
        if nx and key in self.data:
            return None
        self.data[key] = value if isinstance(value, bytes) else str(value).encode()
        return True

    async def get(self, key: str):
        self._check()
        return self.data.get(key)

    async def delete(self, key: str) -> int:
        self._check()
        return int(self.data.pop(key, None) is not None)


class FakePipe:
    def __init__(self, r: FakeRedis) -> None:
        self.r = r
        self.ops: list[tuple[str, bytes]] = []

    def set(self, key: str, value: bytes, ex: int | None = None) -> None:
        self.ops.append((key, value))

    async def execute(self) -> list:
        self.r._check()
        for k, v in self.ops:
            self.r.data[k] = v
        return [True] * len(self.ops)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def sink_for(r: FakeRedis, clock: Clock, max_pending: int = 100) -> ScoreSink:
    return ScoreSink(r, "p", 60, max_pending, Backoff(0.5, 4.0), clock)  # type: ignore[arg-type]


async def test_failed_writes_are_held_latest_per_user_and_written_when_redis_answers():
    r, clock = FakeRedis(), Clock()
    sink = sink_for(r, clock)
    r.down = True
    assert not await sink.write([("u1", b"a"), ("u2", b"b")])
    calls = r.calls
    assert not await sink.write([("u1", b"a2")])  # down: held, left to the timer's retries
    assert r.calls == calls
    assert list(sink.pending.items()) == [("u2", b"b"), ("u1", b"a2")]
    assert not sink.caught_up
    r.down = False
    assert not await sink.flush()  # still inside the 0.5 s backoff
    clock.t += 0.5
    assert await sink.flush()
    assert r.data == {"p:recs:{u1}": b"a2", "p:recs:{u2}": b"b"}
    assert sink.caught_up and sink.backoff.delay == 0


async def test_retries_back_off_exponentially_up_to_the_cap():
    r, clock = FakeRedis(), Clock()
    sink = sink_for(r, clock)
    r.down = True
    waits = []
    await sink.write([("u1", b"a")])
    for _ in range(5):
        waits.append(round(sink.next_try - clock.t, 2))
        before = r.calls
        await sink.flush()
        assert r.calls == before  # not yet
        clock.t = sink.next_try
        await sink.flush()
        assert r.calls == before + 1
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0]


async def test_held_scores_are_bounded_oldest_users_dropped():
    r, clock = FakeRedis(), Clock()
    sink = sink_for(r, clock, max_pending=3)
    r.down = True
    await sink.write([(f"u{i}", b"x") for i in range(5)])
    await sink.write([("u2", b"y")])  # u2 becomes the newest
    assert list(sink.pending) == ["u3", "u4", "u2"]
    assert sink.dropped == 2


def recovery_for(r: FakeRedis, clock: Clock, rebuild) -> RedisRecovery:
    settings = Settings(key_prefix="p", worker_id="w1")
    return RedisRecovery(settings, sink_for(r, clock), rebuild=rebuild, clock=clock)


async def test_an_emptied_redis_is_rebuilt_once_then_marked_with_the_epoch():
    r, clock = FakeRedis(), Clock()
    rebuilt: list[str] = []

    async def rebuild(settings: Settings) -> str:
        rebuilt.append(settings.key_prefix)
        r.data["p:recs:{old}"] = b"from-topic"
        return "report"

    rec = recovery_for(r, clock, rebuild)
    await rec.tick()
    assert rec.rebuilding and r.data["p:rebuild-lock"] == b"w1"
    await rec.task
    assert rebuilt == ["p"] and "p:epoch" in r.data and "p:rebuild-lock" not in r.data
    assert rec.status() == {
        "writes_ok": True,
        "pending_scores": 0,
        "complete": True,
        "rebuilding": False,
    }
    await rec.tick()
    assert rebuilt == ["p"]  # epoch there: nothing to do
    r.data.clear()  # a restart without persistence
    await rec.tick()
    assert not rec.status()["complete"]
    await rec.task
    assert rebuilt == ["p", "p"] and r.data["p:recs:{old}"] == b"from-topic"


async def test_only_the_worker_holding_the_lock_rebuilds():
    r, clock = FakeRedis(), Clock()
    r.data["p:rebuild-lock"] = b"another-worker"

    async def rebuild(settings: Settings) -> None:
        raise AssertionError("must not rebuild")

    rec = recovery_for(r, clock, rebuild)
    await rec.tick()
    assert rec.task is None and not rec.status()["complete"]


async def test_a_failed_rebuild_releases_the_lock_and_is_retried_after_a_backoff():
    r, clock = FakeRedis(), Clock()
    attempts = []

    async def rebuild(settings: Settings) -> None:
        attempts.append(clock.t)
        if len(attempts) == 1:
            raise OSError("broker down")

    rec = recovery_for(r, clock, rebuild)
    await rec.tick()
    await rec.task
    assert "p:rebuild-lock" not in r.data and "p:epoch" not in r.data
    await rec.tick()
    assert len(attempts) == 1  # backing off
    clock.t += 0.5
    await rec.tick()
    await rec.task
    assert len(attempts) == 2 and "p:epoch" in r.data


async def test_unreachable_redis_shows_in_status_and_checks_back_off():
    r, clock = FakeRedis(), Clock()

    async def rebuild(settings: Settings) -> None:
        return None

    rec = recovery_for(r, clock, rebuild)
    r.down = True
    await rec.tick()
    assert rec.status()["writes_ok"] is False
    calls = r.calls
    await rec.tick()
    assert r.calls == calls  # within the backoff
    r.down = False
    clock.t += 0.5
    await rec.tick()
    await rec.task
    assert rec.status()["writes_ok"] and rec.status()["complete"]


async def test_every_worker_resyncs_its_hashes_on_a_new_epoch_and_after_an_outage():
    """Feature and title hashes are not in the score topic: each worker rewrites its own."""
    r, clock = FakeRedis(), Clock()
    r.data["p:epoch"] = b"first"

    async def rebuild(settings: Settings) -> None:
        raise AssertionError("the other worker rebuilds")

    rec = recovery_for(r, clock, rebuild)
    why: list[str] = []
    rec.on_resync = why.append
    await rec.tick()
    await rec.tick()
    assert why == []  # started on a complete serving copy: nothing to rewrite
    r.data["p:epoch"] = b"second"  # another worker rebuilt an emptied Redis
    await rec.tick()
    assert why == ["a new serving-copy epoch"]
    r.down = True
    await rec.sink.write([("u1", b"s1")])
    clock.t += 60
    await rec.tick()
    r.down = False
    clock.t += 60
    await rec.tick()
    assert why[1:] == ["score writes work again"]
    assert r.data["p:recs:{u1}"] == b"s1"
