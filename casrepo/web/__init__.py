"""The web view: ``casrepo serve`` and ``casrepo lineage --format html``.

It sits beside the command line, at the top of the layers: the library computes
(the same calls the commands make, the same JSON documents of :mod:`casrepo.shapes`
and :func:`casrepo.graph.to_json`), and this package only renders.

- :mod:`casrepo.web.readonly` opens a repository so that nothing is ever written
  to it, not even the manifest index (a private copy in memory).
- :mod:`casrepo.web.pages` gathers what each page shows, as plain data.
- :mod:`casrepo.web.app` is the Starlette application (the ``web`` extra:
  Starlette, Jinja2, uvicorn); :mod:`casrepo.web.server` runs it.
- :mod:`casrepo.web.standalone` writes the lineage graph as one HTML file; it needs
  nothing beyond the standard library, so the core install has it too.

Nothing here imports the web stack at import time of this package.
"""
