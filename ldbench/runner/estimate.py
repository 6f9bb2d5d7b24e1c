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
(classifier training, axiom edits) are scaled from those figures and are rougher. The full suite as it
was then (140 cells of 60-step fine-tunes, 1 h 14 min measured) set the per-image generation cost at few sampling
steps, the metrics stage (0.4 s) and the classifier costs (resnet10t, 2 epochs: 8.4 s per AUC-protocol stage).
The full suite as it is now (40 cells, 500-step fine-tunes) checks them: estimated 87 min, measured 74 min with
cached stages that had taken at least 885 s (about 92 min cold). The estimate assumes the machine is not shared; on a
loaded one, multiply.

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

from ldbench.config import Component, Suite

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


def _pretrain_seconds(spec: Component, costs: Costs) -> float:
    from ldbench.models.base_models import BASE_MODELS

    steps = BASE_MODELS.get(spec.name).pretrain_steps
    if steps is None:
        return 0.0  # loaded (a user's diffusers model) or built without training
    return costs.pretrain_fixed + costs.pretrain_step * steps(spec.options)


def _finetune_seconds(spec: Component, costs: Costs, probe) -> float:
    """A method's steps × samples per step at its batch make-up (`batch_factor`: DreamBooth's prior images
    double each batch), plus what it samples before training (`prepare_image_steps`: its class images) and
    the latent probe's sampling (`probe`, ProbeSettings)."""
    from ldbench.methods import METHODS, method_options

    method, opts = METHODS.get(spec.name), method_options(spec)
    samples = opts.batch_size * opts.gradient_accumulation_steps  # samples per optimizer step
    prepare = getattr(method, "prepare_image_steps", None)
    extra = costs.generate_fixed + prepare(opts) * costs.image_step if prepare is not None else 0.0
    extra += _probe_seconds(costs, probe)
    measured = dict(costs.finetune_step_by_method)
    if spec.name in measured:  # measured with the method's own batch make-up (DreamBooth's prior included)
        return costs.finetune_fixed + measured[spec.name] * opts.steps * samples / costs.finetune_batch + extra
    factor = getattr(method, "batch_factor", 1)
    return costs.finetune_fixed + costs.finetune_step * opts.steps * samples * factor / 16 + extra


def _probe_seconds(costs: Costs, p) -> float:
    """The latent probe's sampling through a fine-tune (ldbench.models.probe.ProbeSettings `p`): one UNet pass
    per image-step."""
    return (p.checkpoints + 1) * p.samples * p.steps * costs.image_step / 2


# --- what the plan needs to know without data (ldbench.runner.graph.Facts) ------------------------------


@dataclass(frozen=True)
class EstimateFacts:
    """The data-dependent answers of a plan, from the tables above instead of built datasets."""

    evaluation: object

    def split_size(self, spec: Component, split: str) -> int:
        train, test = DATASET_SIZES.get(spec.name, DEFAULT_SIZE) if not spec.options else DEFAULT_SIZE
        return train if split == "train" else test

    def oracle_attributes(self, spec: Component, editor: Component) -> list[str]:
        from ldbench.generate import EDITORS

        # an edit sets one attribute; text-to-image (no source) asks for every predictable one
        n = 1 if EDITORS.get(editor.name).needs_source else ORACLE_ATTRIBUTES.get(spec.name, 2)
        return [f"attribute {i + 1}" for i in range(n)]

    def stats_ship(self, spec: Component) -> bool:
        return spec.name in SHIPPED_STATS and not spec.options


def dataset_of(node) -> Component:
    """The dataset spec a node works on (its own field, else its dataset or first upstream node's)."""
    value = node.get("dataset")
    if value is not None:
        return value
    return dataset_of(node.up("dataset") or node.upstream[0][1])


def _features_seconds(extractor: str, n_images: int, costs: Costs) -> float:  # one set scored on one extractor
    return costs.metrics + (n_images * costs.inception_image if extractor.startswith("inception") else 0.0)


def _classifier_seconds(n_images: int, costs: Costs, facts) -> float:
    from ldbench.runner.counterfactual_stages import classifier_options

    classifier = classifier_options(facts.evaluation)
    per_image_epoch = costs.classifier_image_epoch * CLASSIFIER_SPEED.get(classifier.model, 1.0)
    return costs.classifier_fixed + classifier.epochs * n_images * per_image_epoch


def _per_image(editor: Component, costs: Costs) -> float:
    from ldbench.generate import EDITORS
    from ldbench.runner.stages import editor_options

    # the editor's UNet-pass-weighted sampling steps per image, relative to one guided step
    return EDITORS.get(editor.name).sampling_steps(editor_options(editor)) * costs.image_step + costs.image


# --- each stage's cost model (declared with the stage in ldbench.runner.pipeline) -------------------------


def dataset_cost(node, costs: Costs, facts) -> float:
    return costs.dataset


def reference_stats_cost(node, costs: Costs, facts) -> float | None:
    """None: the statistics ship with ldbench (no work)."""
    spec = node["dataset"]
    if facts.stats_ship(spec):
        return None
    return costs.reference_stats + _features_seconds(node["extractor"], facts.split_size(spec, node["split"]), costs)


def base_model_cost(node, costs: Costs, facts) -> float:
    return _pretrain_seconds(node["base_model"], costs)


def latents_cost(node, costs: Costs, facts) -> float:
    return costs.latents


def reconstruction_cost(node, costs: Costs, facts) -> float:
    return costs.image * facts.split_size(node["dataset"], "test")


def heldout_cost(node, costs: Costs, facts) -> float:
    return _features_seconds(node["extractor"], facts.split_size(node["dataset"], "test"), costs)


def ceiling_cost(node, costs: Costs, facts) -> float:
    n = facts.split_size(node["dataset"], "test")  # the held-out floor holds as many images
    return costs.image * n + _features_seconds(node["extractor"], n, costs)


def split_features_cost(node, costs: Costs, facts) -> float:
    return _features_seconds(node["extractor"], facts.split_size(node["dataset"], node["split"]), costs)


def finetune_cost(node, costs: Costs, facts) -> float:
    from ldbench.runner.stages import latent_probe

    return _finetune_seconds(node["method"], costs, latent_probe(facts.evaluation))


def editor_model_cost(node, costs: Costs, facts) -> float:
    from ldbench.runner.stages import editor_options

    # its own image-conditioned UNet, trained from the fine-tune (batch 16)
    return costs.finetune_fixed + costs.finetune_step * getattr(editor_options(node["editor"]), "instruct_steps", 0)


def generate_cost(node, costs: Costs, facts) -> float:
    n = facts.split_size(dataset_of(node), node["split"])
    return costs.generate_fixed + n * _per_image(node["editor"], costs)


def metrics_cost(node, costs: Costs, facts) -> float:
    return _features_seconds(node["extractor"], facts.split_size(dataset_of(node), "test"), costs)


def diversity_cost(node, costs: Costs, facts) -> float:
    return costs.diversity


def oracle_cost(node, costs: Costs, facts) -> float:
    members = facts.evaluation.oracle_members  # each trains on the whole train split
    return members * _classifier_seconds(facts.split_size(node["dataset"], "train"), costs, facts)


def counterfactual_cost(node, costs: Costs, facts) -> float:
    ev, editor = facts.evaluation, node["editor"]
    seconds = costs.effectiveness if ev.effectiveness else 0.0
    if ev.counterfactual:
        from ldbench.generate import EDITORS

        edits = ev.axiom_items * (ev.null_edits + 2) if EDITORS.get(editor.name).needs_source else 0
        seconds += costs.counterfactual_fixed + edits * _per_image(editor, costs)
    return seconds


def classifier_cost(node, costs: Costs, facts) -> float:
    members = facts.evaluation.utility_members  # each trains on as many images as the real train split
    return members * _classifier_seconds(facts.split_size(node["dataset"], "train"), costs, facts)


def utility_cost(node, costs: Costs, facts) -> float:
    # the synthetic-only and the 50/50 arms, each `utility_members` classifiers on a train split's worth of images
    return 2 * facts.evaluation.utility_members * _classifier_seconds(facts.split_size(dataset_of(node), "train"), costs, facts)


def estimate_suite(suite: Suite, costs: Costs = DEFAULT_COSTS) -> Estimate:
    """The cold-cache time of `suite`: the cost of every node of its plan (shared nodes once, see the
    module doc)."""
    from ldbench.runner import pipeline  # noqa: F401 - declares the stages
    from ldbench.runner.graph import STAGES, plan

    facts = EstimateFacts(suite.evaluation)
    est = Estimate()
    for node in plan(suite, facts).nodes():
        seconds = STAGES.get(node.stage).cost(node, costs, facts)
        if seconds is not None:
            est.add(node.stage, seconds)
    return est
