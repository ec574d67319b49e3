"""Images/s of prediction over a directory of PNG files, against pre-decoded arrays.

    python benchmarks/predict_files.py [--images 10000] [--batch 64] [--rounds 3] [--ray 1,2]

Writes ``--images`` 28x28 PNGs (the Fashion-MNIST test split when Debian's
dataset-fashion-mnist is installed, else random pixels) into ``--dir`` once,
then times, with the shipped models/blendnet20_fmnist.bnn on all cores:

* arrays:  ``Model.predict`` on the pre-decoded (N, 28, 28, 1) pixels, in batches
* decode:  decoding alone (``Preprocessor.item`` on each file, one thread)
* stream:  ``bnnrt.stream.predict_files`` over the directory (decode pool + model)
* cli:     ``bnnrt predict MODEL DIR --out FILE.csv`` (a fresh process: start-up
           and model load included)
* ray:     ``map_batches(bnnrt.ray.Predictor)`` -> count on a local Ray with as
           many CPUs, for each actor count of ``--ray``, from three sources:
           ``read_images`` (Ray decodes), ``read_binary_files`` (bnnrt decodes
           the bytes, overlapped with inference) and ``read_parquet`` of a
           file of the same PNGs' bytes (written once beside the directory).
           Ray's start is excluded, the actors' start included; the same over
           64 rows is mostly the actors' start: the rate once started is the
           other images over the difference

The ways take turns, round after round; the ratios are per round, then the
median over rounds, so that another tenant's burst spoils a round, not a ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import bnnrt  # noqa: E402
from bnnrt import stream  # noqa: E402
from bnnrt.plan import resolve_threads  # noqa: E402

MODEL = os.path.join(ROOT, "models", "blendnet20_fmnist.bnn")


def make_pngs(folder: str, n: int) -> None:
    from PIL import Image
    try:
        from bnnrt import datasets
        pixels = datasets.fashion_mnist("test")[0][:n, :, :, 0]
    except bnnrt.BnnrtError:
        pixels = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    if len(pixels) < n:
        pixels = np.concatenate([pixels] * (-(-n // len(pixels))))[:n]
    for i, p in enumerate(pixels):                  # 1,000 files per subfolder
        sub = os.path.join(folder, f"{i // 1000:02d}")
        os.makedirs(sub, exist_ok=True)
        Image.fromarray(p, "L").save(os.path.join(sub, f"{i:06d}.png"))


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def write_parquet(files, path: str) -> None:
    """One parquet file of the PNGs' bytes (``path``, ``bytes`` columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    data = []
    for f in files:
        with open(f, "rb") as fh:
            data.append(fh.read())
    pq.write_table(pa.table({"path": files, "bytes": data}), path, row_group_size=1000)


def run_ray(source: str, paths, n: int, actors: int, batch: int, cpus: int) -> None:
    import ray
    import bnnrt.ray
    if source == "images":
        ds = ray.data.read_images(paths, mode="L", include_paths=True)
    elif source == "files":
        ds = ray.data.read_binary_files(paths, include_paths=True)
    else:
        ds = ray.data.read_parquet(paths)
    # the actors share what the read tasks leave: one CPU reads (and, for
    # read_images, decodes); each actor's bnnrt threads follow its CPUs
    out = ds.map_batches(bnnrt.ray.Predictor, fn_constructor_kwargs={"model": MODEL},
                         concurrency=actors, batch_size=batch, num_cpus=(cpus - 1) / actors)
    total = sum(len(b["label"]) for b in out.iter_batches(batch_size=None))
    assert total == n, (total, n)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3, help="rounds of all the ways in turn; "
                   "ratios are per round, then the median (a shared machine's noise hits a round)")
    p.add_argument("--dir", default=None, help="where the PNGs go (default: a folder in /tmp)")
    p.add_argument("--ray", default="", help="actor counts to try, e.g. 1,2 (needs bnnrt[ray])")
    p.add_argument("--ray-batch", type=int, default=1000, help="map_batches' batch_size (rows per actor call)")
    args = p.parse_args(argv)
    folder = args.dir or os.path.join(tempfile.gettempdir(), f"bnnrt-pngs-{args.images}")
    if not os.path.isdir(folder):
        make_pngs(folder, args.images)
    files = [path for path, _ in stream.Inputs([folder])]
    n = len(files)
    model = bnnrt.load(MODEL)
    cpus = resolve_threads()
    print(f"{n} PNGs in {folder}; {os.path.basename(MODEL)}, {model.threads} threads, "
          f"batch {args.batch}, {cpus} CPUs, {args.rounds} rounds")
    pre = model._preprocessor()
    pixels = np.stack([pre.item(f) for f in files])
    tmp = tempfile.TemporaryDirectory()

    def arrays():
        for a in range(0, n, args.batch):
            model.predict(pixels[a:a + args.batch])

    def streamed():
        assert sum(r.error is None for r in stream.predict_files(
            model, stream.Inputs([folder]), batch=args.batch)) == n

    def cli():
        subprocess.run([sys.executable, "-m", "bnnrt", "predict", MODEL, folder, "--batch",
                        str(args.batch), "--out", os.path.join(tmp.name, "p.csv")], check=True,
                       env=dict(os.environ, PYTHONPATH=ROOT), stderr=subprocess.DEVNULL)

    ways = {"decode only (one thread)": lambda: [pre.item(f) for f in files],
            "Model.predict on pre-decoded arrays": arrays,
            "stream (predict_files over the directory)": streamed,
            "bnnrt predict DIR --out p.csv (new process)": cli}
    if args.ray:
        import ray
        parquet, parquet64 = folder.rstrip("/") + ".parquet", folder.rstrip("/") + "-64.parquet"
        if not os.path.exists(parquet):
            write_parquet(files, parquet)
            write_parquet(files[:64], parquet64)
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        sources = {"images": (folder, files[:64]), "files": (folder, files[:64]), "parquet": (parquet, parquet64)}
        for actors in (int(a) for a in args.ray.split(",")):
            for source, (everything, first) in sources.items():
                name = f"ray {source}, {actors} actor(s) of {(cpus - 1) / actors:g} CPU"
                ways[name] = lambda a=actors, s=source, p=everything: run_ray(s, p, n, a, args.ray_batch, cpus)
                # the same on the first 64 images: what starting the actors costs
                ways[name + ", 64 files"] = (
                    lambda a=actors, s=source, p=first: run_ray(s, p, 64, a, args.ray_batch, cpus))
    seconds = {name: [] for name in ways}
    for r in range(args.rounds):
        for name, fn in ways.items():
            seconds[name].append(timed(fn))
        print(f"round {r + 1}: " + ", ".join(f"{name} {s[-1]:.1f} s" for name, s in seconds.items()),
              flush=True)
    cli_s = seconds["bnnrt predict DIR --out p.csv (new process)"]
    arrays_s = seconds["Model.predict on pre-decoded arrays"]
    print(f"{'':<46} {'images/s':>9} {'/ arrays':>9} {'/ bnnrt predict':>16}  (medians over rounds)")
    for name, s in seconds.items():
        vs_arrays = statistics.median(a / b for a, b in zip(arrays_s, s))
        vs_cli = statistics.median(c / b for c, b in zip(cli_s, s))
        if name.endswith(", 64 files"):
            # once started: the other n - 64 images in the time the whole run took beyond
            marginal = statistics.median((n - 64) / (w - f) for w, f in
                                         zip(seconds[name[:-len(", 64 files")]], s))
            print(f"{name:<46} {statistics.median(s):8.1f}s  start-up; after it "
                  f"{marginal:.0f} images/s ({marginal * statistics.median(cli_s) / n:.2f} "
                  f"x bnnrt predict)")
            continue
        print(f"{name:<46} {n / statistics.median(s):9.0f} {vs_arrays:9.2f} {vs_cli:16.2f}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
