"""What each CLI command does: call the API, print the outcome with rich."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ldbench.cli_inputs import check_model_paths, key_values, writable_dirs
from ldbench.errors import UserError
from ldbench.paths import REFERENCE_STATS_DIR, resolve_cache_dir

# No markup: paths, suite descriptions and metric names are user text ("o[/x]" is a valid folder name);
# colour comes from style= only.
out = Console(markup=False)


def run(args) -> int:
    from ldbench.config import load_suite

    suite = load_suite(args.suite, args.overrides)  # before the heavy runner import: bad input fails fast
    from ldbench.suite_checks import check_executor_options

    out_dir = (args.out or Path.cwd() / "reports" / suite.name).resolve()
    executor_options = key_values(args.executor_options, "--executor-option")
    if args.address:
        executor_options["address"] = args.address
    check_executor_options(args.executor, executor_options)
    check_model_paths(args)
    from ldbench.device import from_args

    device, precision = from_args(args)
    from ldbench.models.training import use_trackers

    use_trackers(tuple(args.log_with), str(out_dir / "logs"))  # an unknown or missing tracker fails before any work
    cache_dir = writable_dirs(out_dir, args.cache_dir)
    from ldbench.runner.run import RunOptions, run_suite

    opts = RunOptions(out_dir=out_dir, cache_dir=cache_dir, quiet=args.quiet,
                      base_model=args.base_model, inception_weights=args.inception_weights,
                      allow_unverified_weights=args.allow_unverified_weights, executor=args.executor,
                      executor_options=executor_options, device=device, precision=precision,
                      log_with=tuple(args.log_with))
    result = run_suite(suite, opts)
    built = sum(not e["cached"] for e in result.store_events)
    if not args.quiet:
        out.print((out_dir / "tables" / "main.md").read_text(), markup=False)
    out.print(f"{len(result.records)} records in {result.seconds:.1f} s ({built} stages computed, "
              f"{len(result.store_events) - built} from cache)")
    out.print(f"results: {out_dir / 'results.json'}\nreport:  {out_dir / 'report.html'}\ntable:   "
              f"{out_dir / 'tables' / 'main.md'}")
    return 0


def tune_delta(args) -> int:
    from ldbench.config import Component, load_suite

    suite = load_suite(args.suite, args.overrides)
    from ldbench.data import DATASETS
    from ldbench.methods import METHODS

    dataset = next((d for d in suite.datasets if d.name == args.dataset), None) if args.dataset else suite.datasets[0]
    if dataset is None:
        DATASETS.get(args.dataset)
        dataset = Component(args.dataset)
    method = next((m for m in suite.methods if m.name == args.method), None) if args.method else suite.methods[0]
    if method is None:
        METHODS.get(args.method)
        method = Component(args.method)
    from ldbench.device import from_args
    from ldbench.runner.tune import TuneOptions, parse_grid, tune_delta

    low, high, step = parse_grid(args.grid)
    device, precision = from_args(args)
    opts = TuneOptions(low=low, high=high, step=step, criterion=args.criterion, train=args.train, sample=args.sample,
                       seed=args.seed, device=device, precision=precision, inception_weights=args.inception_weights,
                       allow_unverified_weights=args.allow_unverified_weights)
    opts.check()
    out_dir = (args.out or Path.cwd() / "reports" / f"tune-delta-{dataset.name}-{method.name}").resolve()
    cache_dir = writable_dirs(out_dir, args.cache_dir)
    tune_delta(suite, dataset, method, opts, out_dir, cache_dir, quiet=args.quiet)
    out.print((out_dir / "tune-delta.md").read_text(), markup=False)
    out.print(f"curve: {out_dir / 'tune-delta.json'}")
    return 0


def report(args) -> int:
    """`ldbench report DIR`: re-render DIR's report, tables and results from the cache the run used,
    recomputing nothing (a missing cache entry is an error, never a silent rebuild)."""
    import json

    from ldbench.config import suite_from_resolved

    path = args.dir / "results.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read results ({exc}); pass the output folder of `ldbench run`") from None
    if not isinstance(results, dict) or "resolved_config" not in results or "cache_dir" not in results:
        raise UserError(f"{path}: written by an older ldbench without its config and cache path; rerun `ldbench run`")
    suite = suite_from_resolved(results["resolved_config"], str(path))
    from ldbench.runner.run import RunOptions, run_suite

    run_options = results.get("run_options") or {}
    if not isinstance(run_options, dict) or not isinstance(results["cache_dir"], str):
        raise UserError(f"{path}: run_options / cache_dir are malformed; rerun `ldbench run`")
    cache_dir = writable_dirs(args.dir.resolve(), args.cache_dir or results["cache_dir"])
    opts = RunOptions(out_dir=args.dir.resolve(), cache_dir=cache_dir, quiet=True, require_cached=True,
                      base_model=run_options.get("base_model"), inception_weights=run_options.get("inception_weights"),
                      allow_unverified_weights=bool(run_options.get("allow_unverified_weights")),
                      cache_device=str(run_options.get("device", "cpu")), precision=run_options.get("precision", "fp32"))
    result = run_suite(suite, opts)
    out.print(f"report: {args.dir / 'report.html'} ({len(result.records)} records, all from the cache)")
    return 0


def table(args) -> int:
    from ldbench.regression import load_results
    from ldbench.report.tables import build_table, render, select_metrics

    records = load_results(args.dir)
    if not records:
        raise UserError(f"{args.dir / 'results.json'} holds no records")
    print(render(build_table(select_metrics(records, args.metrics)), args.format, with_ci=not args.no_ci), end="")
    return 0


def check(args) -> int:
    """Exit 0 when every baseline entry is within tolerance; 1 when any changed beyond it (either way),
    is missing, or is new (the baseline needs a deliberate `--update`); 2 on unreadable input."""
    from ldbench.regression import FAILING, compare, load_baseline, load_results

    records = load_results(args.dir)
    if args.update:
        return _update_baseline(args, records)
    findings = compare(records, load_baseline(args.baseline))
    shown = Table("verdict", "metric", "extractor", "cell", "baseline", "now", "tolerance")
    for f in findings:
        if f.verdict != "ok":
            cell = json.loads(f.key)
            label = f"{cell['dataset']} · {cell['method']} · δ={cell['drift'].get('delta')} · {cell['editor']} · seed {cell['seed']}"
            verdict = f"changed ({f.verdict})" if f.verdict in ("regressed", "improved") else f.verdict
            shown.add_row(verdict, f.metric, str(cell["extractor"]), label,
                          "—" if f.baseline is None else f"{f.baseline:.5g}",
                          "—" if f.value is None else f"{f.value:.5g}", f"{f.tolerance:.3g}")
    if shown.row_count:
        out.print(shown)
    count = {v: sum(f.verdict == v for f in findings) for v in ("ok", *FAILING)}
    out.print(f"{count['regressed']} regressed, {count['improved']} improved beyond tolerance, {count['missing']} "
              f"missing, {count['new']} new, {count['ok']} within tolerance")
    if count["regressed"] or count["missing"]:
        return 1
    if count["improved"] or count["new"]:
        out.print(f"the baseline is out of date: after reviewing the changes, refresh it with "
                  f"`ldbench check {args.dir} --baseline {args.baseline} --update`")
        return 1
    return 0


def _update_baseline(args, records: list[dict]) -> int:
    from ldbench.regression import load_baseline, write_baseline
    from ldbench.validate import writable_dir

    writable_dir(args.baseline.parent.resolve(), "baseline directory")
    if args.baseline.is_dir():
        raise UserError(f"--baseline {args.baseline} is a directory; pass a .json file path")
    previous = None
    if args.baseline.exists():
        try:
            previous = load_baseline(args.baseline)
        except UserError as exc:
            out.print(f"note: the old baseline is unusable ({exc}); its tolerances are replaced by the defaults",
                      style="yellow")
    write_baseline(records, args.baseline, previous)
    out.print(f"baseline {args.baseline} rewritten from {len(records)} records")
    return 0


def suites(gpu_costs: Path | None = None) -> int:
    """Each suite with its size and a cold-cache time estimate (ldbench.runner.estimate), so a user can pick
    one that fits the time they have before starting it; with `gpu_costs`, also on the benchmarked GPU."""
    from ldbench.config import _read_yaml, available_suites, load_suite, required_env, suite_path
    from ldbench.runner.estimate import Costs, estimate_suite, format_duration

    gpu = Costs.from_gpu_benchmark(gpu_costs) if gpu_costs else None
    columns = ["suite", "cells", "datasets × methods × drifts × seeds × editors", "stages",
               "est. time (cold cache, 2 CPU cores)"] + (["est. time on the GPU"] if gpu else []) + ["description"]
    table = Table(*columns)
    for name in available_suites():
        s = load_suite(name, expand_env=False)
        needs = required_env(_read_yaml(suite_path(name)))
        est = estimate_suite(s)
        time = "needs " + ", ".join(f"${k}" for k in needs) if needs else format_duration(est.seconds)
        on_gpu = [format_duration(estimate_suite(s, gpu).seconds)] if gpu else []
        table.add_row(name, str(len(s.cells())),
                      f"{len(s.datasets)} × {len(s.methods)} × {len(s.drifts)} × {len(s.seeds)} × {len(s.editors)}",
                      str(est.stages), time, *on_gpu, s.description)
    out.print(table)
    out.print("Estimates: ldbench/runner/estimate.py's cost model, calibrated on an unshared 2-core CPU machine; "
              "shared stages (dataset, base model, fine-tunes shared across editors) are counted once.")
    if gpu:
        out.print(f"GPU column: {gpu.source}.")
    return 0


def datasets() -> int:
    from ldbench.data import DATASETS

    table = Table("dataset", "needs", "description")
    for name, factory in DATASETS:
        doc = (factory.__doc__ or "").strip().splitlines()
        table.add_row(name, getattr(factory, "needs", "nothing (embedded)"), doc[0] if doc else "")
    out.print(table)
    return 0


def datasets_check(args) -> int:
    """`ldbench datasets check NAME --root DIR`: summary (exit 0) or every problem found (exit 2)."""
    import yaml

    from ldbench.data import DATASETS, create_dataset

    if not getattr(DATASETS.get(args.name), "needs", None):
        raise UserError(f"dataset {args.name!r} is embedded: there is no copy to check")
    options = {}
    for item in args.options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: use KEY=VALUE")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise UserError(f"--set {item!r}: value is not YAML ({exc})") from None
    try:
        ds = create_dataset(args.name, root=str(args.root), **options)
    except TypeError as exc:
        raise UserError(f"dataset {args.name!r}: bad options ({exc})") from None
    summary, problems = ds.check()
    splits = summary.pop("splits", {})
    for key, value in summary.items():
        out.print(f"{key}: {value}", markup=False, highlight=False)
    for split, counts in splits.items():
        out.print(f"{split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), markup=False, highlight=False)
    if problems:
        out.print(f"{len(problems)} problem(s):", markup=False)
        for p in problems:
            out.print(f"  ✗ {p}", markup=False, highlight=False, soft_wrap=True)
        return 2
    out.print("✓ no problems found", markup=False)
    return 0


def _list_registry(registry, column: str, attribute: str) -> int:
    """A registry's names with one descriptive attribute of each component."""
    table = Table(registry.axis, column)
    for name, item in registry:
        table.add_row(name, getattr(item, attribute))
    out.print(table)
    return 0


def base_models() -> int:
    from ldbench.models.base_models import BASE_MODELS

    return _list_registry(BASE_MODELS, "description", "description")


def methods() -> int:
    from ldbench.methods import METHODS

    return _list_registry(METHODS, "trains", "trains")


def _extractor(name: str, args, **options):
    from ldbench.device import resolve_device
    from ldbench.metrics.factory import ExtractorConfig, extractor

    return extractor(ExtractorConfig(name, options, getattr(args, "inception_weights", None),
                                     bool(getattr(args, "allow_unverified_weights", False)),
                                     resolve_device(getattr(args, "device", None))))


def fid(args) -> int:
    from ldbench.metrics.compare import CompareOptions, compare
    from ldbench.metrics.scores import display_name, metric_info

    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--bootstrap", args.bootstrap, 0),
                             ("--kid-subsets", args.kid_subsets, 1), ("--kid-subset-size", args.kid_subset_size, 2),
                             ("--prdc-k", args.prdc_k, 1)):
        if value < low:
            raise UserError(f"{flag} must be >= {low}, got {value}")
    options = {}
    if getattr(args, "extractor_weights", None):
        options["weights_path"] = args.extractor_weights
    extractor = _extractor(args.extractor, args, **options)
    opts = CompareOptions(kid=args.kid, kid_subset_size=args.kid_subset_size, kid_subsets=args.kid_subsets,
                          prdc=args.prdc, prdc_k=args.prdc_k, bootstrap=args.bootstrap, seed=args.seed,
                          batch_size=args.batch_size,
                          cache_dir=None if args.no_cache else resolve_cache_dir(args.cache_dir))
    import warnings

    with warnings.catch_warnings():  # the rank note is printed below / kept in the records
        warnings.filterwarnings("ignore", message=r"only \d+ samples for")
        records = compare(args.a, args.b, extractor, opts)
    if args.json:
        print(json.dumps(records, indent=1, allow_nan=False))
        return 0
    table = Table("metric", "value", "95% CI", "n", "n ref", title=f"{args.a} vs {args.b}")
    for r in records:
        fmt = metric_info(r["metric"]).fmt if metric_info(r["metric"]) else "{:.4g}"
        ci = "" if r["ci95"] is None else f"[{fmt.format(r['ci95'][0])}, {fmt.format(r['ci95'][1])}]"
        table.add_row(display_name(r["metric"], r["extractor"]), fmt.format(r["value"]), ci, str(r["n"]),
                      str(r["details"].get("n_reference", "")))
    out.print(table)
    desc = records[0]["provenance"]["extractor"] if records else {}
    out.print(f"extractor {desc.get('name')} (weights {str(desc.get('fingerprint'))[:12]}…, "
              f"{desc.get('resize_policy')}, {desc.get('channel_policy')}); images: gray by channel mean")
    for r in records:
        if r["details"].get("rank_warning"):
            out.print(f"note: {r['details']['rank_warning']}", style="yellow")
    return 0


def stats_build(args) -> int:
    from ldbench.config import Component
    from ldbench.metrics.stats import write_manifest
    from ldbench.runner import realism_stages, stages
    from ldbench.store import Store

    extractor = _extractor(args.extractor, args)
    ds = stages.make_dataset(Component(args.dataset))
    ctx = stages.context(Store(resolve_cache_dir(args.cache_dir)))
    data_art = stages.dataset_stage(ctx, ds)
    target = args.out or REFERENCE_STATS_DIR / f"{ds.name}_{args.split}_{extractor.name}.npz"
    from ldbench import __version__
    from ldbench.metrics.stats import build_reference_stats, save_reference_stats

    images = stages.load_table(data_art).split(args.split).images
    meta = {**realism_stages.expected_stats_meta(ds, data_art, args.split, extractor), "ldbench_version": __version__}
    stats = build_reference_stats(images, extractor, meta, keep_features=True)
    save_reference_stats(stats, Path(target))
    if Path(target).resolve().parent == REFERENCE_STATS_DIR.resolve():
        write_manifest(REFERENCE_STATS_DIR)
    out.print(f"wrote {target} (n={stats.meta['n']}, extractor {extractor.name})")
    return 0


def stats_show(args) -> int:
    from ldbench.metrics.stats import load_reference_stats

    stats = load_reference_stats(args.file)
    out.print_json(json.dumps(stats.meta))
    return 0


def stats_verify(args) -> int:
    from ldbench.metrics.stats import verify_manifest

    directory = args.dir or REFERENCE_STATS_DIR
    problems = verify_manifest(directory)
    if problems:
        for p in problems:
            out.print(f"✗ {p}", style="red")
        return 1
    out.print(f"✓ every file listed in {directory / 'manifest.json'} matches its SHA-256", style="green")
    return 0


def extractors_list(args) -> int:
    from ldbench.metrics.extractors import EXTRACTORS

    table = Table("extractor", "description")
    for name, factory in EXTRACTORS:
        doc = (factory.__doc__ or "").strip().splitlines()
        table.add_row(name, doc[0] if doc else "")
    out.print(table)
    return 0


def train_domain(args) -> int:
    from ldbench.commands_extractors import train_domain as command

    return command(args)


def extractors_validate(args) -> int:
    from ldbench.commands_extractors import extractors_validate as command

    return command(args)
