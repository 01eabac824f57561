"""Locked down by default (streams/api/web_lockdown.py, streams/settings.py): what a worker
serves without configuration. The live proof is tests/integration/test_lockdown.py."""

from __future__ import annotations

import faust
import pytest

from streams.api.web_lockdown import FAUST_PAGES_OFF, debug_page, token_presented
from streams.settings import Settings


def test_defaults_bind_loopback_serve_no_debug_and_keep_one_replica():
    s = Settings()
    assert s.web_host == "127.0.0.1" and s.debug_token == ""
    assert (s.replication_factor, s.topic_configs()) == (1, {"min.insync.replicas": "1"})
    assert "hunter2" not in repr(Settings(debug_token="hunter2"))


def test_min_insync_replicas_cannot_exceed_the_replication_factor():
    with pytest.raises(ValueError, match="MIN_INSYNC"):
        Settings(replication_factor=1, min_insync_replicas=2)
    assert Settings(replication_factor=3, min_insync_replicas=2).topic_configs() == {
        "min.insync.replicas": "2"
    }


def test_every_faust_page_setting_exists_and_turns_its_page_off():
    """Fails when faust-streaming renames or drops one of these settings."""
    app = faust.App("lockdown-check", **FAUST_PAGES_OFF)
    for name in FAUST_PAGES_OFF:
        assert getattr(app.conf, name) is False
    assert faust.App("lockdown-default").conf.web_tables_enabled is True  # why we set them


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer t0ken", True),
        ("bearer t0ken", True),
        ("Bearer t0ken ", True),
        ("Bearer t0ke", False),
        ("Bearer t0kenx", False),
        ("Basic t0ken", False),
        ("t0ken", False),
        ("", False),
        (None, False),
    ],
)
def test_only_the_configured_bearer_token_opens_debug_pages(header, ok):
    assert token_presented("t0ken", header) is ok
    assert token_presented("", header) is False


class _Pages:
    """Records what ``debug_page`` registers, standing in for a Faust app."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def page(self, path: str):  # type: ignore[no-untyped-def]
        self.paths.append(path)
        return lambda view: view


async def _view(web, request):  # type: ignore[no-untyped-def]
    return "body"


def test_without_a_token_a_debug_page_is_not_registered_at_all():
    app = _Pages()
    debug_page(app, "", "/debug/x")(_view)
    assert app.paths == []
    debug_page(app, "tok", "/debug/x")(_view)
    assert app.paths == ["/debug/x"]


async def test_topics_are_created_with_the_configured_replication(monkeypatch):
    from streams.adapters import kafka_admin

    created: list = []

    class FakeAdmin:  # records what the real admin client would be asked to create
        def __init__(self, **kwargs: object) -> None:
            pass

        async def start(self) -> None:
            pass

        async def close(self) -> None:
            pass

        async def list_topics(self) -> list[str]:
            return []

        async def create_topics(self, topics: list) -> None:
            created.extend(topics)

    monkeypatch.setattr(kafka_admin, "AIOKafkaAdminClient", FakeAdmin)
    settings = Settings(replication_factor=3, min_insync_replicas=2)
    await kafka_admin.ensure_topics_async(settings)
    assert {t.name for t in created} == set(kafka_admin.topic_specs(settings))
    for t in created:
        assert t.replication_factor == 3 and t.topic_configs["min.insync.replicas"] == "2"
    by_name = {t.name: t for t in created}
    assert by_name[settings.scores_topic].topic_configs["cleanup.policy"] == "compact"
