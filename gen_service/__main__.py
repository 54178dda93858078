from __future__ import annotations

from gen_service.cli import main

# Guarded: a check worker process (anyio.to_process, like multiprocessing's spawn) loads the
# parent's main module under another name, and must not start a second gen-service.
if __name__ == "__main__":
    raise SystemExit(main())
