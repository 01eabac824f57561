"""The Open Bandit Dataset sample, fetched once into ``.cache/obd/`` (git-ignored), and its loader.

The 10,000-row samples of the Open Bandit Dataset (Saito, Aihara, Matsutani,
Narita 2021, "Open Bandit Dataset and Pipeline: Towards Realistic and
Reproducible Off-Policy Evaluation", NeurIPS Datasets and Benchmarks; ZOZO's data,
CC BY 4.0 by its publishers, though the sdist carries no licence text for it) ship
inside the sdist of ``obp`` (Apache-2.0, its LICENSE is extracted too), together
with the Beta priors of the production Bernoulli TS policy. obp itself
cannot be installed here (it requires Python < 3.11 and torch), so this module
downloads the pinned sdist with pip, checks its SHA-256 and extracts only the
logs, the priors and obp's LICENSE. Nothing is committed to the repository.

``python -m streams.tools.obd_sample`` (``make test-data``) fetches it; it is
silent when the files are already there.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OBP_VERSION = "0.5.7"
SDIST = f"obp-{OBP_VERSION}.tar.gz"
SDIST_SHA256 = "3060d67fedfcfadf1e7a6f2608987f74412b5eb74d2c567edeb147595c68f2a0"
POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
PRIOR = "obp/policy/conf/prior_bts.yaml"
SLOTS = 3  # positions 1, 2, 3 (left, centre, right) of the ZOZOTOWN widget
STAMP = ".complete"


class ObdError(RuntimeError):
    """The sample could not be fetched, or the cache holds something else."""


def default_dir() -> Path:
    """``.cache/obd/`` under the project (git-ignored)."""
    return PROJECT_ROOT / ".cache" / "obd"


def members() -> list[str]:
    """The sdist's files this project uses (paths below ``obp-<version>/``)."""
    logs = [f"obp/dataset/obd/{p}/{c}/{c}.csv" for p in POLICIES for c in CAMPAIGNS]
    return [*logs, PRIOR, "LICENSE"]


def root(dest: Path | None = None) -> Path:
    """Where the extracted files live."""
    return (dest or default_dir()) / f"obp-{OBP_VERSION}"


def present(dest: Path | None = None) -> bool:
    """True when a complete, verified extraction is in the cache."""
    top = root(dest)
    return (top / STAMP).is_file() and all((top / m).is_file() for m in members())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(into: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"obp=={OBP_VERSION}",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--ignore-requires-python",  # obp declares Python < 3.11; only its files are used
        "--retries",
        "1",
        "--timeout",
        "20",
        "--quiet",
        "--dest",
        str(into),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    path = into / SDIST
    if result.returncode != 0 or not path.is_file():
        tail = "\n  ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise ObdError(
            f"could not download obp=={OBP_VERSION} from PyPI with pip (is PyPI reachable? "
            f"PIP_INDEX_URL selects a mirror; or pass --sdist FILE):\n  {tail}"
        )
    return path


def fetch(dest: Path | None = None, sdist: Path | None = None, quiet: bool = False) -> Path:
    """Download (or take ``sdist``), verify and extract the sample; a no-op when present."""
    dest = dest or default_dir()
    if present(dest):
        return root(dest)
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))
    dest.mkdir(parents=True, exist_ok=True)
    cached = dest / SDIST
    if sdist is not None and sdist.resolve() != cached.resolve():
        shutil.copyfile(sdist, cached)
    elif not (cached.is_file() and _sha256(cached) == SDIST_SHA256):
        say(f"fetching the Open Bandit Dataset sample (obp {OBP_VERSION} sdist) into {dest}")
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            shutil.move(_download(Path(tmp)), cached)
    digest = _sha256(cached)
    if digest != SDIST_SHA256:
        cached.unlink()
        raise ObdError(f"{SDIST}: SHA-256 {digest} differs from the pinned {SDIST_SHA256}")
    top = root(dest)
    with tarfile.open(cached, "r:gz") as tar:
        for name in members():
            src = tar.extractfile(f"obp-{OBP_VERSION}/{name}")
            if src is None:
                raise ObdError(f"{SDIST} has no file {name}")
            out = top / name
            out.parent.mkdir(parents=True, exist_ok=True)
            with src, out.open("wb") as fh:
                shutil.copyfileobj(src, fh)
    (top / STAMP).write_text(SDIST_SHA256 + "\n")
    say(f"Open Bandit Dataset sample ready in {top}")
    return top


# --- loading --------------------------------------------------------------------------------


def load_prior(campaign: str, dest: Path | None = None) -> tuple[list[float], list[float]]:
    """The production Bernoulli TS policy's Beta(alpha, beta) per item (obp's prior_bts.yaml)."""
    import yaml  # the dev extra has it (as for experiments files)

    conf = yaml.safe_load((root(dest) / PRIOR).read_text())[campaign]
    return [float(a) for a in conf["alpha"]], [float(b) for b in conf["beta"]]


def load_log(policy: str, campaign: str, items: int, dest: Path | None = None) -> list[dict]:
    """One logged impression per record, in the shape artwork_eval reads.

    ``variants`` are the campaign's item ids as strings (one shared list), ``choice``
    the logged item, ``slot`` its position (0-2), ``propensity`` the logging policy's
    probability of that item at that position, ``reward`` the click, ``round`` the
    row's index. Rows are sorted by timestamp, as obp's loader does.
    """
    if policy not in POLICIES or campaign not in CAMPAIGNS:
        raise ValueError(f"policy in {POLICIES}, campaign in {CAMPAIGNS}")
    path = root(dest) / f"obp/dataset/obd/{policy}/{campaign}/{campaign}.csv"
    cols = ("timestamp", "item_id", "position", "propensity_score", "click")
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        at = [header.index(c) for c in cols]
        rows = sorted(([row[j] for j in at] for row in reader), key=lambda row: row[0])
    variants = [str(i) for i in range(items)]
    out: list[dict[str, Any]] = []
    for i, (_, item_id, position, propensity, click) in enumerate(rows):
        item, slot = int(item_id), int(position) - 1
        if not (0 <= item < items and 0 <= slot < SLOTS):
            raise ObdError(f"{path}: row {i} has item {item}, position {slot + 1}")
        out.append(
            {
                "variants": variants,
                "choice": variants[item],
                "slot": slot,
                "propensity": float(propensity),
                "reward": float(click),
                "round": i,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None, help="cache directory (default .cache/obd)")
    ap.add_argument("--sdist", type=Path, help=f"use this local {SDIST} instead of PyPI")
    args = ap.parse_args(argv)
    try:
        fetch(args.dir, args.sdist)
    except ObdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
