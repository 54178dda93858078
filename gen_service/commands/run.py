"""``gen-service run``: the service in the foreground, and the one log event a failed run
ends with."""

from __future__ import annotations

import argparse

from gen_service.commands._loop import uvloop_available
from gen_service.errors import GenServiceError


def cmd_run(args: argparse.Namespace) -> int:
    import anyio

    from gen_service.config import find_config, load_config
    from gen_service.logs import configure_logging
    from gen_service.service.supervisor import run_service

    cfg = load_config(find_config(args.config))
    configure_logging(cfg.service.log_format, cfg.service.log_level)
    try:
        outcome = anyio.run(
            lambda: run_service(cfg, until_done=args.until_done),
            backend="asyncio",
            backend_options={"use_uvloop": uvloop_available()},
        )
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        return report_failure(exc)
    return outcome.exit_code


def report_failure(exc: BaseException) -> int:
    """Log the error that ended a run as ONE event and return its exit code: a known error
    with its message (which says the fix), an unknown one with its traceback, once. The
    follow-on errors of the other tasks are not reported."""
    import structlog

    from gen_service.errors import EXIT_SOFTWARE, primary_error

    log = structlog.get_logger("gen_service")
    cause = primary_error(exc)
    if isinstance(cause, GenServiceError):
        log.error(
            "service.failed",
            error=str(cause),
            error_type=type(cause).__name__,
            exit_code=cause.exit_code,
        )
        return cause.exit_code
    log.error(
        "service.crashed",
        error=f"{type(cause).__name__}: {cause}",
        exit_code=EXIT_SOFTWARE,
        exc_info=cause,
    )
    return EXIT_SOFTWARE
