"""The built-in agent's tools: real, small and safe to run on a server.

Graph code runs in the worker's process (the web process too, with the embedded worker), so a
tool must never hold the interpreter: the calculator checks the size of every operand before it
multiplies or raises to a power, bounds every result and stops past a time budget.
"""

import ast
import datetime
import math
import operator
import time
from collections.abc import Callable
from typing import Any

from langchain_core.tools import tool

MAX_EXPRESSION_LENGTH = 200
MAX_EXPONENT = 100
#: Largest integer operand or result, in bits (about 300 decimal digits, the range of a float).
MAX_INTEGER_BITS = 1024
#: Wall-clock budget of one evaluation, seconds.
TIME_BUDGET_SECONDS = 0.5

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def evaluate_arithmetic(expression: str) -> int | float:
    """The value of an arithmetic expression (numbers, + - * / // % **, parentheses) only.

    Raises ValueError for anything else, for an expression longer than MAX_EXPRESSION_LENGTH
    characters, an exponent above MAX_EXPONENT, an integer beyond MAX_INTEGER_BITS bits (checked
    before the operation that would make it) or an evaluation past TIME_BUDGET_SECONDS;
    SyntaxError, ZeroDivisionError and OverflowError (floats) pass through.
    """
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ValueError("expression too long")
    tree = ast.parse(expression.strip(), mode="eval").body
    return _Evaluation(deadline=time.monotonic() + TIME_BUDGET_SECONDS).evaluate(tree)


class _Evaluation:
    """One walk over an expression's tree under a deadline (time.monotonic seconds)."""

    def __init__(self, *, deadline: float) -> None:
        self.deadline = deadline

    def evaluate(self, node: ast.AST) -> int | float:
        if time.monotonic() > self.deadline:
            raise ValueError("expression takes too long")
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return _bounded(node.value)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self.evaluate(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self.evaluate(node.left), self.evaluate(node.right)
            _check_operation(node.op, left, right)
            return _bounded(_BINARY[type(node.op)](left, right))
        raise ValueError(f"unsupported expression element: {type(node).__name__}")


def _check_operation(op: ast.operator, left: int | float, right: int | float) -> None:
    """Refuse an operation whose result would be too large, before computing it."""
    if isinstance(op, ast.Pow):
        if abs(right) > MAX_EXPONENT:
            raise ValueError("exponent too large")
        if isinstance(left, int) and isinstance(right, int) and right > 0:
            if (abs(left).bit_length() - 1) * right > MAX_INTEGER_BITS:
                raise ValueError("result too large")
    if isinstance(op, ast.Mult) and isinstance(left, int) and isinstance(right, int):
        if abs(left).bit_length() + abs(right).bit_length() > MAX_INTEGER_BITS + 1:
            raise ValueError("result too large")


def _bounded(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INTEGER_BITS:
        raise ValueError("result too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("result too large")
    return value


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as '(2 + 3) * 4' and return the result."""
    try:
        value = evaluate_arithmetic(expression)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError) as exc:
        return f"error: {exc}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


@tool
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


@tool
def current_utc_time() -> str:
    """The current date and time in UTC, ISO 8601."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


AGENT_TOOLS = [calculator, word_count, current_utc_time]
