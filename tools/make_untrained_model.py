"""Write models/blendnet20_untrained.bnn: BlendNet-20 for 28x28 grayscale
Fashion-MNIST-shaped input with random weights, the stand-in the README uses
until a trained model ships. Deterministic (seed 0).

    python tools/make_untrained_model.py [OUT]
"""

import sys

from bnnrt import blendnet, format, zoo
from bnnrt.datasets import FASHION_MNIST_LABELS


def main(out="models/blendnet20_untrained.bnn"):
    shape = (28, 28, 1)
    params = zoo.blendnet20_params(width=1, input_shape=shape, num_classes=10, seed=0)
    metadata = {
        "name": "blendnet20-fmnist-untrained",
        "description": "BlendNet-20 with RANDOM weights (untrained): predictions mean nothing",
        "input": {"shape": list(shape), "color": "L", "scale": 1 / 255, "mean": [0.286], "std": [0.353]},
        "labels": FASHION_MNIST_LABELS,
        "provenance": {"source": "tools/make_untrained_model.py", "seed": 0, "trained": False},
    }
    graph = blendnet.build(params, width=1, input_shape=shape, num_classes=10, metadata=metadata)
    format.save(graph, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
