"""``gen-service check-config`` and ``gen-service init``: check a config file, write a
starter one."""

from __future__ import annotations

import argparse
import sys

from gen_service.errors import EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from gen_service.adapters.prompt_files import load_prompt_library
    from gen_service.config import config_warnings, load_config
    from gen_service.service.fit_check import batch_fit_warnings

    cfg = load_config(args.path)
    library = load_prompt_library(cfg.service.prompts_dir, list(cfg.datatypes))
    for warning in [*config_warnings(cfg), *batch_fit_warnings(cfg, library)]:
        print(f"warning: {args.path}: {warning}", file=sys.stderr)
    print("ok")
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from gen_service.starter import write_starter

    path = write_starter(args.path, args.backend, force=args.force)
    print(f"wrote {path} ({args.backend} backend)")
    print(f"check it:  gen-service check-config {path}")
    print(f"run it:    gen-service run --config {path}")
    return EXIT_OK
