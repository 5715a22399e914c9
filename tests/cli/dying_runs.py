"""Runs whose worker process dies, for the tests of killed workers (a module of its own, importing
little: each new worker process imports it to unpickle the function it runs)."""

import os

from pgflow.analysis.sweeps import run_one


def always_dies(victim, config):
    """run_one, except that the worker process running the run of scale ``victim`` always dies."""
    if config["scale"] == victim:
        os._exit(1)
    return run_one(config)
