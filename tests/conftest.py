import numpy as np
import pytest

import diffsim as ds


@pytest.fixture(autouse=True)
def _seed_and_default_dtype():
    ds.manual_seed(0)
    prev = ds.get_default_dtype()
    yield
    ds.set_default_dtype(prev)
    ds.autograd.set_detect_anomaly(False)


def pytest_collection_modifyitems(config, items):
    if not ds.cuda.is_available():
        skip = pytest.mark.skip(reason="no CUDA GPU with cupy on this machine")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)
