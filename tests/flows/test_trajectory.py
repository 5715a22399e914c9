import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from pgflow.flows import Dynamics, GradientFlow, MatrixFactorization, Trajectory, files, gradient_descent, init, integrate
from pgflow.flows.files import atomic_path


@pytest.fixture(scope="module")
def runs():
    p = MatrixFactorization.random(m=5, n=4, rank=2, width=2, seed=0)
    x0 = init.gaussian(p, 0.1, seed=1)
    return p, integrate(GradientFlow(p), x0, 3.0, provenance={"init_seed": 1}), gradient_descent(p, x0, 0.1, 30)


@pytest.mark.parametrize("which", [1, 2])
def test_save_load_round_trips_exactly(tmp_path, runs, which):
    p, run = runs[0], runs[which]
    path = run.save(tmp_path / "run")
    assert path.endswith("run.npz") and os.listdir(tmp_path) == ["run.npz"]
    back = Trajectory.load(path)
    np.testing.assert_array_equal(back.t, run.t)
    np.testing.assert_array_equal(back.x, run.x)
    np.testing.assert_array_equal(back.U, run.U)
    np.testing.assert_array_equal(back.V, run.V)
    assert back.monitors.keys() == run.monitors.keys()
    for k in run.monitors:
        np.testing.assert_array_equal(back.monitors[k], run.monitors[k])
    assert back.meta == json.loads(json.dumps(run.meta))
    assert back.stats == run.stats and back.dynamics == run.dynamics and dict(back.events) == dict(run.events)
    assert back.layout == p.layout
    with pytest.raises(ValueError, match="no dense output"):
        back.at(0.5)


def test_provenance_is_recorded(runs):
    p, flow, gd = runs
    for run in (flow, gd):
        for key in ("problem", "m", "n", "width", "target", "version"):
            assert key in run.meta, key
        assert run.stats.method and run.stats.nfev > 0 and run.stats.steps > 0 and run.stats.wall_time >= 0
    assert flow.dynamics.kind == "gf" and gd.dynamics == Dynamics("gd", variant="simultaneous", step_size=0.1)
    assert flow.meta["init_seed"] == 1 and flow.meta["rtol"] == 1e-8
    assert gd.meta["step_size"] == 0.1 and gd.meta["n_steps"] == 30


def test_gd_dense_output_is_piecewise_linear_through_the_iterates(runs):
    p, _, gd = runs
    np.testing.assert_array_equal(gd.at(gd.t), gd.x)
    np.testing.assert_allclose(gd.at(0.25), 0.5 * (gd.x[2] + gd.x[3]), rtol=1e-14)
    np.testing.assert_allclose(gd.at([0.25, 3.0]), [0.5 * (gd.x[2] + gd.x[3]), gd.x[-1]], rtol=1e-14)


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.npz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"partial")
            raise RuntimeError("killed mid-write")
    assert os.listdir(tmp_path) == []


def test_unknown_factor_name_is_reported(runs):
    with pytest.raises(AttributeError, match="no factor 'W'"):
        runs[1]._block("W")


def test_result_files_get_the_usual_permissions(tmp_path, runs):
    old = os.umask(0o022)
    try:
        path = runs[1].save(tmp_path / "run.npz")
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644


def _dead_pid():
    """The pid of a process that has finished (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_orphaned_temporary_files_are_removed_on_the_next_write_and_live_ones_kept(tmp_path):
    host = files._HOST
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead writer": f".tmp-{host}-{_dead_pid()}-abcd1234.json",
            "old, writer unknown": ".tmp-k3j4h5g6.json",  # named before writers were recorded
            "other host, old": f".tmp-{'0' * 8 if host != '0' * 8 else '1' * 8}-{os.getpid()}-x.json",
            "live writer": f".tmp-{host}-{sleeper.pid}-efgh5678.json",
            "this process": f".tmp-{host}-{os.getpid()}-ijkl9012.json",
            "fresh, writer unknown": ".tmp-m7n8b9v0.json",
            "other host, fresh": f".tmp-{'2' * 8 if host != '2' * 8 else '3' * 8}-1-y.json",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"partial")
        old = time.time() - files.ORPHAN_AGE - 60
        for kind in ("old, writer unknown", "other host, old", "live writer"):
            os.utime(tmp_path / names[kind], (old, old))
        with atomic_path(tmp_path / "result.json") as tmp:
            with open(tmp, "w") as fh:
                fh.write("{}")
        kept = {"live writer", "this process", "fresh, writer unknown", "other host, fresh"}
        assert sorted(os.listdir(tmp_path)) == sorted([names[k] for k in kept] + ["result.json"])
    finally:
        sleeper.kill()
        sleeper.wait()
    # its writer gone, the live writer's file goes too: the next write into the folder removes it
    assert files.remove_orphans(tmp_path) == [str(tmp_path / names["live writer"])]
    assert files.remove_orphans(tmp_path / "missing") == []


def test_temporary_files_name_their_writer(tmp_path):
    with atomic_path(tmp_path / "out.npz") as tmp:
        name = os.path.basename(tmp)
        assert name.startswith(f".tmp-{files._HOST}-{os.getpid()}-") and name.endswith(".npz")
        assert files.remove_orphans(tmp_path) == [] and os.path.exists(tmp)  # a live writer's file is kept
