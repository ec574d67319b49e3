"""End-to-end latency and throughput of the zoo models."""

import numpy as np


class BlendNet20:
    params = [[1, 4], [1, 16], [1, 2]]
    param_names = ["width", "batch", "threads"]
    timeout = 300

    def setup(self, width, batch, threads):
        from bnnrt import zoo
        self.model = zoo.blendnet20(width=width, threads=threads)
        self.x = np.random.default_rng(0).standard_normal((batch, 32, 32, 3)).astype(np.float32)
        self.model.run(self.x)

    def time_run(self, width, batch, threads):
        self.model.run(self.x)

    def track_binary_macs_per_image(self, width, batch, threads):
        return sum(r["binary_macs"] for r in self.model.layers())


class Mixer:
    """The shipped Mixers' shapes (random weights), 28x28x1."""
    params = [["blend", "binary"], [1, 16]]
    param_names = ["kind", "batch"]

    def setup(self, kind, batch):
        from bnnrt import zoo
        self.model = zoo.mixer(kind, threads=1)
        self.x = np.random.default_rng(0).standard_normal((batch, 28, 28, 1)).astype(np.float32)
        self.model.run(self.x)

    def time_run(self, kind, batch):
        self.model.run(self.x)


class Overhead:
    """Executor cost per step: a one-pixel model, so the kernels do ~nothing."""

    def setup(self):
        from bnnrt import zoo
        self.model = zoo.blendnet20(input_shape=(1, 1, 3), threads=1)
        self.x = np.zeros((1, 1, 1, 3), np.float32)
        self.ctx = self.model.plan.acquire(1)

    def time_steps(self):
        for call in self.ctx.calls:
            call()

    def time_run(self):
        self.model.run(self.x)


class Import:
    def timeraw_import_bnnrt(self):
        return "import bnnrt"


class PredictFiles:
    """``bnnrt predict`` over a directory: 512 28x28 PNGs decoded by the
    thread pool while the model runs (bnnrt.stream), against the same
    images pre-decoded (benchmarks/predict_files.py does 10,000)."""
    params = [[64]]
    param_names = ["batch"]
    timeout = 300

    def setup(self, batch):
        import tempfile

        from PIL import Image

        from bnnrt import zoo
        self.tmp = tempfile.TemporaryDirectory()
        pixels = np.random.default_rng(0).integers(0, 256, (512, 28, 28), dtype=np.uint8)
        for i, p in enumerate(pixels):
            Image.fromarray(p, "L").save(f"{self.tmp.name}/{i:04d}.png")
        self.pixels = pixels[..., None]
        self.model = zoo.blendnet20(input_shape=(28, 28, 1), threads=2)

    def teardown(self, batch):
        self.tmp.cleanup()

    def time_stream(self, batch):
        from bnnrt import stream
        for _ in stream.predict_files(self.model, stream.Inputs([self.tmp.name]), batch=batch):
            pass

    def time_predecoded(self, batch):
        for a in range(0, len(self.pixels), batch):
            self.model.predict(self.pixels[a:a + batch])
