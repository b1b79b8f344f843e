"""Segments as rule trees: the field catalog, validation, and compilation to SQL.

Pure modules (no database access): ``catalog`` (fields and operators), ``validation``
(normalize a tree, list problems with marketer-facing messages), ``compiler`` (tree →
one ``Q`` on Subscriber) and ``expressions`` (portable JSON SQL). ``loading`` reads
what they need from the database into a :class:`RuleContext`.
"""

from audiences.segments.catalog import RuleContext, SegmentRef, builder_catalog
from audiences.segments.compiler import SegmentRulesError, compile_rules
from audiences.segments.validation import Problem, Validated, empty_rules, referenced_segments, validate_rules

__all__ = [
    "Problem",
    "RuleContext",
    "SegmentRef",
    "SegmentRulesError",
    "Validated",
    "builder_catalog",
    "compile_rules",
    "empty_rules",
    "referenced_segments",
    "validate_rules",
]
