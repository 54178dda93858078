"""``gen-service fake-ollama``: serve the fake Ollama, a test double, for dry runs."""

from __future__ import annotations

import argparse
import sys

from gen_service.errors import EXIT_OK


def cmd_fake_ollama(args: argparse.Namespace) -> int:
    from gen_service.testing.fake_ollama import (
        FakeConfig,
        FaultRates,
        JudgeBehaviour,
        serve_forever,
    )

    config = FakeConfig(
        vram_bytes=int(args.vram_gb * 2**30),
        num_parallel=args.num_parallel,
        tokens_per_s=args.tokens_per_s,
        time_scale=args.time_scale,
        faults=FaultRates.uniform(args.fault_rate),
        seed=args.seed,
        judge=JudgeBehaviour(
            low_quality_share=args.judge_low_share,
            label_disagreement_share=args.judge_disagree_share,
        ),
    )
    print("fake Ollama: a test double; what it generates is not real data", file=sys.stderr)
    serve_forever(config, args.host, args.port)
    return EXIT_OK
