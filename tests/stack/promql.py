"""Just enough PromQL reading to list what a query selects: metric names, label matchers, grouping labels.

Not a full parser: it walks the expression, skips strings outside selectors and range/subquery brackets,
and treats ``name{...}`` or a bare name not followed by ``(`` as a vector selector.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_WORD_OPERATORS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "start", "end"}
_AGGREGATORS = {
    "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "limitk", "limit_ratio",
}  # may be followed by `by (...)` before their parenthesis
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')\s*,?")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    @property
    def templated(self) -> bool:
        """A Grafana variable ($service, ${env}): any value may be chosen."""
        return "$" in self.value


@dataclass(frozen=True)
class Selector:
    metric: str | None
    matchers: tuple[Matcher, ...] = ()

    def __str__(self) -> str:
        inner = ", ".join(f'{m.label}{m.op}"{m.value}"' for m in self.matchers)
        return f"{self.metric or ''}{{{inner}}}"


@dataclass
class Query:
    selectors: list[Selector] = field(default_factory=list)
    grouping_labels: set[str] = field(default_factory=set)


def _skip_string(text: str, i: int) -> int:
    quote = text[i]
    i += 1
    while i < len(text) and text[i] != quote:
        i += 2 if text[i] == "\\" else 1
    return i + 1


def _closing(text: str, i: int, open_: str, close: str) -> int:
    depth = 0
    while i < len(text):
        if text[i] in "\"'`":
            i = _skip_string(text, i)
            continue
        depth += text[i] == open_
        depth -= text[i] == close
        i += 1
        if depth == 0:
            return i
    raise ValueError(f"unbalanced {open_!r} in {text!r}")


def _matchers(body: str) -> tuple[Matcher, ...]:
    found, pos = [], 0
    while pos < len(body.rstrip()):
        m = _MATCHER.match(body, pos)
        if m is None:
            raise ValueError(f"cannot read label matchers {body!r}")
        value = m.group(3)[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        found.append(Matcher(m.group(1), m.group(2), value))
        pos = m.end()
    return tuple(found)


def parse(expr: str) -> Query:
    query, i, n = Query(), 0, len(expr)
    while i < n:
        ch = expr[i]
        if ch in "\"'`":
            i = _skip_string(expr, i)
        elif ch == "[":
            i = _closing(expr, i, "[", "]")
        elif ch == "{":
            end = _closing(expr, i, "{", "}")
            query.selectors.append(Selector(None, _matchers(expr[i + 1 : end - 1])))
            i = end
        elif ch.isdigit() or (ch == "." and i + 1 < n and expr[i + 1].isdigit()):
            i += 1
            while i < n and (expr[i].isalnum() or expr[i] == "." or expr[i] in "+-" and expr[i - 1] in "eE"):
                i += 1
        elif ch == "$":  # a Grafana variable outside a matcher ($__interval in a subquery, ...)
            m = re.compile(r"\$\{[^}]*\}|\$[A-Za-z0-9_]+").match(expr, i)
            i = m.end() if m else i + 1
        elif _IDENT.match(expr, i):
            word = _IDENT.match(expr, i).group(0)  # type: ignore[union-attr]
            j = i + len(word)
            while j < n and expr[j].isspace():
                j += 1
            nxt = expr[j] if j < n else ""
            if word.lower() in _LABEL_LIST_KEYWORDS:
                if nxt == "(":
                    end = _closing(expr, j, "(", ")")
                    query.grouping_labels |= {x.strip() for x in expr[j + 1 : end - 1].split(",") if x.strip()}
                    j = end
            elif word.lower() in _WORD_OPERATORS or word in _AGGREGATORS or nxt == "(":
                pass
            elif nxt == "{":
                end = _closing(expr, j, "{", "}")
                query.selectors.append(Selector(word, _matchers(expr[j + 1 : end - 1])))
                j = end
            else:
                query.selectors.append(Selector(word))
            i = j
        else:
            i += 1
    return query
