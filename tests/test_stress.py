"""Stress and concurrency: many threads on one model, long runs, files that
change under a loaded model."""

import os
import threading

import numpy as np
import pytest

import bnnrt
from bnnrt import zoo


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def small():
    return zoo.blendnet20(input_shape=(12, 12, 1), seed=5, threads=2)


def test_eight_threads_thousands_of_calls_equal_the_serial_results(small):
    rng = np.random.default_rng(0)
    # batches of 4..6 take the batch-parallel path (a part per thread) concurrently
    images = [rng.integers(0, 256, (1 + i % 6, 12, 12, 1), dtype=np.uint8) for i in range(16)]
    expected = [small.predict(img) for img in images]
    mismatches, errors = [], []
    calls_per_thread = 400

    def worker(t):
        try:
            for i in range(calls_per_thread):
                k = (t * 7 + i) % len(images)
                if not np.array_equal(small.predict(images[k]), expected[k]):
                    mismatches.append((t, i, k))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not mismatches, (errors[:3], mismatches[:3])


def test_memory_is_flat_over_100k_predictions():
    model = zoo.blendnet20(input_shape=(4, 4, 1), seed=1, threads=1)
    x = np.random.default_rng(1).integers(0, 256, (4, 4, 1), dtype=np.uint8)
    for _ in range(5_000):
        model.predict(x)
    before = rss_bytes()
    for _ in range(95_000):
        model.predict(x)
    growth = rss_bytes() - before
    print(f"RSS growth over 95,000 predictions after warm-up: {growth} bytes")
    assert growth < 1 << 20, f"resident memory grew by {growth} bytes"


def test_deleted_or_overwritten_file_keeps_working(tmp_path, small):
    path = tmp_path / "m.bnn"
    bnnrt.save(small, path)
    x = np.random.default_rng(2).integers(0, 256, (12, 12, 1), dtype=np.uint8)
    model = bnnrt.load(path)
    expected = model.predict(x)
    path.write_bytes(b"\0" * 10)          # overwritten, shorter
    np.testing.assert_array_equal(model.predict(x), expected)
    os.remove(path)                        # deleted
    np.testing.assert_array_equal(model.predict(x), expected)
    with pytest.raises(bnnrt.ModelIOError):
        bnnrt.load(path)
