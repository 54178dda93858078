"""The running service: supervisor, producers, writer, in one anyio task group."""
