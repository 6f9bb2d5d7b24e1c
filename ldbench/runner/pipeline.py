"""The pipeline as data: every stage declared once, with its nodes, build, cost and what it adds to a cell.

    dataset ─▶ reference-stats ─▶ heldout-metrics ─▶ realism-ceiling ◀── base-model   (shared: built by the
       ├──▶ split-features        base-model ─▶ latents ─▶ autoencoder (reconstruction)   driver before any cell)
       └─▶ finetune ─▶ [editor-model] ─▶ generate (test) ─▶ metrics (per extractor) ─▶ diversity
                                          ├─▶ counterfactual-metrics ◀── oracle (per attribute), latents
                                          └─▶ generate (train) ─▶ utility ◀── classifier

How a stage's inputs derive from a cell is the node constructor below: a fine-tune depends on the cell's
*training* drift only (cells that differ in sampling share it), a generation on the *sampling* drift.
To add a stage: write its build (a module of ldbench.runner), then one node constructor and one `declare`
here. The order of the declarations is the order of execution.
"""

from __future__ import annotations

from ldbench.config import Component
from ldbench.runner import autoencoder, diversity_stage, floor, realism_stages, stages, utility_stages
from ldbench.runner import counterfactual_stages as cf
from ldbench.runner import estimate as est
from ldbench.runner.graph import Node, Stage, declare

# --- node constructors: how each stage's inputs derive from a dataset spec or a cell -----------------


def dataset_node(spec: Component) -> Node:
    return Node.make("dataset", dataset=spec)


def reference_node(spec: Component, extractor: str, split: str) -> Node:
    return Node.make("reference-stats", {"dataset": dataset_node(spec)}, dataset=spec, extractor=extractor,
                     split=split)


def base_node(suite) -> Node:
    return Node.make("base-model", base_model=suite.base_model)


def latents_node(suite, spec: Component) -> Node:
    return Node.make("latents", {"dataset": dataset_node(spec), "base": base_node(suite)}, dataset=spec)


def finetune_node(suite, cell) -> Node:
    # A checkpoint per δ is looked up by the cell's own δ, so those cells keep their whole drift.
    by_delta = isinstance(cell.method.options.get("checkpoint"), dict)
    extra = {"checkpoint_drift": cell.drift} if by_delta else {}
    return Node.make("finetune", {"dataset": dataset_node(cell.dataset), "base": base_node(suite)},
                     dataset=cell.dataset, method=cell.method, drift=cell.drift.for_training(), seed=cell.seed,
                     **extra)


def editor_model_node(suite, cell) -> Node | None:
    if not stages.editor_trains(cell.editor):
        return None
    up = {"dataset": dataset_node(cell.dataset), "base": base_node(suite), "finetune": finetune_node(suite, cell)}
    return Node.make("editor-model", up,
                     editor=cell.editor, drift=cell.drift.for_training(), seed=cell.seed)


def generate_node(suite, cell, split: str = "test") -> Node:
    up = {"dataset": dataset_node(cell.dataset), "base": base_node(suite), "finetune": finetune_node(suite, cell),
          "editor_model": editor_model_node(suite, cell)}
    return Node.make("generate", up, editor=cell.editor, drift=cell.drift.for_sampling(), seed=cell.seed, split=split)


def metrics_node(suite, cell, extractor: str) -> Node:
    up = {"generate": generate_node(suite, cell),
          "reference": reference_node(cell.dataset, extractor, suite.evaluation.reference_split)}
    return Node.make("metrics", up, extractor=extractor, seed=cell.seed)


def reconstruction_node(suite, spec: Component) -> Node:
    up = {"dataset": dataset_node(spec), "base": base_node(suite), "latents": latents_node(suite, spec)}
    return Node.make("autoencoder", up, dataset=spec)


def heldout_node(suite, spec: Component, extractor: str, seed: int) -> Node:
    up = {"dataset": dataset_node(spec), "reference": reference_node(spec, extractor, suite.evaluation.reference_split)}
    return Node.make("heldout-metrics", up, dataset=spec, extractor=extractor, seed=seed)


def ceiling_node(suite, spec: Component, extractor: str, seed: int) -> Node:
    up = {"heldout": heldout_node(suite, spec, extractor, seed), "base": base_node(suite),
          "reference": reference_node(spec, extractor, suite.evaluation.reference_split)}
    return Node.make("realism-ceiling", up, dataset=spec, extractor=extractor, seed=seed)


def split_features_node(suite, spec: Component) -> Node:
    return Node.make("split-features", {"dataset": dataset_node(spec)}, dataset=spec,
                     extractor=suite.evaluation.extractors[0], split="train")


def oracle_nodes(suite, cell, facts) -> list[Node]:
    if not suite.evaluation.effectiveness:
        return []
    return [Node.make("oracle", {"dataset": dataset_node(cell.dataset)}, dataset=cell.dataset, attribute=a,
                      seed=cell.seed) for a in facts.oracle_attributes(cell.dataset, cell.editor)]


def counterfactual_node(suite, cell, facts) -> Node:
    up = {"dataset": dataset_node(cell.dataset), "generate": generate_node(suite, cell),
          "latents": latents_node(suite, cell.dataset),
          "base": base_node(suite), "finetune": finetune_node(suite, cell),
          "editor_model": editor_model_node(suite, cell),
          **{f"oracle:{n['attribute']}": n for n in oracle_nodes(suite, cell, facts)}}
    return Node.make("counterfactual-metrics", up, editor=cell.editor, drift=cell.drift.for_sampling(),
                     seed=cell.seed)


def classifier_node(cell) -> Node:
    return Node.make("classifier", {"dataset": dataset_node(cell.dataset)}, dataset=cell.dataset, seed=cell.seed)


def utility_node(suite, cell) -> Node:
    up = {"dataset": dataset_node(cell.dataset), "generate": generate_node(suite, cell, "train"),
          "classifier": classifier_node(cell)}
    return Node.make("utility", up, seed=cell.seed)


def diversity_node(suite, cell) -> Node:
    first = suite.evaluation.extractors[0]
    up = {"dataset": dataset_node(cell.dataset), "generate": generate_node(suite, cell),
          "metrics": metrics_node(suite, cell, first),
          "train_features": split_features_node(suite, cell.dataset),
          "heldout": heldout_node(suite, cell.dataset, first, cell.seed)}
    return Node.make("diversity", up, extractor=first, seed=cell.seed)


def _wants_counterfactual(suite) -> bool:
    return suite.evaluation.counterfactual or suite.evaluation.effectiveness


# --- the graph --------------------------------------------------------------------------------------

declare(Stage(
    "dataset", stages.STAGE_VERSIONS["dataset"], shared=True,
    nodes=lambda suite, spec, facts: [dataset_node(spec)],
    build=stages.build_dataset, cost=est.dataset_cost))
declare(Stage(
    "reference-stats", stages.STAGE_VERSIONS["reference-stats"], shared=True,
    nodes=lambda suite, spec, facts: [reference_node(spec, e, suite.evaluation.reference_split)
                                      for e in suite.evaluation.extractors],
    build=realism_stages.build_reference_stats, cost=est.reference_stats_cost))
declare(Stage(
    "base-model", stages.STAGE_VERSIONS["base-model"], shared=True,
    nodes=lambda suite, spec, facts: [base_node(suite)],
    build=stages.build_base_model, cost=est.base_model_cost))
declare(Stage(
    "latents", stages.STAGE_VERSIONS["latents"], shared=True,
    nodes=lambda suite, spec, facts: [latents_node(suite, spec)],
    build=stages.build_latents, cost=est.latents_cost))
declare(Stage(
    "autoencoder", autoencoder.STAGE_VERSION, shared=True,
    nodes=lambda suite, spec, facts: [reconstruction_node(suite, spec)],
    build=autoencoder.build_reconstruction, cost=est.reconstruction_cost,
    records=autoencoder.reconstruction_records))
declare(Stage(
    "heldout-metrics", floor.STAGE_VERSION, shared=True,
    nodes=lambda suite, spec, facts: [heldout_node(suite, spec, e, s) for e in suite.evaluation.extractors
                                      for s in suite.seeds],
    build=floor.build_heldout_metrics, cost=est.heldout_cost, records=floor.heldout_records))
declare(Stage(
    "realism-ceiling", autoencoder.CEILING_STAGE_VERSION, shared=True,
    nodes=lambda suite, spec, facts: [ceiling_node(suite, spec, e, s) for e in suite.evaluation.extractors
                                      for s in suite.seeds],
    build=autoencoder.build_realism_ceiling, cost=est.ceiling_cost, records=autoencoder.ceiling_records))
declare(Stage(
    "split-features", diversity_stage.STAGE_VERSION, shared=True,
    nodes=lambda suite, spec, facts: [split_features_node(suite, spec)] if suite.evaluation.diversity else [],
    build=diversity_stage.build_split_features, cost=est.split_features_cost))
declare(Stage(
    "finetune", stages.STAGE_VERSIONS["finetune"], shared=False,
    nodes=lambda suite, cell, facts: [finetune_node(suite, cell)],
    build=stages.build_finetune, cost=est.finetune_cost))
declare(Stage(
    "editor-model", stages.STAGE_VERSIONS["editor-model"], shared=False,
    nodes=lambda suite, cell, facts: [n for n in [editor_model_node(suite, cell)] if n is not None],
    build=stages.build_editor_model, cost=est.editor_model_cost))
declare(Stage(
    "generate", stages.STAGE_VERSIONS["generate"], shared=False,
    # the test split for evaluation; with the AUC protocol also the train split (its synthetic training set)
    nodes=lambda suite, cell, facts: [generate_node(suite, cell, split)
                                      for split in ("test", "train")[:1 + suite.evaluation.utility]],
    build=stages.build_generate, cost=est.generate_cost,
    label=lambda node, art: "generate" if node["split"] == "test" else f"generate_{node['split']}"))
declare(Stage(
    "metrics", stages.STAGE_VERSIONS["metrics"], shared=False,
    nodes=lambda suite, cell, facts: [metrics_node(suite, cell, e) for e in suite.evaluation.extractors],
    build=realism_stages.build_metrics, cost=est.metrics_cost, collect=realism_stages.collect_metrics,
    label=lambda node, art: f"metrics:{node['extractor']}"))
declare(Stage(
    "oracle", cf.STAGE_VERSIONS["oracle"], shared=False,
    nodes=lambda suite, cell, facts: oracle_nodes(suite, cell, facts) if _wants_counterfactual(suite) else [],
    build=cf.build_oracle, cost=est.oracle_cost, label=lambda node, art: f"oracle_{node['attribute']}"))
declare(Stage(
    "counterfactual-metrics", cf.STAGE_VERSIONS["counterfactual-metrics"], shared=False,
    nodes=lambda suite, cell, facts: [counterfactual_node(suite, cell, facts)] if _wants_counterfactual(suite) else [],
    build=cf.build_counterfactual_metrics, cost=est.counterfactual_cost, collect=cf.collect_items))
declare(Stage(
    "classifier", cf.STAGE_VERSIONS["classifier"], shared=False,
    nodes=lambda suite, cell, facts: [classifier_node(cell)] if suite.evaluation.utility else [],
    build=utility_stages.build_real_classifier, cost=est.classifier_cost, label=lambda node, art: "classifier_real"))
declare(Stage(
    "utility", cf.STAGE_VERSIONS["utility"], shared=False,
    nodes=lambda suite, cell, facts: [utility_node(suite, cell)] if suite.evaluation.utility else [],
    build=utility_stages.build_utility, cost=est.utility_cost, collect=cf.collect_items))
declare(Stage(
    "diversity", diversity_stage.STAGE_VERSION, shared=False,
    nodes=lambda suite, cell, facts: [diversity_node(suite, cell)] if suite.evaluation.diversity else [],
    build=diversity_stage.build_diversity, cost=est.diversity_cost, collect=diversity_stage.collect_diversity))


class RunFacts:
    """The data-dependent answers of a run's plan, from the built dataset artifacts (in runtime.results)."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime

    @property
    def evaluation(self):
        return self.runtime.evaluation

    def oracle_attributes(self, spec: Component, editor: Component) -> list[str]:
        """The attributes the editor's outputs are meant to have, that an oracle can read: those its plan
        changes, or every predictable one for text-to-image (ldbench.runner.counterfactual_stages)."""
        from ldbench.generate import EDITORS

        art = self.runtime.results[dataset_node(spec)]
        test = stages.load_table(art).split("test")
        edit_plan = EDITORS.get(editor.name).plan(self.runtime.dataset(spec), test,
                                                  bool(art.meta.get("has_counterfactuals")))
        return cf.effectiveness_attributes({"changes": list(edit_plan.changes)}, test)
