"""The stage graph's machinery: nodes, stages, plans, and the one loop that executes a plan.

A `Node` is one unit of cached work: a stage name, the values its output depends on (derived from a suite
cell, e.g. a fine-tune's dataset, method, *training* drift and seed) and its upstream nodes by role. Nodes
are values, so two cells that need the same work build equal nodes and a plan holds it once: the same
sharing rules as the store's cache keys, decided in one place (ldbench.runner.pipeline declares every
stage). `plan(suite, facts)` walks the declared stages over a suite; `run` executes the plan, `suites`
sums its costs, `tune-delta` executes a plan of its own cells and `report` executes one read-only.

Some fan-outs depend on the data (which attributes an oracle is trained for): `Facts` answers them, from
the built dataset artifacts when running and from a static table when estimating, so both walk one graph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ldbench.registry import Registry


@dataclass(frozen=True)
class Node:
    """One stage's work for one set of inputs. `fields` holds (name, value) pairs; values are hashable
    (Component, Drift, str, int)."""

    stage: str
    fields: tuple[tuple[str, Any], ...]
    upstream: tuple[tuple[str, Node], ...] = ()

    @classmethod
    def make(cls, stage: str, upstream: dict[str, Node | None] | None = None, **fields) -> Node:
        ups = tuple((role, n) for role, n in (upstream or {}).items() if n is not None)
        return cls(stage, tuple(fields.items()), ups)

    def __getitem__(self, name: str) -> Any:
        for key, value in self.fields:
            if key == name:
                return value
        raise KeyError(f"node {self.stage} has no field {name!r}")

    def get(self, name: str, default=None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def up(self, role: str) -> Node | None:
        return next((n for r, n in self.upstream if r == role), None)


@dataclass(frozen=True)
class Stage:
    """A pipeline stage, declared once.

    nodes    (suite, scope, facts) -> its nodes for one scope: a dataset spec for a shared stage, a Cell
             otherwise ([] where the suite does not ask for it).
    build    (runtime, node, upstream results by role) -> the result (an Artifact, or a value).
    cost     (node, costs, facts) -> estimated seconds from a cold cache (ldbench.runner.estimate).
    collect  optional (runtime, node, result, cell output) -> adds the node's records / evidence to a cell.
    records  optional, shared stages: (runtime, node, result, run provenance) -> the node's own tidy records
             (the real held-out floor, the autoencoder's reconstruction).
    label    its name in a record's provenance "artifacts" (default: the stage name with "_").
    """

    name: str
    version: str
    shared: bool
    nodes: Callable
    build: Callable
    cost: Callable
    collect: Callable | None = None
    records: Callable | None = None
    label: Callable[[Node, Any], str] | None = None

    def artifact_label(self, node: Node, result) -> str:
        return self.label(node, result) if self.label else self.name.replace("-", "_")


STAGES: Registry[Stage] = Registry("stage")
ORDER: list[str] = []  # declaration order = a topological order of the graph


def declare(stage: Stage) -> Stage:
    STAGES.add(stage.name, stage)
    ORDER.append(stage.name)
    return stage


@dataclass
class Plan:
    """Every node of a suite, each once: the shared ones (built by the driver before any cell) and each
    cell's own, in execution order."""

    shared: list[Node] = field(default_factory=list)
    cells: list[tuple[Any, list[Node]]] = field(default_factory=list)

    def nodes(self) -> list[Node]:
        seen: dict[Node, None] = dict.fromkeys(self.shared)
        for _, nodes in self.cells:
            seen.update(dict.fromkeys(nodes))
        return list(seen)


def plan(suite, facts, stages: Iterable[str] | None = None, cells: list | None = None) -> Plan:
    """The graph of `suite` (its cells, or `cells`), over the declared stages (or the named subset)."""
    names = [s for s in ORDER if stages is None or s in set(stages)]
    out = Plan()
    shared = [STAGES.get(s) for s in names if STAGES.get(s).shared]
    for stage in shared:
        for spec in (suite.datasets if stage.name != "base-model" else [None]):
            out.shared += [n for n in stage.nodes(suite, spec, facts) if n not in out.shared]
    for cell in suite.cells() if cells is None else cells:
        nodes: list[Node] = []
        for stage in (STAGES.get(s) for s in names if not STAGES.get(s).shared):
            nodes += [n for n in stage.nodes(suite, cell, facts) if n not in nodes]
        out.cells.append((cell, nodes))
    return out


def execute(runtime, nodes: Iterable[Node]) -> None:
    """Build every node not yet in runtime.results, in order, each after its upstream nodes."""
    for node in nodes:
        if node in runtime.results:
            continue
        execute(runtime, [n for _, n in node.upstream])
        upstream = {role: runtime.results[n] for role, n in node.upstream}
        runtime.results[node] = STAGES.get(node.stage).build(runtime, node, upstream)
        runtime.log_stage()


@dataclass
class Runtime:
    """What builds share while executing a plan: the stage context (store, device), the suite, its
    extractors by name, every node's result so far, and the run's event log (None in a worker, whose
    events the driver logs when its cell ends)."""

    ctx: Any
    suite: Any
    extractors: dict
    results: dict = field(default_factory=dict)
    log: Callable | None = None
    on_dataset: Callable | None = None  # (dataset, artifact): checks a suite makes of a dataset once built
    _datasets: dict = field(default_factory=dict)
    _logged: int = -1

    def __post_init__(self) -> None:
        if self._logged < 0:
            self._logged = len(self.ctx.store.events)

    @property
    def evaluation(self):
        return self.suite.evaluation

    def dataset(self, spec):
        """The dataset object of a spec (cheap: preparing it is the dataset stage's work)."""
        from ldbench.runner.stages import make_dataset

        if spec not in self._datasets:
            self._datasets[spec] = make_dataset(spec)
        return self._datasets[spec]

    def log_stage(self) -> None:
        """Log the store events of the stages built or found since the last call."""
        events = self.ctx.store.events
        if self.log is not None:
            for event in events[self._logged:]:
                self.log("stage", **event)
        self._logged = len(events)


@dataclass
class CellResults:
    """What a cell's stages contribute to its records and its LD-effect evidence (filled by Stage.collect)."""

    metrics: list = field(default_factory=list)
    items: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    features: dict = field(default_factory=dict)  # extractor name -> the generated set's features
