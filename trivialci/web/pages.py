"""HTML and SVG for the web UI: every value escaped, one inline script allowed by a nonce.

The page carries its view rendered on the server (so it works without
scripts) and a small script that fetches the page's JSON twin every second
and draws the same view again with createElement and textContent. The
Content-Security-Policy allows only that script (by its nonce) and the style
beside it, and no inline event handlers, so even a value that escaped escaping
could not run.
"""

from html import escape

NAV = (("jobs", "/"), ("queue", "/queue"), ("workers", "/workers"), ("events", "/events"))
REFRESH_MS = 1000

STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
nav a{margin-right:1em} table{border-collapse:collapse;margin:.5em 0}
th,td{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;white-space:nowrap}
th{background:#f4f4f4} #live{color:#888;font-size:12px} .empty{color:#888}
.s-PASSED{color:#2a7a2a;font-weight:bold} .s-FAILED,.s-LOST{color:#c0392b;font-weight:bold}
.s-QUEUED,.s-STARTING,.s-BUILDING{color:#b07d00;font-weight:bold} .s-CANCELLED,.s-SUPERSEDED{color:#777}
.s-UNSTORED{color:#c0392b;font-weight:bold}
.s-HELD{color:#6f42c1;font-weight:bold}
"""

SCRIPT = """
(function () {
  var view = document.getElementById("view"), live = document.getElementById("live");
  function safeHref(href) { return typeof href === "string" && /^(\\/(?!\\/)|https?:\\/\\/)/.test(href); }
  function cell(c) {
    if (c === null || c === undefined) return document.createTextNode("");
    if (typeof c !== "object") return document.createTextNode(String(c));
    var e = document.createElement(c.href && safeHref(c.href) ? "a" : "span");
    if (e.tagName === "A") { e.href = c.href; if (c.download) e.setAttribute("download", ""); }
    if (typeof c.status === "string") e.className = "s-" + c.status;
    e.textContent = c.text === null || c.text === undefined ? "" : String(c.text);
    return e;
  }
  function add(parent, tag, text) {
    var e = document.createElement(tag); if (text !== undefined) e.textContent = text; parent.appendChild(e); return e;
  }
  function table(s, parent) {
    if (!s.rows.length) { add(parent, "p", s.empty || "").className = "empty"; return; }
    var t = add(parent, "table"), head = add(add(t, "thead"), "tr"), body = add(t, "tbody");
    s.columns.forEach(function (name) { add(head, "th", name); });
    s.rows.forEach(function (row) {
      var tr = add(body, "tr"); row.forEach(function (c) { add(tr, "td").appendChild(cell(c)); });
    });
  }
  function section(s) {
    var d = document.createElement("section");
    if (s.title) add(d, "h2", s.title);
    if (s.links) {
      var p = add(d, "p");
      s.links.forEach(function (c) { p.appendChild(cell(c)); p.appendChild(document.createTextNode(" ")); });
    }
    if (s.columns) table(s, d);
    return d;
  }
  function refresh() {
    fetch(location.href, {headers: {"Accept": "application/json"}, cache: "no-store"})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (data) {
        view.replaceChildren.apply(view, data.view.map(section));
        live.textContent = "live, updated " + new Date().toLocaleTimeString();
      })
      .catch(function (e) { live.textContent = "not updating: " + e.message; })
      .then(function () { setTimeout(refresh, REFRESH_MS); });
  }
  setTimeout(refresh, REFRESH_MS);
})();
""".replace("REFRESH_MS", str(REFRESH_MS))


def page(title: str, view: list[dict], nonce: str) -> str:
    """A whole page: navigation, the view drawn on the server, the script that keeps it live."""
    nav = " ".join(f'<a href="{href}">{name}</a>' for name, href in NAV)
    sections = "".join(_section(s) for s in view)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width">'
            f"<title>TrivialCi: {escape(title)}</title><style nonce=\"{nonce}\">{STYLE}</style></head>\n"
            f"<body><nav>{nav}</nav><h1>{escape(title)}</h1>\n<main id=\"view\">{sections}</main>\n"
            f'<p id="live">live</p><script nonce="{nonce}">{SCRIPT}</script></body></html>\n')


def _section(s: dict) -> str:
    parts = [f"<h2>{escape(s['title'])}</h2>" if s.get("title") else ""]
    if "links" in s:
        parts.append("<p>" + "".join(_cell(c) + " " for c in s["links"]) + "</p>")
    if "columns" in s:
        parts.append(_table(s))
    return "<section>" + "".join(parts) + "</section>"


def _table(s: dict) -> str:
    if not s["rows"]:
        return f'<p class="empty">{escape(s.get("empty") or "")}</p>'
    head = "".join(f"<th>{escape(name)}</th>" for name in s["columns"])
    rows = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in s["rows"])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _cell(c) -> str:
    if c is None:
        return ""
    if not isinstance(c, dict):
        return escape(str(c))
    text = escape("" if c.get("text") is None else str(c["text"]))
    css = f' class="s-{escape(c["status"])}"' if isinstance(c.get("status"), str) else ""
    if c.get("href"):
        download = " download" if c.get("download") else ""
        return f'<a href="{escape(c["href"])}"{css}{download}>{text}</a>'
    return f"<span{css}>{text}</span>"


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
