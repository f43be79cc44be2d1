"""Train a small CNN to tell generated shapes apart (discs, squares, triangles).

Images are 1 x 24 x 24, made with numpy: one shape at a random position and size, with a
random intensity, plus pixel noise. The network is two conv + ReLU + max-pool blocks and a
linear classifier, trained with Adam and cross-entropy. With the defaults it reaches over
95% test accuracy in ten epochs (about 10 s); the script prints the accuracy and saves a grid of test
images with their predicted labels.

    python examples/train_cnn.py
    python examples/train_cnn.py --train 600 --epochs 2 --plot none
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

try:
    import diffsim as ds
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import diffsim as ds
import diffsim.nn as nn
import diffsim.optim as optim
from diffsim.data import DataLoader, TensorDataset

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PLOT = os.path.join(HERE, "output", "train_cnn.png")
CLASSES = ("disc", "square", "triangle")
SIZE = 24


def make_images(n, seed):
    """Images [n, 1, SIZE, SIZE] (float32) and labels [n] (int64)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    labels = rng.integers(0, 3, n)
    imgs = np.empty((n, 1, SIZE, SIZE), np.float32)
    for i, c in enumerate(labels):
        r = rng.uniform(4, 8)
        cx, cy = rng.uniform(r + 1, SIZE - r - 1, 2)
        if c == 0:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        elif c == 1:
            mask = (np.abs(xx - cx) <= r * 0.8) & (np.abs(yy - cy) <= r * 0.8)
        else:
            top = cy - r
            mask = (yy >= top) & (yy <= cy + r) & (np.abs(xx - cx) <= (yy - top) / 2)
        imgs[i, 0] = mask * rng.uniform(0.6, 1.0) + rng.normal(0, 0.15, (SIZE, SIZE))
    return imgs, labels.astype(np.int64)


def make_model():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),      # 8 x 12 x 12
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),     # 16 x 6 x 6
        nn.Flatten(), nn.Linear(16 * 6 * 6, len(CLASSES)))


def accuracy(model, x, y):
    model.eval()
    with ds.no_grad():
        pred = model(x).argmax(dim=1)
    model.train()
    return (pred == y).float().mean().item(), pred


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=3000, help="training images")
    ap.add_argument("--test", type=int, default=600, help="test images")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--plot", default=DEFAULT_PLOT, help="output PNG path, or 'none'")
    args = ap.parse_args(argv)

    ds.manual_seed(0)
    xtr, ytr = make_images(args.train, seed=1)
    xte, yte = make_images(args.test, seed=2)
    loader = DataLoader(TensorDataset(ds.from_numpy(xtr), ds.from_numpy(ytr)), batch_size=64,
                        shuffle=True)
    x_test, y_test = ds.from_numpy(xte), ds.from_numpy(yte)

    model = make_model()
    opt = optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        total = 0.0
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
        acc, _ = accuracy(model, x_test, y_test)
        print(f"epoch {epoch + 1}: training loss {total / len(ytr):.4f}, test accuracy {acc:.3f}")
    acc, pred = accuracy(model, x_test, y_test)
    print(f"final test accuracy: {acc:.3f} (chance: {1 / len(CLASSES):.3f})")

    if args.plot != "none":
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed: no plot (pip install diffsim[viz])")
        else:
            os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
            fig, axes = plt.subplots(3, 8, figsize=(12, 5))
            for ax, img, p, t in zip(axes.ravel(), xte, pred.tolist(), yte):
                ax.imshow(img[0], cmap="gray")
                ax.set_title(CLASSES[p], color="green" if p == t else "red", fontsize=9)
                ax.axis("off")
            fig.suptitle(f"test accuracy {acc:.3f}")
            fig.tight_layout()
            fig.savefig(args.plot, dpi=90)
            print(f"saved {args.plot}")
    return acc


if __name__ == "__main__":
    main()
