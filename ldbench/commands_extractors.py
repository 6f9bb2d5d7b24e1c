"""`ldbench extractors train-domain` and `ldbench extractors validate`: call the API, print with rich."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table
from rich.text import Text

from ldbench.commands import _extractor, out
from ldbench.errors import UserError
from ldbench.paths import resolve_cache_dir


def _training_set(ctx, names: list[str]):
    """The train splits of `names`, stacked: images, label columns ("dataset__column", missing for the other
    datasets' rows, plus `dataset` when there are several) and per-dataset provenance."""
    import numpy as np

    from ldbench.config import Component
    from ldbench.runner import stages

    images, columns, sources, rows = [], {}, [], []
    for name in names:
        ds = stages.make_dataset(Component(name))
        data_art = stages.dataset_stage(ctx, ds)
        train = stages.load_table(data_art).split("train")
        images.append(np.asarray(train.images))
        rows.append(len(train.images))
        sources.append({"dataset": ds.name, "dataset_version": ds.version, "dataset_options": ds.options(),
                        "content_hash": data_art.meta["content_hash"], "split": "train", "n": len(train.images)})
        for k, v in train.attributes.items():
            if k not in ("subject", "visit", "split"):
                columns[(name, k)] = np.asarray(v)
    total, offsets = sum(rows), np.cumsum([0, *rows])
    labels = {}
    for (name, k), v in columns.items():
        i = names.index(name)
        col = np.full(total, np.nan) if v.dtype.kind == "f" else np.full(total, None, dtype=object)
        col[offsets[i] : offsets[i + 1]] = v
        labels[f"{name}__{k}".replace("-", "_") if len(names) > 1 else k] = col
    if len(names) > 1:
        labels["dataset"] = np.repeat(np.array(names), rows)
    return np.concatenate(images), labels, sources


def train_domain(args) -> int:
    from ldbench.metrics.domain import DEFAULT_WEIGHTS, save_domain_net
    from ldbench.metrics.domain_training import DomainTrainingOptions, train_domain_net
    from ldbench.runner import stages
    from ldbench.store import Store

    if args.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {args.epochs}")
    names = [n.strip() for n in args.dataset.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise UserError(f"--dataset {args.dataset!r}: give one or more distinct dataset names, comma-separated")
    ctx = stages.Context(store=Store(resolve_cache_dir(args.cache_dir)))
    images, labels, sources = _training_set(ctx, names)
    training = DomainTrainingOptions(epochs=args.epochs, realism=not args.no_realism)
    net = train_domain_net(images, labels, args.seed, training, log=None if args.quiet else out.print)
    target = args.out or DEFAULT_WEIGHTS
    meta = {"datasets": json.dumps(sources, sort_keys=True), "dataset": ",".join(names), "split": "train",
            "seed": str(args.seed), "epochs": str(args.epochs), "labels": ",".join(sorted(labels)),
            "command": f"ldbench extractors train-domain --dataset {','.join(names)} --seed {args.seed} "
                       f"--epochs {args.epochs}" + (" --no-realism" if args.no_realism else "")}
    save_domain_net(net, Path(target), meta)
    out.print(f"wrote {target} ({net.meta['train_seconds']} s)")
    return 0


OTHER_DATASET = {"synth-brain": "synth-cxr", "synth-cxr": "synth-brain"}


def _split_images(ctx, name: str, split: str):
    from ldbench.config import Component
    from ldbench.runner import stages

    ds = stages.make_dataset(Component(name))
    return stages.load_table(stages.dataset_stage(ctx, ds)).split(split).images


def _validation_sets(ctx, name: str, n: int | None):
    """The test split of `name` and a held-out set of `n` images (default: the test split's size): the val
    split, topped up with newly rendered subjects of a synthetic dataset (ldbench.runner.floor.floor_images,
    the held-out floor of a suite run); with a note saying what the held-out set holds."""
    from ldbench.config import Component
    from ldbench.runner import stages
    from ldbench.runner.floor import floor_images

    ds = stages.make_dataset(Component(name))
    data_art = stages.dataset_stage(ctx, ds)
    test = stages.load_table(data_art).split("test").images
    if n is not None and n > len(test):
        raise UserError(f"--n must be in 2..{len(test)} (the size of the test split), got {n}")
    held, source = floor_images(ds, data_art, len(test) if n is None else int(n))
    return test, held, source


def extractors_validate(args) -> int:
    """`ldbench extractors validate`: the disturbance test (ldbench.metrics.validation) of an extractor on a
    dataset: a held-out set the size of the test split (the val split topped up with newly rendered subjects,
    as the held-out floor of a suite run: ldbench.runner.floor.floor_images), disturbed, against the test
    split; exit 0 on a pass, 1 on a failure."""
    from ldbench.data import DATASETS
    from ldbench.metrics.validation import (
        ValidationOptions,
        ValidationSets,
        matched_subsets,
        validate_extractor,
        verdict,
        write_validation,
    )
    from ldbench.runner import stages
    from ldbench.store import Store

    DATASETS.get(args.dataset)  # an unknown name fails before any work
    if args.n is not None and args.n < 2:
        raise UserError(f"--n must be >= 2, got {args.n}")
    options = {"weights_path": args.extractor_weights} if getattr(args, "extractor_weights", None) else {}
    extractor = _extractor(args.extractor, args, **options)
    ctx = stages.Context(store=Store(resolve_cache_dir(args.cache_dir)))
    test, held, held_source = _validation_sets(ctx, args.dataset, args.n)
    reference, heldout = matched_subsets(test, held, min(len(test) if args.n is None else args.n, len(held)),
                                         args.seed)
    other_name = OTHER_DATASET.get(args.dataset, "synth-brain")
    other = _split_images(ctx, other_name, "test")
    result = validate_extractor(extractor, ValidationSets(reference, heldout, other),
                                ValidationOptions(seed=args.seed, dataset=args.dataset))
    result["contamination_dataset"] = f"{other_name} (test split)"
    result["splits"] = {"reference": "test", "heldout": "val", "heldout_images": held_source}
    from ldbench.report.plots import validation_figure_png

    paths = write_validation(result, args.out or Path.cwd() / "reports" / f"validate-{args.extractor}-{args.dataset}",
                             validation_figure_png(result))
    from rich.markup import escape

    table = Table("disturbance", *[f"level {i + 1}" for i in range(4)], "passed",
                  title=escape(f"{result['metric'].upper()} [{extractor.name}] vs {args.dataset} test, ")
                  + f"n={result['n']}; real held-out floor {result['floor']:.4g}")
    for name, r in result["disturbances"].items():
        table.add_row(name, *[f"{v:.4g} ({s:g})" for s, v in zip(r["levels"], r["values"], strict=False)],
                      Text("yes", style="green") if r["passed"] else Text("no", style="red"))
    out.print(table)
    out.print(f"wrote {paths['json']}, {paths['md'].name}, {paths['png'].name}")
    out.print(verdict(result), markup=False, highlight=False)
    return 0 if result["passed"] else 1
