import json

import numpy as np
import pytest

from pgflow.cli import main
from pgflow.flows import Trajectory


def test_pgflow_run_writes_results_and_a_figure(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--m", "12", "--n", "10", "--rank", "2", "--width", "3", "--t-end", "4",
                 "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["gradient_descent.npz", "gradient_flow.npz", "summary.json", "summary.png"]
    flow = Trajectory.load(out / "gradient_flow.npz")
    gd = Trajectory.load(out / "gradient_descent.npz")
    np.testing.assert_allclose(flow.t, gd.t, rtol=1e-12)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"]["m"] == 12 and summary["gradient_flow"]["nfev"] > 0
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "gradient flow (DOP853" in printed and "wrote:" in printed


def test_pgflow_run_is_reproducible(tmp_path):
    args = ["run", "--m", "8", "--n", "6", "--rank", "2", "--width", "2", "--t-end", "2"]
    main(args + ["--out", str(tmp_path / "a")])
    main(args + ["--out", str(tmp_path / "b")])
    a = Trajectory.load(tmp_path / "a" / "gradient_descent.npz")
    b = Trajectory.load(tmp_path / "b" / "gradient_descent.npz")
    np.testing.assert_array_equal(a.x, b.x)
    assert (tmp_path / "a" / "summary.png").read_bytes() == (tmp_path / "b" / "summary.png").read_bytes()


def test_bad_arguments_exit_with_usage(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--m", "many"])
    assert "invalid int value" in capsys.readouterr().err


def test_invalid_values_are_reported_without_a_traceback(tmp_path, capsys):
    assert main(["run", "--rank", "50", "--out", str(tmp_path)]) == 2
    assert "pgflow run: error: rank must be <= min(m, n) = 30" in capsys.readouterr().err
