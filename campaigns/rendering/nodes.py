"""Walking compiled templates, and the capped, non-raising nodes they are rendered with."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, cast

from django.template import Context
from django.template.base import (
    FilterExpression,
    Node,
    NodeList,
    Variable,
    VariableNode,
    render_value_in_context,
)
from django.template.defaulttags import FirstOfNode, IfNode, TemplateLiteral

# What one {{ … }} or {% firstof %} may print, unless a string literal in it is longer.
VARIABLE_MAX_CHARS = 100
# Invisible on a lock screen and 6 bytes each in JSON (``\u0001``); lone surrogates
# cannot be encoded at all. Tab, newline and carriage return stay (2 bytes in JSON).
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def walk(nodelist: NodeList) -> Iterator[Node]:
    """Every node, depth first, including those inside ``{% if %}`` branches."""
    for node in nodelist:
        yield node
        if isinstance(node, IfNode):
            for _condition, branch in node.conditions_nodelists:
                yield from walk(branch)


def _operands(condition: Any) -> Iterator[FilterExpression]:
    """The operands of an ``{% if %}`` condition tree (operators hold ``first``/``second``)."""
    if isinstance(condition, TemplateLiteral):
        yield cast(FilterExpression, condition.value)
        return
    for part in (condition.first, condition.second):
        if part is not None:
            yield from _operands(part)


def expressions(node: Node) -> list[FilterExpression]:
    """The ``value|filter:arg`` expressions a node evaluates (not those of nested nodes)."""
    if isinstance(node, VariableNode):
        return [node.filter_expression]
    if isinstance(node, FirstOfNode):
        return list(node.vars)
    if isinstance(node, IfNode):
        return [
            operand
            for condition, _branch in node.conditions_nodelists
            if condition is not None
            for operand in _operands(condition)
        ]
    return []


def constants(expression: FilterExpression) -> Iterator[Any]:
    """The literal values written in an expression: its value and filter arguments."""
    if not isinstance(expression.var, Variable):
        yield expression.var
    elif expression.var.lookups is None:
        yield expression.var.literal
    for _func, args in expression.filters:
        for _is_var, arg in args:
            if not isinstance(arg, Variable):
                yield arg
            elif arg.lookups is None:
                yield arg.literal


def variables(expression: FilterExpression) -> Iterator[Variable]:
    """The variables an expression looks up: its value and variable filter arguments."""
    if isinstance(expression.var, Variable) and expression.var.lookups is not None:
        yield expression.var
    for _func, args in expression.filters:
        for is_var, arg in args:
            if is_var and isinstance(arg, Variable) and arg.lookups is not None:
                yield arg


def _cap(nodes_expressions: list[FilterExpression]) -> int:
    """The cap, or more so that a long ``default:"…"`` written by the marketer is not cut."""
    literals = [len(value) for e in nodes_expressions for value in constants(e) if isinstance(value, str)]
    return max([VARIABLE_MAX_CHARS, *literals])


def _printed(value: Any, context: Context, *, cap: int) -> str:
    if value is None:  # a None attribute prints nothing, not "None"
        return ""
    try:
        text = _UNPRINTABLE.sub("", str(render_value_in_context(value, context)))
    except Exception:  # odd subscriber data must not stop a campaign: print nothing
        return ""
    return text if len(text) <= cap else text[: cap - 1] + "…"


class CappedVariableNode(VariableNode):
    """``{{ … }}`` printing at most ``cap`` characters, never raising."""

    def __init__(self, filter_expression: FilterExpression, *, cap: int) -> None:
        super().__init__(filter_expression)
        self.cap = cap

    def render(self, context: Context) -> str:
        try:
            value = self.filter_expression.resolve(context)
        except Exception:  # e.g. |date:"H" on a date: Django's filter raises TypeError
            return ""
        return _printed(value, context, cap=self.cap)


class CappedFirstOfNode(FirstOfNode):
    """``{% firstof %}`` printing at most ``cap`` characters, never raising."""

    def __init__(self, variables: list[FilterExpression], *, cap: int) -> None:
        super().__init__(variables)
        self.cap = cap

    def render(self, context: Context) -> str:
        for expression in self.vars:
            try:
                value = expression.resolve(context, ignore_failures=True)
            except Exception:  # a failing filter counts as an empty value
                value = None
            if value:
                return _printed(value, context, cap=self.cap)
        return ""


class SafeIfNode(IfNode):
    """``{% if %}`` whose failing condition is false (Django lets a lone filter's error through)."""

    def render(self, context: Context) -> str:
        for condition, nodelist in self.conditions_nodelists:
            if condition is None:  # else
                return nodelist.render(context)
            try:
                match = condition.eval(context)  # type: ignore[arg-type]
            except Exception:
                match = None
            if match:
                return nodelist.render(context)
        return ""


def harden(nodelist: NodeList) -> None:
    """Swap output nodes for their capped, non-raising versions (in place, after validation)."""
    for index, node in enumerate(nodelist):
        if isinstance(node, IfNode):
            for _condition, branch in node.conditions_nodelists:
                harden(branch)
            nodelist[index] = SafeIfNode(node.conditions_nodelists)
        elif isinstance(node, VariableNode):
            nodelist[index] = CappedVariableNode(node.filter_expression, cap=_cap([node.filter_expression]))
        elif isinstance(node, FirstOfNode):
            nodelist[index] = CappedFirstOfNode(node.vars, cap=_cap(node.vars))
