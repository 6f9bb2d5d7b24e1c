"""How long a suite takes from a cold cache on the reference machine (2 CPU cores, no GPU).

Why a model and not a dry run: `ldbench suites` should answer "can I run this before lunch?" in well under a
second, without loading datasets or models. So each stage kind gets a cost formula in the options that
drive its work (training steps × batch, images × sampling steps, classifier epochs × images), and the suite
is walked the way ldbench.runner.run walks it, counting every stage by the same sharing rules as the
store's cache keys: the dataset and base model once, a fine-tune per (dataset, method, *training* drift,
seed) — cells that differ only in editor or in the sampling placement share it, and every δ = 0 drift is
the same no-LD fine-tune — and a generation per (fine-tune, editor, *sampling* drift, seed, split).

Calibration (`Costs` defaults), from cold runs on the reference machine. The smoke suite: 207 s =
dataset 4 + base-model pretraining 94 (vae_steps 400 + unet_steps 500 at batch 16) + two fine-tunes of 250
steps at batch 16 (32 s and 28 s: ~0.12 s per step) + four generations of 120 images (sdedit, strength 0.6
of 20 DDIM steps → 12 steps: ~6 s; text2img, 20 steps: ~9 s; ≈ 1.5 s + 3.2 ms per image-step with
classifier-free guidance) + four metrics stages (~2.2 s each). The counterfactual-evaluation constants
(classifier training, axiom edits) are scaled from those figures and are rougher. The full suite (140
cells, 1 h 14 min measured) set the per-image generation cost at few sampling steps, the metrics stage
(0.4 s) and the classifier costs (resnet10t, 2 epochs: 8.4 s per AUC-protocol stage). The estimate assumes the
machine is not shared; on a loaded one, multiply.

On a GPU: `Costs.from_gpu_benchmark` takes what benchmarks/perf/bench_gpu.py measured on one card (training
step per method, guided sampling step per image, Inception features per image, at the benchmark's model
and resolution) and keeps the CPU calibration for the stages it does not measure (data preparation,
classifiers, bookkeeping), so `ldbench suites --gpu-costs FILE` prints an estimate for that card.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ldbench.config import Component, Suite, build_options

# Split sizes of the embedded datasets at their default options (train, test); a dataset not listed
# (real data, or non-default options) is costed at synth-brain's size.
DATASET_SIZES = {"synth-brain": (420, 120), "synth-cxr": (280, 80)}
DEFAULT_SIZE = DATASET_SIZES["synth-brain"]


@dataclass(frozen=True)
class Costs:
    """Seconds per unit of work on the reference machine (see the module docstring for the calibration)."""

    dataset: float = 4.0  # prepare one embedded dataset (render phantoms, split)
    latents: float = 1.0  # encode a test split for the report's latent figure
    reference_stats: float = 3.0  # extractor features of a test split, when no shipped file matches
    pretrain_fixed: float = 4.0  # tokenizer / text encoder / scheduler set-up
    pretrain_step: float = 0.1  # one autoencoder or UNet pretraining step at batch 16
    finetune_fixed: float = 1.0  # load the base model, encode the train split
    finetune_step: float = 0.12  # one fine-tuning step at batch 16 (UNet forward + backward)
    generate_fixed: float = 1.5  # load the fine-tuned model, encode sources
    image_step: float = 0.0032  # one image × one sampling step, with classifier-free guidance (2 UNet passes)
    image: float = 0.01  # one image's autoencoder encode / decode and bookkeeping, whatever the step count
    metrics: float = 0.5  # features, FD / KD with bootstrap CIs of one generated set (domain extractor)
    inception_image: float = 0.08  # Inception-v3 pool3 features of one image at 299 px (torch-fidelity network)
    diversity: float = 1.5  # MS-SSIM diversity and memorization of one generated set, with bootstrap CIs
    # The timm classifier at 64×64 with a val pass per epoch, unshared machine: resnet18 took 11.0 s for 3
    # epochs of 420 images (~1 s fixed + 0.008 s per image-epoch); other models scale by CLASSIFIER_SPEED.
    classifier_fixed: float = 1.0
    classifier_image_epoch: float = 0.008
    counterfactual_fixed: float = 3.0  # SSIM / PSNR / L1 / CLD of one generated set
    effectiveness: float = 0.3  # the oracles' predictions on one generated set, with bootstrap CIs
    # Measured per method (bench_gpu.py): ((method, seconds per step at `finetune_batch`), ...); a method not
    # listed falls back to `finetune_step`, which is per step at batch 16.
    finetune_step_by_method: tuple = ()
    finetune_batch: int = 16
    source: str = "CPU calibration: 2 unshared cores"

    @classmethod
    def from_gpu_benchmark(cls, path: str | Path) -> Costs:
        """Costs for the card that benchmarks/perf/bench_gpu.py measured (its JSON output at `path`)."""
        from ldbench.errors import UserError

        try:
            data = json.loads(Path(path).read_text())
            train, sampling = data["train"], data["sampling"]
            by_method = tuple(sorted((m, float(r["ldbench_s_per_step"])) for m, r in train["methods"].items()))
            no_ld = next(r for r in sampling["rows"] if r["drift"] == "no LD")
            image_step = float(no_ld["ldbench_s"]) / (int(sampling["batch"]) * int(sampling["steps"]))
            inception_image = 1.0 / float(data["inception"]["ldbench_images_per_s"])
            batch = int(train["batch_size"])
            device = str(data["device"])
        except (OSError, ValueError, KeyError, TypeError, StopIteration, ZeroDivisionError) as exc:
            raise UserError(f"--gpu-costs {path}: not a bench_gpu.py result ({type(exc).__name__}: {exc}); "
                            "write one with python benchmarks/perf/bench_gpu.py --out FILE") from None
        return cls(finetune_step_by_method=by_method, finetune_batch=batch, image_step=image_step,
                   inception_image=inception_image, pretrain_step=0.0,
                   source=f"{device} ({data.get('model', '?')} at {data.get('image_size', '?')} px), measured by "
                          "bench_gpu.py; data, classifiers and bookkeeping at the CPU calibration")


DEFAULT_COSTS = Costs()
# Datasets whose test-split reference statistics ship in reference_stats/ for the default extractors.
SHIPPED_STATS = ("synth-brain", "synth-cxr")
# Time per image-epoch relative to resnet18, measured the same way (resnet10t: 7.9 s against 11.0 s for 3
# epochs of 420 images); a model not listed is costed as resnet18.
CLASSIFIER_SPEED = {"resnet18": 1.0, "resnet10t": 0.7}
# Predictable attributes of an embedded dataset, each an oracle (effectiveness); text-to-image asks for all,
# an edit for those it changes (costed as one).
ORACLE_ATTRIBUTES = {"synth-brain": 2, "synth-cxr": 6}


@dataclass
class Estimate:
    """Stage counts by kind (after sharing) and the estimated seconds of each kind."""

    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds_by_stage: dict[str, float] = dataclasses.field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.counts[stage] = self.counts.get(stage, 0) + 1
        self.seconds_by_stage[stage] = self.seconds_by_stage.get(stage, 0.0) + seconds

    @property
    def stages(self) -> int:
        return sum(self.counts.values())

    @property
    def seconds(self) -> float:
        return sum(self.seconds_by_stage.values())


def format_duration(seconds: float) -> str:
    """"3 min", "1.4 h": an estimate's precision, not a stopwatch's."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _sampling_steps(editor: str, opts) -> float:
    """UNet-pass-weighted sampling steps per image, relative to one guided step."""
    if editor in ("sdedit",):
        return max(1, round(opts.steps * opts.strength))
    if editor == "inversion-edit":  # unguided inversion (≈ half a guided step each), then the guided edit
        return 1.5 * max(1, round(opts.steps * opts.strength))
    if editor == "instruct":  # two-way guidance: three UNet passes per step instead of two
        return 1.5 * opts.steps
    return opts.steps  # text2img and anything unknown: the full chain


def _pretrain_seconds(spec: Component, costs: Costs) -> float:
    if spec.name != "embedded":
        return 0.0  # a user's diffusers model is loaded, not trained
    from ldbench.models.tiny import TinyModelConfig

    config = build_options(TinyModelConfig, spec.options, "base_model (embedded)")
    return costs.pretrain_fixed + costs.pretrain_step * (config.vae_steps + config.unet_steps) * config.batch_size / 16


def _finetune_seconds(method: Component, costs: Costs) -> float:
    from ldbench.methods import method_options

    opts = method_options(method)
    samples = opts.batch_size * opts.gradient_accumulation_steps  # samples per optimizer step
    extra, prior_factor = 0.0, 1
    if method.name == "dreambooth":
        # prior preservation doubles each batch, and the class images are sampled from the base model first
        prior_factor = 2
        extra = costs.generate_fixed + opts.num_class_images * opts.class_sample_steps * costs.image_step
    measured = dict(costs.finetune_step_by_method)
    if method.name in measured:  # measured with the method's own batch make-up (DreamBooth's prior included)
        return costs.finetune_fixed + measured[method.name] * opts.steps * samples / costs.finetune_batch + extra
    return costs.finetune_fixed + costs.finetune_step * opts.steps * samples * prior_factor / 16 + extra


def estimate_suite(suite: Suite, costs: Costs = DEFAULT_COSTS) -> Estimate:
    """The cold-cache time of `suite`, stage by stage, counting shared stages once (see the module doc)."""
    from ldbench.runner.counterfactual import classifier_options
    from ldbench.runner.stages import editor_options, sampling_drift, training_drift

    ev = suite.evaluation
    est = Estimate()
    seen: set = set()

    def once(key: tuple, stage: str, seconds: float) -> None:
        if key not in seen:
            seen.add(key)
            est.add(stage, seconds)

    def features_seconds(extractor: str, n_images: int) -> float:  # one set scored on one extractor
        return costs.metrics + (n_images * costs.inception_image if extractor.startswith("inception") else 0.0)

    for ds in suite.datasets:
        once(("dataset", ds), "dataset", costs.dataset)
        n_test = (DATASET_SIZES.get(ds.name, DEFAULT_SIZE) if not ds.options else DEFAULT_SIZE)[1]
        for name in ev.extractors:
            if ds.name not in SHIPPED_STATS or ds.options:
                once(("reference-stats", ds, name), "reference-stats",
                     costs.reference_stats + features_seconds(name, n_test))
            for seed in suite.seeds:  # the real held-out floor (ldbench.runner.floor)
                once(("heldout-metrics", ds, name, seed), "heldout-metrics", features_seconds(name, n_test))
        if ev.diversity:  # the train split's features on the first extractor, for memorization
            n_train = (DATASET_SIZES.get(ds.name, DEFAULT_SIZE) if not ds.options else DEFAULT_SIZE)[0]
            once(("split-features", ds), "split-features", features_seconds(ev.extractors[0], n_train))
        once(("latents", ds), "latents", costs.latents)
    once(("base-model",), "base-model", _pretrain_seconds(suite.base_model, costs))
    ft_seconds = {m: _finetune_seconds(m, costs) for m in suite.methods}
    classifier = classifier_options(ev)
    per_image_epoch = costs.classifier_image_epoch * CLASSIFIER_SPEED.get(classifier.model, 1.0)

    def train_seconds(n_images: int) -> float:
        return costs.classifier_fixed + classifier.epochs * n_images * per_image_epoch
    for cell in suite.cells():
        n_train, n_test = DATASET_SIZES.get(cell.dataset.name, DEFAULT_SIZE) if not cell.dataset.options \
            else DEFAULT_SIZE
        opts = editor_options(cell.editor)
        editor = cell.editor.name
        ft = ("finetune", cell.dataset, cell.method, training_drift(cell.drift), cell.seed)
        once(ft, "finetune", ft_seconds[cell.method])
        model = ft
        if editor == "instruct":  # its own image-conditioned UNet, trained from the fine-tune (batch 16)
            model = ("editor-model", ft, cell.editor)
            once(model, "editor-model", costs.finetune_fixed + costs.finetune_step * opts.instruct_steps)
        per_image = _sampling_steps(editor, opts) * costs.image_step + costs.image
        gen = ("generate", model, cell.editor, sampling_drift(cell.drift), cell.seed, "test")
        once(gen, "generate", costs.generate_fixed + n_test * per_image)
        for name in ev.extractors:
            once(("metrics", gen, name), "metrics", features_seconds(name, n_test))
        if ev.diversity:
            once(("diversity", gen), "diversity", costs.diversity)
        if ev.counterfactual or ev.effectiveness:
            if ev.effectiveness:
                n_oracles = ORACLE_ATTRIBUTES.get(cell.dataset.name, 2) if editor == "text2img" else 1
                for a in range(n_oracles):
                    once(("oracle", cell.dataset, a, cell.seed), "oracle", train_seconds(n_train))
            seconds = costs.effectiveness if ev.effectiveness else 0.0
            if ev.counterfactual:
                axioms = 0.0 if editor == "text2img" else ev.axiom_items * (ev.null_edits + 2) * per_image
                seconds += costs.counterfactual_fixed + axioms
            once(("counterfactual-metrics", gen), "counterfactual-metrics", seconds)
        if ev.utility:
            gen_train = ("generate", model, cell.editor, sampling_drift(cell.drift), cell.seed, "train")
            once(gen_train, "generate", costs.generate_fixed + n_train * per_image)
            once(("classifier", cell.dataset, cell.seed), "classifier", train_seconds(n_train))
            # the synthetic-only and the 50/50 arms, each about a train split's worth of images
            once(("utility", gen_train), "utility", 2 * train_seconds(n_train))
    return est

