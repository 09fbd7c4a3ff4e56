"""Benchmarks: ``memrl bench NAME --out results/NAME.json``.

Each benchmark is a module with ``add_arguments(parser)`` and ``run(args) -> rows``; results go
through ``memrl.bench.report.write_report`` (JSON plus a Markdown table beside it).
"""

# name -> module, imported only when that benchmark runs.
BENCHMARKS: dict[str, str] = {
    "cores": "memrl.bench.cores",
    "envs": "memrl.bench.envs",
    "offline": "memrl.bench.offline",
    "ppo": "memrl.bench.ppo",
    "replay": "memrl.bench.replay",
    "state-bytes": "memrl.bench.state_bytes",
}
