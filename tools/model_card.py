"""Write models/README.md (the model cards) from the training reports.

    python tools/model_card.py [MODELS_DIR]

Reads each shipped model and the report ``python -m bnnrt.train`` wrote next
to it (MODEL.json) and fills its card: accuracy in bnnrt and PyTorch,
agreement, MACs, file size, wall time, the recipe and the per-epoch table;
for the two Mixers also the accuracy gap beside the paper's.
"""
import json
import os
import sys

import bnnrt

FOLDER = sys.argv[1] if len(sys.argv) > 1 else "models"
#: The NeuroBlend paper's gain of its Blend Mixer over the naively binarized one.
PAPER_GAP = 6.0

DESCRIPTIONS = {
    "blendnet20_fmnist.bnn": dict(
        title="BlendNet-20 (width 1: 16/32/64 channels)",
        architecture="`docs/blendnet.md`: int8 3x3 stem, 9 Blend blocks (binary main path, int8 skip), "
                     "global average pool, int8 dense head"),
    "blendmixer_fmnist.bnn": dict(
        title="BlendMixer (patch 4, 128 channels, 4 blocks)",
        architecture="`docs/blendnet.md`, \"BlendMixer\": int8 4x4 patch embedding (49 tokens), 4 blocks "
                     "of a token and a channel Blend MLP (binary 1x1 convs, int8 skip path, clipping add), "
                     "global average pool, int8 dense head"),
    "mixer_binary_fmnist.bnn": dict(
        title="The naive binary Mixer (the same shapes as BlendMixer)",
        architecture="`docs/blendnet.md`, \"The naive baseline\": int8 patch embedding, then every mixing "
                     "layer binary and every tensor between them bits (no skip path), global average pool, "
                     "int8 dense head"),
}


def _pct(x):
    return f"{100 * x:.2f}%"


def _recipe_args(r):
    c = r.get("config", {})
    if r["arch"] == "blendnet20":
        return f"--width {r['width']} --epochs {r['epochs']} --shift {r['shift']}"
    return (f"--patch {c['patch']} --dim {c['dim']} --token-hidden {c['token_hidden']} "
            f"--channel-hidden {c['channel_hidden']} --depth {c['depth']} --epochs {r['epochs']} --shift {r['shift']}")


def card(path):
    name = os.path.basename(path)
    r = json.load(open(path + ".json"))
    d = DESCRIPTIONS[name]
    h = r["history"]
    test_key = "test_acc" if "test_acc" in h[0] else "test_acc_bnnrt"
    rows = "\n".join(f"| {e['epoch']} | {e['loss']:.4f} | {_pct(e['train_acc'])} | {_pct(e[test_key])} | "
                     f"{e['wall_s'] / 60:.1f} |" for e in h)
    ends = [e["wall_s"] for e in h]
    fastest = min(b - a for a, b in zip([0.0] + ends[:-1], ends)) / 60
    shift = f" and a random shift of up to {r['shift']} pixel" if r["shift"] else " (no shift)"
    m = bnnrt.load(path)
    layers = m.layers()
    threads = r.get("threads", 2)
    test_col = "test acc (bnnrt)" if test_key == "test_acc_bnnrt" else "test acc (eval mode: the integer network)"
    return f"""## {name}

{d['title']} trained on Fashion-MNIST with `bnnrt.train`, exported with
`bnnrt.convert.from_torch`. 28x28 grayscale input, 10 classes (the
Fashion-MNIST labels are in the file).

| | |
|---|---|
| architecture | {d['architecture']} |
| preprocessing (in the file) | pixel / 255, then (x - 0.5) / 0.5; the graph quantizes to int8 with scale 1/127 |
| int8 activations between blocks | fixed point, scale 2^-4 |
| binary MACs / int8 MACs per image | {sum(x['binary_macs'] for x in layers):,} / {sum(x['int8_macs'] for x in layers):,} |
| file size | {os.path.getsize(path):,} bytes |
| **top-1, 10,000 test images, measured by bnnrt** | **{_pct(r['accuracy_bnnrt'])}** |
| top-1, same images, PyTorch model in eval mode | {_pct(r['accuracy_torch'])} |
| bnnrt and PyTorch agree on | **{r['agreement']} of {r['test_images']}** test predictions |
| training wall time | {r['train_wall_s'] / 60:.0f} min on {threads} CPU core{'s' if threads > 1 else ''} (`--threads {threads}`), {r['epochs']} epochs |
| fastest epoch of the run | {fastest:.1f} min ({r['epochs']} such epochs: {fastest * r['epochs']:.0f} min; the slower ones shared the cores with other work) |

### Recipe

    python -m bnnrt.train fashion-mnist --arch {r['arch']} {_recipe_args(r)} \\
        --threads {threads} --seed {r['seed']} --out models/{name}

Adam, learning rate {r['lr']} with cosine decay to 0 over all steps, batch {r['batch']},
cross-entropy; augmentation: random horizontal flip{shift};
binary latent weights clipped to [-1, 1]; straight-through
estimators for the signs (gradient passed where |x| <= 1) and for every
rounding. Training simulates the integer arithmetic of numerics.md (QAT); in
eval mode the modules run the folded integer network itself, which is why the
export is lossless and the two accuracy rows agree on every image. PyTorch
{r.get('torch', '2.13.0')}, seed {r['seed']}. `models/{name}.json` is the full training
report (per-epoch loss, accuracy, wall time); the checkpoint is not shipped.

| epoch | loss | train acc (augmented) | {test_col} | wall (min) |
|---|---|---|---|---|
{rows}
"""


def mixer_comparison(folder):
    reports = {}
    for name in ("blendmixer_fmnist.bnn", "mixer_binary_fmnist.bnn"):
        p = os.path.join(folder, name + ".json")
        if not os.path.exists(p):
            return ""
        reports[name] = json.load(open(p))
    blend, naive = (reports[n]["accuracy_bnnrt"] for n in reports)
    return f"""## The two Mixers side by side

Same shapes, MACs, recipe and seed; only the Blend module differs
(docs/blendnet.md, "BlendMixer").

| | top-1 (bnnrt, 10,000 test images) |
|---|---|
| `mixer_binary_fmnist.bnn` (every mixing layer binary, bits between them) | {_pct(naive)} |
| `blendmixer_fmnist.bnn` (Blend MLPs: binary main path, int8 skip path) | {_pct(blend)} |
| **gain of the Blend module** | **{100 * (blend - naive):+.2f} points** (the NeuroBlend paper: {PAPER_GAP:.0f} points for its Mixer) |

"""


def main():
    models = [n for n in DESCRIPTIONS if os.path.exists(os.path.join(FOLDER, n + ".json"))]
    text = "# Models\n\n" + mixer_comparison(FOLDER) + "\n".join(card(os.path.join(FOLDER, n)) for n in models)
    out = os.path.join(FOLDER, "README.md")
    with open(out, "w") as f:
        f.write(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
