"""The staff web console (``lotcontrol web``): its own process, never in the controller's loop.

It asks the running controller through the control socket (``lotcontrol.control_socket``), exactly
as the command line does, and reads the database read-only; the only things it writes are its own
audit events (``audit``) and its users file (``users``). Nothing here imports the controller, the
safety or site packages, the vision worker or the pins (tests/test_architecture.py).

- ``users``    the accounts: ``DATA_DIR/web-users.json`` (mode 600), argon2id hashes, roles, language
- ``security`` sessions, CSRF tokens, the login rate limit, the security headers
- ``feed``     the controller's status, asked once per ``web.poll_seconds`` for every browser together
- ``i18n``     gettext catalogues (Babel), the language of a request, dates in ``site.timezone``
- ``audit``    the web console's own events, written on a thread of their own
- ``server``   the Starlette application: pages, server-sent events, actions
"""
