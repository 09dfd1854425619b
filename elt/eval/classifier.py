"""A small domain classifier: its penultimate features give the fast Frechet distance (fd_domain),
its predictions give class_accuracy (does a sample show the class it was conditioned on?).

Input is uint8 data (N, T, C, H, W); time folds into channels, so one network serves images and
short clips. It is trained on the training split and its held-out accuracy is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from elt.files import load_module, save_module


@dataclass
class ClassifierConfig:
    in_channels: int
    num_classes: int
    hidden: int = 64
    steps: int = 600
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


class DomainClassifier(nn.Module):
    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.body = nn.Sequential(
            nn.Conv2d(cfg.in_channels, h // 2, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(h // 2, h, 3, padding=1, stride=2),
            nn.GELU(),
            nn.Conv2d(h, h, 3, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * h, h),
            nn.GELU(),
        )
        self.head = nn.Linear(h, cfg.num_classes)

    @staticmethod
    def prepare(data: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(data).float() / 127.5 - 1.0  # (N, T, C, H, W)
        return x.flatten(1, 2)

    def forward(self, x):
        return self.head(self.body(x))

    @torch.no_grad()
    def features_and_predictions(self, data: np.ndarray, batch_size: int = 512, device: torch.device | str = "cpu"):
        self.to(device)
        feats, preds = [], []
        for start in range(0, len(data), batch_size):
            f = self.body(self.prepare(data[start : start + batch_size]).to(device))
            feats.append(f.cpu().numpy().astype(np.float64))
            preds.append(self.head(f).argmax(1).cpu().numpy())
        return np.concatenate(feats), np.concatenate(preds)


def train_classifier(train_data, train_labels, held_data, held_labels, cfg: ClassifierConfig):
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = DomainClassifier(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    x, y = DomainClassifier.prepare(train_data), torch.from_numpy(train_labels)
    net.train()
    for _ in range(cfg.steps):
        idx = torch.randint(0, len(y), (cfg.batch_size,), generator=gen)
        batch = x[idx]
        shift = torch.randint(-1, 2, (2,), generator=gen)  # light augmentation: one-pixel shifts
        batch = torch.roll(batch, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
        loss = F.cross_entropy(net(batch), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    _, preds = net.features_and_predictions(held_data)
    return net, float((preds == held_labels).mean())


def save(net: DomainClassifier, path, accuracy: float) -> None:
    save_module(net, path, held_out_accuracy=accuracy)


def load(path) -> DomainClassifier:
    return load_module(path, DomainClassifier, ClassifierConfig)
