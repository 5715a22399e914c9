"""The figure gallery: one script per figure, ``figNN_<slug>.py``, run by :mod:`pgflow.figures.gallery`.

``pgflow figures`` (or :func:`pgflow.figures.gallery.render_all`) regenerates all of them into ./figures;
``python -m pgflow.figures.fig3_imbalance [--quick] [--out DIR]`` one of them. Each script has
``compute(config, rng)`` (numbers only), ``plot(data, config)`` (matplotlib only) and ``main``;
:mod:`pgflow.figures.style` is the one style they share.
"""
