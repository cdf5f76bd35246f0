import os

import pytest
import torch

# Tests are small; one thread per process keeps `pytest -n 2` from oversubscribing 2 cores.
torch.set_num_threads(int(os.environ.get("REPRO_TEST_THREADS", "1")))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
