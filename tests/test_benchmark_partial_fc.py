"""The Partial FC benchmark script runs end to end in its quick mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "partial_fc.py"


def test_quick_benchmark_writes_all_sections(tmp_path: Path) -> None:
    output = tmp_path / "pfc.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(output.read_text())

    assert results["quick"] is True
    assert [row["ratio"] for row in results["step"]] == [0.1, 1.0]
    for row in results["step"]:
        assert row["wall_s"] > 0
        assert row["num_sample"] == round(row["ratio"] * row["num_classes"])
    theoretical = {
        r["dtype"]: r["theoretical_bytes_per_class"] for r in results["memory"]
    }
    assert theoretical == {"float32": 512, "float16": 256, "bfloat16": 256}
    capacity = results["capacity"]
    assert len(capacity["measured"]) == 2
    assert all(row["finite_loss"] for row in capacity["measured"])
    assert "extrapolated_max_classes" in capacity
    assert "| classes |" in result.stdout
