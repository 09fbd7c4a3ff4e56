import logging

import pytest
import torch


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray for one test module (2 CPUs, no dashboard); shut down after it."""
    ray = pytest.importorskip("ray")
    torch.set_num_threads(1)  # 2 shared cores: intra-op threads only contend
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()
