"""Read lines, their tags and spec versions; compare two spec versions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When

from twinops.lines.models import Line, SpecVersion, Tag

ROLE_ORDER = ("CV", "MV", "DV")
LINE_FIELDS = (
    "name",
    "site",
    "area",
    "sample_period_s",
    "description",
)  # fields of the spec's `line:` compared by diffs


def line_list() -> QuerySet[Line]:
    """Return all lines by key, each annotated with `tags_cv`, `tags_mv`, `tags_dv` (active tags) and `spec_version`."""
    active = Q(tags__active=True)
    return Line.objects.annotate(
        tags_cv=Count("tags", filter=active & Q(tags__role=Tag.Role.CV), distinct=True),
        tags_mv=Count("tags", filter=active & Q(tags__role=Tag.Role.MV), distinct=True),
        tags_dv=Count("tags", filter=active & Q(tags__role=Tag.Role.DV), distinct=True),
        spec_version=Count("spec_versions", distinct=True),
    ).order_by("key")


def line_get(*, key: str | None = None, pk: int | None = None) -> Line:
    """Return the line with this key (or id); raise `Line.DoesNotExist` if there is none."""
    return Line.objects.get(key=key) if pk is None else Line.objects.get(pk=pk)


def line_ids_proposing() -> set[int]:
    """Return the ids of lines whose mode asks for proposals (shadow or advisory)."""
    return set(Line.objects.exclude(mode=Line.Mode.OFF).values_list("pk", flat=True))


def line_tags(*, line: Line, include_inactive: bool = False) -> QuerySet[Tag]:
    """Return a line's tags (CVs, MVs, then DVs, by name); tags dropped by a later spec version only when asked."""
    order = Case(*(When(role=r, then=Value(i)) for i, r in enumerate(ROLE_ORDER)), output_field=IntegerField())
    tags = Tag.objects.filter(line=line).order_by(order, "name")
    return tags if include_inactive else tags.filter(active=True)


def tag_units(*, line: Line, role: str | None = None) -> dict[str, str]:
    """Return each tag's unit by name (all the line's tags, or those of one role), for labels and axes."""
    tags = Tag.objects.filter(line=line) if role is None else Tag.objects.filter(line=line, role=role)
    return dict(tags.values_list("name", "unit"))


def spec_versions(*, line: Line) -> QuerySet[SpecVersion]:
    """Return a line's spec versions, oldest first, with their authors."""
    return SpecVersion.objects.filter(line=line).select_related("created_by").order_by("version")


@dataclass(frozen=True)
class SpecDiff:
    """What changed between two spec documents; values are [before, after] pairs."""

    line: dict[str, list[Any]] = field(default_factory=dict)  # e.g. {"name": ["Old", "New"]}
    tags_added: list[str] = field(default_factory=list)
    tags_dropped: list[str] = field(default_factory=list)
    tags_changed: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # {"F": {"limits.high": [100, 90]}}
    objective: list[Any] | None = None  # [before, after] when the objective changed at all

    @property
    def empty(self) -> bool:
        return not (self.line or self.tags_added or self.tags_dropped or self.tags_changed or self.objective)

    def before(self) -> dict[str, Any]:
        """Return the old values of what changed (for the audit event's `before`)."""
        return self._side(0)

    def after(self) -> dict[str, Any]:
        """Return the new values of what changed (for the audit event's `after`)."""
        return self._side(1)

    def _side(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.line:
            out["line"] = {k: v[i] for k, v in self.line.items()}
        if self.tags_changed:
            out["tags"] = {name: {k: v[i] for k, v in fields.items()} for name, fields in self.tags_changed.items()}
        if self.objective:
            out["objective"] = self.objective[i]
        if i == 1 and self.tags_added:
            out["tags_added"] = self.tags_added
        if i == 1 and self.tags_dropped:
            out["tags_dropped"] = self.tags_dropped
        return out

    def lines(self) -> list[str]:
        """Return the diff as human-readable lines, e.g. `F: limits.high 100 -> 90`."""
        out = [f"line.{k}: {a!r} -> {b!r}" for k, (a, b) in self.line.items()]
        out += [f"+ tag {n}" for n in self.tags_added] + [f"- tag {n} (kept, inactive)" for n in self.tags_dropped]
        for name, fields in self.tags_changed.items():
            out += [f"{name}: {k} {a!r} -> {b!r}" for k, (a, b) in fields.items()]
        if self.objective:
            out.append("objective changed")
        return out


def spec_diff(a: SpecVersion | Mapping[str, Any], b: SpecVersion | Mapping[str, Any]) -> SpecDiff:
    """Compare two spec versions (or spec documents) field by field: line, tags added/dropped/changed, objective."""
    doc_a = a.document if isinstance(a, SpecVersion) else a
    doc_b = b.document if isinstance(b, SpecVersion) else b
    line_a, line_b = doc_a.get("line", {}), doc_b.get("line", {})
    line = {k: [line_a.get(k), line_b.get(k)] for k in LINE_FIELDS if line_a.get(k) != line_b.get(k)}
    tags_a = {t["name"]: tag_flatten(t) for t in doc_a.get("tags", [])}
    tags_b = {t["name"]: tag_flatten(t) for t in doc_b.get("tags", [])}
    changed: dict[str, dict[str, list[Any]]] = {}
    for name in tags_a.keys() & tags_b.keys():
        fa, fb = tags_a[name], tags_b[name]
        fields = {k: [fa.get(k), fb.get(k)] for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)}
        if fields:
            changed[name] = fields
    obj_a, obj_b = doc_a.get("objective"), doc_b.get("objective")
    return SpecDiff(
        line=line,
        tags_added=[n for n in tags_b if n not in tags_a],
        tags_dropped=[n for n in tags_a if n not in tags_b],
        tags_changed={n: changed[n] for n in tags_b if n in changed},
        objective=[obj_a, obj_b] if obj_a != obj_b else None,
    )


def tag_flatten(tag: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a tag's fields to dotted paths: {"limits": {"high": 90}} -> {"limits.high": 90}; nulls dropped."""
    out: dict[str, Any] = {}
    for k, v in tag.items():
        if isinstance(v, Mapping):
            out.update(tag_flatten(v, f"{prefix}{k}."))
        elif v is not None and k != "name":
            out[f"{prefix}{k}"] = v
    return out
