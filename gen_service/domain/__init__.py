"""Pure code: no I/O, no await. Data types, prompts, parsing, schedule math, dedup signatures."""
