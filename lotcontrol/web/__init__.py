"""The staff web console (``lotcontrol web``): its own process, never in the controller's loop.

It asks the running controller through the control socket (``lotcontrol.control_socket``), exactly
as the command line does, and reads the database read-only; it writes its own audit events
(``audit``) and its users file (``users``), and for staff the residents' changes (through
``lotcontrol.residents``, the command line's path) and enrollments (the command line's ``enroll``,
run as a child process: ``enrolling``). Nothing here imports the controller, the
safety or site packages, the vision worker or the pins (tests/test_architecture.py).

- ``users``    the accounts: ``DATA_DIR/web-users.json`` (mode 600), argon2id hashes, roles, language
- ``security`` sessions, CSRF tokens, the login rate limit, the security headers
- ``feed``     the controller's status, asked once per ``web.poll_seconds`` for every browser together
- ``i18n``     gettext catalogues (Babel), the language of a request, dates in ``site.timezone``
- ``audit``    the web console's own events, written on a thread of their own
- ``server``   the Starlette application: pages, server-sent events, actions
- ``residents`` the residents pages: list, one resident, look-alikes, staff changes, enrollment
- ``enrolling`` enrollment by the command line's ``enroll`` in a child process (photos, the camera)
"""
