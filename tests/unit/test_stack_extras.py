"""The secure stack's and the local Prometheus's generated files (no process started)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from streams.cli import build_parser
from streams.tools import stack_prometheus, stack_secure


def test_scaled_rules_keep_every_rule_and_shorten_every_window(tmp_path):
    original = stack_prometheus.RULES.read_text()
    scaled = stack_prometheus.scaled_rules(original)
    assert "[5m]" in original and "[5s]" in scaled
    assert not stack_prometheus._WINDOW.search(scaled.replace("[6m]", ""))  # 6h -> 6m only
    assert scaled.count("alert:") == original.count("alert:")
    assert "for: 10s" in scaled and "for: 10m" not in scaled
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (deploy/install-test-tools.sh)")
    path = tmp_path / "alerts.yml"
    path.write_text(scaled)
    res = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_prometheus_config_scrapes_the_job_the_rules_name(tmp_path):
    conf = json.loads(
        stack_prometheus.config(tmp_path / "a.yml", tmp_path / "t.json", scrape_s=1, eval_s=2.5)
    )
    assert conf["global"] == {"scrape_interval": "1000ms", "evaluation_interval": "2500ms"}
    (job,) = conf["scrape_configs"]
    assert job["job_name"] == stack_prometheus.JOB
    assert f'job="{stack_prometheus.JOB}"' in stack_prometheus.RULES.read_text()
    stack_prometheus.write_targets(tmp_path / "t.json", ["127.0.0.1:6066"])
    assert json.loads((tmp_path / "t.json").read_text())[0]["targets"] == ["127.0.0.1:6066"]


def test_credentials_are_generated_once_private_and_reused(tmp_path):
    path = tmp_path / "secure" / "credentials.json"
    first = stack_secure.Credentials.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert stack_secure.Credentials.load_or_create(path) == first
    assert len({first.kafka_password, first.broker_password, first.redis_password}) == 3
    assert first.kafka_password not in repr(stack_secure.client_settings(first, 9094, 6380))


def test_secure_kafka_listens_only_with_sasl_on_loopback(tmp_path):
    creds = stack_secure.Credentials.generate()
    props = stack_secure.kafka_properties(9094, 9095, tmp_path, creds)
    lines = dict(line.split("=", 1) for line in props.splitlines() if line)
    assert lines["listeners"] == "SASL_PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095"
    assert lines["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert "PLAINTEXT://" not in lines["advertised.listeners"].replace("SASL_PLAINTEXT", "")
    conf = stack_secure.redis_conf(6380, tmp_path, creds)
    assert "user default off" in conf and "bind 127.0.0.1" in conf
    env = stack_secure.client_env(creds, 9094, 6380)
    assert env["REELSTREAM_REDIS_URL"].startswith(f"redis://reelstream:{creds.redis_password}@")


def test_stack_up_takes_secure_and_prometheus():
    args = build_parser().parse_args(["stack", "up", "--secure", "--prometheus"])
    assert (args.action, args.secure, args.prometheus) == ("up", True, True)
