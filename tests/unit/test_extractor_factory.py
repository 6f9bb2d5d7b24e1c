"""One extractor factory: every field that changes an extractor makes a different one."""

import pytest
import torch

from ldbench.metrics import factory
from ldbench.metrics.domain import DomainNet, save_domain_net
from ldbench.metrics.domain_training import HeadSpec
from ldbench.metrics.factory import ExtractorConfig

HEADS = [HeadSpec("diagnosis", "categorical", ("AD", "CN"))]


def _weights(path, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DomainNet(HEADS)
    save_domain_net(net, path, {"dataset": "test", "note": "random init"})
    return str(path)


def test_different_configurations_get_different_extractors(tmp_path):
    first, second = _weights(tmp_path / "a.safetensors", 0), _weights(tmp_path / "b.safetensors", 1)
    config = ExtractorConfig("domain", {"weights_path": first})
    a = factory.extractor(config)
    assert factory.extractor(config, reuse=True) is a  # a worker's later cells
    b = factory.extractor(ExtractorConfig("domain", {"weights_path": second}), reuse=True)
    assert b is not a and b.fingerprint != a.fingerprint
    assert str(a.device) == "cpu"


@pytest.mark.parametrize("other", [
    ExtractorConfig("inception", {}, "w.pth", False),
    ExtractorConfig("inception", {}, "v.pth", True),
    ExtractorConfig("inception", {}, "w.pth", True, "cuda:0"),
    ExtractorConfig("inception-clean", {}, "w.pth", True),
    ExtractorConfig("inception", {"resize": "x"}, "w.pth", True),
])
def test_every_field_is_in_the_key(other):
    assert ExtractorConfig("inception", {}, "w.pth", True).key() != other.key()


def test_options_reach_only_the_extractors_that_take_them():
    inception = ExtractorConfig("inception", {}, "w.pth", True, "cpu").create_options()
    assert inception == {"weights_path": "w.pth", "allow_unverified": True, "device": "cpu"}
    radiomics = ExtractorConfig("radiomics", {}, "w.pth", True, "cpu").create_options()
    assert radiomics == {}  # no network, no weights


def test_run_and_tune_delta_take_the_inception_options():
    from ldbench.cli import _parser

    args = _parser().parse_args(["tune-delta", "--inception-weights", "w.pth", "--allow-unverified-weights"])
    assert args.inception_weights == "w.pth" and args.allow_unverified_weights and args.device is None
