"""The shared training loop through accelerate: mixed precision and gradient accumulation.

The regression baselines depend on training being bit-identical to the loop as it was before
accelerate, so `_old_train_denoiser` below is a verbatim copy of that loop (progress bar aside) and the
default path (mixed_precision "no", gradient_accumulation_steps 1) is compared against it exactly.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ldbench.drift import NO_DRIFT, Drift, training_inputs
from ldbench.errors import UserError
from ldbench.methods import METHODS, TrainingOptions
from ldbench.models.text import KeepOtherRows, add_token, prefix_prompt, tokenize
from ldbench.models.training import CAPTION_DROPOUT, TrainConfig, TrainData
from ldbench.models.training import train_denoiser as _loop

CAPTIONS = ("brain mri, 70 year old, cognitively normal", "brain mri, 72 year old, alzheimer's disease")
DRIFT = Drift(0.1, train="noise", sample="none")


def train_denoiser(parts, data, trainable, *, drift, after_step=None, **config):
    """The shared loop with its TrainConfig written as keywords."""
    return _loop(parts, data, trainable, drift, TrainConfig(**config), after_step=after_step)


# ---------------------------------------------------------------------------------------------------
# The loop as it was before accelerate (then ldbench/methods/loop.py), kept verbatim as the reference.
# `_old_draw` is its per-step random draw, split out only so the accumulation test can reuse it.

def _old_draw(data, prior, caption_index, prior_index, empty, gen, batch_size, n_train, drift, scheduler):
    idx = torch.randint(len(data.captions), (batch_size,), generator=gen)
    z0 = data.latent_mean[idx] + data.latent_std[idx] * torch.randn(data.latent_mean[idx].shape, generator=gen)
    cap = caption_index[idx].clone()
    cap[torch.rand(batch_size, generator=gen) < CAPTION_DROPOUT] = empty
    noise = torch.randn(z0.shape, generator=gen)
    t = torch.randint(0, n_train, (batch_size,), generator=gen)
    x_t, target = training_inputs(drift, scheduler, z0, noise, t)
    ptarget = None
    if prior is not None:
        pidx = torch.randint(len(prior.captions), (batch_size,), generator=gen)
        pz0 = prior.latent_mean[pidx] + prior.latent_std[pidx] * torch.randn(
            prior.latent_mean[pidx].shape, generator=gen)
        pt = torch.randint(0, n_train, (batch_size,), generator=gen)
        px_t, ptarget = training_inputs(drift, scheduler, pz0, torch.randn(pz0.shape, generator=gen), pt)
        x_t, t, cap = torch.cat([x_t, px_t]), torch.cat([t, pt]), torch.cat([cap, prior_index[pidx]])
    return x_t, t, cap, target, ptarget


def _old_setup(parts, data, seed):
    tokenizer = parts.tokenizer
    gen = torch.Generator().manual_seed(seed)
    prior = data.prior
    vocab = sorted(set(data.captions) | {""} | set(prior.captions if prior is not None else ()))
    caption_index = torch.tensor([vocab.index(c) for c in data.captions])
    prior_index = torch.tensor([vocab.index(c) for c in prior.captions]) if prior is not None else None
    empty = vocab.index("")
    ids = tokenize(tokenizer, vocab)
    return gen, prior, caption_index, prior_index, empty, ids


def _old_train_denoiser(parts, data, trainable, *, drift, steps, batch_size, lr, seed, train_text_encoder=False,
                        prior_loss_weight=1.0, after_step=None):
    unet, text_encoder, scheduler = parts.unet, parts.text_encoder, parts.scheduler
    drift = drift or NO_DRIFT
    gen, prior, caption_index, prior_index, empty, ids = _old_setup(parts, data, seed)
    if not train_text_encoder:
        with torch.no_grad():
            cached_embeddings = text_encoder(ids)[0]
    for p in unet.parameters():
        p.requires_grad_(False)
    for p in text_encoder.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    unet.train()
    text_encoder.train(train_text_encoder)
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=1e-2)
    n_train = scheduler.config.num_train_timesteps
    losses = []
    for _ in range(steps):
        x_t, t, cap, target, ptarget = _old_draw(data, prior, caption_index, prior_index, empty, gen, batch_size,
                                                 n_train, drift, scheduler)
        emb = text_encoder(ids[cap])[0] if train_text_encoder else cached_embeddings[cap]
        pred = unet(x_t, t, encoder_hidden_states=emb).sample
        if prior is None:
            loss = F.mse_loss(pred, target)
        else:
            loss = F.mse_loss(pred[:batch_size], target) + prior_loss_weight * F.mse_loss(pred[batch_size:], ptarget)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step()
        losses.append(loss.item())
    unet.eval()
    text_encoder.eval()
    for p in trainable:
        p.requires_grad_(False)
    return losses


# ---------------------------------------------------------------------------------------------------

def _data(n: int = 8, prior: bool = False) -> TrainData:
    g = torch.Generator().manual_seed(1)
    p = None
    if prior:
        p = TrainData(torch.randn(4, 4, 16, 16, generator=g), torch.full((4, 4, 16, 16), 0.05), ("brain mri",) * 4)
    return TrainData(torch.randn(n, 4, 16, 16, generator=g), torch.full((n, 4, 16, 16), 0.1),
                     tuple(CAPTIONS[i % 2] for i in range(n)), prior=p)


def _setup(tiny_parts, kind: str):
    """(parts, data, trainable, extra kwargs) for one of three shapes of training the loop supports."""
    parts = copy.deepcopy(tiny_parts)
    if kind == "unet":  # finetune
        return parts, _data(), list(parts.unet.parameters()), {}
    if kind == "prior":  # dreambooth: a prior batch in the same forward pass
        return parts, _data(prior=True), list(parts.unet.parameters()), {"prior_loss_weight": 0.5}
    # "token": custom-diffusion-like, the text encoder runs every step and rows are restored after each step
    token_id = add_token(parts, "<ld-test>", "mri")
    data = _data()
    data = TrainData(data.latent_mean, data.latent_std, tuple(map(prefix_prompt("<ld-test>"), data.captions)))
    weight = parts.text_encoder.get_input_embeddings().weight
    kv = [p for n, p in parts.unet.named_parameters() if ".attn2.to_k." in n or ".attn2.to_v." in n]
    return parts, data, [*kv, weight], {"train_text_encoder": True, "after_step": KeepOtherRows(weight, token_id)}


def _state(parts) -> list[torch.Tensor]:
    return [p.detach().clone() for module in (parts.unet, parts.text_encoder) for p in module.parameters()]


@pytest.mark.parametrize("kind", ["unet", "prior", "token"])
def test_default_path_is_bit_identical_to_the_old_loop(tiny_parts, kind):
    steps = 5 if kind == "unet" else 3
    common = dict(drift=DRIFT, steps=steps, batch_size=2, lr=1e-2, seed=7)
    parts_old, data, trainable, kwargs = _setup(tiny_parts, kind)
    before = _state(parts_old)
    old = _old_train_denoiser(parts_old, data, trainable, **common, **kwargs)
    parts_new, data, trainable, kwargs = _setup(tiny_parts, kind)
    new = train_denoiser(parts_new, data, trainable, **common, **kwargs, quiet=True)
    assert new == old  # every loss, bit for bit
    after_old, after_new = _state(parts_old), _state(parts_new)
    assert all(torch.equal(a, b) for a, b in zip(after_old, after_new, strict=True))  # every parameter, bit for bit
    assert any(not torch.equal(a, b) for a, b in zip(before, after_new, strict=True))  # and training did change some


def test_bf16_on_cpu_trains_close_to_fp32_with_fp32_master_weights(tiny_parts):
    common = dict(drift=DRIFT, steps=3, batch_size=2, lr=1e-3, seed=3, quiet=True)
    parts32, data, trainable32, _ = _setup(tiny_parts, "unet")
    fp32 = train_denoiser(parts32, data, trainable32, **common)
    parts16, data, trainable16, _ = _setup(tiny_parts, "unet")
    bf16 = train_denoiser(parts16, data, trainable16, mixed_precision="bf16", **common)
    assert len(bf16) == 3 and all(torch.isfinite(torch.tensor(bf16)))
    assert bf16 != fp32  # bf16 autocast really ran (it is not the fp32 path)
    assert bf16 == pytest.approx(fp32, rel=5e-2)
    assert all(p.dtype == torch.float32 for p in parts16.unet.parameters())  # master weights stay fp32
    assert any(not torch.equal(a, b) for a, b in zip(_state(tiny_parts), _state(parts16), strict=True))
    # autocast does not outlive training: the trained UNet runs in fp32 afterwards
    x = torch.randn(1, 4, 16, 16)
    emb = parts16.text_encoder(tokenize(parts16.tokenizer, [CAPTIONS[0]]))[0]
    with torch.no_grad():
        assert parts16.unet(x, torch.tensor([10]), encoder_hidden_states=emb).sample.dtype == torch.float32


def test_gradient_accumulation_counts_optimizer_steps(tiny_parts):
    parts, data, trainable, kwargs = _setup(tiny_parts, "token")
    calls = []
    restore = kwargs.pop("after_step")

    def after_step():
        calls.append(1)
        restore()

    losses = train_denoiser(parts, data, trainable, drift=DRIFT, steps=3, batch_size=4, lr=1e-2, seed=0,
                            gradient_accumulation_steps=2, after_step=after_step, quiet=True, **kwargs)
    assert len(losses) == 3 and len(calls) == 3  # `steps` optimizer steps; after_step once per optimizer step
    old = tiny_parts.text_encoder.get_input_embeddings().weight
    new = parts.text_encoder.get_input_embeddings().weight
    assert torch.equal(new[: len(old)], old)  # every other row restored, bit for bit, after each optimizer step


def test_two_micro_batches_of_4_equal_one_batch_of_8_with_the_same_samples(tiny_parts):
    """One optimizer step accumulated over two micro-batches of 4 is the step on one batch of 8 made of
    the same 8 draws: micro-batch i takes the i-th draw from the seeded generator (as step i would without
    accumulation), so the batch of 8 is built here by drawing twice with the old loop's draw code,
    concatenating, and taking the gradient of the MSE over all 8. Compared: the accumulated gradient
    (captured in after_step, which runs between the optimizer step and zero_grad) against that gradient
    (float tolerance: the sums are split differently), the recorded loss against the mean of the two
    micro-batch losses = the batch-of-8 loss, and the parameters after the step against an AdamW step
    taken by hand from the captured gradient (exact)."""
    seed, lr = 5, 1e-2
    parts, data, trainable, _ = _setup(tiny_parts, "unet")
    start = [p.detach().clone() for p in trainable]
    captured = {}

    def capture():
        captured["grad"] = [p.grad.detach().clone() for p in trainable]
        captured["param"] = [p.detach().clone() for p in trainable]

    (loss,) = train_denoiser(parts, data, trainable, drift=DRIFT, steps=1, batch_size=4, lr=lr, seed=seed,
                             gradient_accumulation_steps=2, after_step=capture, quiet=True)

    # the batch of 8 by hand, from the same draws
    ref, data, ref_trainable, _ = _setup(tiny_parts, "unet")
    gen, prior, caption_index, prior_index, empty, ids = _old_setup(ref, data, seed)
    n_train = ref.scheduler.config.num_train_timesteps
    draws = [_old_draw(data, prior, caption_index, prior_index, empty, gen, 4, n_train, DRIFT, ref.scheduler)
             for _ in range(2)]
    x_t, t, cap, target = (torch.cat([d[i] for d in draws]) for i in range(4))
    with torch.no_grad():
        emb = ref.text_encoder(ids)[0][cap]
    ref.unet.train()
    pred = ref.unet(x_t, t, encoder_hidden_states=emb).sample
    loss8 = F.mse_loss(pred, target)
    grad8 = torch.autograd.grad(loss8, ref_trainable, allow_unused=True)
    assert loss == pytest.approx(loss8.item(), rel=1e-5)
    for g_acc, g8 in zip(captured["grad"], grad8, strict=True):
        torch.testing.assert_close(g_acc, torch.zeros_like(g_acc) if g8 is None else g8, rtol=1e-4, atol=1e-7)

    manual = [s.clone().requires_grad_(True) for s in start]
    for m, g in zip(manual, captured["grad"], strict=True):
        m.grad = g
    torch.optim.AdamW(manual, lr=lr, weight_decay=1e-2).step()
    assert all(torch.equal(m.detach(), p) for m, p in zip(manual, captured["param"], strict=True))
    assert all(torch.equal(p.detach(), c) for p, c in zip(trainable, captured["param"], strict=True))  # one step only


def test_fp16_on_cpu_is_a_user_error_before_training(tiny_parts):
    parts, data, trainable, _ = _setup(tiny_parts, "unet")
    before = _state(parts)
    with pytest.raises(UserError, match="fp16 needs a CUDA GPU; use bf16 on CPU"):
        train_denoiser(parts, data, trainable, drift=DRIFT, steps=1, batch_size=2, lr=1e-2, seed=0,
                       mixed_precision="fp16", quiet=True)
    assert all(torch.equal(a, b) for a, b in zip(before, _state(parts), strict=True))


@pytest.mark.parametrize("bad", [{"mixed_precision": "fp8"}, {"mixed_precision": "FP16 "},
                                 {"gradient_accumulation_steps": 0}, {"gradient_accumulation_steps": 1.5},
                                 {"gradient_accumulation_steps": True}])
def test_bad_options_are_user_errors_naming_the_value(bad):
    ((name, value),) = bad.items()
    with pytest.raises(UserError, match=name) as err:
        TrainingOptions(**bad)
    assert repr(value) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["finetune", "textual-inversion", "dreambooth", "custom-diffusion", "lora"])
def test_every_method_passes_the_options_through(tiny_parts, monkeypatch, name):
    import importlib

    module = importlib.import_module(f"ldbench.methods.{name.replace('-', '_')}")
    seen = {}

    def fake(parts, data, trainable, drift, config, after_step=None):
        seen.update(vars(config))
        return [0.0] * config.steps

    monkeypatch.setattr(module, "train_denoiser", fake)
    options = METHODS.options(name, {"steps": 2, "batch_size": 2, "mixed_precision": "bf16",
                                     "gradient_accumulation_steps": 3})
    METHODS.get(name).train(copy.deepcopy(tiny_parts), _data(), DRIFT, options, seed=0, quiet=True)
    assert seen["mixed_precision"] == "bf16" and seen["gradient_accumulation_steps"] == 3
    assert seen["gradient_checkpointing"] == "auto"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_on_cuda_with_accumulation(tiny_parts, precision):
    """The GPU path: batches drawn on the CPU generator and moved to the UNet's device, fp16 loss scaling."""
    parts, data, trainable, kwargs = _setup(tiny_parts, "token")
    for module in (parts.unet, parts.text_encoder):
        module.to("cuda")
    losses = train_denoiser(parts, data, trainable, drift=DRIFT, steps=2, batch_size=2, lr=1e-3, seed=0,
                            mixed_precision=precision, gradient_accumulation_steps=2, quiet=True, **kwargs)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert all(p.dtype == torch.float32 and p.is_cuda for p in trainable)


@pytest.mark.parametrize("kind", ["unet", "token"])
def test_gradient_checkpointing_gives_the_same_losses_and_weights(tiny_parts, kind):
    common = dict(drift=DRIFT, steps=3, batch_size=2, lr=1e-2, seed=5, quiet=True)
    plain_parts, data, trainable, kwargs = _setup(tiny_parts, kind)
    plain = train_denoiser(plain_parts, data, trainable, gradient_checkpointing=False, **common, **kwargs)
    ckpt_parts, data, trainable, kwargs = _setup(tiny_parts, kind)
    ckpt = train_denoiser(ckpt_parts, data, trainable, gradient_checkpointing=True, **common, **kwargs)
    assert ckpt == plain  # every loss, bit for bit
    assert all(torch.equal(a, b) for a, b in zip(_state(plain_parts), _state(ckpt_parts), strict=True))
    assert not ckpt_parts.unet.is_gradient_checkpointing  # switched off again after training


def test_checkpointing_auto_is_on_for_cuda_only_and_attention_is_sdpa(tiny_parts):
    from diffusers.models.attention_processor import AttnProcessor2_0

    from ldbench.models.training import use_checkpointing

    assert not use_checkpointing("auto", torch.device("cpu")) and use_checkpointing("auto", torch.device("cuda"))
    assert use_checkpointing(True, torch.device("cpu")) and not use_checkpointing(False, torch.device("cuda"))
    # torch's scaled_dot_product_attention (memory-efficient / flash kernels on CUDA) is the default attention
    assert all(isinstance(p, AttnProcessor2_0) for p in tiny_parts.unet.attn_processors.values())
    with pytest.raises(UserError, match="gradient_checkpointing"):
        TrainingOptions(gradient_checkpointing="yes")


# --- experiment trackers (ldbench run --log-with) ----------------------------------------------------


def test_trackers_receive_every_optimizer_steps_loss_and_change_nothing(tiny_parts):
    from accelerate.tracking import GeneralTracker

    from ldbench.models.training import use_trackers

    class Recorder(GeneralTracker):
        name, requires_logging_directory = "recorder", False
        logged: list = []

        def __init__(self):
            super().__init__()

        @property
        def tracker(self):
            return self

        def store_init_configuration(self, values):
            self.config = values

        def log(self, values, step=None, **kwargs):
            self.logged.append((step, values["loss"]))

    common = dict(drift=DRIFT, steps=3, batch_size=2, lr=1e-2, seed=7, quiet=True)
    parts, data, trainable, _ = _setup(tiny_parts, "unet")
    untracked = train_denoiser(parts, data, trainable, **common)
    recorder = Recorder()
    use_trackers((recorder,))
    try:
        parts, data, trainable, _ = _setup(tiny_parts, "unet")
        tracked = train_denoiser(parts, data, trainable, **common)
    finally:
        use_trackers(())
    assert tracked == untracked  # logging changes no number
    assert recorder.logged == [(i + 1, loss) for i, loss in enumerate(tracked)]
    assert recorder.config["steps"] == 3 and recorder.config["seed"] == 7


def _tensorboard_scalars(logdir) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every scalar in the TensorBoard event files under `logdir`: TFRecord framing
    (length, its CRC, the Event proto, its CRC) read here, the Event parsed by tensorboardX's proto."""
    import struct

    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(logdir.rglob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            out += [(event.step, v.tag, v.simple_value) for v in event.summary.value]
    return out


def test_log_with_tensorboard_writes_every_steps_loss_to_an_event_file(tiny_parts, tmp_path):
    pytest.importorskip("tensorboardX")  # a test dependency; accelerate writes through it without tensorboard
    from ldbench.models.training import use_trackers

    common = dict(drift=DRIFT, steps=3, batch_size=2, lr=1e-2, seed=7, quiet=True)
    parts, data, trainable, _ = _setup(tiny_parts, "unet")
    untracked = train_denoiser(parts, data, trainable, **common)
    use_trackers(("tensorboard",), str(tmp_path / "logs"))
    try:
        parts, data, trainable, _ = _setup(tiny_parts, "unet")
        tracked = train_denoiser(parts, data, trainable, **common)
    finally:
        use_trackers(())
    assert tracked == untracked
    scalars = _tensorboard_scalars(tmp_path / "logs")
    assert any(tag.startswith("_hparams_") for _, tag, _ in scalars)  # the run's configuration
    losses = [(step, value) for step, tag, value in scalars if tag == "loss"]
    assert [step for step, _ in losses] == [1, 2, 3]
    assert [value for _, value in losses] == pytest.approx(tracked, rel=1e-6)  # stored as float32


def test_unknown_or_missing_tracker_is_a_one_line_error():
    import importlib.util

    from ldbench.models.training import use_trackers

    with pytest.raises(UserError, match="not a tracker accelerate knows; valid: tensorboard"):
        use_trackers(("tensorbored",))
    if importlib.util.find_spec("mlflow") is None:
        with pytest.raises(UserError, match="the mlflow package is not installed; pip install mlflow"):
            use_trackers(("mlflow",))
