"""One architecture per derived network: what searches deduplicate candidates by.

``derive`` folds identities, drops ``none`` terms and deletes what no longer
reaches the output, so architectures that differ only in decisions it prunes
derive one and the same network (in NB201, the edge into a node whose outgoing
edges are all ``none``). A search that scored both would spend two evaluations
on one network and could offer it twice on a Pareto front. :func:`canonical_form`
maps every architecture to the one that stands for its network: the first one
met, with each decision that does not change the network set to its label's
first op::

    >>> import gmgraph
    >>> from gmgraph.spaces import nb201
    >>> canonical = canonical_form(gmgraph.trace(nb201.supernet(C=4, N=1)))
    >>> a = nb201.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    >>> b = nb201.parse("|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    >>> nb201.to_str(canonical(a))      # node 1 feeds nothing: its edge 1<-0 is dead
    '|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|'
    >>> canonical(b) == canonical(a)
    True

The network of an architecture is read off :func:`~gmgraph.liveness.live_nodes`
(the replay of ``derive``'s folding rules on the graph's dataflow), so no
network is built: a canonical form costs a few replays over the graph's nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from torch import fx

from gmgraph.arch import Arch, key
from gmgraph.choice import Choice
from gmgraph.graph import active_choices, space
from gmgraph.liveness import dataflow, live_nodes

Canonical = Callable[[Arch], Arch]
"""Maps an architecture to the one that stands for its derived network (equal networks, equal results)."""

Network = tuple
"""What ``derive`` keeps of an architecture: ``(node, op of a kept Choice or "", nodes it reads)`` per kept node."""


class CanonicalForm:
    """``canonical(arch)``: the architecture that stands for ``arch``'s derived network.

    The first architecture met of a network fixes its representative: that
    architecture with every decision set to its label's first op, one label at
    a time in the space's order, as long as the network stays the same. The
    same object always returns the same representative for one network, so two
    architectures derive the same network exactly when their canonical forms
    are equal. Results are remembered (by architecture and by network).

    A Choice node whose ops hold Choices (nested decisions: an OFA stage's depth holding blocks that
    choose their kernel) also names, in its entry of the network, the nested decisions its chosen op
    runs (:func:`~gmgraph.graph.active_choices`): those change the network; the decisions of blocks
    the chosen depth leaves off do not.

    Args:
        flow: the supernet's :func:`~gmgraph.liveness.dataflow`.
        space: label -> op names (the supernet's :func:`~gmgraph.graph.space`).
        nested: Choice node name -> its Choice module, for the Choice nodes whose ops hold Choices.
    """

    def __init__(self, flow: list[dict], space: Mapping[str, Sequence[str]],
                 nested: Mapping[str, Choice] | None = None):
        self.flow = flow
        self.nested = dict(nested or {})
        self.first_op = {label: ops[0] for label, ops in space.items()}
        self._labels = {n["name"]: n["label"] for n in flow if n["kind"] == "choice"}
        self._by_arch: dict[str, Arch] = {}
        self._by_network: dict[Network, Arch] = {}

    def network(self, arch: Mapping[str, str]) -> Network:
        """The derived network of ``arch``, as hashable data (equal for equal networks)."""
        live = live_nodes(self.flow, arch)
        labels = self._labels
        return tuple((name, self._op(name, arch) if name in labels else "", reads)
                     for name, reads in live.reads.items())

    def _op(self, name: str, arch: Mapping[str, str]) -> str | tuple:
        """The op a kept Choice node runs: its name, or with nested Choices ``(name, (label, op), ...)``."""
        op = arch[self._labels[name]]
        if name not in self.nested:
            return op
        inner = active_choices(self.nested[name].ops[op], arch)
        return (op, *sorted({(choice.label, arch[choice.label]) for _, choice in inner}))

    def __call__(self, arch: Mapping[str, str]) -> Arch:
        k = key(arch)
        if k not in self._by_arch:
            network = self.network(arch)
            if network not in self._by_network:
                self._by_network[network] = self._free_decisions_set(arch, network)
            self._by_arch[k] = self._by_network[network]
        return dict(self._by_arch[k])

    def _free_decisions_set(self, arch: Mapping[str, str], network: Network) -> Arch:
        """``arch`` with each decision that leaves ``network`` as it is set to its first op."""
        kept = {self._labels[name] for name, op, _ in network if op}  # a kept Choice's op is the network's
        kept |= {label for _, op, _ in network if isinstance(op, tuple) for label, _ in op[1:]}
        out = dict(arch)
        for label, op in self.first_op.items():
            if label in kept or out[label] == op:
                continue
            trial = {**out, label: op}
            if self.network(trial) == network:
                out = trial
        return out


def canonical_form(gm: fx.GraphModule) -> CanonicalForm:
    """The :class:`CanonicalForm` of the supernet ``gm``'s architectures (those of its space)."""
    flow = dataflow(gm)
    modules = {node.name: gm.get_submodule(node.target) for node in gm.graph.nodes if node.op == "call_module"}
    nested = {n["name"]: modules[n["name"]] for n in flow if n["kind"] == "choice"
              and any(isinstance(m, Choice) for op in modules[n["name"]].ops.values() for m in op.modules())}
    return CanonicalForm(flow, space(gm), nested)


def distinct_networks(archs: Iterable[Arch], canonical: Canonical | None) -> Iterator[Arch]:
    """The canonical forms of ``archs``, each network once, in order (``canonical=None``: ``archs`` as they are).

    Example:
        >>> first_letter = lambda arch: {"a": arch["a"][0]}
        >>> list(distinct_networks([{"a": "x1"}, {"a": "x2"}, {"a": "y"}], first_letter))
        [{'a': 'x'}, {'a': 'y'}]
    """
    if canonical is None:
        yield from archs
        return
    seen: set[str] = set()
    for arch in archs:
        arch = canonical(arch)
        if key(arch) not in seen:
            seen.add(key(arch))
            yield arch
