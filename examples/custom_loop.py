"""Your own training loop plugged into the search: a Hugging Face–style Trainer and model.

The model takes keyword inputs (``input_ids``, ``attention_mask``) of integer tokens and
returns an output object with ``.logits``, as Hugging Face models do; batches are dicts with
``labels``. The search never sees the data: it calls ``finetune(model, steps, teacher)`` —
here the Trainer below, with AdamW, warm-up, gradient clipping and distillation from the
teacher — and ``evaluate(model)``. Nothing of the engine's own fine-tune is used.

The "text" is scikit-learn's digits read as 64 tokens (pixel intensities 0–16), so the example
runs anywhere in seconds.

    python examples/custom_loop.py               # full run (a few minutes)
    python examples/custom_loop.py --quick       # seconds: what the test suite runs
"""

from __future__ import annotations

import argparse
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader

import autocompress

VOCAB, SEQ = 17, 64


@dataclass
class Output:
    logits: torch.Tensor


class TokenClassifier(nn.Module):
    """Embedding + nn.TransformerEncoder + mean pooling + classifier, HF-style signature."""

    def __init__(self, dim: int = 32, layers: int = 2, classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        self.position = nn.Parameter(torch.randn(1, SEQ, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 4, 4 * dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.pooler = nn.Linear(dim, dim)
        self.classifier = nn.Linear(dim, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Output:
        x = self.encoder(self.embed(input_ids) + self.position)
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (x * mask).sum(1) / mask.sum(1).clamp(min=1)
        return Output(self.classifier(torch.tanh(self.pooler(pooled))))


class Logits(nn.Module):
    """What the engine compresses: the HF-style model with ``.logits`` unwrapped."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def dataset() -> tuple[list[dict[str, torch.Tensor]], ...]:
    digits = load_digits()
    ids = torch.tensor(digits.images.reshape(len(digits.images), -1), dtype=torch.long)
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))

    def rows(index: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [
            {
                "input_ids": ids[i],
                "attention_mask": torch.ones(SEQ, dtype=torch.long),
                "labels": labels[i],
            }
            for i in index
        ]

    return rows(order[:1200]), rows(order[1200:1500]), rows(order[1500:])


def collate(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


class Trainer:
    """A minimal Hugging Face–style trainer: AdamW, linear warm-up then cosine, clipping,
    optional distillation from a teacher. ``train(model, max_steps, teacher)``."""

    def __init__(self, train_rows: list, lr: float = 3e-3, batch: int = 32, kd: float = 0.5):
        self.loader = DataLoader(
            train_rows,
            batch,
            shuffle=True,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(0),
        )
        self.lr, self.kd = lr, kd

    def train(self, model: nn.Module, max_steps: int, teacher: nn.Module | None = None) -> None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=0.01)
        warmup = max(1, max_steps // 10)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda s: (
                (s + 1) / warmup
                if s < warmup
                else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, max_steps - warmup)))
            ),
        )
        step = 0
        model.train()
        while step < max_steps:
            for batch in self.loader:
                inputs = {
                    "input_ids": batch["input_ids"],
                    "attention_mask": batch["attention_mask"],
                }
                logits = model(**inputs)
                loss = nn.functional.cross_entropy(logits, batch["labels"])
                if teacher is not None and self.kd:
                    with torch.no_grad():
                        soft = teacher(**inputs)
                    kl = nn.functional.kl_div(
                        logits.log_softmax(-1),
                        soft.log_softmax(-1),
                        log_target=True,
                        reduction="batchmean",
                    )
                    loss = (1 - self.kd) * loss + self.kd * kl
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                step += 1
                if step >= max_steps:
                    break


def evaluate(model: nn.Module, rows: list) -> float:
    loader = DataLoader(rows, 256, collate_fn=collate)
    hits = 0
    with torch.no_grad():
        for b in loader:
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
            hits += int((logits.argmax(-1) == b["labels"]).sum())
    return hits / len(rows)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny run for tests (seconds)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.out or Path(tempfile.mkdtemp(prefix="custom-loop-"))
    torch.manual_seed(0)
    train_rows, val_rows, test_rows = dataset()
    trainer = Trainer(train_rows)

    model = Logits(TokenClassifier())
    trainer.train(model, 40 if args.quick else 1500)
    base = evaluate(model.eval(), test_rows)
    print(f"base model: test accuracy {base:.2%}")

    example = {
        "input_ids": torch.zeros(1, SEQ, dtype=torch.long),
        "attention_mask": torch.ones(1, SEQ, dtype=torch.long),
    }
    prof = autocompress.profile(model, example)
    for name, why in prof.untouched.items():
        print(f"  untouched: {name}: {why}")

    found = autocompress.search(
        model,
        example,
        budget={"params": "70%"},
        finetune=lambda m, steps, teacher: trainer.train(m, steps, teacher),
        evaluate=lambda m: evaluate(m, val_rows),
        trials=6 if args.quick else 30,
        steps=5 if args.quick else 150,
        runs_root=work / "runs",
        name="tokens",
        settings={"space": {"skip_first": False}},
    )
    best = found.best()
    # the export may take a loop of its own (finetune=); here the search's Trainer again
    report = found.export(
        best,
        work / "export",
        steps=10 if args.quick else 600,
        finetune=lambda m, steps, teacher: trainer.train(m, steps, teacher),
        onnx=False,
    )
    tuned = autocompress.load(work / "export" / "model.pt", model=Logits(TokenClassifier()))
    test = evaluate(tuned, test_rows)
    print(
        f"trial {best.number}: val {best.val_accuracy:.2%} in the search; exported: test "
        f"{test:.2%} (base {base:.2%}), params ×{report['params'] / report['base_params']:.3f}"
    )
    return {"report": report, "test": test, "base": base, "trials": len(found.trials())}


if __name__ == "__main__":
    main()
