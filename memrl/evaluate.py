"""``memrl eval CHECKPOINT [--episodes N] [--explore] [--json] [--video OUT.gif|mp4]``: score a
saved policy.

Verifies the checkpoint against its manifest (memrl.checkpoints), runs its policy in its
config's env, greedy (PPO: the distribution's mode; R2D2: argmax Q; TD3: the deterministic
actor; see memrl.eval_policies) unless ``--explore``, optionally records episodes
(memrl.video), and reports the mean episode return with a 95% t-interval and the success rate
with a 95% Wilson interval.

Success of one episode, first rule that applies:

1. the env's final ``info["success"]`` (T-Maze sets it when the agent takes an arm; an env that
   reports it on some episodes but not on one that was cut off counts that one as a failure);
2. ``evaluation.success_final_reward``: the last reward is >= it (T-Maze: +4, the goal arm);
3. ``evaluation.success_threshold``: the episode return is > it;
4. otherwise success is undefined and not reported (e.g. Memory Maze, whose score is the return).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from memrl import checkpoints, eval_policies  # issue 13: eval_policies
from memrl import video as memrl_video  # issue 13
from memrl.config import ConfigError, EvaluationConfig, config_from_dict, resolve_env_id

# Two-sided 95% Student-t quantiles t_{0.975, df} for small df (standard table values).
_T975 = {
    1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 7: 2.3646, 8: 2.3060,
    9: 2.2622, 10: 2.2281, 11: 2.2010, 12: 2.1788, 13: 2.1604, 14: 2.1448, 15: 2.1314,
    16: 2.1199, 17: 2.1098, 18: 2.1009, 19: 2.0930, 20: 2.0860, 21: 2.0796, 22: 2.0739,
    23: 2.0687, 24: 2.0639, 25: 2.0595, 26: 2.0555, 27: 2.0518, 28: 2.0484, 29: 2.0452,
    30: 2.0423,
}  # fmt: skip


def t_quantile(p: float, df: int) -> float:
    """Quantile ``p`` of Student's t with ``df`` degrees of freedom.

    Exact for df 1 and 2 (closed forms), a table for p=0.975 and df <= 30, otherwise the
    Cornish-Fisher expansion around the normal quantile (relative error < 1e-3 for
    p = 0.975 and df > 30, < 1% for p <= 0.995 and df >= 3).
    Raises ValueError for p outside (0, 1) or df < 1.
    """
    if not 0 < p < 1 or df < 1:
        raise ValueError(f"need 0 < p < 1 and df >= 1, got p={p}, df={df}")
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    if abs(p - 0.975) < 1e-12 and df in _T975:
        return _T975[df]
    z = statistics.NormalDist().inv_cdf(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    center = (p + z^2/2n) / (1 + z^2/n); half = z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2).
    Raises ValueError unless 0 <= successes <= n and n >= 1.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need n >= 1 and 0 <= successes <= n, got {successes}/{n}")
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean (zero width for a single value)."""
    if not values:
        raise ValueError("need at least one value")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return mean, mean, mean
    half = t_quantile(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values)
    half /= math.sqrt(len(values))
    return mean, mean - half, mean + half


def episode_success(
    info: Any, last_reward: float, episode_return: float, rule: EvaluationConfig,
    env_reports_success: bool,
) -> bool | None:  # fmt: skip
    """Whether one episode succeeded, by the module docstring's rules (None: undefined)."""
    if isinstance(info, dict) and "success" in info:
        return bool(info["success"])
    if env_reports_success:
        return False
    if rule.success_final_reward is not None:
        return last_reward >= rule.success_final_reward
    if rule.success_threshold is not None:
        return episode_return > rule.success_threshold
    return None


@dataclass
class EvalReport:
    """Scores of one evaluation."""

    checkpoint: str
    env: str
    episodes: int
    explore: bool
    return_mean: float
    return_ci95: tuple[float, float]
    length_mean: float
    success_rate: float | None
    success_ci95: tuple[float, float] | None
    returns: list[float]
    algo: str = "ppo"  # issue 13
    policy: str = ""  # issue 13: what acted (memrl.eval_policies)
    video: str | None = None  # issue 13

    def summary(self) -> dict[str, Any]:
        """Everything but the per-episode returns."""
        data = asdict(self)
        data.pop("returns")
        return data


def score_episodes(
    returns: Sequence[float],
    lengths: Sequence[int],
    final_infos: Sequence[Any],
    final_rewards: Sequence[float],
    rule: EvaluationConfig,
) -> dict[str, Any]:
    """Return/length means with CIs and the success rate with its Wilson interval."""
    reports = any(isinstance(i, dict) and "success" in i for i in final_infos)
    outcomes = [
        episode_success(i, r, g, rule, reports)
        for i, r, g in zip(final_infos, final_rewards, returns, strict=True)
    ]
    mean, low, high = mean_interval(list(returns))
    scored: dict[str, Any] = {
        "return_mean": mean,
        "return_ci95": (low, high),
        "length_mean": statistics.fmean(lengths),
        "success_rate": None,
        "success_ci95": None,
    }
    if all(o is not None for o in outcomes):
        wins = sum(bool(o) for o in outcomes)
        scored["success_rate"] = wins / len(outcomes)
        scored["success_ci95"] = wilson_interval(wins, len(outcomes))
    return scored


def evaluate(
    checkpoint: str | Path, episodes: int | None = None, explore: bool = False,
    seed: int | None = None, video: str | Path | None = None, video_episodes: int = 1,
) -> EvalReport:  # fmt: skip
    """Run ``episodes`` episodes of the checkpoint's policy in one local env runner.

    ``seed`` defaults to the training seed + 1000 (so evaluation resets differ from training's).
    ``video``: also record the first ``video_episodes`` episodes there (see memrl.video).
    Starts a local Ray (1 CPU) if none is running, and stops it afterwards.
    Raises FileNotFoundError for a path without a memrl checkpoint, CheckpointError for one
    that fails verification (before anything is unpickled), VideoError for a video that cannot
    be recorded.
    """
    from memrl.train import check_env

    path = checkpoints.find_verified(checkpoint)  # issue 13: verified before any unpickling
    cfg = config_from_dict(
        checkpoints.load_config_data(path), source=str(path / checkpoints.CONFIG_FILE)
    )
    check_env(cfg)
    n = episodes or cfg.evaluation.episodes
    if seed is None and cfg.seed is not None:
        seed = cfg.seed + 1000
    cfg = cfg.model_copy(update={"seed": seed})
    # --- issue 13: every algorithm (memrl.eval_policies) and --video (memrl.video) ---
    policy = eval_policies.policy_for(cfg.algo)
    recorder = None
    if video is not None:
        target = memrl_video.check_target(video)
        memrl_video.check_renders(resolve_env_id(cfg.task.env_name), cfg.task.env_kwargs)
        recorder = memrl_video.EpisodeRecorder(video_episodes)
        n = max(n, video_episodes)
    try:
        played = eval_policies.play(
            cfg, path / checkpoints.ALGORITHM_DIR, n, explore,
            recorder.configure if recorder is not None else None,
        )  # fmt: skip
        if recorder is not None:
            recorder.write(target)
    finally:
        if recorder is not None:
            recorder.close()
    returns = played.returns
    scored = score_episodes(
        returns, played.lengths, played.final_infos, played.final_rewards, cfg.evaluation
    )
    # --- end issue 13 ---
    return EvalReport(
        checkpoint=str(path),
        env=cfg.task.env_name,
        episodes=len(returns),
        explore=explore,
        returns=returns,
        algo=cfg.algo,
        policy=policy.sampled if explore else policy.greedy,
        video=str(target) if video is not None else None,
        **scored,
    )


def format_report(report: EvalReport) -> str:
    """Human-readable lines."""
    lo, hi = report.return_ci95
    lines = [
        f"checkpoint: {report.checkpoint}",
        f"env: {report.env}   episodes: {report.episodes}   "
        f"policy: {report.policy or ('sampled' if report.explore else 'greedy')}",
        f"return:  {report.return_mean:.3f}  (95% CI {lo:.3f} .. {hi:.3f})   "
        f"length: {report.length_mean:.1f}",
    ]
    if report.success_rate is None:
        lines.append("success: undefined for this env (see memrl.evaluate)")
    else:
        slo, shi = report.success_ci95 or (math.nan, math.nan)
        lines.append(f"success: {report.success_rate:.1%}  (95% Wilson CI {slo:.1%} .. {shi:.1%})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``memrl eval``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="memrl eval", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="checkpoint folder (iter_*), or a run's folder")
    parser.add_argument("--episodes", type=int, default=None, help="default: evaluation.episodes")
    parser.add_argument("--explore", action="store_true", help="sample actions (default greedy)")
    parser.add_argument("--seed", type=int, default=None, help="default: training seed + 1000")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    # issue 13: --video
    parser.add_argument("--video", metavar="OUT", help="record episodes to OUT.mp4 or OUT.gif")
    parser.add_argument("--video-episodes", type=int, default=1, help="episodes to record")
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    console = Console(soft_wrap=True)
    if args.episodes is not None and args.episodes < 1:
        console.print(f"[red]memrl eval: --episodes must be >= 1, got {args.episodes}[/red]")
        return 2
    try:
        report = evaluate(
            args.checkpoint, args.episodes, args.explore, args.seed,
            args.video, args.video_episodes,
        )  # fmt: skip
    except (
        ConfigError,
        FileNotFoundError,
        checkpoints.CheckpointError,
        memrl_video.VideoError,
    ) as err:  # issue 13
        console.print(f"[red]memrl eval: {err}[/red]", highlight=False)
        return 2
    if args.json:
        print(json.dumps(report.summary()))
    else:
        console.print(format_report(report), highlight=False, markup=False)
        if report.video:  # issue 13
            console.print(f"video: {report.video}", highlight=False, markup=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
