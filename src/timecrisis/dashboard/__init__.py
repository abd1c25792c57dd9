"""The timecrisis web dashboard: watch and repair the queue, and `/metrics` for Prometheus.

Served by `timecrisis dashboard`, or mounted in your own ASGI app::

    from timecrisis.dashboard import create_app
    app.mount("/queue", create_app(storage))

Server-rendered (Starlette and Jinja2, every value escaped), with a little plain JavaScript
that refreshes the live regions; nothing is loaded from another site. See docs/dashboard.md.
"""

from __future__ import annotations

from timecrisis.dashboard.app import create_app

__all__ = ["create_app"]
