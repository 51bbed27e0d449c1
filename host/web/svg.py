"""Small charts drawn on the server as inline SVG: no script, no library.

``bar_chart`` and ``line_chart`` take labels and values and return
``Markup``. Every label is escaped; the chart has ``role="img"`` with a
``<title>`` and a ``<desc>`` listing each value, so a screen reader gets the
numbers the picture shows. Colours come from the stylesheet (``.chart``).
No ``xmlns``: inline SVG in HTML does not need it.
"""

from __future__ import annotations

import itertools
from typing import Sequence

from markupsafe import Markup, escape

_ids = itertools.count(1)

WIDTH = 320
HEIGHT = 160
PAD_LEFT = 30
PAD_BOTTOM = 22
PAD_TOP = 10


def _number(value: float) -> str:
    return f"{value:g}"


def _frame(title: str, labels: Sequence[str], values: Sequence[float], body: str, desc: str | None) -> Markup:
    if len(labels) != len(values):
        raise ValueError("a chart needs one label per value")
    uid = next(_ids)
    summary = desc if desc is not None else "; ".join(f"{label}: {_number(v)}" for label, v in zip(labels, values))
    return Markup(
        '<svg class="chart" role="img" viewBox="0 0 {w} {h}" aria-labelledby="chart-{uid}-t chart-{uid}-d">'
        '<title id="chart-{uid}-t">{title}</title><desc id="chart-{uid}-d">{desc}</desc>{body}</svg>'
    ).format(w=WIDTH, h=HEIGHT, uid=uid, title=title, desc=summary, body=Markup(body))


def _scale(values: Sequence[float]) -> float:
    top = max([float(v) for v in values] + [0.0])
    return top if top > 0 else 1.0


def _axes(top: float) -> str:
    base = HEIGHT - PAD_BOTTOM
    return (
        f'<line class="axis" x1="{PAD_LEFT}" y1="{base}" x2="{WIDTH}" y2="{base}"/>'
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 4}" text-anchor="end">{escape(_number(top))}</text>'
        f'<text x="{PAD_LEFT - 4}" y="{base}" text-anchor="end">0</text>'
    )


def _label(x: float, text: str) -> str:
    return f'<text x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="middle">{escape(text)}</text>'


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], *, desc: str | None = None) -> Markup:
    """Vertical bars, one per value, labelled below."""
    top = _scale(values)
    span = (WIDTH - PAD_LEFT) / max(len(values), 1)
    height = HEIGHT - PAD_BOTTOM - PAD_TOP
    parts = [_axes(top)]
    for index, (label, value) in enumerate(zip(labels, values)):
        bar_h = height * max(float(value), 0.0) / top
        x = PAD_LEFT + index * span + span * 0.15
        y = HEIGHT - PAD_BOTTOM - bar_h
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{span * 0.7:.1f}" height="{bar_h:.1f}">'
                     f'<title>{escape(label)}: {escape(_number(float(value)))}</title></rect>')
        parts.append(_label(x + span * 0.35, label))
    return _frame(title, labels, values, "".join(parts), desc)


def line_chart(title: str, labels: Sequence[str], values: Sequence[float], *, desc: str | None = None) -> Markup:
    """A line through the values with a dot on each, labelled below."""
    top = _scale(values)
    count = len(values)
    span = (WIDTH - PAD_LEFT - 10) / max(count - 1, 1)
    height = HEIGHT - PAD_BOTTOM - PAD_TOP
    points = [(PAD_LEFT + 5 + i * span, HEIGHT - PAD_BOTTOM - height * max(float(v), 0.0) / top) for i, v in enumerate(values)]
    parts = [_axes(top)]
    if points:
        parts.append('<polyline class="line" points="{}"/>'.format(" ".join(f"{x:.1f},{y:.1f}" for x, y in points)))
    for (x, y), label, value in zip(points, labels, values):
        parts.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{escape(label)}: '
                     f'{escape(_number(float(value)))}</title></circle>')
        parts.append(_label(x, label))
    return _frame(title, labels, values, "".join(parts), desc)
