import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # CPU results are reproducible for a fixed thread count; pin it so tests compare like with like.
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def tiny_parts(tmp_path_factory):
    """Untrained tiny latent diffusion components (seeded), shared by the sampling tests."""
    from ldbench.models.tiny import build_components

    return build_components(tmp_path_factory.mktemp("tok"), seed=0)
