"""``gen-service doctor`` and ``gen-service models pull|list``: check the backend and the
configured models, and get them ready."""

from __future__ import annotations

import argparse

from gen_service.commands._loop import run_async
from gen_service.errors import EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from gen_service.adapters.factory import open_backend
    from gen_service.config import find_config, load_config
    from gen_service.logs import configure_logging
    from gen_service.service.doctor import exit_code, render_checks, run_doctor

    cfg = load_config(find_config(args.config))
    configure_logging("console", "error")

    async def doctor() -> int:
        async with open_backend(cfg) as backend:
            checks = await run_doctor(cfg, backend)
        print(render_checks(checks))
        return exit_code(checks)

    return run_async(doctor)


def cmd_models(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gen_service.adapters.factory import open_backend
    from gen_service.config import find_config, load_config
    from gen_service.logs import configure_logging
    from gen_service.service.models_cmd import list_models, pull_models, render_models

    cfg = load_config(find_config(args.config), check_prompts=False)
    configure_logging("console", "error")
    console = Console()

    async def models() -> int:
        async with open_backend(cfg) as backend:
            if args.models_command == "pull":
                return await pull_models(cfg, backend, console)
            render_models(await list_models(cfg, backend), console)
            return EXIT_OK

    return run_async(models)
