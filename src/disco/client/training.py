"""Local training with the loss, optimizer and batch size a task's `trainingInformation` names."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from disco.client.data.dataset import Dataset
from disco.client.model.errors import ModelError
from disco.client.model.torch_task import TaskModel
from disco.tasks.schema import TrainingInformation

# Keras clips probabilities by this epsilon before taking logs; so do we, for equal losses.
EPSILON = 1e-7

# TF.js defaults when `learningRate` is absent.
DEFAULT_LEARNING_RATES = {
    "sgd": 0.01,
    "adam": 0.001,
    "rmsprop": 0.001,
    "adagrad": 0.01,
    "adadelta": 0.001,
    "adamax": 0.002,
}


def make_optimizer(
    name: str, parameters: Any, learning_rate: float | None
) -> torch.optim.Optimizer:
    """The torch optimizer for a TF.js optimizer name, with TF.js's hyper-parameters."""
    key = name.lower()
    lr = learning_rate if learning_rate is not None else DEFAULT_LEARNING_RATES.get(key, 0.001)
    if key == "sgd":
        return torch.optim.SGD(parameters, lr=lr)
    if key == "adam":
        return torch.optim.Adam(parameters, lr=lr, eps=EPSILON)
    if key == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, alpha=0.9, eps=EPSILON)
    if key == "adagrad":
        return torch.optim.Adagrad(parameters, lr=lr, initial_accumulator_value=0.1)
    if key == "adadelta":
        return torch.optim.Adadelta(parameters, lr=lr, rho=0.95, eps=EPSILON)
    if key == "adamax":
        return torch.optim.Adamax(parameters, lr=lr, eps=EPSILON)
    raise ModelError(
        f"unsupported optimizer {name!r} (sgd, adam, rmsprop, adagrad, adadelta, adamax)"
    )


def loss_value(name: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Keras losses on the model's outputs (probabilities for sigmoid/softmax heads)."""
    key = name.replace("_", "").lower()
    if key == "binarycrossentropy":
        p = output.clamp(EPSILON, 1 - EPSILON)
        t = target.reshape(p.shape).to(p.dtype)
        return -(t * p.log() + (1 - t) * (1 - p).log()).mean()
    if key in ("categoricalcrossentropy", "sparsecategoricalcrossentropy"):
        p = output / output.sum(dim=-1, keepdim=True)
        log_p = p.clamp(EPSILON, 1 - EPSILON).log()
        if target.dim() == 1:
            return -log_p.gather(1, target.long().unsqueeze(1)).mean()
        return -(target * log_p).sum(dim=-1).mean()
    if key in ("meansquarederror", "mse"):
        return ((output - target.reshape(output.shape)) ** 2).mean()
    if key in ("meanabsoluteerror", "mae"):
        return (output - target.reshape(output.shape)).abs().mean()
    raise ModelError(f"unsupported loss {name!r}")


def correct_predictions(output: torch.Tensor, target: torch.Tensor) -> int:
    """Binary (one sigmoid unit, threshold 0.5) or categorical (argmax) accuracy count."""
    if output.dim() == 2 and output.shape[1] == 1:
        predicted = (output[:, 0] >= 0.5).long()
        truth = (target.reshape(-1) >= 0.5).long()
    else:
        predicted = output.argmax(dim=-1)
        truth = target.long() if target.dim() == 1 else target.argmax(dim=-1)
    return int((predicted == truth).sum())


@dataclass
class Metrics:
    loss: float
    accuracy: float
    samples: int


class LocalTrainer:
    """Trains a task model on local data; the optimizer state survives weight replacements."""

    def __init__(self, model: TaskModel, info: TrainingInformation, seed: int = 0):
        compile_data = info.model_compile_data
        self.model = model
        self.loss_name = compile_data.loss
        self.batch_size = int(info.batch_size)
        self.epochs = int(info.epochs)
        self.round_duration = info.batches_per_round
        self.optimizer = make_optimizer(
            compile_data.optimizer,
            [p for p in model.parameters() if p.requires_grad],
            info.learning_rate,
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)

    def batches(self, data: Dataset, epochs: int | None = None) -> Iterator[tuple[int, Dataset]]:
        """(epoch, batch) pairs over shuffled data, `epochs` times (the task's by default)."""
        for epoch in range(epochs if epochs is not None else self.epochs):
            order = self.rng.permutation(len(data))
            for start in range(0, len(data), self.batch_size):
                yield epoch, data.subset(order[start : start + self.batch_size])

    def step(self, batch: Dataset) -> Metrics:
        """One optimizer step on a batch."""
        self.model.train()
        x = torch.from_numpy(batch.x)
        y = torch.from_numpy(batch.y)
        self.optimizer.zero_grad(set_to_none=True)
        output = self.model(x)
        loss = loss_value(self.loss_name, output, y)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        return Metrics(
            float(loss.detach()), correct_predictions(output.detach(), y) / len(batch), len(batch)
        )

    @torch.no_grad()
    def evaluate(self, data: Dataset, batch_size: int = 512) -> Metrics:
        """Loss and accuracy over a whole dataset, in inference mode."""
        self.model.eval()
        total_loss, correct = 0.0, 0
        for start in range(0, len(data), batch_size):
            x = torch.from_numpy(data.x[start : start + batch_size])
            y = torch.from_numpy(data.y[start : start + batch_size])
            output = self.model(x)
            total_loss += float(loss_value(self.loss_name, output, y)) * len(x)
            correct += correct_predictions(output, y)
        n = max(1, len(data))
        return Metrics(total_loss / n, correct / n, len(data))
