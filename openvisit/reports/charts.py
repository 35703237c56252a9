"""Server-rendered SVG charts: no script, no CDN, scaled to the page width (phones too).

Each chart is an ``<svg role="img">`` with a title and a one-sentence description; the page
puts the same numbers in a table next to it for screen readers and for copying. Colours are
the Okabe–Ito palette, which stays distinguishable with the common colour-vision deficiencies.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")
WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 12, 36


def colour(n: int) -> str:
    return PALETTE[n % len(PALETTE)]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000):
        if value <= step * 4:
            return float(step * 4)
    return float(value)


def _frame(title: str, desc: str, parts: list[Markup], *, ident: str,
           height: int = HEIGHT) -> Markup:
    return Markup(
        '<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-labelledby="{i}-t {i}-d" '
        'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
        '<title id="{i}-t">{t}</title><desc id="{i}-d">{d}</desc>{body}</svg>'
    ).format(w=WIDTH, h=height, i=ident, t=title, d=desc, body=Markup("").join(parts))


def _axis(top: float) -> list[Markup]:
    out = []
    plot_h = HEIGHT - TOP - BOTTOM
    for i in range(5):
        y = TOP + plot_h * (1 - i / 4)
        label = top * i / 4
        text = f"{label:.0f}" if top >= 4 else f"{label:.1f}"
        out.append(Markup('<line x1="{l}" x2="{r}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                          '<text x="{tx}" y="{ty:.1f}" text-anchor="end" class="tick">{t}</text>'
                          ).format(l=LEFT, r=WIDTH - RIGHT, y=y, tx=LEFT - 6, ty=y + 4, t=text))
    return out


def stacked_bars(categories: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *,
                 title: str, desc: str, ident: str, labels: Sequence[str] | None = None
                 ) -> Markup:
    """Vertical bars per category, each split by series (in legend order, bottom up).

    ``labels`` are the x-axis texts (defaults to the categories); only some are drawn when
    there are many bars, so they never overlap on a phone.
    """
    n = max(1, len(categories))
    totals = [sum(values[i] for _name, values in series) for i in range(len(categories))]
    # Counts: at least 0–4, so the five grid lines fall on whole numbers.
    top = max(4.0, _nice_max(max(totals, default=0)))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / n
    bar = max(1.0, slot * 0.72)
    parts = _axis(top)
    shown = labels or categories
    every = max(1, -(-n // 8))
    for i, category in enumerate(categories):
        x = LEFT + slot * i + (slot - bar) / 2
        y: float = TOP + plot_h
        for k, (name, values) in enumerate(series):
            h = plot_h * values[i] / top if top else 0
            if h <= 0:
                continue
            y -= h
            parts.append(Markup('<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
                                'fill="{c}"><title>{cat} · {name}: {v:g}</title></rect>').format(
                x=x, y=y, w=bar, h=h, c=colour(k), cat=category, name=name, v=values[i]))
        if i % every == 0:
            parts.append(Markup('<text x="{x:.1f}" y="{y}" text-anchor="middle" class="tick">'
                                '{t}</text>').format(x=x + bar / 2, y=HEIGHT - BOTTOM + 16,
                                                     t=shown[i]))
    parts.append(Markup('<line x1="{l}" x2="{r}" y1="{y}" y2="{y}" class="axis"/>').format(
        l=LEFT, r=WIDTH - RIGHT, y=TOP + plot_h))
    return _frame(title, desc, parts, ident=ident)


def horizontal_bars(items: Sequence[tuple[str, float]], *, total: float, title: str,
                    desc: str, ident: str) -> Markup:
    """One bar per step, as a share of ``total`` (the funnel), labelled with count and %.

    Each label sits above its bar, so long labels fit on a phone as well as on a desktop.
    """
    row = 54
    height = TOP + row * max(1, len(items))
    plot_w = WIDTH - 150
    parts: list[Markup] = []
    for i, (label, value) in enumerate(items):
        y = TOP + row * i
        share = value / total if total else 0
        parts.append(Markup(
            '<text x="0" y="{ty}" class="label">{label}</text>'
            '<rect x="0" y="{ry}" width="{pw}" height="20" class="track"/>'
            '<rect x="0" y="{ry}" width="{w:.1f}" height="20" fill="{c}"/>'
            '<text x="{vx}" y="{vy}" class="value">{v:g} ({p:.0f}%)</text>').format(
            ty=y + 16, label=label, ry=y + 24, pw=plot_w, w=plot_w * share, c=colour(0),
            vx=plot_w + 8, vy=y + 40, v=value, p=share * 100))
    return _frame(title, desc, parts, ident=ident, height=height)
