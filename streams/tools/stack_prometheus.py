"""``reelstream stack up --prometheus``: Debian's Prometheus scraping the local workers.

Prometheus (``/usr/bin/prometheus``, package ``prometheus``; deploy/install-test-tools.sh
installs it) listens on 127.0.0.1:9090, loads the alert rules of deploy/prometheus
(``alerts.yml``, the file Kubernetes and compose use) and scrapes the workers listed
in ``.stack/prometheus/targets.json`` (file-based discovery, re-read every few
seconds: add ``127.0.0.1:<port>`` of each local worker; the worker on
``REELSTREAM_WEB_PORT`` is there from the start). Its data lives in
``.stack/prometheus/data``.

:func:`scaled_rules` rewrites the rules' windows and ``for`` durations from minutes
to seconds (hours to minutes), so a test can watch a real rule fire and resolve in
seconds; the expressions are unchanged.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

from streams.settings import Settings, stack_dir
from streams.tools.stack import PROJECT_ROOT, StackError, _log, _pid_alive, _stop, _wait

PORT = 9090
RULES = PROJECT_ROOT / "deploy" / "prometheus" / "alerts.yml"
JOB = "reelstream-workers"  # the job the rules' `up{job=...}` expects

_WINDOW = re.compile(r"\[(\d+)([mh])\]")
_FOR = re.compile(r"(\bfor:\s*)(\d+)([mh])\b")


def scaled_rules(text: str) -> str:
    """Every range window and ``for`` sixty times shorter: minutes become seconds.

    >>> scaled_rules("rate(x[5m]) > 0 and deriv(y[6h])\\n        for: 10m")
    'rate(x[5s]) > 0 and deriv(y[6m])\\n        for: 10s'
    """
    unit = {"m": "s", "h": "m"}
    text = _WINDOW.sub(lambda mt: f"[{mt.group(1)}{unit[mt.group(2)]}]", text)
    return _FOR.sub(lambda mt: f"{mt.group(1)}{mt.group(2)}{unit[mt.group(3)]}", text)


def _duration(seconds: float) -> str:
    """Prometheus spells durations without decimals: 5.0 -> '5000ms'."""
    return f"{round(seconds * 1000)}ms"


def config(rules: Path, targets_file: Path, scrape_s: float, eval_s: float) -> str:
    """prometheus.yml (JSON is YAML): one job over the file-discovered local workers."""
    doc = {
        "global": {
            "scrape_interval": _duration(scrape_s),
            "evaluation_interval": _duration(eval_s),
        },
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "metrics_path": "/metrics",
                "scrape_timeout": _duration(min(scrape_s, 5)),
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "2s"}],
            }
        ],
    }
    return json.dumps(doc, indent=2)


def write_targets(targets_file: Path, targets: list[str]) -> None:
    tmp = targets_file.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": targets, "labels": {}}]))
    tmp.replace(targets_file)  # atomic: Prometheus never reads half a file


def api(port: int, path: str, timeout: float = 3.0) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
        return json.loads(resp.read())


def start(
    workdir: Path,
    port: int,
    targets: list[str],
    *,
    rules_text: str | None = None,
    scrape_s: float = 5.0,
    eval_s: float = 5.0,
) -> subprocess.Popen:
    """Start Prometheus in ``workdir`` on 127.0.0.1:``port``; wait until it is ready."""
    exe = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(exe).exists():
        raise StackError("prometheus not found: deploy/install-test-tools.sh installs it")
    workdir.mkdir(parents=True, exist_ok=True)
    rules = workdir / "alerts.yml"
    rules.write_text(rules_text if rules_text is not None else RULES.read_text())
    targets_file = workdir / "targets.json"
    if not targets_file.exists():
        write_targets(targets_file, targets)
    conf = workdir / "prometheus.yml"
    conf.write_text(config(rules, targets_file, scrape_s, eval_s))
    out = open(workdir / "prometheus.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={conf}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=2d",
            "--log.level=warn",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()

    def ready() -> bool:
        if proc.poll() is not None:
            raise StackError(f"prometheus exited with {proc.returncode}; see {workdir}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    _wait(ready, f"Prometheus on 127.0.0.1:{port}", 60, workdir / "prometheus.log")
    return proc


def _dir() -> Path:
    return stack_dir() / "prometheus"


def up(settings: Settings, port: int = PORT) -> str:
    pdir = _dir()
    pid_file = pdir / "prometheus.pid"
    if _pid_alive(pid_file):
        msg = f"Prometheus already running (pid {pid_file.read_text().strip()})"
    else:
        _log(f"starting Prometheus on 127.0.0.1:{port}")
        proc = start(pdir, port, [f"127.0.0.1:{settings.web_port}"])
        pid_file.write_text(str(proc.pid))
        msg = f"Prometheus started (pid {proc.pid}) on http://127.0.0.1:{port}"
    _log(msg)
    _log(f"scrape targets: {pdir / 'targets.json'} (add 127.0.0.1:<port> per worker)")
    return msg


def down() -> None:
    _log(_stop(_dir() / "prometheus.pid", "Prometheus"))
