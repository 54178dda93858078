"""Adapters: the only code that touches sockets, processes or disk."""
