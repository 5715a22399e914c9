"""``pgflow discretization``: the study from a TOML config, its table, text and figure."""

import argparse

import numpy as np
import pytest

from pgflow.cli.discretize import DEFAULT_CONFIG, load_config, register



TINY = """
[setup]
m = 4
n = 3
rank = 1
width = 1
condition = 1.0
scale = 0.5

[study]
t_end = 0.5
step_sizes = [0.125, 0.0625, 0.03125]
variants = ["simultaneous"]
"""


def _run_command(argv):
    parser = argparse.ArgumentParser(prog="pgflow")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


@pytest.mark.parametrize("kind", ["factorization", "sensing"])
def test_command_writes_table_and_figure(tmp_path, capsys, kind):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.replace("[setup]", f'[setup]\nproblem = "{kind}"\nn_measurements = 24'))
    out = tmp_path / "out"
    assert _run_command(["discretization", str(cfg), "--out", str(out)]) == 0
    assert sorted(f.name for f in out.iterdir()) == ["discretization.csv", "discretization.png", "discretization.txt"]
    lines = (out / "discretization.csv").read_text().splitlines()
    assert lines[0].startswith("variant,against,measure,step_size") and len(lines) == 1 + 2 * 3
    rows = [line.split(",") for line in lines[1:]]
    orders = {row[1]: float(row[6]) for row in rows}
    assert 0.8 < orders["flow"] < 1.2 and 1.6 < orders["modified"] < 2.4
    assert (out / "discretization.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "discretization.txt").read_text()
    assert "order ± stderr" in text and "{" not in text  # readable headers, no raw dicts
    assert f"problem = {'MatrixFactorization' if kind == 'factorization' else 'MatrixSensing'}, m = 4" in text
    # the smallest η has no local slope: its cell is "-", and the notes say what "-" means
    assert "(- for the smallest η)" in text and "nan" not in text.lower()
    printed = capsys.readouterr().out
    assert "wrote:" in printed and "critical step" in printed
    if kind == "factorization":  # byte-reproducible outputs
        assert _run_command(["discretization", str(cfg), "--out", str(tmp_path / "again")]) == 0
        for name in ("discretization.csv", "discretization.png", "discretization.txt"):
            assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_command_runs_on_its_default_config(tmp_path, capsys):
    assert _run_command(["discretization", "--out", str(tmp_path)]) == 0
    rows = [line.split(",") for line in (tmp_path / "discretization.csv").read_text().splitlines()[1:]]
    assert len(rows) == 2 * 2 * 4 and all(row[-1] == "True" for row in rows)  # every reference 100x tighter
    for variant in ("simultaneous", "alternating"):
        orders = {row[1]: float(row[6]) for row in rows if row[0] == variant}
        assert 0.9 <= orders["flow"] <= 1.1 and 1.8 <= orders["modified"] <= 2.2
    # the default study is asymptotic and ok: every local slope within ASYMPTOTIC_TOL of its order
    header = (tmp_path / "discretization.csv").read_text().splitlines()[0].split(",")
    col = {name: header.index(name) for name in ("step_size", "error_t_end", "order", "local_slope", "asymptotic",
                                                 "diverged", "ok")}
    assert all(row[col["asymptotic"]] == row[col["ok"]] == "True" and row[col["diverged"]] == "False" for row in rows)
    for variant, against in [("simultaneous", "flow"), ("simultaneous", "modified"), ("alternating", "flow"),
                             ("alternating", "modified")]:
        study = [row for row in rows if row[:2] == [variant, against]]
        eta = np.array([float(row[col["step_size"]]) for row in study])
        err = np.array([float(row[col["error_t_end"]]) for row in study])
        slope = np.array([float(row[col["local_slope"]]) for row in study])
        np.testing.assert_allclose(slope[:-1], np.diff(np.log(err)) / np.diff(np.log(eta)), rtol=1e-12)
        assert np.isnan(slope[-1]) and np.max(np.abs(slope[:-1] - float(study[0][col["order"]]))) <= 0.05
    text = (tmp_path / "discretization.txt").read_text()
    assert text.count("asymptotic: yes; ok") == 4 and "NOT OK" not in capsys.readouterr().out


def test_command_flags_a_pre_asymptotic_study(tmp_path, capsys):
    """ησ₁ up to 1.2 (σ₁ = 2): the fitted orders look plausible, the local slopes drift: exit 1."""
    cfg = tmp_path / "coarse.toml"
    cfg.write_text('[study]\nt_end = 2.4\nstep_sizes = [0.6, 0.3, 0.15, 0.075]\nvariants = ["simultaneous"]\n')
    assert _run_command(["discretization", str(cfg), "--out", str(tmp_path / "out")]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("NOT OK: simultaneous vs flow: not asymptotic: local slopes 0.878, 1.024, 1.046")
    assert "simultaneous vs modified: not asymptotic" in last
    assert "suggested step_sizes = [0.12, 0.06, 0.03, 0.015]" in last
    assert (tmp_path / "out" / "discretization.csv").exists()          # the outputs are still written
    assert "asymptotic: NO" in (tmp_path / "out" / "discretization.txt").read_text()


def test_command_flags_a_diverging_step_size(tmp_path, capsys):
    """From a large start GD with η = 0.25 blows up: the study records it, the others run, exit 1."""
    cfg = tmp_path / "diverge.toml"
    cfg.write_text(TINY.replace("scale = 0.5", "scale = 1.5").replace("t_end = 0.5", "t_end = 1.0")
                   .replace("[0.125, 0.0625, 0.03125]", "[0.25, 0.125, 0.0625, 0.03125]"))
    assert _run_command(["discretization", str(cfg), "--out", str(tmp_path)]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("NOT OK: simultaneous vs flow: GD diverged at η = 0.25")
    assert "simultaneous vs modified: GD diverged at η = 0.25" in last
    rows = [line.split(",") for line in (tmp_path / "discretization.csv").read_text().splitlines()[1:]]
    assert [row[5] for row in rows if row[3] == "0.25"] == ["nan", "nan"]
    assert all(float(row[5]) > 0 for row in rows if row[3] != "0.25")


def test_command_default_config_and_errors(tmp_path, capsys):
    assert _run_command(["discretization", "--print-config"]) == 0
    assert capsys.readouterr().out == DEFAULT_CONFIG
    assert load_config()["study"]["against"] == ["flow", "modified"]
    bad = tmp_path / "bad.toml"
    bad.write_text("[study]\nstep_size = 0.1\n")
    with pytest.raises(ValueError, match="\\[study\\]: unknown key 'step_size'"):
        load_config(bad)
    bad.write_text("[solver]\nrtol = 1e-3\n")
    with pytest.raises(ValueError, match="unknown section \\[solver\\]"):
        load_config(bad)
    bad.write_text("[study\n")
    with pytest.raises(ValueError, match="bad.toml"):
        load_config(bad)
    bad.write_text("[problem]\nm = 5\n")
    with pytest.raises(ValueError, match="section \\[problem\\] is now part of \\[setup\\]"):
        load_config(bad)
    bad.write_text("[setup]\nseed = 5\n")
    with pytest.raises(ValueError, match="'seed' is now called 'problem_seed, init_seed or perturbation_seed'"):
        load_config(bad)


def test_old_field_names_are_refused_naming_the_new(tmp_path):
    cfg = tmp_path / "old.toml"
    cfg.write_text(TINY.replace("[setup]", '[setup]\nproblem = "sensing"\nmeasurements = 24'))
    with pytest.raises(ValueError, match="'measurements' is now called 'n_measurements'"):
        _run_command(["discretization", str(cfg), "--out", str(tmp_path / "out")])
