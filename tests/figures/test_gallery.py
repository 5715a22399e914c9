"""The figure gallery: every figure in quick mode, valid non-blank images, byte-identical re-runs, the cache,
quick runs in their own folder, measured figures drawn from their stored measurement."""

import io
import pathlib

import numpy as np
import pytest
from matplotlib.image import imread

from pgflow.cli import main
from pgflow.figures import gallery

ROOT = pathlib.Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# figure 7 holds wall times: identical bytes come from its cache, not from recomputing
DETERMINISTIC = tuple(name for name in gallery.FIGURES if name != "fig7_solvers")


@pytest.fixture(scope="module")
def quick_gallery(tmp_path_factory):
    """Every figure in quick mode, rendered once for all the tests of this file."""
    out = tmp_path_factory.mktemp("gallery")
    return out, {name: gallery.render(name, str(out), quick=True) for name in gallery.FIGURES}


@pytest.mark.parametrize("name", gallery.FIGURES)
def test_every_figure_is_a_valid_image_with_content(quick_gallery, name):
    out, rendered = quick_gallery
    assert [p.rsplit("/", 1)[-1] for p in rendered[name].paths] == [f"{name}.png", f"{name}.pdf"]
    png = out / f"{name}.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    rgb = imread(png)[..., :3]
    assert rgb.shape[0] >= 400 and rgb.shape[1] >= 1000
    # not a blank canvas (no variation), and not empty axes either: empty axes are grey on white,
    # while every figure draws its data in colour (measured: 0.9 % to 35 % of the pixels)
    assert rgb.std() > 0.05
    coloured = np.mean(rgb.max(axis=2) - rgb.min(axis=2) > 0.2)
    assert coloured > 0.004, f"only {coloured:.2%} coloured pixels"
    pdf = (out / f"{name}.pdf").read_bytes()
    assert pdf[:5] == b"%PDF-" and len(pdf) > 10_000


# three figures by default (drawing, not computing, is what a recomputed figure costs: 2-3 s each); every
# figure under -m slow, where the whole gallery is also redrawn at full size against the committed files
QUICKLY_RECOMPUTED = ("fig2_discretization", "fig3_imbalance", "fig5_ye_du")


@pytest.mark.parametrize("name", [name if name in QUICKLY_RECOMPUTED else pytest.param(name, marks=pytest.mark.slow)
                                  for name in DETERMINISTIC])
def test_deterministic_figures_are_byte_identical_when_recomputed(quick_gallery, tmp_path, name):
    out, rendered = quick_gallery
    again = gallery.render(name, str(tmp_path), quick=True, cache=None)
    assert not again.cached
    for fmt in gallery.FORMATS:
        assert (tmp_path / f"{name}.{fmt}").read_bytes() == (out / f"{name}.{fmt}").read_bytes(), f"{name}.{fmt}"


def test_every_figure_is_byte_identical_when_drawn_again_from_its_cache(quick_gallery, tmp_path):
    out, rendered = quick_gallery
    assert not any(r.cached for r in rendered.values())
    for name in gallery.FIGURES:
        again = gallery.render(name, str(tmp_path), quick=True, cache=str(out / gallery.CACHE_FOLDER),
                               formats=("png",))
        assert again.cached
        assert (tmp_path / f"{name}.png").read_bytes() == (out / f"{name}.png").read_bytes(), name


def test_a_changed_config_never_reuses_cached_data(tmp_path, monkeypatch):
    script = gallery.module("fig3_imbalance")
    config = gallery.config_of(script, quick=True)
    assert gallery.cache_key(script, config) == gallery.cache_key(script, dict(reversed(config.items())))
    assert gallery.cache_key(script, config) != gallery.cache_key(script, {**config, "scale": 0.31})
    assert gallery.cache_key(script, config) != gallery.cache_key(script, gallery.config_of(script))
    first, cached = gallery.data_for(script, config, str(tmp_path))
    assert not cached
    calls = []
    monkeypatch.setattr(script, "compute", lambda c, rng: calls.append(c) or first)
    again, cached = gallery.data_for(script, config, str(tmp_path))
    assert cached and not calls
    assert all(np.array_equal(first[k], again[k]) for k in first)
    gallery.data_for(script, {**config, "seed": 1}, str(tmp_path))
    assert len(calls) == 1


def test_compute_must_return_arrays_only(monkeypatch):
    script = gallery.module(3)
    monkeypatch.setattr(script, "compute", lambda c, rng: {"t": np.zeros(3), "note": "text"})
    with pytest.raises(TypeError, match="arrays only.*note"):
        gallery.data_for(script, gallery.config_of(script, quick=True))


def test_figures_are_named_by_number_or_name():
    assert gallery.module(1).NAME == gallery.module("fig1_incremental").NAME == "fig1_incremental"
    assert gallery.module("8").NAME == "fig8_edge_of_stability"
    for bad in (0, len(gallery.FIGURES) + 1, "fig99_nothing"):
        with pytest.raises(ValueError, match="figure"):
            gallery.module(bad)


def test_every_script_has_the_figure_interface():
    for name in gallery.FIGURES:
        script = gallery.module(name)
        assert script.NAME == name and script.TITLE
        assert "seed" in script.CONFIG and set(script.QUICK) <= set(script.CONFIG)
        assert callable(script.compute) and callable(script.plot) and callable(script.main)


def test_pgflow_figures_reports_progress_and_reuses_its_cache(tmp_path, capsys):
    out = tmp_path / "gallery"
    assert main(["figures", "--quick", "--only", "3", "fig5_ye_du", "--out", str(out)]) == 0
    first = capsys.readouterr().out
    assert "[1/2] fig3_imbalance" in first and "[2/2] fig5_ye_du" in first and "computed in" in first
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "fig3_imbalance.pdf", "fig3_imbalance.png", "fig5_ye_du.pdf", "fig5_ye_du.png"]
    assert main(["figures", "--quick", "--only", "3", "--out", str(out)]) == 0
    assert "data from cache" in capsys.readouterr().out


def test_pgflow_figures_lists_and_rejects_unknown_figures(tmp_path, capsys):
    assert main(["figures", "--list"]) == 0
    assert "8  fig8_edge_of_stability" in capsys.readouterr().out
    assert main(["figures", "--only", "12", "--out", str(tmp_path)]) == 2
    assert f"figure numbers run from 1 to {len(gallery.FIGURES)}, got 12" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_pgflow_figures_remeasure_reaches_the_gallery(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(gallery, "render_all", lambda *args, **kwargs: calls.append(kwargs))
    assert main(["figures", "--only", "7", "--remeasure", "--out", str(tmp_path)]) == 0
    assert main(["figures", "--only", "7", "--out", str(tmp_path)]) == 0
    assert [c["remeasure"] for c in calls] == [True, False]


def test_a_figure_script_runs_on_its_own(tmp_path, capsys):
    assert gallery.module(3).main(["--quick", "--no-cache", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "fig3_imbalance.png").exists() and not (tmp_path / gallery.CACHE_FOLDER).exists()
    assert "fig3_imbalance" in capsys.readouterr().out


# --- quick runs: their own folder, stamped ----------------------------------------------------------


def test_quick_runs_write_to_their_own_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["figures", "--quick", "--only", "3"]) == 0
    assert "written to figures/quick/" in capsys.readouterr().out
    assert (tmp_path / "figures" / "quick" / "fig3_imbalance.png").is_file()
    assert not (tmp_path / "figures" / "fig3_imbalance.png").exists()
    assert gallery.output_folder(None) == "figures" and gallery.output_folder("elsewhere", quick=True) == "elsewhere"


def test_quick_images_are_stamped_quick_in_their_corner(quick_gallery, tmp_path, monkeypatch):
    out, _ = quick_gallery
    monkeypatch.setattr(gallery, "_stamp_quick", lambda fig: None)
    gallery.render("fig3_imbalance", str(tmp_path), quick=True, cache=str(out / gallery.CACHE_FOLDER),
                   formats=("png",))
    stamped, plain = imread(out / "fig3_imbalance.png")[..., :3], imread(tmp_path / "fig3_imbalance.png")[..., :3]
    differs = np.argwhere(np.any(stamped != plain, axis=2))
    assert differs.size, "the quick image carries no stamp"
    # only the bottom-left corner changed, and it holds the stamp's orange (#D55E00 = 213, 94, 0)
    assert differs[:, 0].min() > 0.85 * stamped.shape[0] and differs[:, 1].max() < 0.1 * stamped.shape[1]
    orange = np.all(np.abs(stamped * 255 - [213, 94, 0]) < 30, axis=2)
    assert orange[int(0.85 * stamped.shape[0]):, :int(0.1 * stamped.shape[1])].sum() > 50


# --- measured figures: drawn from the stored measurement ----------------------------------------------


def _no_data(*args, **kwargs):
    raise AssertionError("a stored measurement should have been drawn, not data computed or cached")


def test_the_committed_measurement_of_figure_7_is_current():
    """figures/data/fig7_solvers.npz was measured with today's CONFIG and compute(): if this fails, re-measure
    with ``python -m pgflow.figures.fig7_solvers --remeasure`` and commit the data and the figure."""
    script = gallery.module(7)
    assert script.MEASURED
    data, path = gallery.stored_measurement(script, gallery.config_of(script), "no-such-folder")
    assert path is not None and path.startswith(gallery.PACKAGED_DATA)
    n_lambda, n_runs = len(script.CONFIG["log10_lambda"]), len(script.runs())
    assert sorted(data) == ["auto_stiff", "evaluations", "lambdas", "spread", "wall_time"]
    assert data["wall_time"].shape == data["evaluations"].shape == (n_runs, n_lambda)
    assert np.all(data["wall_time"] > 0) and np.all(data["evaluations"] > 0)
    np.testing.assert_allclose(data["lambdas"], 10.0 ** np.asarray(script.CONFIG["log10_lambda"]))


def test_figure_7_is_drawn_from_the_committed_measurement_to_the_committed_bytes(tmp_path, monkeypatch):
    script = gallery.module(7)
    monkeypatch.setattr(gallery, "data_for", _no_data)
    r = gallery.render(script, str(tmp_path), cache=str(tmp_path / "cache"))
    assert r.measurement.startswith(gallery.PACKAGED_DATA) and not r.cached
    assert not (tmp_path / "cache").exists()
    for fmt in gallery.FORMATS:  # what `pgflow figures` writes over the committed file is that file
        committed = ROOT / "figures" / f"fig7_solvers.{fmt}"
        assert (tmp_path / f"fig7_solvers.{fmt}").read_bytes() == committed.read_bytes(), fmt


def test_remeasure_stores_a_measurement_that_later_runs_draw(tmp_path, monkeypatch, capsys):
    script = gallery.module(7)
    # quick: no measurement is shipped for the quick config, so it is measured and cached like any data
    first = gallery.render(script, str(tmp_path), quick=True, formats=("png",))
    assert first.measurement is None and not first.cached
    assert main(["figures", "--quick", "--only", "7", "--out", str(tmp_path)]) == 0
    assert "data from cache" in capsys.readouterr().out
    assert script.main(["--quick", "--remeasure", "--out", str(tmp_path)]) == 0
    assert "measurement measured in" in capsys.readouterr().out
    stored = tmp_path / gallery.DATA_FOLDER / "fig7_solvers.npz"
    with np.load(stored) as data:
        assert "_stamp" in data.files and "_about" in data.files
    monkeypatch.setattr(gallery, "data_for", _no_data)
    again = gallery.render(script, str(tmp_path), quick=True, formats=("png",))
    assert again.measurement == str(stored)
    # a measurement taken with another config (or another compute()) is never drawn
    config = {**gallery.config_of(script, quick=True), "t_end": 4.0}
    assert gallery.stored_measurement(script, config, str(tmp_path)) == (None, None)


def test_a_figure_that_measures_nothing_ignores_remeasure(tmp_path):
    r = gallery.render(3, str(tmp_path), quick=True, cache=None, formats=("png",), remeasure=True)
    assert r.measurement is None and not (tmp_path / gallery.DATA_FOLDER).exists()


@pytest.mark.slow
def test_the_whole_gallery_redraws_the_committed_files_byte_for_byte(tmp_path):
    """`pgflow figures` in a clean checkout changes no tracked file (same numpy/matplotlib as the commit)."""
    gallery.render_all(out=str(tmp_path), cache=None, stream=io.StringIO())
    changed = [f"{name}.{fmt}" for name in gallery.FIGURES for fmt in gallery.FORMATS
               if (tmp_path / f"{name}.{fmt}").read_bytes() != (ROOT / "figures" / f"{name}.{fmt}").read_bytes()]
    assert not changed, f"regenerate and commit these figures (pgflow figures): {changed}"


def test_a_stored_measurement_survives_comment_edits_but_not_code_edits():
    def compute(config, rng):
        return {"x": np.zeros(2)}  # a comment

    first = gallery.code_text(compute)

    def compute(config, rng):  # noqa: F811  (the same function, commented differently)
        # why: a second comment

        return {"x": np.zeros(2)}

    assert gallery.code_text(compute) == first == 'def compute(config, rng):\n    return {"x": np.zeros(2)}'

    def compute(config, rng):  # noqa: F811
        return {"x": np.ones(2)}

    assert gallery.code_text(compute) != first
