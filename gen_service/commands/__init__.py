"""The bodies of the ``gen-service`` commands, one module per family of commands;
:mod:`gen_service.cli` parses the arguments and calls them.

Each module imports only the standard library (and :mod:`gen_service.errors`) at its top and
everything else inside the command that needs it, so a command loads what it uses and no
more: ``status --json`` answers within 200 ms as a whole process (SPEC §9.5). Keep it so.
"""
