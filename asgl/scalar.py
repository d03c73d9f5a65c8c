"""Scalar maths written once and compiled for every backend.

A surrogate family's step F(y) and density f(y) are plain Python functions of one value, written in a small
vocabulary: arithmetic (``+ - * /``), comparisons, numeric literals, and the helpers named in
:data:`VOCABULARY`, referenced as bare global names:

    sigmoid(y)  exp(y)  atan(y)  fabs(y)  minimum(a, b)  maximum(a, b)  where(condition, a, b)

Nothing else: no ``**``, no ``math.pi``, no attribute access (write ``y * y`` and the literal). Each backend
runs the same function text with its own helpers bound to those names: :func:`rebind` gives it a new global
namespace (torch evaluates it on tensors with :data:`TORCH`; the Triton kernels ``triton.jit`` it with their
``tl`` helpers), and :func:`with_literals` also wraps every numeric literal in a constructor, so that the
numba kernel compiles float32 maths for a float32 input (a bare literal is a float64 there, and would widen
the loop). A backend runs a function whose helper names it binds (:func:`helpers_of`), and hands any other
to its fallback.

The mask hash (asgl.spike) is written the same way in an integer vocabulary on 32-bit words,
:data:`INTEGER_VOCABULARY`: ``xor(a, b)``, ``shr(a, n)`` (logical shift right) and ``mul32(a, b)`` (the
product mod 2³²), bound to torch int64 operations here, to 32-bit LLVM instructions by the numba kernel and
to uint32 operations by the Triton kernels.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import inspect
import textwrap
import types
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

VOCABULARY = frozenset({"sigmoid", "exp", "atan", "fabs", "minimum", "maximum", "where"})
INTEGER_VOCABULARY = frozenset({"xor", "shr", "mul32"})
Number = Tensor | float


def helpers_of(fn: Callable) -> frozenset[str]:
    """The global names ``fn`` reads (its helpers)."""
    return frozenset(fn.__code__.co_names)


def check_scalar(fn: Callable, extra: frozenset[str] | set[str] = frozenset()) -> None:
    """Raise ValueError unless ``fn`` reads only names of :data:`VOCABULARY` (and ``extra``) as globals."""
    unknown = helpers_of(fn) - VOCABULARY - set(extra)
    if unknown:
        raise ValueError(
            f"{fn.__name__} uses {', '.join(sorted(unknown))}: scalar maths may use only "
            f"{', '.join(sorted(VOCABULARY))}, arithmetic and literals"
        )


def rebind(fn: Callable, helpers: Mapping[str, object]) -> Callable:
    """The same code as ``fn`` with ``helpers`` as its globals (its source stays findable, for triton.jit)."""
    # torch.compile reads the builtins of the globals; Triton names compiled functions after their module
    namespace = {"__builtins__": builtins, "__name__": fn.__module__, **helpers}
    rebound = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__)
    rebound.__qualname__ = fn.__qualname__
    return rebound


class _WrapLiterals(ast.NodeTransformer):
    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return ast.copy_location(ast.Call(ast.Name("_literal", ast.Load()), [node], []), node)
        return node


def with_literals(fn: Callable, helpers: Mapping[str, object], literal: Callable) -> Callable:
    """``fn`` recompiled from its source with every numeric literal v written ``literal(v)``, and ``helpers``
    as its globals (numba: ``literal = np.float32`` keeps float32 maths float32)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    tree.body[0].decorator_list = []
    namespace = {**helpers, "_literal": literal}
    exec(compile(ast.fix_missing_locations(_WrapLiterals().visit(tree)), inspect.getsourcefile(fn), "exec"), namespace)
    return namespace[fn.__name__]


def fingerprint(*fns: Callable) -> str:
    """A short digest of the code of ``fns`` (bytecode, constants, names): compiled kernels are keyed by it."""
    digest = hashlib.sha256()
    for fn in fns:
        code = fn.__code__
        digest.update(code.co_code + repr((code.co_consts, code.co_names, code.co_varnames)).encode())
    return digest.hexdigest()[:12]


# torch: the vocabulary on tensors (a bound of minimum / maximum may be a number)
sigmoid = torch.sigmoid
exp = torch.exp
atan = torch.atan
fabs = torch.abs


def where(condition: Tensor, a: Number, b: Number) -> Tensor:
    """torch.where; of the numbers 1 and 0, the condition as a float (one op: torch.where would first make
    the two numbers tensors)."""
    if isinstance(a, float) and isinstance(b, float) and (a, b) == (1.0, 0.0):
        return condition.to(torch.get_default_dtype())
    return torch.where(condition, a, b)


def minimum(a: Number, b: Number) -> Tensor:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return torch.minimum(a, b)
    return torch.clamp(a, max=b) if isinstance(a, Tensor) else torch.clamp(b, max=a)


def maximum(a: Number, b: Number) -> Tensor:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return torch.maximum(a, b)
    return torch.clamp(a, min=b) if isinstance(a, Tensor) else torch.clamp(b, min=a)


TORCH: dict[str, object] = {name: globals()[name] for name in VOCABULARY}


# torch: the integer vocabulary on int64 tensors (or Python integers) holding 32-bit words
def xor(a: Tensor | int, b: Tensor | int) -> Tensor | int:
    return a ^ b


def shr(a: Tensor | int, n: int) -> Tensor | int:
    return a >> n


def mul32(a: Tensor | int, b: int) -> Tensor | int:
    return (a * b) & 0xFFFFFFFF  # int64 products wrap mod 2⁶⁴: their low 32 bits are exact


TORCH_INTEGER: dict[str, object] = {name: globals()[name] for name in INTEGER_VOCABULARY}
