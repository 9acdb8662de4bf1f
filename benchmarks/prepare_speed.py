"""How fast is ``ser-cl prepare``? Prints the real-time factor (audio seconds / wall seconds).

Synthesizes a corpus in the IEMOCAP layout (16 kHz, 2-6 s utterances, like IEMOCAP's mean
of ~4.5 s), then times ``prepare`` twice into the same DATA_DIR: cold (every feature
computed, read + FFT + cache write + assembly) and warm (all features from the cache, only
assembly). Target: >= 300x real time cold on 2 cores.

    .venv/bin/python benchmarks/prepare_speed.py [--minutes 15] [--jobs 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_cl.data.stores.prepare import prepare  # noqa: E402
from ser_cl.data.corpora.synth import synthesize_corpus  # noqa: E402

DURATION = (2.0, 6.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="approximate minutes of audio to synthesize")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="prepare worker processes")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write (default: a temp dir, removed)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ser-cl-bench-"))
    try:
        mean_len = sum(DURATION) / 2
        per_speaker = max(1, round(args.minutes * 60 / (10 * 4 * mean_len)))
        t0 = time.perf_counter()
        summary = synthesize_corpus(workdir / "raw", per_speaker=per_speaker, seed=0, duration=DURATION, n_dropped=0)
        print(f"synthesized {summary['utterances']} utterances, {summary['audio_seconds'] / 60:.1f} min "
              f"in {time.perf_counter() - t0:.1f} s")
        for run in ("cold", "warm"):
            result = prepare(workdir / "raw", workdir / "data", jobs=args.jobs, progress=False)
            print(f"{run}: {result.n_utterances} utterances, {result.audio_seconds:.0f} s of audio in "
                  f"{result.wall_seconds:.2f} s with {args.jobs} jobs -> real-time factor "
                  f"{result.real_time_factor:.0f}x ({result.n_computed} computed, {result.n_cached} cached)")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
