import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # 2 shared cores: intra-op threads only add contention for models this small
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
