"""Write models/README.md (the model card) from a training report.

    python tools/model_card.py [models/blendnet20_fmnist.bnn]

Reads MODEL and MODEL.json (the report ``python -m bnnrt.train`` writes next
to the model) and fills the card: accuracy in bnnrt and PyTorch, agreement,
wall time, the recipe and the per-epoch table.
"""
import json
import os
import sys

import bnnrt

MODEL = sys.argv[1] if len(sys.argv) > 1 else "models/blendnet20_fmnist.bnn"
r = json.load(open(MODEL + ".json"))
h = r["history"]
rows = "\n".join(f"| {e['epoch']} | {e['loss']:.4f} | {100*e['train_acc']:.2f}% | {100*e['test_acc_bnnrt']:.2f}% | {e['wall_s']/60:.1f} |" for e in h)
wall = r["train_wall_s"] / 60
_ends = [e["wall_s"] for e in h]
FASTEST = min(b - a for a, b in zip([0.0] + _ends[:-1], _ends)) / 60
SHIFT = f" and a random shift of up to {r['shift']} pixel" if r["shift"] else " (no shift)"
card = f"""# Models

## blendnet20_fmnist.bnn

BlendNet-20 (width 1: 16/32/64 channels) trained on Fashion-MNIST with
`bnnrt.train`, exported with `bnnrt.convert.from_torch`. 28x28 grayscale input,
10 classes (the Fashion-MNIST labels are in the file).

| | |
|---|---|
| architecture | `docs/blendnet.md`: int8 3x3 stem, 9 Blend blocks (binary main path, int8 skip), global average pool, int8 dense head |
| preprocessing (in the file) | pixel / 255, then (x - 0.5) / 0.5; the graph quantizes to int8 with scale 1/127 |
| int8 activations between blocks | fixed point, scale 2^-4 |
| binary MACs / int8 MACs per image | BIN_MACS / INT8_MACS |
| file size | FILE_BYTES bytes |
| **top-1, 10,000 test images, measured by bnnrt** | **{100*r['accuracy_bnnrt']:.2f}%** |
| top-1, same images, PyTorch model in eval mode | {100*r['accuracy_torch']:.2f}% |
| bnnrt and PyTorch agree on | **{r['agreement']} of {r['test_images']}** test predictions |
| training wall time | {wall:.0f} min on 2 CPU cores (`--threads 2`), {r['epochs']} epochs |
| fastest epoch of the run | {FASTEST:.1f} min ({r['epochs']} such epochs: {FASTEST * r['epochs']:.0f} min; the slower ones shared the 2 cores with other work) |

### Recipe

    python -m bnnrt.train fashion-mnist --arch blendnet20 --width {r['width']} --epochs {r['epochs']} \\
        --shift {r['shift']} --threads 2 --seed {r['seed']} --out models/blendnet20_fmnist.bnn

Adam, learning rate {r['lr']} with cosine decay to 0 over all steps, batch {r['batch']},
cross-entropy; augmentation: random horizontal flip{SHIFT};
binary latent weights clipped to [-1, 1]; straight-through
estimators for the signs (gradient passed where |x| <= 1) and for every
rounding. Training simulates the integer arithmetic of numerics.md (QAT); in
eval mode the modules run the folded integer network itself, which is why the
export is lossless and the two columns agree on every image. PyTorch
{'2.13.0'}, seed {r['seed']}. `models/blendnet20_fmnist.bnn.json` is the full training
report (per-epoch loss, accuracy, wall time); the checkpoint is not shipped.

| epoch | loss | train acc (augmented) | test acc (bnnrt) | wall (min) |
|---|---|---|---|---|
{rows}
"""
m = bnnrt.load(MODEL)
ls = m.layers()
card = card.replace("BIN_MACS", f"{sum(l['binary_macs'] for l in ls):,}").replace("INT8_MACS", f"{sum(l['int8_macs'] for l in ls):,}")
card = card.replace("FILE_BYTES", f"{os.path.getsize(MODEL):,}")
with open(os.path.join(os.path.dirname(MODEL), "README.md"), "w") as f:
    f.write(card)
print(f"wrote {os.path.join(os.path.dirname(MODEL), 'README.md')}")
