"""Load-time checks of a whole suite: every evaluation option, seed and component option is checked when
the suite is loaded (ldbench.config.parse_suite), so a bad value is one line before any work starts. The few
checks that need heavy imports (`check_before_building`) wait until a run is about to build its first stage."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ldbench import validate as v
from ldbench.errors import UserError

if TYPE_CHECKING:
    from ldbench.config import Suite

SPLITS = ("train", "val", "test")
MAX_SEEDS = 1000
MAX_RESAMPLES = 100_000  # bootstrap resamples, KID subsets


def check_evaluation_types(raw: dict, fields, src: str) -> None:
    """Each given evaluation key has its default's type (lists, mappings, integers, booleans, strings)."""
    for f in fields:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if f.name in raw and type(raw[f.name]) is not type(default):
            raise UserError(f"{src}: evaluation.{f.name} must be of type {type(default).__name__}, "
                            f"got {raw[f.name]!r}")


def check_evaluation(ev, src: str) -> None:
    """Value limits of an Evaluation (types are checked by check_evaluation_types)."""
    where = f"{src}: evaluation."
    v.int_in(ev.kid_subset_size, where + "kid_subset_size", 2, example=50)
    v.int_in(ev.kid_subsets, where + "kid_subsets", 1, MAX_RESAMPLES, example=100)
    v.int_in(ev.bootstrap, where + "bootstrap", 0, MAX_RESAMPLES, example=200)
    v.int_in(ev.batch_size, where + "batch_size", 1, example=64)
    v.int_in(ev.axiom_items, where + "axiom_items", 0, example=16)
    v.int_in(ev.null_edits, where + "null_edits", 0, example=10)
    v.int_in(ev.oracle_members, where + "oracle_members", 1, 64, example=5)
    v.int_in(ev.utility_members, where + "utility_members", 1, 64, example=3)
    v.one_of(ev.reference_split, where + "reference_split", SPLITS)
    v.one_of(ev.multiple_comparisons, where + "multiple_comparisons", ("holm", "bh", "none"))
    from ldbench.config import build_options

    if ev.classifier:
        from ldbench.classify.models import ClassifierOptions

        _prefixed(lambda: build_options(ClassifierOptions, ev.classifier, where + "classifier"), where + "classifier")
    if ev.latent_probe:
        from ldbench.models.probe import ProbeSettings

        _prefixed(lambda: build_options(ProbeSettings, ev.latent_probe, where + "latent_probe"), src)


def check_before_building(suite: Suite, extractors: dict) -> None:
    """Whether timm knows the classifier's model name, and each extractor's network with its weights. Both need
    imports that cost seconds (timm and torch-fidelity import torchvision, which imports torch._dynamo: about
    3 s on 2 cores), so a run makes these checks before its first build (Store.before_first_build): a run whose
    every stage is cached skips them, and any other fails on them before any work."""
    if suite.evaluation.classifier:
        from ldbench.classify.models import ClassifierOptions, check_model_name
        from ldbench.config import build_options

        where = f"suite {suite.name}: evaluation.classifier"
        _prefixed(lambda: check_model_name(build_options(ClassifierOptions, suite.evaluation.classifier, where).model),
                  where)
    for extractor in extractors.values():
        load = getattr(extractor, "load", None)  # extractors that defer their network (Inception) have one
        if load is not None:
            load()


def check_seeds(raw: list, src: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_SEEDS:
        raise UserError(f"{src}: 'seeds' must be a list of at most {MAX_SEEDS} integers, e.g. [0, 1, 2]")
    for i, s in enumerate(raw):
        if not v.is_int(s) or not 0 <= s <= v.SEED_MAX:
            raise UserError(f"{src}: seeds[{i}] must be an integer in [0, {v.SEED_MAX}] (2**32 - 1), got {s!r}; "
                            "e.g. seeds: [0, 1, 2]")
    seeds = tuple(int(s) for s in raw)
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{src}: 'seeds' lists a seed twice: {list(seeds)!r}; list each seed once")
    return seeds or (0,)


def _prefixed(build, where: str) -> Any:
    """build(), a UserError's message prefixed with `where` unless it already names it."""
    try:
        return build()
    except UserError as exc:
        message = str(exc)
        raise UserError(message if message.startswith(where) else f"{where}: {message}") from None


def check_components(suite: Suite, src: str) -> None:
    """Every component's options, built as the stages will build them (no data read, no model loaded)."""
    from ldbench.generate import editor_options
    from ldbench.methods import method_options

    # each with its own component's options class: a key another method or editor has is refused too
    for i, c in enumerate(suite.methods):
        where = f"{src}: methods[{i}] ({c.name})"
        options = _prefixed(lambda c=c: method_options(c), where)
        if not options.checkpoint and options.steps < 2:  # latent_instability would be undefined at the run's end
            raise UserError(f"{where}: steps must be >= 2, got {options.steps}: the latent probe compares checkpoints "
                            "in the second half of training (ldbench.models.probe)")
    for i, c in enumerate(suite.editors):
        _prefixed(lambda c=c: editor_options(c), f"{src}: editors[{i}] ({c.name})")
    for i, c in enumerate(suite.datasets):
        _prefixed(lambda c=c: _dataset(c), f"{src}: datasets[{i}] ({c.name})")
    _prefixed(lambda: check_base_model(suite.base_model), f"{src}: base_model")


def _dataset(spec) -> None:
    from ldbench.data import create_dataset

    try:
        create_dataset(spec.name, **spec.options)
    except TypeError as exc:
        raise UserError(f"bad options {spec.options} ({exc})") from None


def check_base_model(spec) -> None:
    """The base model's name and options, through the BASE_MODELS registry (no model built or loaded)."""
    from ldbench.models.base_models import BASE_MODELS

    BASE_MODELS.get(spec.name).check(spec.options)


def check_executor_options(name: str, options: dict) -> None:
    """Option names and numbers of an executor, from its constructor's signature, before any work."""
    import inspect

    from ldbench.runner.executors import EXECUTORS

    cls = EXECUTORS.get(name)
    signature = list(inspect.signature(cls.__init__).parameters.values())[1:]
    params = {p.name: p.default for p in signature if p.name != "out_dir" and p.kind is not p.VAR_KEYWORD}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in signature)  # e.g. slurm passes the rest to submitit
    unknown = set(options) - set(params)
    if unknown and not open_ended:
        raise UserError(f"--executor-option {', '.join(sorted(map(str, unknown)))}: unknown for executor {name}; "
                        f"valid: {', '.join(sorted(params)) or 'none'}")
    for key, value in options.items():
        if key not in params:
            continue
        default = params[key]
        where = f"--executor-option {key}"
        if isinstance(default, bool):
            v.boolean(value, where)
        elif isinstance(default, (int, float)):
            v.finite_float(value, where, 0.0, example=default)
        elif isinstance(default, str):
            v.string(value, where)


def check_table_for_suite(suite: Suite, dataset: str, table) -> None:
    """Attributes a suite relies on, once a dataset's table is read (before any training): the instruct
    editor and the age oracles (effectiveness) need a numeric age."""
    needs_age = any(e.name == "instruct" for e in suite.editors) or suite.evaluation.effectiveness
    age = table.attributes.get("age")
    if needs_age and age is not None and age.dtype.kind not in "iuf":
        examples = ", ".join(repr(str(a)) for a in list(dict.fromkeys(age.tolist()))[:3])
        raise UserError(f"dataset {dataset}: its age column is text (e.g. {examples}), not numbers; the instruct "
                        "editor and the age oracles need ages in years: fix the column, or drop instruct and "
                        "evaluation.effectiveness from the suite")
