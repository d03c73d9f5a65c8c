"""Scalar functions traced once and written back as source text: their straight-line forward and their
reverse-mode adjoint (vector-Jacobian product), both in the vocabulary of asgl.scalar.

A neuron's charge and fire functions (asgl.neuron_models) are written once; :func:`trace` runs one on
symbolic values (:class:`Var`), which record every operation into a :class:`Graph`, and :func:`emit` writes
the graph as a new function: the forward, or the adjoint that takes the output gradients and returns the
input gradients. Every backend compiles the emitted text as it compiles a surrogate family's (torch runs it
on tensors, numba and Triton compile it), so the recurrence and its derivative exist once, in the
definition, and the kernels never spell them out.

Operations: ``+ - * /``, unary minus, comparisons (no derivative), the helpers of
:data:`asgl.scalar.VOCABULARY` and the neuron's ``spike(x)``, emitted as ``spike_value(x, k, m)`` with the
derivatives ``spike_dx(x, k)`` (by x) and ``spike_dk(x, k, m)`` (by the slope k), which each backend binds
for the spike mode and surrogate family of its call.
"""

from __future__ import annotations

import hashlib
import linecache
import operator
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from asgl.scalar import VOCABULARY, rebind


@dataclass
class Graph:
    """The operations of one trace: ``nodes[i] = (op, operands)``, operands node indices or literals (floats);
    op ``"input"`` carries the input's name as its one operand. An operation already in the graph with the
    same operands is that node again (every operation is pure), so a value computed twice is computed once."""

    nodes: list[tuple[str, tuple]] = field(default_factory=list)
    known: dict[tuple, int] = field(default_factory=dict)

    def add(self, op: str, *operands: object) -> Var:
        if op != "input":  # an input's operand is its name
            operands = tuple(x.index if isinstance(x, Var) else float(x) for x in operands)
        if (op, operands) not in self.known:
            self.known[(op, operands)] = len(self.nodes)
            self.nodes.append((op, operands))
        return Var(self, self.known[(op, operands)])


class Var:
    """A symbolic scalar: operations on it add nodes to its graph."""

    __slots__ = ("graph", "index")

    def __init__(self, graph: Graph, index: int):
        self.graph, self.index = graph, index

    def _op(self, op: str, *others: object) -> Var:
        return self.graph.add(op, self, *others)

    def __add__(self, other):
        return self._op("add", other)

    def __radd__(self, other):
        return self.graph.add("add", other, self)

    def __sub__(self, other):
        return self._op("sub", other)

    def __rsub__(self, other):
        return self.graph.add("sub", other, self)

    def __mul__(self, other):
        return self._op("mul", other)

    def __rmul__(self, other):
        return self.graph.add("mul", other, self)

    def __truediv__(self, other):
        return self._op("div", other)

    def __rtruediv__(self, other):
        return self.graph.add("div", other, self)

    def __neg__(self):
        return self.graph.add("sub", 0.0, self)

    def __lt__(self, other):
        return self._op("lt", other)

    def __le__(self, other):
        return self._op("le", other)

    def __gt__(self, other):
        return self._op("gt", other)

    def __ge__(self, other):
        return self._op("ge", other)

    def __bool__(self):
        raise TypeError("a traced value has no truth value: write where(condition, a, b), not if / and / or")


INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _symbolic(graph: Graph) -> dict[str, Callable]:
    """The helpers of the vocabulary and ``spike`` on symbolic values of ``graph``."""
    helpers = {name: (lambda *xs, _name=name: graph.add(_name, *xs)) for name in VOCABULARY}
    return helpers | {"spike": lambda x: graph.add("spike", x)}


def _bind(fn: Callable, symbolic: Mapping[str, Callable]) -> Callable:
    """``fn`` with the symbolic helpers as its globals, and each plain function it calls by a global name (another
    scalar function of its module: one model's charge calling another's) bound the same way."""
    called = {
        name: _bind(value, symbolic)
        for name in fn.__code__.co_names
        if name not in symbolic and isinstance(value := fn.__globals__.get(name), types.FunctionType)
    }
    return rebind(fn, {**symbolic, **called})


def trace(fn: Callable, inputs: Sequence[str], helpers: Mapping[str, Callable] = {}) -> tuple[Graph, list]:
    """Run ``fn`` on one symbolic value per name of ``inputs``: (its graph, its outputs as node indices or
    literals). ``helpers`` are more scalar functions ``fn`` calls by name (traced through); so is any plain
    function of ``fn``'s module that it calls."""
    graph = Graph()
    symbolic = _symbolic(graph)
    for name, helper in helpers.items():  # in order: a helper may call the ones before it
        symbolic[name] = _bind(helper, symbolic)
    args = [graph.add("input", name) for name in inputs]
    result = _bind(fn, symbolic)(*args)
    outputs = result if isinstance(result, tuple) else (result,)
    return graph, [x.index if isinstance(x, Var) else float(x) for x in outputs]


OPERATORS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
             "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}  # fmt: skip


def evaluate(graph: Graph, outputs: list, inputs: Mapping[str, object], helpers: Mapping[str, Callable]) -> list:
    """The outputs of ``graph`` for the values of its ``inputs`` (by name), its helpers and ``spike`` taken from
    ``helpers``: the traced function itself, run on any values (torch tensors under autograd: the reference)."""
    values: list = []
    for op, args in graph.nodes:
        if op == "input":
            values.append(inputs[args[0]])
            continue
        operands = [values[a] if isinstance(a, int) else a for a in args]
        values.append(OPERATORS[op](*operands) if op in OPERATORS else helpers[op](*operands))
    return [values[o] if isinstance(o, int) else inputs.get(o, o) for o in outputs]


# The spike's value and derivatives, as calls (``spike_value(x, k, m)`` ...) or, for a function emitted with
# ``given_spike``, as the arguments ``sv``, ``sdx`` and ``sdk`` that a kernel computed beforehand.
GIVEN_SPIKE = ("sv", "sdx", "sdk")


def _spike_terms(x: str, given: bool) -> tuple[str, str, str]:
    return GIVEN_SPIKE if given else (f"spike_value({x}, k, m)", f"spike_dx({x}, k)", f"spike_dk({x}, k, m)")


def _expr(op: str, args: list[str], given: bool = False) -> str:
    if op in INFIX:
        return f"({args[0]} {INFIX[op]} {args[1]})"
    if op == "spike":
        return _spike_terms(args[0], given)[0]
    return f"{op}({', '.join(args)})"


def _name(graph: Graph, operand: int | float | str) -> str:
    """The text of an operand: a literal, an input's name, a node's temporary, or a name given as such."""
    if isinstance(operand, str):
        return operand
    if isinstance(operand, float):
        return repr(operand)
    op, args = graph.nodes[operand]
    return args[0] if op == "input" else f"t{operand}"


def _forward_lines(graph: Graph, given: bool = False) -> list[tuple[str, str]]:
    """(target, expression) per non-input node, in order."""
    return [
        (f"t{i}", _expr(op, [_name(graph, a) for a in args], given))
        for i, (op, args) in enumerate(graph.nodes)
        if op != "input"
    ]


def _partials(op: str, a: list[str], out: str, g: str, given: bool = False) -> list[str | None]:
    """The contribution of adjoint ``g`` of node ``out`` = op(a...) to each operand's adjoint (None: none; a
    leading "-": to be subtracted)."""
    if op == "add":
        return [g, g]
    if op == "sub":
        return [g, f"-{g}"]
    if op == "mul":
        return [f"({g} * {a[1]})", f"({g} * {a[0]})"]
    if op == "div":
        return [f"({g} / {a[1]})", f"-({g} * {out} / {a[1]})"]
    if op == "sigmoid":
        return [f"({g} * {out} * (1.0 - {out}))"]
    if op == "exp":
        return [f"({g} * {out})"]
    if op == "atan":
        return [f"({g} / (1.0 + {a[0]} * {a[0]}))"]
    if op == "fabs":
        return [f"where({a[0]} >= 0.0, {g}, 0.0 - {g})"]
    if op in ("minimum", "maximum"):
        first = f"{a[0]} {'<=' if op == 'minimum' else '>='} {a[1]}"
        return [f"where({first}, {g}, 0.0)", f"where({first}, 0.0, {g})"]
    if op == "where":
        return [None, f"where({a[0]}, {g}, 0.0)", f"where({a[0]}, 0.0, {g})"]
    if op == "spike":
        return [f"({g} * {_spike_terms(a[0], given)[1]})"]
    return [None] * len(a)  # comparisons


def _accumulate(adjoint: dict[int, str], lines: list, index: int, term: str) -> None:
    """Add ``term`` (subtract it, after a leading "-") to the adjoint of node ``index``, as a new line."""
    sign, term = ("-", term[1:]) if term.startswith("-") else ("+", term)
    if index in adjoint:
        expr = f"({adjoint[index]} {sign} {term})"
    else:
        expr = f"(0.0 - {term})" if sign == "-" else term
    name = f"d{len(lines)}"
    lines.append((name, expr))
    adjoint[index] = name


def _adjoint_lines(
    graph: Graph, outputs: list, seeds: list[str], given: bool = False
) -> tuple[list[tuple[str, str]], dict[int, str]]:
    """Reverse-mode lines from the output adjoints ``seeds``; returns (lines, adjoint name per node)."""
    lines: list[tuple[str, str]] = []
    adjoint: dict[int, str] = {}
    for out, seed in zip(outputs, seeds):
        if isinstance(out, int):
            _accumulate(adjoint, lines, out, seed)
    for i in range(len(graph.nodes) - 1, -1, -1):
        op, args = graph.nodes[i]
        if i not in adjoint or op == "input":
            continue
        names = [_name(graph, a) for a in args]
        for operand, term in zip(args, _partials(op, names, f"t{i}", adjoint[i], given)):
            if term is not None and isinstance(operand, int):
                _accumulate(adjoint, lines, operand, term)
        if op == "spike":  # -1: the slope k
            _accumulate(adjoint, lines, -1, f"({adjoint[i]} * {_spike_terms(names[0], given)[2]})")
    return lines, adjoint


def _words(expr: str) -> set[str]:
    return set(expr.replace("(", " ").replace(")", " ").replace(",", " ").split())


def _used(lines: list[tuple[str, str]], results: list[str]) -> list[tuple[str, str]]:
    """``lines`` without those no result depends on."""
    needed, kept = set(results), []
    for target, expr in reversed(lines):
        if target in needed:
            kept.append((target, expr))
            needed |= _words(expr)
    return kept[::-1]


@dataclass(frozen=True)
class Emitted:
    """An emitted function: its source ``text``, its ``name`` and which of its results are zero whatever
    the inputs (``zero[j]``), so that a kernel skips their sums."""

    name: str
    text: str
    zero: tuple[bool, ...]


def emit_forward(
    name: str, graph: Graph, outputs: list, arguments: Sequence[str], given_spike: bool = False
) -> Emitted:
    """The forward as ``def name(*arguments): ...; return (outputs)`` (``given_spike``: see GIVEN_SPIKE)."""
    results = [_name(graph, o) for o in outputs]
    return _function(name, arguments, _used(_forward_lines(graph, given_spike), results), results)


def emit_adjoint(
    name: str, graph: Graph, outputs: list, arguments: Sequence[str], wrt: Sequence[str], given_spike: bool = False
) -> Emitted:
    """The adjoint as ``def name(*arguments, *output adjoints): ...; return (adjoints of wrt)``: the output
    adjoints are named ``g0, g1, ...``; ``wrt`` names inputs, and ``"k"`` the slope of the spike
    (``given_spike``: see GIVEN_SPIKE)."""
    seeds = [f"g{j}" for j in range(len(outputs))]
    lines, adjoint = _adjoint_lines(graph, outputs, seeds, given_spike)
    index = {args[0]: i for i, (op, args) in enumerate(graph.nodes) if op == "input"} | {"k": -1}
    results = [adjoint.get(index.get(w), "0.0") for w in wrt]
    body = _used(_forward_lines(graph, given_spike) + lines, results)
    read = {word for _, expr in body for word in _words(expr)}
    missing = (read & index.keys()) - set(arguments) - {"k"}
    if missing:
        raise ValueError(f"the derivative of {name} depends on {', '.join(sorted(missing))}, which it is not given")
    emitted = _function(name, [*arguments, *seeds], body, results)
    return Emitted(emitted.name, emitted.text, tuple(r == "0.0" for r in results))


def _function(name: str, arguments: Sequence[str], lines: list[tuple[str, str]], results: list[str]) -> Emitted:
    body = [f"    {target} = {expr}" for target, expr in lines]
    text = "\n".join([f"def {name}({', '.join(arguments)}):", *body, f"    return ({', '.join(results)},)", ""])
    return Emitted(name, text, tuple(r == "0.0" for r in results))


def define(emitted: Emitted, namespace: Mapping[str, object]) -> Callable:
    """The emitted function, defined with ``namespace`` as its globals. Its text is registered with linecache
    under a name made of its digest, so ``inspect.getsource`` finds it (triton.jit and
    :func:`asgl.scalar.with_literals` read it)."""
    digest = hashlib.sha256(emitted.text.encode()).hexdigest()[:12]
    filename = f"<asgl generated {emitted.name} {digest}>"
    linecache.cache[filename] = (len(emitted.text), None, emitted.text.splitlines(True), filename)
    scope = {"__name__": "asgl.generated", **namespace}
    exec(compile(emitted.text, filename, "exec"), scope)
    return scope[emitted.name]
