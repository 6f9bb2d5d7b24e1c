import pytest
import torch


def pytest_collection_modifyitems(config, items):
    # Tests marked `gpu` need CUDA: skipped where there is none.
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # CPU results are reproducible for a fixed thread count; pin it so tests compare like with like.
    torch.set_num_threads(2)
    yield


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    # Commands that default to the user cache (e.g. `ldbench fid`'s feature cache) write to a temporary one.
    import os

    old = os.environ.get("LDBENCH_CACHE_DIR")
    os.environ["LDBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("ldbench-cache"))
    yield
    if old is None:
        os.environ.pop("LDBENCH_CACHE_DIR", None)
    else:
        os.environ["LDBENCH_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny_parts(tmp_path_factory):
    """Untrained tiny latent diffusion components (seeded), shared by the sampling tests."""
    from ldbench.models.tiny import build_components

    return build_components(tmp_path_factory.mktemp("tok"), seed=0)


@pytest.fixture(scope="session")
def _toy_base_store(tmp_path_factory):
    """A store holding the toy suites' base model (tests/toy.py), pretrained once a session."""
    from ldbench.config import load_suite
    from ldbench.runner.stages import base_model_stage, context
    from tests.toy import TOY_BASE_MODEL

    store = tmp_path_factory.mktemp("toy-base") / "cache"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # as every test pins it: the toy runs it stands in for pretrained with 2
    try:
        base_model_stage(context(store, quiet=True), load_suite("smoke", [TOY_BASE_MODEL]).base_model)
    finally:
        torch.set_num_threads(threads)
    return store


@pytest.fixture(scope="session")
def toy_cache(_toy_base_store):
    """toy_cache(path): a new cache directory at `path` that holds the toy base model already."""
    import shutil

    def make(path):
        shutil.copytree(_toy_base_store, path)
        return path

    return make
