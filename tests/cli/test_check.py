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
