"""``pgflow discretization``: the study from a TOML config, its table, text and figure."""

import argparse

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
    cfg.write_text(TINY.replace("[setup]", f'[setup]\nproblem = "{kind}"\nmeasurements = 24'))
    out = tmp_path / "out"
    assert _run_command(["discretization", str(cfg), "--out", str(out)]) == 0
    assert sorted(f.name for f in out.iterdir()) == ["discretization.csv", "discretization.png", "discretization.txt"]
    lines = (out / "discretization.csv").read_text().splitlines()
    assert lines[0].startswith("variant,against,measure,step_size") and len(lines) == 1 + 2 * 3
    rows = [line.split(",") for line in lines[1:]]
    orders = {row[1]: float(row[6]) for row in rows}
    assert 0.8 < orders["flow"] < 1.2 and 1.6 < orders["modified"] < 2.4
    assert (out / "discretization.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "order ± stderr" in (out / "discretization.txt").read_text()
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
