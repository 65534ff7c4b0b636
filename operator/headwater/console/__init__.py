"""``headwater console``: a local web UI over the user's own kubeconfig.

Server-rendered HTML (Jinja2, autoescaped) with htmx and its SSE extension,
vendored in ``static/``; live parts come from one watch per kind and
namespace shown, fanned out to server-sent event streams. It acts with the
user's credentials, like ``kubectl proxy``, so it guards itself as a local
server must: loopback by default, Host header checked (no DNS rebinding), a
per-process CSRF token on every action, no CORS, a CSP without inline script.
Actions go through the CLI's own functions. In token mode
(:mod:`headwater.console.users`) it serves many users behind a proxy instead,
each request acting with its own bearer token, nothing shared between users.
It sits beside :mod:`headwater.cli` and never imports the handlers.
"""
