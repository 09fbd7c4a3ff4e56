"""``memrl bench cores``: per-step latency, state size and training throughput of every core.

For each core, device and context length (``memory_len`` of trxl/gtrxl, ``window`` of local_xl;
cores with a fixed-size carry ignore it and are measured at every context anyway, so that their
flatness shows in the table) it measures:

* ``step_latency_us``: median wall time of a one-step call (T=1) under ``torch.inference_mode``
  with the state carried from call to call, after warm-up; window memories start full.
* ``state_bytes``: bytes of the recurrent state one environment carries (masks included).
* ``train_timesteps_per_s``: ``batch * seq_len`` over the median time of a forward + backward on
  sequences of ``seq_len`` steps starting from a full state (measured once per device for a core
  whose state does not depend on the context, and repeated in its rows).

A registered core whose module does not exist yet is skipped with a warning and listed in the
output (a row with null figures and a ``skipped`` reason). The Markdown notes also check the
ReLiT paper's claims against GTrXL (Pramanik et al. 2023: inference "at least 40% cheaper" and
"more than 50%" less memory; AReLiT's per-step cost independent of context).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from memrl.bench.report import write_report
from memrl.models import CORES, MASK_SUFFIX, MemoryCore, core_class, stateful_cores

log = logging.getLogger(__name__)

# Hyperparameters that set how many past steps a window core attends to.
CONTEXT_ARGS = ("memory_len", "window")
# Hyperparameters that set the width and depth, whatever the core calls them.
WIDTH_ARGS = ("d_model", "hidden_size")
DEPTH_ARGS = ("num_layers",)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
COLUMNS = (
    "core",
    "context",
    "device",
    "step_latency_us",
    "state_bytes",
    "train_timesteps_per_s",
)
DEFAULT_CONTEXTS = (64, 128, 256, 512, 1024)
# "<window core>+kv": that core acting with the K/V cache (memrl.models.kv_cache); training is
# the core's own. State bytes of such a row are the live acting state: window plus cache.
KV_SUFFIX = "+kv"
KV_CORES = ("trxl", "gtrxl", "local_xl")
ALL_NAMES = (*CORES, *(c + KV_SUFFIX for c in KV_CORES))
DEFAULT_CORES = (*stateful_cores(), "gtrxl" + KV_SUFFIX)
# The ReLiT paper's claims against GTrXL (abstract of arXiv 2310.15719).
RELIT_LATENCY_CLAIM = 0.6  # AReLiT step cost / GTrXL step cost at most this ("40% cheaper")
RELIT_MEMORY_CLAIM = 0.5  # AReLiT state / GTrXL state below this ("more than 50% less")
# Per-step latency at the longest context over that at the shortest still called flat. (Not max/min:
# noise at one context must not read as growth.)
FLAT_TOLERANCE = 1.25


def parse_cores(text: str) -> list[str]:
    """Comma-separated core names; ValueError naming ``--cores`` and the valid names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--cores must name at least one core; valid: {', '.join(ALL_NAMES)}")
    unknown = [n for n in names if n not in ALL_NAMES]
    if unknown:
        raise ValueError(f"--cores: unknown core(s) {unknown}; valid: {', '.join(ALL_NAMES)}")
    return names


def parse_contexts(text: str) -> list[int]:
    """Comma-separated positive ints; ValueError naming ``--contexts`` otherwise."""
    try:
        contexts = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        contexts = []
    if not contexts or any(c <= 0 for c in contexts):
        raise ValueError(f"--contexts must be positive ints separated by commas, got {text!r}")
    return contexts


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:  # argparse shows ArgumentTypeError's message verbatim
            raise argparse.ArgumentTypeError(str(err)) from err

    return convert


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cores",
        type=_argparse_type(parse_cores),
        default=list(DEFAULT_CORES),
        help=f"comma-separated cores (default: every core with state, and {KV_SUFFIX!r} rows "
        f"{', '.join(c for c in DEFAULT_CORES if c.endswith(KV_SUFFIX))}; a window core with "
        f"{KV_SUFFIX!r} acts with its K/V cache)",
    )
    parser.add_argument(
        "--contexts",
        type=_argparse_type(parse_contexts),
        default=list(DEFAULT_CONTEXTS),
        help="comma-separated context / memory lengths (default 64,128,256,512,1024)",
    )
    parser.add_argument("--batch", type=int, default=64, help="environments per call (64)")
    parser.add_argument("--repeats", type=int, default=30, help="timed one-step calls (30)")
    parser.add_argument(
        "--train-repeats", type=int, default=3, help="timed forward+backward passes (3)"
    )
    parser.add_argument("--seq-len", type=int, default=64, help="training sequence length (64)")
    parser.add_argument("--d-model", type=int, default=128, help="core width (128)")
    parser.add_argument("--num-layers", type=int, default=4, help="core depth (4)")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto = cpu, plus cuda when available",
    )
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: one env-runner CPU; more threads spin badly on a busy host)",
    )


@dataclass(frozen=True)
class Settings:
    """Validated benchmark settings (see ``add_arguments``)."""

    cores: list[str]
    contexts: list[int]
    devices: list[str]
    dtype: torch.dtype
    batch: int
    repeats: int
    train_repeats: int
    seq_len: int
    d_model: int
    num_layers: int
    threads: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        cores = parse_cores(args.cores) if isinstance(args.cores, str) else list(args.cores)
        parse_cores(",".join(cores))
        contexts = (
            parse_contexts(args.contexts) if isinstance(args.contexts, str) else list(args.contexts)
        )
        sizes = ("batch", "repeats", "train_repeats", "seq_len", "d_model", "num_layers")
        for field in (*sizes, "threads"):
            value = getattr(args, field)
            if not isinstance(value, int) or value <= 0:
                flag = "--" + field.replace("_", "-")
                raise ValueError(f"{flag} must be a positive int, got {value!r}")
        if args.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {list(DTYPES)}, got {args.dtype!r}")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available (use cpu or auto)")
        if args.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"--device must be one of auto, cpu, cuda; got {args.device!r}")
        devices = {
            "auto": ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"],
            "cpu": ["cpu"],
            "cuda": ["cuda"],
        }[args.device]
        return cls(
            cores=cores,
            contexts=contexts,
            devices=devices,
            dtype=DTYPES[args.dtype],
            batch=args.batch,
            repeats=args.repeats,
            train_repeats=args.train_repeats,
            seq_len=args.seq_len,
            d_model=args.d_model,
            num_layers=args.num_layers,
            threads=args.threads,
        )


def scaled_ff(params: dict[str, Any], d_model: int) -> dict[str, int]:
    """``{"d_ff": ...}`` at the core's default ratio of ``d_ff`` to ``d_model`` (GTrXL's 512 to
    128: 4x, AReLiT's 128 to 128: 1x), so that a width scales the whole block as the defaults
    do; ``{}`` for a core without both."""
    default_ff, default_width = params.get("d_ff"), params.get("d_model")
    if not isinstance(default_ff, int) or not isinstance(default_width, int):
        return {}
    return {"d_ff": max(1, round(default_ff * d_model / default_width))}


def core_kwargs(cls: type[MemoryCore], d_model: int, num_layers: int, context: int) -> dict:
    """Width (``d_ff`` scaled with it: ``scaled_ff``), depth and context under whatever names
    ``cls`` uses; other args keep defaults."""
    params = cls.hyperparameters()
    kwargs: dict[str, Any] = scaled_ff(params, d_model)
    for name in WIDTH_ARGS:
        if name in params:
            kwargs[name] = d_model
    for name in DEPTH_ARGS:
        if name in params:
            kwargs[name] = num_layers
    for name in CONTEXT_ARGS:
        if name in params:
            kwargs[name] = context
    return kwargs


def uses_context(cls: type[MemoryCore]) -> bool:
    return any(name in cls.hyperparameters() for name in CONTEXT_ARGS)


def state_bytes(core: MemoryCore) -> int:
    """Bytes of the state one environment carries: every field, window masks included."""
    total = 0
    for spec in core.state_spec().values():
        total += torch.Size(spec.shape).numel() * torch.empty((), dtype=spec.dtype).element_size()
        if spec.kind == "window":
            total += spec.memory_len  # the bool mask, one byte per slot
    return total


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def full_state(core: MemoryCore, batch: int, device: str, dtype: torch.dtype) -> dict:
    """A steady-state starting point: the core's own carry after a short warm-up sequence, and
    window memories full of random steps (all slots valid, as deep into an episode)."""
    x = torch.randn(batch, 16, core.input_dim, device=device, dtype=dtype)
    with torch.inference_mode():
        _, state = core(x, None)
    state = {k: v.clone() for k, v in state.items()}
    for key, spec in core.state_spec().items():
        if spec.kind == "window":
            state[key] = torch.randn_like(state[key])
            state[key + MASK_SUFFIX] = torch.ones_like(state[key + MASK_SUFFIX])
    return state


def step_latency_us(
    core: MemoryCore,
    state: dict,
    device: str,
    dtype: torch.dtype,
    repeats: int,
    cached: bool = False,
) -> float:
    """Median microseconds of a one-step call with the state carried between calls
    (``cached``: :func:`memrl.models.kv_cache.act`, its cache carried too; the first warm-up
    call builds it)."""
    from memrl.models.kv_cache import act

    batch = next(iter(state.values())).shape[0]
    x = torch.randn(batch, 1, core.input_dim, device=device, dtype=dtype)
    core.eval()
    times = []
    cache = None
    with torch.inference_mode():
        for i in range(repeats + 3):  # 3 warm-up calls
            _sync(device)
            start = time.perf_counter()
            if cached:
                _, state, cache = act(core, x, state, None, cache)
            else:
                _, state = core(x, state)
            _sync(device)
            if i >= 3:
                times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def cache_bytes(core: MemoryCore) -> int:
    """Bytes of one environment's K/V cache (keys, values and its version)."""
    from memrl.models.kv_cache import cache_shapes

    item = torch.empty((), dtype=core.state_dtype).element_size()
    shapes = cache_shapes(core)
    return 2 * torch.Size(shapes["kv_keys"]).numel() * item + 8


def train_timesteps_per_s(
    core: MemoryCore, state: dict, device: str, dtype: torch.dtype, seq_len: int, repeats: int
) -> float:
    """Timesteps per second of forward + backward on [batch, seq_len] from ``state``."""
    batch = next(iter(state.values())).shape[0]
    x = torch.randn(batch, seq_len, core.input_dim, device=device, dtype=dtype)
    state = {k: v.detach().clone() for k, v in state.items()}
    core.train()
    times = []
    for i in range(repeats + 1):  # 1 warm-up pass
        core.zero_grad(set_to_none=True)
        _sync(device)
        start = time.perf_counter()
        y, _ = core(x, state)
        y.float().square().mean().backward()
        _sync(device)
        if i >= 1:
            times.append(time.perf_counter() - start)
    core.zero_grad(set_to_none=True)
    return batch * seq_len / statistics.median(times)


def _load(name: str) -> tuple[type[MemoryCore] | None, str | None]:
    """The core class, or (None, reason) when its module is not written yet."""
    try:
        return core_class(name), None
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("memrl.models"):
            raise
        return None, f"module {err.name} not found"
    except RuntimeError as err:  # the module exists but does not define the core yet
        return None, str(err)


def measure(settings: Settings, console: Console | None = None) -> list[dict[str, Any]]:
    """All rows: one per core, device and context (skipped cores: one row with null figures)."""
    classes: dict[str, type[MemoryCore]] = {}
    rows: list[dict[str, Any]] = []
    for name in settings.cores:
        cls, reason = _load(name.removesuffix(KV_SUFFIX))
        if cls is None:
            log.warning("skipping core %r: %s", name, reason)
            rows.append(
                {
                    "core": name,
                    "context": None,
                    "device": None,
                    "step_latency_us": None,
                    "state_bytes": None,
                    "train_timesteps_per_s": None,
                    "skipped": reason,
                }
            )
        else:
            classes[name] = cls
    total = len(classes) * len(settings.devices) * len(settings.contexts)
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        _measure_into(rows, classes, settings, total, console)
    finally:
        torch.set_num_threads(threads)
    return rows


def _measure_into(
    rows: list[dict[str, Any]],
    classes: dict[str, type[MemoryCore]],
    settings: Settings,
    total: int,
    console: Console | None,
) -> None:
    with Progress(console=console, transient=False) as progress:
        task = progress.add_task("cores", total=total)
        for device in settings.devices:
            for name, cls in classes.items():
                built: MemoryCore | None = None
                throughput: float | None = None
                for context in settings.contexts:
                    progress.update(task, description=f"{name} ctx={context} on {device}")
                    if built is None or uses_context(cls):
                        torch.manual_seed(0)
                        kwargs = core_kwargs(cls, settings.d_model, settings.num_layers, context)
                        built = cls(settings.d_model, **kwargs).to(device, settings.dtype)
                    state = full_state(built, settings.batch, device, settings.dtype)
                    cached = name.endswith(KV_SUFFIX)
                    latency = step_latency_us(
                        built, state, device, settings.dtype, settings.repeats, cached
                    )
                    if cached:
                        throughput = None  # training is the core's own: see its row
                    elif throughput is None or uses_context(cls):
                        # A carry core's training cost does not depend on the context: measure
                        # it once per device (latency and state are still measured per context).
                        throughput = train_timesteps_per_s(
                            built,
                            state,
                            device,
                            settings.dtype,
                            settings.seq_len,
                            settings.train_repeats,
                        )
                    rows.append(
                        {
                            "core": name,
                            "context": context,
                            "device": device,
                            "step_latency_us": latency,
                            "state_bytes": state_bytes(built)
                            + (cache_bytes(built) if cached else 0),
                            "train_timesteps_per_s": throughput,
                            "skipped": None,
                        }
                    )
                    log.info(
                        "%s ctx=%d %s: %.0f us/step, %d state bytes, %s train steps/s",
                        name,
                        context,
                        device,
                        latency,
                        rows[-1]["state_bytes"],
                        "-" if throughput is None else f"{throughput:.0f}",
                    )
                    progress.advance(task)


def relit_claims(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines checking the ReLiT paper's claims (AReLiT vs GTrXL) on ``rows``."""
    lines: list[str] = []
    measured = [r for r in rows if r.get("skipped") is None]
    for device in sorted({r["device"] for r in measured}):
        by = {(r["core"], r["context"]): r for r in measured if r["device"] == device}
        contexts = sorted({c for (core, c) in by if core == "arelit"})
        if not contexts:
            continue
        arelit_latency = [by[("arelit", c)]["step_latency_us"] for c in contexts]
        growth = arelit_latency[-1] / arelit_latency[0]
        flat = "flat" if growth <= FLAT_TOLERANCE else "NOT flat"
        gtrxl = [by[("gtrxl", c)]["step_latency_us"] for c in contexts if ("gtrxl", c) in by]
        beside = f"; GTrXL's grows {gtrxl[-1] / gtrxl[0]:.1f}x" if len(gtrxl) > 1 else ""
        lines.append(
            f"- {device}: AReLiT per-step latency at context {contexts[-1]} over context "
            f"{contexts[0]}: {growth:.2f}x ({flat}, tolerance {FLAT_TOLERANCE}){beside}; "
            f"state bytes {sorted({by[('arelit', c)]['state_bytes'] for c in contexts})}"
        )
        cached = [by[("gtrxl+kv", c)]["step_latency_us"] for c in contexts if ("gtrxl+kv", c) in by]
        if len(cached) > 1:
            lines[-1] += f"; cached GTrXL's grows {cached[-1] / cached[0]:.1f}x"
        for baseline, label in (("gtrxl", "GTrXL"), ("gtrxl+kv", "cached GTrXL")):
            for c in contexts:
                if (baseline, c) not in by:
                    continue
                a, g = by[("arelit", c)], by[(baseline, c)]
                latency = a["step_latency_us"] / g["step_latency_us"]
                memory = a["state_bytes"] / g["state_bytes"]
                latency_ok = "holds" if latency <= RELIT_LATENCY_CLAIM else "fails"
                memory_ok = "holds" if memory < RELIT_MEMORY_CLAIM else "fails"
                lines.append(
                    f"- {device}, {label} memory_len={c}: AReLiT/{label} step latency "
                    f"{latency:.2f} (claim <= {RELIT_LATENCY_CLAIM}: {latency_ok}), state bytes "
                    f"{memory:.3f} (claim < {RELIT_MEMORY_CLAIM}: {memory_ok})"
                )
    return lines


def notes(settings: Settings, rows: Sequence[dict[str, Any]]) -> str:
    dtype = {v: k for k, v in DTYPES.items()}[settings.dtype]
    out = [
        f"Settings: d={settings.d_model}, layers={settings.num_layers}, batch={settings.batch}, "
        f"dtype={dtype}, step repeats={settings.repeats} (median), training sequences of "
        f"{settings.seq_len} steps (median of {settings.train_repeats}); torch "
        f"{torch.__version__}, {settings.threads} CPU thread(s). Context is memory_len "
        "(trxl, gtrxl) or window (local_xl); the other cores carry a fixed-size state and "
        "ignore it (their training throughput is measured once and repeated). Window memories "
        "start full; other hyperparameters are each core's defaults.",
    ]
    skipped = [r for r in rows if r.get("skipped")]
    if skipped:
        out.append("")
        out.append("Skipped: " + "; ".join(f"{r['core']} ({r['skipped']})" for r in skipped))
    claims = relit_claims(rows)
    if claims:
        out += [
            "",
            "ReLiT paper's claims against GTrXL (inference at least 40% cheaper, more than 50% "
            "less memory, per-step cost independent of context), on this run:",
            *claims,
        ]
    return "\n".join(out)


def _print_table(console: Console, rows: Sequence[dict[str, Any]]) -> None:
    table = Table(title="memrl bench cores")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("core", "device") else "right")
    for r in rows:
        if r.get("skipped"):
            continue
        table.add_row(
            r["core"],
            str(r["context"]),
            r["device"],
            f"{r['step_latency_us']:.0f}",
            str(r["state_bytes"]),
            "" if r["train_timesteps_per_s"] is None else f"{r['train_timesteps_per_s']:.0f}",
        )
    console.print(table)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Measure, print, and write ``args.out`` (JSON list of rows) and its Markdown table."""
    settings = Settings.from_args(args)
    console = Console(stderr=True)
    rows = measure(settings, console)
    text = notes(settings, rows)
    write_report(args.out, rows, rows, COLUMNS, notes=text)
    _print_table(console, rows)
    console.print(text)
    return rows
