"""``casrepo lineage REV --format html``: the lineage graph as one HTML file.

The same graph as the served lineage page (the same markup, script and style sheet,
and the vendored Cytoscape.js and dagre), with everything inlined: a file to mail or
attach to a report, which fetches nothing and needs no server. Only the standard
library is used, so the core install writes it too.

Inlining is done with care: the graph's JSON goes into a ``<script
type="application/json">`` block with ``<``, ``>`` and ``&`` escaped as JSON
``\\u`` escapes (no manifest text can end the block), and the page's
Content-Security-Policy lets only the inlined scripts and style sheet run, by their
SHA-256 hashes, and lets the page load nothing.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from pathlib import Path
from typing import Any

from casrepo import __version__

STATIC = Path(__file__).parent / "static"
GRAPH_MARKUP = Path(__file__).parent / "templates" / "_graph.html"
SCRIPTS = ("vendor/cytoscape.min.js", "vendor/cytoscape-dagre.min.js", "lineage.js")
_SCRIPT_END = re.compile(r"</(script)", re.IGNORECASE)
_STYLE_END = re.compile(r"</(style)", re.IGNORECASE)


def json_for_script(data: Any) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` element: ``<``, ``>`` and
    ``&`` (and the line separators JavaScript once refused) as ``\\u`` escapes, which
    JSON.parse reads back as the same characters."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def script_text(source: str) -> str:
    """JavaScript source made safe to inline: ``</script`` and ``<!--`` can only occur
    in its strings, regular expressions and comments, where ``<\\/`` and ``<\\!`` mean
    the same."""
    return _SCRIPT_END.sub(r"<\\/\1", source).replace("<!--", "<\\!--")


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def lineage_html(data: dict[str, Any]) -> str:
    """The page for a lineage answer (:func:`casrepo.graph.to_json`'s document)."""
    root = next((n for n in data["nodes"] if n["id"] == data["root"]), {"id": data["root"]})
    label = root.get("label") or data["root"][:12]
    depth = "all" if data.get("depth") is None else str(data["depth"])
    style = (STATIC / "style.css").read_text(encoding="utf-8")
    if _STYLE_END.search(style):
        raise AssertionError("style.css must not hold '</style'")
    scripts = [script_text((STATIC / name).read_text(encoding="utf-8")) for name in SCRIPTS]
    markup = GRAPH_MARKUP.read_text(encoding="utf-8")
    served = ' data-link="/v/"'
    if served not in markup or "{{" in markup or "{%" in markup:
        raise AssertionError("_graph.html changed: the one-file page reuses it as plain HTML")
    markup = markup.replace(served, "")
    csp = ("default-src 'none'; img-src data:; style-src " + _hash(style) + "; script-src "
           + " ".join(_hash(s) for s in scripts))
    title = f"Lineage of {label} ({data['root'][:12]})"
    stats = (f"{data['direction']}, depth {depth}: {len(data['nodes'])} nodes, "
             f"{len(data['edges'])} links")
    parts = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        # The id tells Cytoscape.js its container rule is here: it injects no style of its own.
        f'<style id="__________cytoscape_stylesheet">{style}</style>',
        "</head>",
        '<body class="graph-page">',
        "<main>",
        '<div class="graph-head">',
        f"<h1>{html.escape(title)}</h1>",
        f'<span class="count">{html.escape(stats)} · written by casrepo {html.escape(__version__)}'
        " (the graph's scripts, Cytoscape.js and dagre, are MIT-licensed; their notices are "
        "in the page's source)</span>",
        "</div>",
        *(f'<p class="problem">{html.escape(w)}</p>' for w in data.get("warnings", [])),
        markup,
        f'<script type="application/json" id="lineage-data">{json_for_script(data)}</script>',
        *(f"<script>{s}</script>" for s in scripts),
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"
