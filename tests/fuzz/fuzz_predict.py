"""Coverage-guided fuzzing of Model.predict and Model.run inputs (atheris).

    python tests/fuzz/fuzz_predict.py -max_total_time=60 -timeout=1 -rss_limit_mb=2048

Builds arrays of arbitrary dtype, shape, strides (non-contiguous views),
writability, NaN/inf and zero-size batches from the fuzzer's bytes, and lists
and nestings of them; predict/run must return or raise a bnnrt error.
"""

import sys

import atheris

with atheris.instrument_imports():
    import numpy as np

    from bnnrt import zoo
    from bnnrt.errors import BnnrtError

MODEL = None
DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64,
          np.bool_, np.complex64, np.uint64, object]


def make_array(fdp):
    dtype = DTYPES[fdp.ConsumeIntInRange(0, len(DTYPES) - 1)]
    ndim = fdp.ConsumeIntInRange(0, 5)
    shape = [fdp.ConsumeIntInRange(0, 40) for _ in range(ndim)]
    if fdp.ConsumeBool() and ndim >= 3:
        shape[-3:] = [8, 8, 1]                         # often the right image shape
    size = int(np.prod(shape)) if shape else 1
    if size > 1 << 16:
        shape, size = [size % 64], size % 64
    raw = fdp.ConsumeBytes(size * 8)
    values = np.frombuffer(raw.ljust(size * 8, b"\0"), np.float64)[:size]
    values = np.nan_to_num(values, nan=0.0) if fdp.ConsumeBool() else values   # NaN and inf stay sometimes
    try:
        arr = values.astype(dtype).reshape(shape) if dtype is not object else np.array(values.tolist(), object).reshape(shape)
    except (ValueError, OverflowError):
        arr = np.zeros(shape, dtype)
    if fdp.ConsumeBool() and arr.ndim:
        arr = arr[..., ::2]                           # non-contiguous
    if fdp.ConsumeBool():
        arr.setflags(write=False)
    return arr


def one_input(data: bytes) -> None:
    global MODEL
    if MODEL is None:
        MODEL = zoo.blendnet20(input_shape=(8, 8, 1), threads=1)
    fdp = atheris.FuzzedDataProvider(data)
    choice = fdp.ConsumeIntInRange(0, 3)
    if choice == 0:
        x = make_array(fdp)
    elif choice == 1:
        x = [make_array(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    elif choice == 2:
        x = fdp.ConsumeUnicodeNoSurrogates(20)         # a path that does not exist, mostly
    else:
        x = fdp.ConsumeBytes(30)
    try:
        if fdp.ConsumeBool():
            MODEL.predict(x)
        else:
            MODEL.run(x)
    except BnnrtError:
        pass


def main():
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
