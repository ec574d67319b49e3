"""asv benchmarks of bnnrt. The CPU features and the kernel variant each op
family runs are printed once, so every result records what it measured."""

try:
    import bnnrt

    print(f"bnnrt {bnnrt.__version__}: {bnnrt.cpu_info()}")
except ImportError:  # asv imports the suite before installing, to list it
    pass
