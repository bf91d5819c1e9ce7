"""The operator console (SPEC 9): server-rendered pages at `/console/...` on the team host.

    app.py        the `/console` ASGI app: access, CSRF and Origin check, dispatch, headers
    routes.py     THE list of console pages (`PAGES`) and public ones (`PUBLIC`)
    access.py     who is admitted: `[console.policy]` through `authz/policy.py`, or a console link
    security.py   CSRF tokens, the same-origin check, the security headers of every response
    context.py    `Console` (what a handler gets), `render`, `redirect`, forms, `field_errors`
    signin.py     signing in to the console (an IdP, or a `gateway console-link` URL)
    link.py       the one-time console links (`gateway console-link`)
    static.py     `console.css` and `console.js` from the package (`console/static/`)
    <page>.py     one module per page: overview, identity_providers, settings, ...
    idp_form.py   the login-method form's fields per IdP type, and form <-> API object

Adding a page:

1. Route: one line in `routes.py` `PAGES`, e.g. `Page("GET", "/apps/{app_id}", apps.edit_page)`
   and `Page("POST", "/apps/{app_id}", apps.update)` (paths below `/console`; SPEC 9 fixes
   the top-level ones). Nothing else: `app.py` admits, checks the form and dispatches, and the
   tests that walk `PAGES` (403 for users not admitted, headers on every page) cover it.
2. View: `async def edit_page(console: Console) -> Response` in `gateway/console/<page>.py`.
   Path parameters are in `console.request.path_params`; return `console.render(...)`, or
   `console.redirect(path)` (303) after a change. Raise `GatewayError` (e.g. `NotFoundError`) for
   a refusal: it becomes a console page with its status.
3. Template: `templates/console/<page>.html`, `{% extends "console/base.html" %}`, content in
   `{% block content %}`. Autoescaping is on: never `|safe` a user's string. No inline
   `<script>`, `style=` or `on...=` handlers (the CSP refuses them): style in
   `static/console.css`, behaviour in `static/console.js`, and the page must work without it
   (only copy buttons need it: `forms.copyable`).
4. Form + CSRF: `{% import "console/forms.html" as forms %}`, `<form method="post">` with
   `{{ forms.csrf(csrf) }}` inside; POST handlers read `await console.read_form()`. The token
   and the Origin are checked before the handler runs, so a handler never sees a forged form.
   Validation errors: catch the `GatewayError` of the service call and re-render the form with
   `errors=field_errors(exc)`; `forms.text(..., errors=errors, key="config.client_id")` shows
   each message next to its field.
5. Changes go through the shared service layer, never the store directly: `gateway/services/`
   (`identity_providers`, `apps`, `tokens`, `users`), the same functions the admin API calls,
   with `actor=console.actor`; they validate, store, apply on this instance and write the
   audit log (`state/audit_log.py`). Reading: `console.rt.settings` (merged file + API objects),
   `rt.registry`, `rt.sessions`, and the logs (`services.logs`). Objects defined in the config
   file are read-only (`services.<kind>.read_only`): show them with a note, without a form.
"""
