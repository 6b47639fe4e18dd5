"""PyTorch models covering every module and operation the TF.js exporter supports.

Each entry: (module, input shape of one sample in PyTorch layout).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LeNet(nn.Module):
    """Functional forward: pooling functions, torch.flatten, log_softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 5, padding=2)
        self.conv2 = nn.Conv2d(4, 8, 3)
        self.fc1 = nn.Linear(8 * 2 * 2, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return F.log_softmax(self.fc2(x), dim=1)


class Residual(nn.Module):
    """A residual addition, a channel concatenation and a global average (mean over H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.side = nn.Conv2d(6, 4, 1)
        self.head = nn.Linear(10, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        y = x + self.block(x)
        z = torch.cat([self.side(y), y], dim=1)
        return torch.softmax(self.head(z.mean(dim=(2, 3))), dim=-1)


class Mixed(nn.Module):
    """Products, keepdim max pooling, view(size(0), -1), functional dropout and activations."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3)
        self.b = nn.Conv2d(2, 3, 3)
        self.norm = nn.BatchNorm1d(3 * 2 * 2)
        self.fc = nn.Linear(3 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.b(x))
        x = F.elu(self.a(x)) * gate
        x = F.avg_pool2d(x, 2, stride=2)
        x = x.view(x.size(0), -1)
        x = F.dropout(x, 0.2, training=self.training)
        x = self.norm(x)
        return F.leaky_relu(self.fc(x), 0.2)


def torch_zoo() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """Small models, freshly initialized (seeded), by name."""
    torch.manual_seed(7)
    return {
        "mlp": (
            nn.Sequential(
                nn.Linear(6, 16),
                nn.ReLU(),
                nn.Dropout(0.3),
                nn.Linear(16, 8),
                nn.Tanh(),
                nn.Linear(8, 3),
                nn.Softmax(dim=1),
            ),
            (6,),
        ),
        "activations": (
            nn.Sequential(
                nn.Linear(5, 8),
                nn.GELU(),
                nn.Linear(8, 8),
                nn.SiLU(),
                nn.Linear(8, 8),
                nn.Mish(),
                nn.Linear(8, 8),
                nn.SELU(),
                nn.Linear(8, 8),
                nn.Softplus(),
                nn.Linear(8, 8),
                nn.Softsign(),
                nn.Linear(8, 8),
                nn.LeakyReLU(0.1),
                nn.Linear(8, 8),
                nn.ReLU6(),
                nn.Linear(8, 8),
                nn.ELU(),
                nn.BatchNorm1d(8),
                nn.Linear(8, 4),
                nn.Sigmoid(),
            ),
            (5,),
        ),
        "cnn_padding": (
            nn.Sequential(
                nn.Conv2d(3, 4, 3, stride=2, padding=1),  # even height: explicit zero padding
                nn.BatchNorm2d(4),
                nn.ReLU(),
                nn.MaxPool2d(3, stride=2, padding=1),  # TF.js 'same' here
                nn.Conv2d(4, 5, (2, 3), padding="same", bias=False),
                nn.ELU(),
                nn.AvgPool2d(2, stride=1, padding=1),  # counts padding: explicit zero padding
                nn.Flatten(),
                nn.Linear(5 * 4 * 4, 3),
                nn.LogSoftmax(dim=1),
            ),
            (3, 10, 9),
        ),
        "dilated_adaptive": (
            nn.Sequential(
                nn.Conv2d(2, 6, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(6, 6, 3, dilation=2, padding=2),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(6, 2),
            ),
            (2, 7, 7),
        ),
        "channel_softmax": (
            nn.Sequential(
                nn.Conv2d(3, 4, 1),
                nn.Softmax(dim=1),
                nn.AdaptiveMaxPool2d((2, 2)),
                nn.Flatten(),
                nn.Linear(16, 2),
            ),
            (3, 4, 4),
        ),
        "fully_convolutional": (
            nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Sigmoid()),
            (3, 5, 6),
        ),
        "lenet_functional": (LeNet(), (1, 14, 14)),
        "residual_functional": (Residual(), (3, 8, 8)),
        "mixed_functional": (Mixed(), (2, 6, 6)),
    }


def randomize_batch_norms(module: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BatchNorm statistics and affine weights, so their export is checked."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                n = m.num_features
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.2)
