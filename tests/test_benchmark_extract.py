"""benchmarks/extract.py runs end to end on a tiny file and prints its JSON."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import PROJECT_ROOT


def test_extract_benchmark_tiny() -> None:
    completed = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "benchmarks" / "extract.py"),
         "--records", "40", "--distinct", "5", "--classes", "4", "--runs", "1"],
        capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["records"] == 40
    assert [row["mode"] for row in result["results"]] == ["default", "--reencode"]
    for row in result["results"]:
        assert row["median_records_per_second"] > 0
