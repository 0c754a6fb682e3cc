"""Video matting and anonymisation on a synthetic 720p clip with a known alpha, on CPU.

The clip (`p3m.video.synthetic.SyntheticClip`: the astronaut's head and shoulders moving and
scaling over a panning background, composited with its matte, sensor noise, H.264 CRF 18) is
10 s at 25 fps by default. Measured in one run, each case in its own subprocess (its peak RSS
is its own):

* matting with `p3m.matte_video` (selfie-cf; alpha + ProRes 4444 cut-out + H.264 composite,
  temporal smoothing on), against the baseline timed in the same run: the plain loop a user
  would write, `p3m.matte` frame by frame with `VideoWriter`s, no pipeline (first
  `--baseline-frames` frames);
* the same clip with `--temporal off` (alpha only): dtSSD and SAD per frame with and without
  smoothing against the true mattes. Smoothing must not cost accuracy: mean SAD at most 5 %
  worse, dtSSD lower (both are checked and printed);
* anonymisation with `p3m.anonymize_video` (selfie-cf mattes, MediaPipe detection, Face Mesh,
  tracking, audit once per second and on every frame tracking filled) against
  `p3m.anonymize(frame, alpha_from="selfie-cf")` frame by frame with the same audit once per
  second;
* peak resident memory of each case, and of the process once everything is loaded.

On a machine shared with other work, absolute frames/s are noisy; the ratios to the baseline
(same run, same machine state within a few minutes) are the figures to read.

    python benchmarks/bench_video.py                       # 10 s, 1280 x 720 (takes a while)
    python benchmarks/bench_video.py --seconds 2 --height 360
"""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_minloglevel", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- worker cases


def _loaded_matter():
    """selfie-cf loaded, and every library a case uses warmed up (MediaPipe graphs, numba)."""
    from skimage import data

    import p3m
    from p3m.inference.api import Matter

    matter = Matter("selfie-cf")
    portrait = data.astronaut()[::2, ::2].copy()
    matter(portrait).rgba()
    p3m.anonymize(portrait, alpha_from="selfie-cf")
    return matter


def case_pipeline(clip: str, out: str, temporal: bool, save: str) -> dict:
    import p3m

    matter = _loaded_matter()
    loaded = _rss_mb()
    start = time.perf_counter()
    report = p3m.matte_video(clip, out, save=save, model=matter, temporal=temporal)
    elapsed = time.perf_counter() - start
    return {"frames": report.frames, "seconds": elapsed, "loaded_mb": loaded, "peak_mb": _peak_mb()}


def case_plain_matte(clip: str, out: str, frames: int) -> dict:
    from p3m.video.reader import VideoReader
    from p3m.video.writer import VideoWriter

    matter = _loaded_matter()
    loaded = _rss_mb()
    start = time.perf_counter()
    with VideoReader(clip) as reader:
        info = reader.info
        size = {"width": info.width, "height": info.height, "time_base": info.time_base}
        with (
            VideoWriter(Path(out) / "alpha.mov", "mov-prores4444", "gray", **size) as alpha_out,
            VideoWriter(Path(out) / "rgba.mov", "mov-prores4444", "rgba", **size) as rgba_out,
            VideoWriter(Path(out) / "composite.mp4", "mp4", "rgb", **size) as composite_out,
        ):
            from p3m.io import alpha_to_uint8

            done = 0
            for frame in reader:
                result = matter(frame.image)
                alpha_out.write(alpha_to_uint8(result.alpha), frame.pts)
                rgba_out.write(result.rgba(), frame.pts)
                composite_out.write(result.composite("white"), frame.pts)
                done += 1
                if done == frames:
                    break
    elapsed = time.perf_counter() - start
    return {"frames": done, "seconds": elapsed, "loaded_mb": loaded, "peak_mb": _peak_mb()}


def case_anonymize(clip: str, out: str) -> dict:
    import p3m

    _loaded_matter()
    loaded = _rss_mb()
    start = time.perf_counter()
    report = p3m.anonymize_video(clip, out, alpha_from="selfie-cf")
    elapsed = time.perf_counter() - start
    return {
        "frames": report.frames,
        "seconds": elapsed,
        "loaded_mb": loaded,
        "peak_mb": _peak_mb(),
        "frames_with_faces": report.frames_with_faces,
        "filled_frames": report.filled_frames,
        "audited": report.audited_frames,
        "audit_faces_found": report.audit_faces_found,
        "identity_matches": report.audit_identity_matches,
    }


def case_plain_anonymize(clip: str, out: str, frames: int) -> dict:
    import p3m
    from p3m.privacy.audit import audit_image
    from p3m.video.anonymize import _default_audit_detectors
    from p3m.video.reader import VideoReader
    from p3m.video.writer import VideoWriter

    _loaded_matter()
    loaded = _rss_mb()
    start = time.perf_counter()
    with VideoReader(clip) as reader:
        info = reader.info
        with VideoWriter(
            Path(out) / "anonymised.mp4",
            "mp4",
            "rgb",
            width=info.width,
            height=info.height,
            time_base=info.time_base,
        ) as writer:
            done = 0
            every = round(float(info.frame_rate or 25))
            for frame in reader:
                result = p3m.anonymize(frame.image, alpha_from="selfie-cf")
                if frame.index % every == 0:  # the same verification as anonymize_video's default
                    audit_image(result.image, _default_audit_detectors(), frame.image, result.faces)
                writer.write(result.image, frame.pts)
                done += 1
                if done == frames:
                    break
    elapsed = time.perf_counter() - start
    return {"frames": done, "seconds": elapsed, "loaded_mb": loaded, "peak_mb": _peak_mb()}


CASES = {
    "pipeline": case_pipeline,
    "plain-matte": case_plain_matte,
    "anonymize": case_anonymize,
    "plain-anonymize": case_plain_anonymize,
}


def _run_case(name: str, **kwargs) -> dict:
    """Run one case in a fresh interpreter; its JSON result (stdout's last line)."""
    command = [sys.executable, __file__, "--case", name, "--case-args", json.dumps(kwargs)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"case {name} failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- scoring


def _score(alpha_video: Path, clip) -> dict:
    import numpy as np

    from p3m.evaluation.temporal import evaluate_alpha_sequence
    from p3m.video.reader import read_alpha_frames

    evaluation = evaluate_alpha_sequence(read_alpha_frames(alpha_video), clip.alphas())
    sads = np.array([row["sad"] for row in evaluation.rows])
    return {
        "sad": float(sads.mean()),
        "sad_median": float(np.median(sads)),
        "sad_max": float(sads.max()),
        "dtssd": evaluation.means["dtssd"],
        "mse": evaluation.means["mse"],
    }


def _smoother_cost(clip, frames: int = 12) -> float:
    """Seconds per frame of the alpha flicker filter alone, at the clip's size."""
    from p3m.video.temporal import TemporalConfig

    smoother = TemporalConfig().alpha_smoother()
    pairs = []
    for index, pair in enumerate(clip.frames()):
        pairs.append(pair)
        if index + 1 == frames:
            break
    smoother(*pairs[0])
    start = time.perf_counter()
    for image, alpha in pairs[1:]:
        smoother(image, alpha)
    return (time.perf_counter() - start) / (len(pairs) - 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--height", type=int, default=720, help="Clip height; width = 16/9 of it.")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument(
        "--baseline-frames", type=int, default=25, help="Frames the plain loops run on."
    )
    parser.add_argument("--skip-anonymize", action="store_true")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--case-args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(CASES[args.case](**json.loads(args.case_args))))
        return 0

    from p3m.video.synthetic import SyntheticClip

    width = round(args.height * 16 / 9 / 2) * 2
    clip = SyntheticClip(height=args.height, width=width, seconds=args.seconds, fps=args.fps)
    with tempfile.TemporaryDirectory(prefix="p3m-bench-video-") as folder:
        work = Path(folder)
        path = clip.write(work / "synthetic.mp4")
        frames = clip.frame_count
        print(
            f"clip: {width}x{args.height}, {frames} frames at {args.fps} fps ({args.seconds:g} s), "
            f"{os.cpu_count()} CPU core(s); selfie-cf"
        )
        results = {}
        for name, kwargs in (
            ("plain matte loop", ("plain-matte", {"out": str(work / "plain"), "frames": args.baseline_frames})),
            ("matte_video, temporal on", ("pipeline", {"out": str(work / "on"), "temporal": True, "save": "alpha,rgba,composite"})),
            ("matte_video, temporal off (alpha)", ("pipeline", {"out": str(work / "off"), "temporal": False, "save": "alpha"})),
        ):  # fmt: skip
            case, case_kwargs = kwargs
            (work / case_kwargs["out"]).mkdir(exist_ok=True)
            results[name] = _run_case(case, clip=str(path), **case_kwargs)
            print(f"  done: {name}", flush=True)
        if not args.skip_anonymize:
            for name, (case, case_kwargs) in (
                ("plain anonymize loop", ("plain-anonymize", {"out": str(work / "plain-anon"), "frames": args.baseline_frames})),
                ("anonymize_video", ("anonymize", {"out": str(work / "anon")})),
            ):  # fmt: skip
                Path(case_kwargs["out"]).mkdir(exist_ok=True)
                results[name] = _run_case(case, clip=str(path), **case_kwargs)
                print(f"  done: {name}", flush=True)

        on = _score(work / "on" / "synthetic_alpha.mov", clip)
        off = _score(work / "off" / "synthetic_alpha.mov", clip)
        smoothing = _smoother_cost(clip)

    print()
    print(
        f"{'case':<36} {'frames':>6} {'frames/s':>9} {'vs plain':>9} {'peak MB':>8} {'loaded MB':>9}"
    )
    for label, baseline in (
        ("plain matte loop", "plain matte loop"),
        ("matte_video, temporal on", "plain matte loop"),
        ("matte_video, temporal off (alpha)", None),
        ("plain anonymize loop", "plain anonymize loop"),
        ("anonymize_video", "plain anonymize loop"),
    ):
        if label not in results:
            continue
        row = results[label]
        rate = row["frames"] / row["seconds"]
        ratio = ""
        if baseline is not None and baseline in results:
            base = results[baseline]
            ratio = f"{rate / (base['frames'] / base['seconds']):8.2f}x"
        print(
            f"{label:<36} {row['frames']:>6} {rate:>9.3f} {ratio:>9} {row['peak_mb']:>8.0f} {row['loaded_mb']:>9.0f}"
        )
    print(
        "  (matte_video and the plain loop write the same three outputs; the alpha-only run has no "
        "colour estimation, so it is not compared with them)"
    )
    print(f"  alpha flicker filter alone: {1000 * smoothing:.1f} ms per frame")
    if "anonymize_video" in results:
        anon = results["anonymize_video"]
        print(
            f"  anonymize_video: faces in {anon['frames_with_faces']}/{anon['frames']} frames, tracking "
            f"filled {anon['filled_frames']}, audit of {anon['audited']} frames: {anon['audit_faces_found']} "
            f"face(s) still found, {anon['identity_matches']} identity match(es)"
        )

    print()
    print(
        f"{'accuracy vs true mattes':<28} {'SAD/frame':>10} {'median':>8} {'max':>8} {'MSE':>9} {'dtSSD':>8}"
    )
    for label, score in (("temporal off", off), ("temporal on", on)):
        print(
            f"{label:<28} {score['sad']:>10.3f} {score['sad_median']:>8.3f} {score['sad_max']:>8.3f} "
            f"{score['mse']:>9.5f} {score['dtssd']:>8.3f}"
        )
    sad_change = on["sad"] / off["sad"] - 1
    dtssd_change = on["dtssd"] / off["dtssd"] - 1
    sad_ok, dtssd_ok = sad_change <= 0.05, dtssd_change < 0
    print(
        f"smoothing: SAD {100 * sad_change:+.1f} % ({'ok' if sad_ok else 'FAIL'}: at most +5 %), "
        f"dtSSD {100 * dtssd_change:+.1f} % ({'ok' if dtssd_ok else 'FAIL'}: lower)"
    )
    print(
        "(mattes read back from the ProRes 4444 alpha outputs, within 1/255 of what was computed)"
    )
    return 0 if sad_ok and dtssd_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
