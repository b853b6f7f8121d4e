"""The status badge of a branch, as SVG: every value escaped.

The pages themselves are Jinja2 templates (render.py); the badge is made here
because it is an image that other sites embed, not a page.
"""

from html import escape


BADGE_COLOURS = {"PASSED": "#4c1", "FAILED": "#e05d44", "LOST": "#e05d44", "HELD": "#6f42c1", "QUEUED": "#dfb317",
                 "STARTING": "#dfb317", "BUILDING": "#dfb317", "UNSTORED": "#e05d44"}
GREY = "#9f9f9f"


def badge(label: str, status: str | None) -> str:
    """A flat status badge; an unknown branch gets a grey "unknown"."""
    text = status or "unknown"
    colour = BADGE_COLOURS.get(text, GREY)
    left, right = 7 * len(label) + 12, 7 * len(text) + 12
    width = left + right
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
            f'aria-label="{escape(label)}: {escape(text)}"><title>{escape(label)}: {escape(text)}</title>'
            f'<rect width="{left}" height="20" fill="#555"/><rect x="{left}" width="{right}" height="20" '
            f'fill="{colour}"/><g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
            f'<text x="6" y="14">{escape(label)}</text><text x="{left + 6}" y="14">{escape(text)}</text></g></svg>\n')
