"""Suites: YAML files of frozen dataclasses. `include:` merges other suite files, unknown keys are
rejected with the valid ones listed, `--set a.b=value` overrides any key, and the resolved config is
saved with every result."""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ldbench.errors import UserError
from ldbench.paths import SUITES_DIR
from ldbench.registry import build_options  # noqa: F401 - re-exported: the stages build options through it
from ldbench.registry import reject_unknown as _reject_unknown
from ldbench.yamlload import load_yaml_file, load_yaml_text

if TYPE_CHECKING:  # imported where needed: ldbench.drift imports torch, and bad input should fail fast
    from ldbench.drift import Drift

SUITE_FORMAT_VERSION = 1
MAX_INCLUDE_DEPTH = 16


@dataclass(frozen=True)
class Component:
    """A registered component by name, with its options (validated by the component itself)."""

    name: str
    options: dict = field(default_factory=dict)

    def __hash__(self) -> int:  # options is a dict; hashing by the canonical form keeps Component usable in sets
        from ldbench.hashing import canonical_json

        return hash((self.name, canonical_json(self.options)))


DEFAULT_EXTRACTORS = ("inception", "domain")


@dataclass(frozen=True)
class Evaluation:
    """How generated sets are scored (every field is in the scoring stages' cache keys but `latent_probe`, which
    the fine-tune's key holds: scoring_key)."""

    # Feature extractors of the realism metrics, each scored separately (FID/KID on Inception's features,
    # FD/KD on any other's); `extractor: NAME` in a suite is short for `extractors: [NAME]`.
    extractors: list = field(default_factory=lambda: list(DEFAULT_EXTRACTORS))
    extractor_options: dict = field(default_factory=dict)  # extractor name -> its options
    reference_split: str = "test"
    kid_subset_size: int = 50
    kid_subsets: int = 100
    bootstrap: int = 200  # B, bootstrap resamples of the generated set for the 95% CIs
    batch_size: int = 64
    # Counterfactual evaluation (ldbench.runner.counterfactual), each off unless a suite asks for it:
    counterfactual: bool = False  # SSIM/PSNR/L1 vs source and true counterfactual, CLD, composition, reversibility
    effectiveness: bool = False  # oracle classifiers (trained on real data) read the intended attribute back
    utility: bool = False  # the AUC protocol: classifiers trained on real / synthetic / 50-50, tested on real
    utility_label: str = ""  # the binary attribute the AUC protocol classifies; "" = the one the dataset's
    # counterfactuals flip (synth-brain: diagnosis, synth-cxr: cardiomegaly)
    axiom_items: int = 16  # sources used for composition and reversibility (each costs null_edits + 2 edits)
    null_edits: int = 10  # composition: L1 after 1 and after this many null edits
    classifier: dict = field(default_factory=dict)  # ldbench.classify.ClassifierOptions for oracles and AUC
    # classifiers per oracle, each from its own seed: readings are their mean prediction, CIs resample them too
    oracle_members: int = 5
    # classifiers per arm of the AUC protocol, each from its own seed: an arm's AUC is their mean prediction's,
    # its CI resamples them too (one classifier's AUC moves with its training run: ldbench.classify.utility)
    utility_members: int = 3
    lpips_backbone: str = ""  # local LPIPS weights (AlexNet features and the LPIPS linear layers);
    lpips_linear: str = ""  # without them LPIPS is skipped and the results say so
    significance: bool = True  # LD minus no-LD for every metric, with CI and p-value
    multiple_comparisons: str = "holm"  # correction over all LD effects of a run: holm | bh | none
    fid_infinity: bool = False  # also FID∞ / FD∞ (Chong & Forsyth 2020): B x 15 Fréchet distances per set
    diversity: bool = True  # MS-SSIM diversity and memorization (nearest train image) of every generated set
    # the generated-latent statistics every fine-tune records (ldbench.models.probe.ProbeSettings: checkpoints,
    # samples, steps; {} = its defaults)
    latent_probe: dict = field(default_factory=dict)

    def scoring_key(self) -> dict:
        """The fields a scoring stage's cache key holds: all but `latent_probe`, which changes what a fine-tune
        records, never how a generated set is scored."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "latent_probe"}


@dataclass(frozen=True)
class Suite:
    name: str
    description: str = ""
    datasets: tuple[Component, ...] = ()
    base_model: Component = Component("embedded")
    methods: tuple[Component, ...] = ()
    drifts: tuple[Drift, ...] = ()
    seeds: tuple[int, ...] = (0,)
    editors: tuple[Component, ...] = ()
    evaluation: Evaluation = Evaluation()
    version: int = SUITE_FORMAT_VERSION

    def cells(self) -> list[Cell]:
        return [
            Cell(d, m, dr, s, e)
            for d, m, dr, s, e in itertools.product(self.datasets, self.methods, self.drifts, self.seeds, self.editors)
        ]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "datasets": [dataclasses.asdict(c) for c in self.datasets],
            "base_model": dataclasses.asdict(self.base_model),
            "methods": [dataclasses.asdict(c) for c in self.methods],
            "drifts": [d.to_dict(with_note=True) for d in self.drifts],
            "seeds": list(self.seeds),
            "editors": [dataclasses.asdict(c) for c in self.editors],
            "evaluation": dataclasses.asdict(self.evaluation),
        }


@dataclass(frozen=True)
class Cell:
    dataset: Component
    method: Component
    drift: Drift
    seed: int
    editor: Component


_TOP_KEYS = {"version", "description", "include", "requires", "datasets", "base_model", "methods", "drifts", "seeds",
             "editors", "evaluation"}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def required_env(data: dict) -> dict[str, str]:
    """Every ${VAR} a suite refers to, with the description its `requires:` mapping gives."""
    described = data.get("requires") or {}
    if not isinstance(described, dict):
        raise UserError("'requires' must map environment variable names to what they point to")
    found: dict[str, str] = {}

    def walk(value: Any) -> None:
        if isinstance(value, str):
            for name in _ENV_REF.findall(value):
                found[name] = str(described.get(name, "no description in the suite's requires:"))
        elif isinstance(value, dict):
            for k, v in value.items():
                if k != "requires":
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(data)
    return found


def _expand_env(value: Any) -> Any:
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: os.environ[m.group(1)], value)
    if isinstance(value, dict):
        return {k: _expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v) for v in value]
    return value


def available_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def suite_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise UserError(f"suite file {p} does not exist")
        return p
    candidate = SUITES_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        import difflib

        names = available_suites()
        close = difflib.get_close_matches(name_or_path, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown suite {name_or_path!r}; valid: {', '.join(names)} (or a path to a .yaml file).{hint}")
    return candidate


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise UserError(f"{path}: include cycle ({' -> '.join(str(s) for s in seen)})")
    if len(seen) >= MAX_INCLUDE_DEPTH:
        raise UserError(f"{path}: includes nested more than {MAX_INCLUDE_DEPTH} files deep")
    raw = load_yaml_file(path) or {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a suite must be a YAML mapping")
    includes = raw.pop("include", None) or []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise UserError(f"{path}: 'include' must be a file name or a list of file names")
    merged: dict = {}
    for inc in includes:
        _merge(merged, _read_yaml((path.parent / inc), (*seen, path)))
    _merge(merged, raw)
    return merged


def _merge(base: dict, update: dict) -> None:
    """Merge `update` into `base`; nested mappings merge key by key, anything else is replaced."""
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = dict(base[k])
            _merge(base[k], v)
        else:
            base[k] = v


def apply_override(data: dict, assignment: str) -> None:
    """`a.b=value`, value parsed as YAML (numbers, lists, booleans)."""
    if "=" not in assignment:
        raise UserError(f"--set {assignment!r}: expected KEY=VALUE, e.g. evaluation.bootstrap=100")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise UserError(f"--set {assignment!r}: empty key; write KEY=VALUE, e.g. evaluation.bootstrap=100")
    target = data
    for p in parts[:-1]:
        target = target.setdefault(p, {})
        if not isinstance(target, dict):
            raise UserError(f"--set {assignment!r}: {p!r} is not a mapping; set the whole value instead")
    target[parts[-1]] = load_yaml_text(value, f"--set {assignment[:80]!r}")


def _component(value: Any, where: str) -> Component:
    if isinstance(value, str):
        return Component(value)
    if isinstance(value, dict):
        _reject_unknown(value, {"name", "options"}, where)
        if not isinstance(value.get("name"), str):
            raise UserError(f"{where}: 'name' must be a component name, got {value.get('name')!r}")
        options = value.get("options") or {}
        if not isinstance(options, dict):
            raise UserError(f"{where}.options must be a mapping")
        return Component(str(value["name"]), dict(options))
    raise UserError(f"{where}: expected a name or {{name, options}}, got {value!r}")


def _list(data: dict, key: str, source: str) -> list:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise UserError(f"{source}: '{key}' must be a list")
    return value


def load_suite(name_or_path: str, overrides: list[str] = (), expand_env: bool = True) -> Suite:
    """`expand_env`: replace ${VAR} (paths to real weights and data, described under `requires:`) from the
    environment, refusing with every missing variable and what it must point to; False keeps them as
    written (for listing suites)."""
    path = suite_path(name_or_path)
    data = _read_yaml(path)
    for o in overrides:
        apply_override(data, o)
    if expand_env:
        missing = {k: v for k, v in required_env(data).items() if not os.environ.get(k)}
        if missing:
            needs = "; ".join(f"${k}: {v}" for k, v in missing.items())
            raise UserError(f"suite {path.stem} needs {needs}. Set them (export {next(iter(missing))}=PATH) "
                            "or override the keys with --set")
        data = _expand_env(data)
    data.pop("requires", None)
    return parse_suite(data, path.stem, str(path))


def suite_from_resolved(resolved: dict, src: str) -> Suite:
    """The Suite a run saved as its resolved config (Suite.to_dict), e.g. from results.json."""
    if not isinstance(resolved, dict) or "name" not in resolved:
        raise UserError(f"{src}: no resolved suite config in it; was it written by `ldbench run`?")
    data = {k: v for k, v in resolved.items() if k != "name"}
    return parse_suite(data, str(resolved["name"]), src)


def parse_suite(data: dict, name: str, src: str) -> Suite:
    """A Suite from a resolved mapping, every value checked (ldbench.suite_checks) before any work."""
    from ldbench import suite_checks

    if not isinstance(data, dict):
        raise UserError(f"{src}: a suite must be a YAML mapping")
    _reject_unknown(data, _TOP_KEYS, src)
    if data.get("version", SUITE_FORMAT_VERSION) != SUITE_FORMAT_VERSION:
        raise UserError(f"{src}: suite format version {data['version']!r} is not supported (expected {SUITE_FORMAT_VERSION})")
    eval_raw = data.get("evaluation") or {}
    if not isinstance(eval_raw, dict):
        raise UserError(f"{src}: 'evaluation' must be a mapping, got {eval_raw!r}")
    eval_raw = _extractors_shorthand(eval_raw, src)
    _reject_unknown(eval_raw, {f.name for f in dataclasses.fields(Evaluation)}, f"{src}: evaluation")
    suite_checks.check_evaluation_types(eval_raw, dataclasses.fields(Evaluation), src)
    evaluation = Evaluation(**eval_raw)
    suite_checks.check_evaluation(evaluation, src)
    from ldbench.drift import Drift

    drifts = []
    for i, d in enumerate(_list(data, "drifts", src)):
        if not isinstance(d, dict):
            raise UserError(f"{src}: drifts[{i}] must be a mapping like {{delta: 0.1, train: noise, sample: init}}")
        try:
            drifts.append(Drift.from_dict(d))
        except (TypeError, ValueError, UserError) as exc:
            raise UserError(f"{src}: drifts[{i}]: {exc}") from None
    suite = Suite(
        name=name,
        description=str(data.get("description") or ""),
        datasets=tuple(_component(c, f"{src}: datasets[{i}]") for i, c in enumerate(_list(data, "datasets", src))),
        base_model=_component(data.get("base_model", "embedded"), f"{src}: base_model"),
        methods=tuple(_component(c, f"{src}: methods[{i}]") for i, c in enumerate(_list(data, "methods", src))),
        drifts=tuple(drifts),
        seeds=suite_checks.check_seeds(_list(data, "seeds", src), src),
        editors=tuple(_component(c, f"{src}: editors[{i}]") for i, c in enumerate(_list(data, "editors", src))),
        evaluation=evaluation,
    )
    for key in ("datasets", "methods", "drifts", "editors"):
        if not getattr(suite, key):
            raise UserError(f"{src}: '{key}' is empty; a suite needs at least one")
    _validate_names(suite, src)
    suite_checks.check_components(suite, src)
    return suite


def _extractors_shorthand(eval_raw: dict, src: str) -> dict:
    """`extractor: NAME` (with flat `extractor_options`) as `extractors: [NAME]` (options keyed by NAME);
    then every extractor name and its options mapping checked."""
    out = dict(eval_raw)
    if "extractor" in out:
        if "extractors" in out:
            raise UserError(f"{src}: evaluation has both 'extractor' and 'extractors'; keep one")
        name = out.pop("extractor")
        if not isinstance(name, str):
            raise UserError(f"{src}: evaluation.extractor must be an extractor name, got {name!r}")
        out["extractors"] = [name]
        options = out.get("extractor_options") or {}
        if isinstance(options, dict) and options and not all(isinstance(v, dict) for v in options.values()):
            out["extractor_options"] = {name: options}
    names = out.get("extractors", list(DEFAULT_EXTRACTORS))
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise UserError(f"{src}: evaluation.extractors must be a non-empty list of extractor names, got {names!r}")
    if len(set(names)) != len(names):
        raise UserError(f"{src}: evaluation.extractors lists an extractor twice: {names!r}")
    options = out.get("extractor_options") or {}
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise UserError(f"{src}: evaluation.extractor_options must map extractor names to option mappings, "
                        f"e.g. {{inception: {{weights_path: FILE}}}}")
    stray = sorted(set(options) - set(names))
    if stray:
        raise UserError(f"{src}: evaluation.extractor_options names {', '.join(stray)}, which "
                        f"evaluation.extractors ({', '.join(names)}) does not list")
    return out


def _validate_names(suite: Suite, src: str) -> None:
    from ldbench.data import DATASETS

    for c in suite.datasets:
        DATASETS.get(c.name)
    from ldbench.methods import METHODS  # imports diffusers: only once the datasets are known to be valid

    for c in suite.methods:
        METHODS.get(c.name)
    from ldbench.generate import EDITORS

    for c in suite.editors:
        EDITORS.get(c.name)
    from ldbench.metrics.extractors import EXTRACTORS

    for name in suite.evaluation.extractors:
        EXTRACTORS.get(name)

