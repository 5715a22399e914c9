"""``pgflow check``: claim files, ensembles and exit codes."""

import argparse
import textwrap

import pytest

from pgflow.analysis import bounds as B
from pgflow.analysis.bounds.ensembles import ensemble_runs, load_claim_file
from pgflow.cli import check as check_cli



def _run_cli(argv):
    parser = argparse.ArgumentParser(prog="pgflow")
    check_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["check", *argv])
    return args.handler(args)


@pytest.mark.slow  # 15 s: every claim of the shipped example file
def test_cli_runs_the_example_claim_file(capsys, tmp_path):
    assert _run_cli(["--init-seeds", "2", "--plots", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "imbalance_conserved" in out and "GD conserves imbalance (false)" in out
    assert len(list(tmp_path.glob("*.png"))) == len(load_claim_file(check_cli.EXAMPLE)[0])


def test_cli_exit_status_and_file_kinds(capsys, tmp_path):
    toml = tmp_path / "claims.toml"
    toml.write_text(textwrap.dedent("""
        [ensemble]
        init_seeds = 1
        dynamics = ["gf"]
        t_end = 2.0
        n_save = 11

        [[claim]]
        name = "loss grows"
        statement = "derivative(loss) >= 0"
    """))
    assert _run_cli([str(toml)]) == 1
    assert "not as expected: loss grows" in capsys.readouterr().out
    module = tmp_path / "claims_mod.py"
    module.write_text(textwrap.dedent("""
        from pgflow.analysis.bounds import Claim
        ENSEMBLE = {"init_seeds": 1, "dynamics": ["gf", "gd"], "t_end": 2.0, "n_save": 11}
        CLAIMS = ["loss_decreases", Claim("loss <= initial(loss)", name="below start")]
    """))
    with pytest.raises(ValueError, match="--allow-python"):
        _run_cli([str(module)])
    assert _run_cli([str(module), "--allow-python"]) == 0
    assert _run_cli([str(module), "--allow-python", "--claim", "below start"]) == 0
    assert _run_cli(["--list"]) == 0
    assert "ye_du_B_bound" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[[claim]]\nstatement = "lambda_min(U) <= 0"\n')
    with pytest.raises(B.ClaimError, match="square matrix"):
        _run_cli([str(bad)])


def test_old_ensemble_and_claim_keys_name_the_new_ones(tmp_path):
    with pytest.raises(ValueError, match="'seeds' is now called 'init_seeds'"):
        ensemble_runs({"seeds": 2})
    with pytest.raises(ValueError, match="'target_seed' is now called 'problem_seed'"):
        ensemble_runs({"target_seed": 0})
    old = tmp_path / "old.toml"
    old.write_text('[[claim]]\nstatement = "loss >= 0"\ntol = "1e-9"\n')
    with pytest.raises(ValueError, match="'tol' is now called 'allowance'"):
        load_claim_file(old)


def test_cli_writes_tidy_reports(capsys, tmp_path):
    import csv
    import json

    toml = tmp_path / "claims.toml"
    toml.write_text(textwrap.dedent("""
        [ensemble]
        init_seeds = 1
        dynamics = ["gf"]
        t_end = 1.0
        n_save = 6

        [[claim]]
        name = "loss decreases"
        statement = "derivative(loss) <= 0"

        [[claim]]
        name = "loss grows"
        statement = "derivative(loss) >= 0"
        expect = false
    """))
    assert _run_cli([str(toml), "--out", str(tmp_path / "report.csv")]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header[4:7] == ["holds", "must_hold", "as_expected"]
    with open(tmp_path / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["claim", "run", "time", "lhs", "rhs", "slack", "holds", "nonsmooth"]
    assert len(rows) == 12 and {r["claim"] for r in rows} == {"loss decreases", "loss grows"}
    grows = [r for r in rows if r["claim"] == "loss grows"]
    assert all(r["holds"] == "false" for r in grows) and float(grows[0]["slack"]) < 0
    assert float(grows[0]["lhs"]) == float(grows[0]["slack"])  # lhs >= 0: slack = lhs − rhs, rhs 0
    assert _run_cli([str(toml), "--out", str(tmp_path / "report.json")]) == 0
    data = json.loads((tmp_path / "report.json").read_text())
    assert [r["holds"] for r in data] == [r["holds"] == "true" for r in rows]
    assert set(data[0]) == {"claim", "run", "time", "lhs", "rhs", "slack", "holds", "nonsmooth"}
    with pytest.raises(ValueError, match=".csv or .json"):
        _run_cli([str(toml), "--out", str(tmp_path / "report.txt")])


def test_cli_falsify(capsys, tmp_path):
    toml = tmp_path / "claims.toml"
    toml.write_text(textwrap.dedent("""
        [[claim]]
        name = "noise parts nonzero"
        statement = "fro(J) >= 1e-9 * fro(U)"
        dynamics = ["gf"]
        expect = false

        [[claim]]
        use = "imbalance_gd_step"
    """))
    assert _run_cli([str(toml), "--falsify", "--budget", "20", "--reproducers", str(tmp_path / "repro")]) == 0
    out = capsys.readouterr().out
    assert "counterexample" in out.splitlines()[0] and "noise parts nonzero" in out
    written = sorted(p.name for p in (tmp_path / "repro").glob("*.toml"))
    assert written == ["imbalance_gd_step.toml", "noise_parts_nonzero.toml"]
    assert _run_cli([str(tmp_path / "repro" / "noise_parts_nonzero.toml")]) == 0  # the counterexample reruns
    with pytest.raises(ValueError, match="--falsify"):
        _run_cli([str(toml), "--budget", "3"])
