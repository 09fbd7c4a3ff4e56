import logging
import os

import pytest
import torch

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray for one test module (2 CPUs, no dashboard), the one Ray fixture of the suite.

    Joins a Ray that is already running (and leaves it running); one it started it shuts down
    after the module, so no actor outlives its module.
    """
    ray = pytest.importorskip("ray")
    torch.set_num_threads(1)  # 2 shared cores: intra-op threads only contend
    started = not ray.is_initialized()
    if started:
        # address="local": always a new Ray of this process's own, never one found on the
        # machine (with parallel test workers another worker's cluster may be running).
        ray.init(
            address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING
        )
    yield
    if started:
        ray.shutdown()
