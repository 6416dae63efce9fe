"""lotcontrol: the controller for an e-bike charging lot.

Layout (one job per module):

- ``config``   the TOML configuration: schema, defaults, bounds, loading
- ``store``    the SQLite database: residents, face templates, events, migrations
- ``faces``    reading photos and turning faces into 128-d templates (dlib; never in the controller)
- ``matcher``  the in-memory gallery and the accept/refuse decision for one face
- ``enroll``   putting residents' photos on file, one or a folder at a time
- ``camera``, ``vision``, ``messages``, ``supervisor``  the vision worker process and how it talks
- ``decision``, ``fire``, ``bays``, ``door``  the pure decisions (tests call them with a clock)
- ``gate``, ``firewatch``, ``sensors``, ``hardware``  the GPIO devices behind those decisions
- ``controller``, ``control``, ``notify``, ``service``  the controller loop and what it talks to
- ``cli``      the staff command line, thin commands over the modules above
"""

__version__ = "0.1.0"
