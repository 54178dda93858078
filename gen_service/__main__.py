from __future__ import annotations

from gen_service.cli import main

raise SystemExit(main())
