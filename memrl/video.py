"""``memrl eval CKPT --video out.mp4|out.gif``: record evaluation episodes a person can watch.

The env is built with ``render_mode="rgb_array"``; :class:`EpisodeRecorder` hooks RLlib's
``on_episode_start`` / ``on_episode_step`` callbacks of the (local) env runner that plays the
episodes, renders the env after its reset and after every step, and draws the step, the reward,
the return so far and the agent's action on a band under the frame (Pillow). Frames are written
with Pillow (``.gif``, no ffmpeg needed) or imageio with its ffmpeg plugin (``.mp4``). Headless:
nothing opens a window.

An episode of ``T`` steps gives ``T + 1`` frames (the reset frame first); only the first
``episodes`` episodes to start are recorded.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = (".gif", ".mp4")
BAND = 18  # pixels of the text band under each frame
MIN_WIDTH = 256  # frames are scaled up (nearest) to at least this width so the text fits

_RECORDERS: dict[int, EpisodeRecorder] = {}
_ids = itertools.count()


class VideoError(ValueError):
    """A video that cannot be recorded; the message says what to change (one line)."""


def check_target(path: str | Path) -> Path:
    """The output path, checked: a known suffix, an existing folder, mp4 writer installed.

    Raises VideoError naming the problem.
    """
    out = Path(path).expanduser()
    if out.suffix.lower() not in FORMATS:
        raise VideoError(f"--video: {out} must end in {' or '.join(FORMATS)}")
    if not out.parent.is_dir():
        raise VideoError(f"--video: folder {out.parent} does not exist")
    if out.suffix.lower() == ".mp4":
        try:
            import imageio.v2  # noqa: F401
            import imageio_ffmpeg  # noqa: F401
        except ImportError as err:
            raise VideoError(
                f"--video {out.name}: .mp4 needs imageio and imageio-ffmpeg "
                f"(pip install imageio imageio-ffmpeg; missing: {err.name}); .gif needs neither"
            ) from err
    return out


def format_action(action: Any) -> str:
    """An action as short text: an int, or a vector with 2 decimals."""
    arr = np.asarray(action)
    if arr.ndim == 0:
        return str(arr.item()) if arr.dtype.kind in "iub" else f"{float(arr):.2f}"
    return "[" + " ".join(f"{float(x):.2f}" for x in arr.reshape(-1)) + "]"


def annotate(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` (H, W, 3 uint8) scaled up to >= MIN_WIDTH wide, with ``text`` on a band below.

    Height and width of the result are multiples of 16 (what video codecs want).
    """
    from PIL import Image, ImageDraw

    rgb = np.asarray(frame)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    rgb = rgb[..., :3].astype(np.uint8)
    scale = max(1, -(-MIN_WIDTH // rgb.shape[1]))
    image = Image.fromarray(rgb).resize(
        (rgb.shape[1] * scale, rgb.shape[0] * scale), Image.Resampling.NEAREST
    )
    width = -(-image.width // 16) * 16
    height = -(-(image.height + BAND) // 16) * 16
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    canvas.paste(image, (0, 0))
    ImageDraw.Draw(canvas).text((4, image.height + 3), text, fill=(255, 255, 255))
    return np.asarray(canvas)


class EpisodeRecorder:
    """Collects annotated frames of the first ``episodes`` episodes an env runner plays.

    Use :meth:`configure` on the RLlib AlgorithmConfig before building the algorithm (the env
    runner must be local: ``num_env_runners=0``); then :meth:`write`.
    """

    def __init__(self, episodes: int, fps: int = 8) -> None:
        if episodes < 1:
            raise VideoError(f"--video-episodes must be >= 1, got {episodes}")
        self.episodes = episodes
        self.fps = fps
        self.frames: list[np.ndarray] = []
        self.frames_per_episode: list[int] = []
        self._recording: dict[str, int] = {}  # episode id -> its index among recorded ones
        self._returns: dict[str, float] = {}
        self._id = next(_ids)
        _RECORDERS[self._id] = self

    def close(self) -> None:
        _RECORDERS.pop(self._id, None)

    def configure(self, algo_config: Any) -> Any:
        # The config is deep-copied on its way into the env runner: the callbacks find this
        # recorder by id instead of holding it.
        return algo_config.callbacks(
            on_episode_start=functools.partial(_on_start, self._id),
            on_episode_step=functools.partial(_on_step, self._id),
        ).environment(env_config={**algo_config.env_config, "render_mode": "rgb_array"})

    def _render(self, env: Any, env_index: int) -> np.ndarray:
        sub = env.envs[env_index] if hasattr(env, "envs") else env
        frame = sub.render()
        if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3):
            raise VideoError(
                f"--video: the env returned {type(frame).__name__} from render() in rgb_array "
                "mode, not an image"
            )
        return frame

    def start(self, episode: Any, env: Any, env_index: int) -> None:
        if len(self.frames_per_episode) >= self.episodes:
            return
        self._recording[episode.id_] = len(self.frames_per_episode)
        self.frames_per_episode.append(0)
        self._returns[episode.id_] = 0.0
        self._add(episode.id_, self._render(env, env_index), "step 0  (reset)")

    def step(self, episode: Any, env: Any, env_index: int) -> None:
        if episode.id_ not in self._recording:
            return
        reward = float(episode.get_rewards(-1))
        self._returns[episode.id_] += reward
        index = self._recording[episode.id_]
        text = (
            f"ep {index + 1}  step {len(episode)}  action {format_action(episode.get_actions(-1))}"
            f"  reward {reward:+.2f}  return {self._returns[episode.id_]:+.2f}"
        )
        self._add(episode.id_, self._render(env, env_index), text)
        if episode.is_done:
            del self._recording[episode.id_]

    def _add(self, episode_id: str, frame: np.ndarray, text: str) -> None:
        self.frames.append(annotate(frame, text))
        self.frames_per_episode[self._recording[episode_id]] += 1

    def write(self, path: Path) -> int:
        """Write the frames to ``path`` (.gif or .mp4); returns the number of frames."""
        write_frames(path, self.frames, self.fps)
        return len(self.frames)


def _on_start(recorder_id: int, *, episode: Any, env: Any, env_index: int, **_: Any) -> None:
    recorder = _RECORDERS.get(recorder_id)
    if recorder is not None:
        recorder.start(episode, env, env_index)


def _on_step(recorder_id: int, *, episode: Any, env: Any, env_index: int, **_: Any) -> None:
    recorder = _RECORDERS.get(recorder_id)
    if recorder is not None:
        recorder.step(episode, env, env_index)


def write_frames(path: str | Path, frames: Sequence[np.ndarray], fps: int) -> None:
    """Write equally sized RGB frames as a .gif (Pillow) or .mp4 (imageio-ffmpeg).

    Raises VideoError without frames, for frames of different sizes, or an unknown suffix.
    """
    out = check_target(path)
    if not frames:
        raise VideoError("--video: no frames were recorded (no episode started)")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise VideoError(f"--video: the env rendered frames of different sizes {sorted(shapes)}")
    if out.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(
            out,
            save_all=True,
            append_images=images[1:],
            duration=max(1, round(1000 / fps)),
            loop=0,
        )
        return
    import imageio.v2 as imageio

    with imageio.get_writer(out, fps=fps, codec="libx264", macro_block_size=16) as writer:
        for frame in frames:
            writer.append_data(frame)


def check_renders(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Build the env with ``render_mode="rgb_array"`` here, reset it and render one frame.

    Raises VideoError (one line) when the env cannot render images.
    """
    from memrl.envs import make_env

    try:
        env = make_env(env_id, **{**env_kwargs, "render_mode": "rgb_array"})
    except (ValueError, TypeError) as err:
        raise VideoError(f"--video: env {env_id!r} cannot render rgb_array frames ({err})") from err
    try:
        env.reset(seed=0)
        frame = env.render()
    finally:
        env.close()
    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3):
        raise VideoError(
            f"--video: env {env_id!r} renders no rgb_array image (render() returned "
            f"{type(frame).__name__}); --video needs an env that does"
        )
