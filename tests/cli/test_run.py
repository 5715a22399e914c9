import json
import math

import numpy as np
import pytest

from pgflow.analysis.stability import sharpness
from pgflow.cli import main
from pgflow.flows import MatrixFactorization, Trajectory, init


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
    assert "gradient flow (DOP853" in printed and "wrote:" in printed  # "auto" picks DOP853 here, and says so


def test_the_command_and_the_library_default_to_the_same_method():
    import inspect

    from pgflow.cli.run import DEFAULTS
    from pgflow.flows import integrate

    assert DEFAULTS["method"] == inspect.signature(integrate).parameters["method"].default == "auto"


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


SMALL = ["--m", "8", "--n", "6", "--rank", "2", "--width", "2", "--t-end", "4"]


@pytest.mark.parametrize("args, code, message", [
    (["--t-end", "-1"], 2, "--t-end must be positive and finite, got -1.0"),
    (["--t-end", "0"], 2, "--t-end must be positive and finite, got 0.0"),
    (["--t-end", "nan"], 2, "--t-end must be positive and finite, got nan"),
    (["--step-size", "0"], 2, "--step-size must be positive and finite, got 0.0"),
    (["--step-size", "-0.1"], 2, "--step-size must be positive and finite, got -0.1"),
    (["--step-size", "10"], 2, "--step-size must divide t_end = 4 into whole steps, got 10 (0.4 steps)"),
    (["--step-size", "0.07"], 2, "--step-size must divide t_end = 4 into whole steps, got 0.07 (57.1429 steps)"),
    (["--t-end", "1e9"], 2, "--t-end 1e+09 with η = 0.02 takes 5e+10 GD steps, more than --max-steps 1000000"),
    (["--max-steps", "10"], 2, "--t-end 4 with η = 0.02 takes 200 GD steps, more than --max-steps 10"),
    (["--m", "0"], 2, "--m must be an integer >= 1, got 0"),
    (["--rank", "9"], 2, "rank must be <= min(m, n) = 6, got 9"),
    (["--scale", "-1"], 2, "--scale must be positive and finite, got -1.0"),
    (["--rtol", "0"], 2, "--rtol must be positive and finite, got 0.0"),
    (["--method", "Euler"], 2, "--method must be one of ['auto', 'RK23'"),
    (["--seed", "3"], 2, "--seed is now --problem-seed (the target) and --init-seed (the initial state)"),
    (["--out", "{file}"], 2, "--out {file}: is a file, not a folder"),
    (["--out", "{file}/below"], 2, "--out {file}/below: cannot create the folder: {file} is a file"),
])
def test_bad_values_print_one_line_naming_the_option(tmp_path, capsys, args, code, message):
    (tmp_path / "a_file").write_text("")
    args = [a.format(file=tmp_path / "a_file") for a in args]
    assert main(["run", *SMALL, "--out", str(tmp_path / "out"), *args]) == code
    out, err = capsys.readouterr()
    assert out == "" and err == f"pgflow run: error: {err.split('error: ', 1)[1]}"
    assert err.count("\n") == 1 and "Traceback" not in err
    assert message.format(file=tmp_path / "a_file") in err
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_debug_shows_the_traceback(tmp_path):
    for argv in (["--debug", "run", "--t-end", "-1"], ["run", "--t-end", "-1", "--debug"]):
        with pytest.raises(ValueError, match="--t-end must be positive"):
            main(argv + ["--out", str(tmp_path)])


def test_the_default_step_is_chosen_from_the_problem_and_reported(tmp_path, capsys):
    # σ = (10, 1): η = 1/(5σ₁) = 0.02 divides t_end = 4 into 200 steps
    assert main(["run", *SMALL, "--condition", "10", "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "η = 0.02 (the largest η <= 1/(5σ₁) = 1/(5·10) that divides t_end = 4)" in printed
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["parameters"]["step_size"] == summary["gradient_descent"]["step_size"] == 4 / 200
    assert summary["gradient_descent"]["n_steps"] == 200
    # a large start is sharper than 5σ₁: η = t_end / ⌈t_end·λ_max(∇²f(x₀))⌉
    assert main(["run", *SMALL, "--scale", "2", "--out", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    problem = MatrixFactorization.random(m=8, n=6, rank=2, width=2, condition=10.0, seed=0)
    start = sharpness(problem, init.gaussian(problem, 2.0, seed=1))
    assert start > 5 * problem.target.sigma[0]
    eta = json.loads((tmp_path / "b" / "summary.json").read_text())["gradient_descent"]["step_size"]
    assert eta == 4 / math.ceil(4 * start) and f"1/λ_max(∇²f(x₀)) = 1/{start:.4g}" in printed


def test_a_diverging_gd_keeps_the_gradient_flow_and_exits_1(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "gradient_descent.npz").write_bytes(b"an earlier run's")
    assert main(["run", *SMALL, "--step-size", "0.5", "--out", str(out)]) == 1
    printed, err = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["gradient_descent_partial.npz", "gradient_flow.npz",
                                                     "summary.json", "summary.png"]
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("pgflow run: error: gradient descent diverged at step ")
    assert f"η = 0.5 (try a smaller --step-size); the gradient flow's results and the summary are in {out}" in err
    summary = json.loads((out / "summary.json").read_text())
    descent = summary["gradient_descent"]
    assert descent["status"] == "diverged" and descent["step_size"] == 0.5 and descent["diverged_at_step"] >= 1
    assert descent["error"].startswith("gradient descent diverged") and summary["max_distance_UVt"] is None
    flow = Trajectory.load(out / "gradient_flow.npz")
    assert flow.t[-1] == 4.0 and summary["gradient_flow"]["final_loss"] == flow.monitors["loss"][-1]
    assert flow.monitors["loss"][-1] < 0.51 < 50 < flow.monitors["loss"][0]  # σ₁ = 10 learned, σ₂ = 1 about to be
    partial = Trajectory.load(out / "gradient_descent_partial.npz")
    assert partial.t[-1] < descent["diverged_at_step"] * 0.5 + 1e-12
    assert "wrote:" in printed
