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
from memrl.config import ConfigError, EvaluationConfig, config_from_dict
from memrl.envs import resolve_env_id



def t_quantile(p: float, df: int) -> float:
    """Quantile ``p`` of Student's t with ``df`` degrees of freedom (scipy's ``t.ppf``).

    Raises ValueError for p outside (0, 1) or df < 1.
    """
    from scipy.stats import t

    if not 0 < p < 1 or df < 1:
        raise ValueError(f"need 0 < p < 1 and df >= 1, got p={p}, df={df}")
    return float(t.ppf(p, df))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n`` (scipy's
    ``binomtest(...).proportion_ci(method="wilson")``).

    Raises ValueError unless 0 <= successes <= n and n >= 1.
    """
    from scipy.stats import binomtest

    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need n >= 1 and 0 <= successes <= n, got {successes}/{n}")
    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return max(0.0, float(ci.low)), min(1.0, float(ci.high))


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
    from memrl.session import check_env

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
