"""ldbench.classify: timm oracles and the AUC utility protocol, on data whose answer is known.

Small on purpose (32x32 images, a few epochs, one torch thread). The protocol's mechanics train timm's
tiny `test_resnet` (0.37 M parameters; an optimizer step about 5x faster than resnet10t's here); the
oracle test on synth-brain, the chance-AUC test and the weight-loading tests use resnet10t, the model the
suites train.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from ldbench.classify import (
    ClassifierOptions,
    TrainedClassifier,
    UtilityOptions,
    create_model,
    train_classifier,
    utility_protocol,
)
from ldbench.errors import UserError
from ldbench.metrics.significance import binary_auc

SIZE = 32
TINY_MODEL = "test_resnet"  # timm >= 1.0.10 (the test extra's floor)
FAST = ClassifierOptions(model=TINY_MODEL, epochs=3, batch_size=32)


@pytest.fixture(autouse=True)
def one_thread(_deterministic_threads):
    """One torch thread (after conftest pins 2): on a shared 2-core machine two threads spin against
    other work and train about 5x slower. Module fixtures that train set it themselves."""
    torch.set_num_threads(1)


def blobs(n: int, seed: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy images of one disc at a random place: label 1 = bright (0.8), 0 = dark (0.4).

    Returns (images, labels, radii); radii are uniform in [size/10, size/3] (a visible continuous
    attribute for the regression test).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    radii = rng.uniform(size / 10, size / 3, n)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(size * 0.35, size * 0.65, (2, n))
    disc = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2 < radii[
        :, None, None
    ] ** 2
    images = disc * np.where(labels == 1, 0.8, 0.4)[:, None, None] + rng.normal(0, 0.1, (n, size, size))
    return np.clip(images, 0, 1).astype(np.float32), labels, radii


@pytest.fixture(scope="module")
def data():
    return {"train": blobs(120, seed=0), "test": blobs(80, seed=1), "synth": blobs(120, seed=2)}


@pytest.fixture(scope="module")
def binary_model(data):
    torch.set_num_threads(1)  # module fixtures are set up before the function-scoped one_thread
    x, y, _ = data["train"]
    return train_classifier(x, y, "binary", FAST, seed=0, quiet=True)


# --- training ----------------------------------------------------------------------------------------


def test_separable_binary_auc_high(data, binary_model):
    x, y, _ = data["test"]
    p = binary_model.predict(x)
    assert p.shape == (len(x),) and p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1))
    assert binary_auc(y, p) > 0.95
    assert len(binary_model.history["train_loss"]) == FAST.epochs
    assert binary_model.history["best_epoch"] == FAST.epochs


def uninformative(labels: np.ndarray, seed: int) -> np.ndarray:
    """Shuffled labels that carry exactly no information: half of each true class gets 1.

    A plain permutation leaves a chance imbalance between the (perfectly separated) bright and dark
    clusters, which a classifier learns and turns into a test AUC near 0 or 1.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros_like(labels)
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(labels == c))
        out[idx[: len(idx) // 2]] = 1
    return out


def test_uninformative_labels_give_chance_auc(data):
    """Even label-free, a CNN's score differs by chance between the two visible clusters, so one
    seed's AUC spreads widely around 0.5 (0.33..0.65 seen with resnet10t; test_resnet's spreads further,
    0.48..0.90 in four seeds, so this test trains the suites' resnet10t)."""
    x, y, _ = data["train"]
    tx, ty, _ = data["test"]
    options = ClassifierOptions(model="resnet10t", epochs=3, batch_size=32)
    aucs = [
        binary_auc(
            ty, train_classifier(x, uninformative(y, 10 + s), "binary", options, seed=s, quiet=True).predict(tx)
        )
        for s in range(4)
    ]
    assert abs(np.mean(aucs) - 0.5) < 0.15, aucs
    assert max(aucs) < 0.85, aucs


def test_regression_reads_disc_radius(data):
    x, _, r = data["train"]
    options = ClassifierOptions(model=TINY_MODEL, epochs=6, batch_size=32)
    model = train_classifier(x, r, "regression", options, seed=0, quiet=True)
    tx, _, tr = data["test"]
    mae = np.abs(model.predict(tx) - tr).mean()
    baseline = np.abs(r.mean() - tr).mean()
    assert model.target_mean == pytest.approx(r.mean()) and model.target_std == pytest.approx(r.std())
    assert mae < 0.5 * baseline, (mae, baseline)


def test_same_seed_same_predictions_other_seed_differs(data, binary_model):
    x, y, _ = data["train"]
    tx = data["test"][0]
    again = train_classifier(x, y, "binary", FAST, seed=0, quiet=True)
    assert np.array_equal(again.predict(tx), binary_model.predict(tx))
    other = train_classifier(x, y, "binary", FAST, seed=1, quiet=True)
    assert not np.array_equal(other.predict(tx), binary_model.predict(tx))


def test_training_leaves_global_rng_alone(data):
    x, y, _ = data["train"]
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    train_classifier(
        x[:8], y[:8], "binary", ClassifierOptions(model=TINY_MODEL, epochs=1), seed=3, quiet=True
    )
    assert torch.equal(torch.rand(3), expected)


def test_save_load_round_trip(tmp_path, data, binary_model):
    path = tmp_path / "oracle.safetensors"
    binary_model.save(path)
    loaded = TrainedClassifier.load(path)
    tx = data["test"][0]
    assert np.array_equal(loaded.predict(tx), binary_model.predict(tx))
    assert loaded.metadata() == binary_model.metadata()
    assert loaded.options == FAST and loaded.seed == 0 and loaded.task == "binary"


def test_val_keeps_best_epoch(data):
    x, _, r = data["train"]
    vx, _, vr = data["test"]
    options = ClassifierOptions(model=TINY_MODEL, epochs=4, batch_size=32)
    model = train_classifier(x, r, "regression", options, seed=0, quiet=True, val=(vx, vr))
    curve = model.history["val_metric"]
    assert model.history["val_metric_name"] == "mae" and len(curve) == 4
    best = int(np.argmin(curve))
    assert model.history["best_epoch"] == best + 1
    # the kept weights are that epoch's: their val MAE is the curve's minimum
    assert np.abs(model.predict(vx) - vr).mean() == pytest.approx(curve[best], rel=1e-5)


# --- bad input ---------------------------------------------------------------------------------------


def test_bad_input_raises_user_error(tmp_path, data):
    x, y, _ = data["train"]
    with pytest.raises(UserError, match="single class"):
        train_classifier(x, np.ones(len(x)), "binary", FAST, seed=0, quiet=True)
    with pytest.raises(UserError, match="at least 2"):
        train_classifier(x[:1], y[:1], "binary", FAST, seed=0, quiet=True)
    with pytest.raises(UserError, match="task"):
        train_classifier(x, y, "multiclass", FAST, seed=0, quiet=True)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        train_classifier(x * 255, y, "binary", FAST, seed=0, quiet=True)
    with pytest.raises(UserError, match="resnet18"):  # the name is checked by timm when a model is built
        create_model(ClassifierOptions(model="resnet181"), (32, 32))
    with pytest.raises(UserError, match="model"):
        ClassifierOptions(model="")
    with pytest.raises(UserError, match="epochs"):
        ClassifierOptions(epochs=-1)
    bad = tmp_path / "not_a_model.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserError, match="not_a_model.safetensors"):
        TrainedClassifier.load(bad)
    with pytest.raises(UserError, match="missing.safetensors"):
        TrainedClassifier.load(tmp_path / "missing.safetensors")


# --- pretrained weights ------------------------------------------------------------------------------


def test_pretrained_weights_are_used(tmp_path, data):
    torch.manual_seed(123)
    reference = create_model(ClassifierOptions(model="resnet10t"), (SIZE, SIZE)).eval()
    path = tmp_path / "init.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    x, y, _ = data["train"]
    tx = data["test"][0]
    options = ClassifierOptions(model="resnet10t", epochs=0, pretrained_weights=str(path))
    model = train_classifier(x, y, "binary", options, seed=0, quiet=True)
    with torch.no_grad():
        expected = torch.sigmoid(reference(torch.from_numpy((tx[:, None] - 0.5) / 0.5))).reshape(-1).double()
    assert np.allclose(model.predict(tx), expected.numpy(), atol=1e-6)
    random_init = train_classifier(
        x, y, "binary", ClassifierOptions(model="resnet10t", epochs=0), seed=0, quiet=True
    )
    assert not np.allclose(random_init.predict(tx), expected.numpy(), atol=1e-3)


def test_pretrained_rgb_imagenet_checkpoint_is_adapted(tmp_path, data):
    """A 3-channel, 1000-class timm checkpoint (torch file): first conv summed to 1 channel, new head."""
    torch.manual_seed(7)
    rgb = timm.create_model("resnet10t", pretrained=False)
    path = tmp_path / "rgb.pth"
    torch.save({"state_dict": rgb.state_dict()}, path)
    x, y, _ = data["train"]
    options = ClassifierOptions(model="resnet10t", epochs=0, pretrained_weights=str(path))
    state = train_classifier(x, y, "binary", options, seed=0, quiet=True).state_dict
    first = rgb.pretrained_cfg["first_conv"] + ".weight"
    assert torch.allclose(state[first], rgb.state_dict()[first].sum(dim=1, keepdim=True))
    assert torch.equal(state["layer4.0.conv1.weight"], rgb.state_dict()["layer4.0.conv1.weight"])
    assert state["fc.weight"].shape == (1, rgb.state_dict()["fc.weight"].shape[1])


def test_pretrained_weights_errors(tmp_path, data):
    x, y, _ = data["train"]
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(UserError, match="nowhere.safetensors"):
        train_classifier(
            x, y, "binary", ClassifierOptions(model="resnet10t", pretrained_weights=str(missing)), 0
        )
    other = tmp_path / "other_arch.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}, str(other))
    with pytest.raises(UserError, match="other_arch.safetensors"):
        train_classifier(
            x, y, "binary", ClassifierOptions(model="resnet10t", pretrained_weights=str(other)), 0
        )


# --- the real embedded dataset -----------------------------------------------------------------------


BRAIN_SUBJECTS = 300  # one visit each, 32x32: ~210 train / 60 test subjects, ~15 s in all


@pytest.fixture(scope="module")
def brain():
    from ldbench.data import create_dataset

    return create_dataset("synth-brain", n_subjects=BRAIN_SUBJECTS, visits=1, image_size=SIZE).prepare().table


def test_oracles_on_synth_brain(brain):
    """Diagnosis is easy (AD atrophies 3x faster: AUC ~0.98 after 3 epochs). Age is hard: the image
    shows only the atrophy amount, which mixes age, diagnosis and susceptibility (even a perfect
    reading of it gives MAE ~3.2 y vs 6.3 y for the mean); 12 epochs give ~5.3-5.6 y vs 6.4 y here.
    With 60 subjects x 2 visits the regressor memorised subjects and did not beat the mean."""
    train, test = brain.split("train"), brain.split("test")
    is_ad = (train.attributes["diagnosis"] == "AD").astype(int)
    diag = train_classifier(
        train.images, is_ad, "binary", ClassifierOptions(model="resnet10t", epochs=3), 0, True
    )
    assert binary_auc(test.attributes["diagnosis"] == "AD", diag.predict(test.images)) > 0.75

    age = train.attributes["age"]
    options = ClassifierOptions(model="resnet10t", epochs=12)
    regressor = train_classifier(train.images, age, "regression", options, 0, True)
    mae = np.abs(regressor.predict(test.images) - test.attributes["age"]).mean()
    baseline = np.abs(age.mean() - test.attributes["age"]).mean()
    assert mae < baseline, (mae, baseline)


# --- utility protocol --------------------------------------------------------------------------------


def test_utility_protocol_arms(data):
    x, y, _ = data["train"]
    sx, sy, _ = data["synth"]
    tx, ty, _ = data["test"]
    result = utility_protocol((x, y), (sx, sy), (tx, ty), FAST, 0, UtilityOptions(quiet=True, n_boot=200))
    assert set(result) == {"real", "synthetic", "mixed"}
    for name, arm in result.items():
        assert arm["auc"] > 0.9, name
        lo, hi = arm["ci95"]
        assert lo <= arm["auc"] <= hi
        assert arm["scores"].shape == (len(tx),) and arm["n_train"] == len(x) and arm["seed"] == 0
        assert arm["sampled_with_replacement"] is False
    assert (result["real"]["n_train_synthetic"], result["synthetic"]["n_train_synthetic"]) == (0, len(x))
    assert result["mixed"]["n_train_synthetic"] == len(x) // 2


def test_utility_protocol_arms_are_ensembles_of_independently_seeded_members(data):
    x, y, _ = data["train"]
    sx, sy, _ = data["synth"]
    tx, ty, _ = data["test"]
    tiny = ClassifierOptions(model=TINY_MODEL, epochs=1, batch_size=16)
    result = utility_protocol((x, y), (sx, uninformative(sy, 3)), (tx, ty), tiny, 0,
                              UtilityOptions(quiet=True, n_boot=100, members=3))
    for name, arm in result.items():
        assert len(arm["member_aucs"]) == 3 and len(arm["history"]) == 3, name
        lo, hi = arm["ci95"]
        assert lo <= arm["auc"] <= hi, name
    # each member trains from its own seed: on uninformative labels their AUCs differ (on the separable real
    # arm every member scores 1.0)
    assert len(set(result["synthetic"]["member_aucs"])) == 3
    # the arm's scores are the members' mean prediction, the AUC is theirs
    real = result["real"]
    assert binary_auc(ty, real["scores"]) == pytest.approx(real["auc"])
    one = utility_protocol((x, y), (sx, sy), (tx, ty), tiny, 0, UtilityOptions(quiet=True, n_boot=0, members=1))
    assert len(one["real"]["member_aucs"]) == 1 and one["real"]["member_aucs"][0] == pytest.approx(one["real"]["auc"])
    with pytest.raises(UserError, match="members"):
        utility_protocol((x, y), (sx, sy), (tx, ty), tiny, 0, UtilityOptions(members=0))


def test_utility_protocol_uninformative_synthetic_labels(data):
    x, y, _ = data["train"]
    sx, sy, _ = data["synth"]
    tx, ty, _ = data["test"]
    real = utility_protocol((x, y), (sx, sy), (tx, ty), FAST, 0, UtilityOptions(quiet=True, n_boot=0))["real"]
    assert real["ci95"] is None
    result = utility_protocol(
        (x, y), (sx, uninformative(sy, 3)), (tx, ty), FAST, 0, UtilityOptions(quiet=True, n_boot=200), real_result=real
    )
    assert result["real"] is real  # the shared real arm is reused, not retrained
    syn = result["synthetic"]
    assert syn["auc"] < real["auc"] - 0.2
    assert syn["ci95"][0] <= 0.5 <= syn["ci95"][1] or abs(syn["auc"] - 0.5) < 0.15, syn["auc"]


def test_utility_protocol_small_pool_drawn_with_replacement(data):
    x, y, _ = data["train"]
    tiny = ClassifierOptions(model=TINY_MODEL, epochs=1, batch_size=8)
    result = utility_protocol(
        (x[:20], y[:20]),
        (x[20:28], y[20:28]),
        (x[40:60], y[40:60]),
        tiny,
        1,
        UtilityOptions(quiet=True, n_boot=0, mix_fraction=0.75),
    )
    assert [result[a]["sampled_with_replacement"] for a in ("real", "synthetic", "mixed")] == [
        False,
        True,
        True,
    ]
    assert [result[a]["n_train"] for a in ("real", "synthetic", "mixed")] == [20, 20, 20]
    assert result["mixed"]["n_train_synthetic"] == 15


def test_utility_protocol_bad_input(data):
    x, y, _ = data["train"]
    with pytest.raises(UserError, match="mix_fraction"):
        utility_protocol((x, y), (x, y), (x, y), FAST, 0, UtilityOptions(mix_fraction=1.5))
    with pytest.raises(UserError, match="real_result"):
        utility_protocol((x, y), (x, y), (x[:10], y[:10]), FAST, seed=0, real_result={"auc": 1.0})
