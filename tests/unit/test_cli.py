"""``reelstream worker`` and ``reelstream api`` read their flags one way: into the
environment, over ``REELSTREAM_*`` (the worker's app module reads it at import)."""

from __future__ import annotations

import os
from unittest import mock

import pytest

from streams import cli
from streams.api import serving
from streams.settings import Settings


def test_given_flags_win_over_the_environment_and_unset_ones_leave_it():
    env = {"REELSTREAM_API_PORT": "7000", "REELSTREAM_API_HOST": "10.0.0.1"}
    with mock.patch.dict(os.environ, env):
        cli._flags_to_env(api_port=7001, api_host="")
        settings = Settings.from_env()
    assert (settings.api_port, settings.api_host) == (7001, "10.0.0.1")


def test_an_unknown_setting_is_refused_rather_than_set_unread():
    with mock.patch.dict(os.environ), pytest.raises(ValueError, match="no setting"):
        cli._flags_to_env(api_prot=7001)


def test_the_api_command_serves_with_its_flags(monkeypatch):
    served: list[Settings] = []
    monkeypatch.setattr(serving, "run", lambda settings: served.append(settings) or 0)
    args = cli.build_parser().parse_args(["api", "--port", "7002", "--host", "0.0.0.0"])
    with mock.patch.dict(os.environ):
        assert args.func(args) == 0
    assert [(s.api_port, s.api_host) for s in served] == [(7002, "0.0.0.0")]


def test_every_command_runs_blas_on_one_thread_unless_told(monkeypatch) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    cli.one_blas_thread()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert os.environ["OMP_NUM_THREADS"] == "4"  # an operator's choice is kept


def test_the_command_loads_numpy_only_after_main_set_the_threads() -> None:
    """OpenBLAS reads its thread count once, when numpy is first imported."""
    import subprocess
    import sys

    code = "import sys, streams.cli; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_soak_takes_a_history_per_viewer() -> None:
    args = cli.build_parser().parse_args(["soak", "--history", "250", "--viewers", "4000"])
    assert (args.history, args.viewers) == (250, 4000)
    assert cli.build_parser().parse_args(["soak"]).history == 0
