"""Pictures drawn on the server as SVG: no script, no library, nothing off the site's host.

Each chart is an `<svg role="img">` named by its own `<title>` and summed up by its `<desc>`;
the page puts the same figures in a table beside it, for screen readers and for anyone who
wants the numbers. Colours come from the Okabe-Ito palette (told apart with any colour
vision), and lines differ by their dashes too. Only presentation attributes, never a `style`:
the pages' content security policy allows no inline style."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#7a5c00", "#000")
DASHES = ("", "6 3", "2 3", "8 3 2 3")
INK = "#1d2733"
GRID = "#c9d1db"
FONT = 'font-family="system-ui, sans-serif" font-size="13"'
WIDTH = 640
Fmt = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


def _svg(parts: list[str]) -> Markup:
    # Safe: every text in the parts went through `escape` (`_open`, `_text`); the rest are
    # numbers and this module's own constants.
    return Markup("".join(parts))  # noqa: S704


def _open(chart_id: str, title: str, desc: str, height: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'role="img" aria-labelledby="{chart_id}-t {chart_id}-d" class="chart" {FONT}>'
        f'<title id="{chart_id}-t">{escape(title)}</title><desc id="{chart_id}-d">'
        f"{escape(desc)}</desc>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", weight: str = "") -> str:
    bold = ' font-weight="700"' if weight else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{INK}"{bold}>'
        f"{escape(text)}</text>"
    )


def _clip(label: str, chars: int) -> str:
    return label if len(label) <= chars else label[: chars - 1] + "…"


def _legend(
    names: Sequence[str], swatch: Callable[[int, float, float], str]
) -> tuple[list[str], int]:
    """Legend entries side by side, each as wide as its name (about 7.5 px a letter), on as
    many rows as they need; and the height they take."""
    parts: list[str] = []
    x, y = 10.0, 14.0
    for k, name in enumerate(names):
        width = 34 + 7.5 * len(name)
        if x + width > WIDTH and x > 10:
            x, y = 10.0, y + 22
        parts += [swatch(k, x, y), _text(x + 30, y + 4, name)]
        x += width + 16
    return parts, int(y) + 14


def bars(chart_id: str, title: str, desc: str, items: Sequence[tuple[str, float]],
         fmt: Fmt) -> Markup:  # fmt: skip
    """Horizontal bars, one per item, the longest the widest; the figure at each bar's end."""
    row, label_w, top = 28, 170, 8
    height = top + row * len(items) + 8
    most = max((v for _, v in items), default=0) or 1
    span = WIDTH - label_w - 110
    parts = [_open(chart_id, title, desc, height)]
    for i, (label, value) in enumerate(items):
        y = top + i * row
        w = max(span * value / most, 1 if value else 0)
        parts.append(_text(label_w - 8, y + 18, _clip(label, 24), "end"))
        parts.append(
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" '
            f'fill="{PALETTE[0]}"/>'
        )
        parts.append(_text(label_w + w + 6, y + 18, fmt(value)))
    parts.append("</svg>")
    return _svg(parts)


def lines(chart_id: str, title: str, desc: str, x_labels: Sequence[str],
          series: Sequence[Series], fmt: Fmt,
          positions: Sequence[float] | None = None) -> Markup:  # fmt: skip
    """Lines over time from 0 to the largest value, the first and last period named below,
    a legend above; each line its own colour and dash. `positions` (seconds, say) place the
    points along the axis as far apart as they are in time; else evenly."""
    left, right, top, bottom = 120, 20, 40, 40
    height = 300
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    most = max((v for s in series for v in s.values), default=0) or 1
    n = max(len(x_labels), 2)

    at = list(positions) if positions and len(positions) > 1 else list(range(n))
    span = (at[-1] - at[0]) or 1

    def x(i: int) -> float:
        return left + plot_w * (at[i] - at[0]) / span

    def y(v: float) -> float:
        return top + plot_h * (1 - v / most)

    parts = [_open(chart_id, title, desc, height)]
    for tick in (0, 0.5, 1):
        ty = y(most * tick)
        parts.append(
            f'<line x1="{left}" x2="{WIDTH - right}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="{GRID}"/>'
        )
        parts.append(_text(left - 6, ty + 4, fmt(most * tick), "end"))

    def swatch(k: int, lx: float, ly: float) -> str:
        dash = DASHES[k % len(DASHES)]
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        return (
            f'<line x1="{lx:.1f}" x2="{lx + 24:.1f}" y1="{ly}" y2="{ly}" '
            f'stroke="{PALETTE[k % len(PALETTE)]}" stroke-width="3"{dashed}/>'
        )

    parts += _legend([s.name for s in series], swatch)[0]
    for k, s in enumerate(series):
        colour, dash = PALETTE[k % len(PALETTE)], DASHES[k % len(DASHES)]
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(s.values))
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="3"{dashed}/>'
        )
    if x_labels:
        parts.append(_text(left, height - 12, x_labels[0]))
        parts.append(_text(WIDTH - right, height - 12, x_labels[-1], "end"))
    parts.append("</svg>")
    return _svg(parts)


def stacked(chart_id: str, title: str, desc: str, rows: Sequence[tuple[str, dict[str, int]]],
            keys: Sequence[tuple[str, str]]) -> Markup:  # fmt: skip
    """A bar per row split by key (`keys`: each key and its name, in order), a legend above,
    each bar's total at its end."""

    def swatch(k: int, lx: float, ly: float) -> str:
        colour = PALETTE[k % len(PALETTE)]
        return f'<rect x="{lx + 8:.1f}" y="{ly - 8}" width="16" height="16" fill="{colour}"/>'

    legend, top = _legend([name for _, name in keys], swatch)
    row, label_w = 28, 170
    height = top + row * len(rows) + 8
    most = max((sum(c.values()) for _, c in rows), default=0) or 1
    span = WIDTH - label_w - 60
    parts = [_open(chart_id, title, desc, height), *legend]
    for i, (label, counts) in enumerate(rows):
        y, at = top + i * row, float(label_w)
        parts.append(_text(label_w - 8, y + 18, _clip(label, 24), "end"))
        for k, (key, _) in enumerate(keys):
            w = span * counts.get(key, 0) / most
            if w:
                parts.append(
                    f'<rect x="{at:.1f}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" '
                    f'fill="{PALETTE[k % len(PALETTE)]}" stroke="#fff"/>'
                )
            at += w
        parts.append(_text(at + 6, y + 18, str(sum(counts.values()))))
    parts.append("</svg>")
    return _svg(parts)


def share(chart_id: str, title: str, desc: str, part: int, whole: int, target: float,
          labels: tuple[str, str], fmt: Fmt) -> Markup:  # fmt: skip
    """One bar for the whole, filled to the part's share, with a mark at the target share."""
    left, bar_w, height = 10, WIDTH - 20, 90
    filled = bar_w * (part / whole if whole else 0)
    mark = left + bar_w * target
    parts = [
        _open(chart_id, title, desc, height),
        f'<rect x="{left}" y="30" width="{bar_w}" height="26" fill="#eceef1" stroke="{GRID}"/>',
        f'<rect x="{left}" y="30" width="{filled:.1f}" height="26" fill="{PALETTE[2]}"/>',
        f'<line x1="{mark:.1f}" x2="{mark:.1f}" y1="22" y2="64" stroke="{INK}" stroke-width="2" '
        f'stroke-dasharray="4 2"/>',
        _text(left, 18, f"{labels[0]}: {fmt(part / whole if whole else 0)}", weight="bold"),
        _text(mark, 80, f"{labels[1]}: {fmt(target)}", "middle"),
        "</svg>",
    ]
    return _svg(parts)
