"""Where the bytes of a Deep Compression model go, and how small its coding could get.

    python benchmarks/dc_bits.py runs/dc-lenet5/model.pt

Reads a model written by ``autocompress apply`` (its ``report.json`` beside it gives the base
size) and prints, per sparse layer: kept weights, clusters used, the entropy of the kept
weights' cluster indices and of the gaps between kept positions (row-major, as stored), and
the bits per kept weight in ``size_bytes_huffman``'s accounting (values, gaps, code tables,
codebook and bias). Then the whole model's size in that accounting and under lighter ones:

- the entropy of values and gaps (no code can beat it) plus the full float32 codebooks and
  float32 biases the model stores;
- the same with only the centroids some kept weight uses;
- the same with float16 centroids and biases;
- Huffman coding as accounted, but with canonical code tables (a 5-bit length per symbol; the
  value table holds each used centroid instead of an index), float16 centroids and biases.

Each is a compression ratio against the fp32 base model.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from autocompress.checkpoint import load_checkpoint
from autocompress.compress.pack import (
    GAP_WIDTHS,
    Encoded,
    encode_model,
    huffman_bits,
    huffman_lengths,
    relative_entries,
)
from autocompress.policy import Policy

LENGTH_BITS = 5  # a canonical Huffman table stores one code length per symbol
COUNT_BITS = 16  # symbols in a table


def entropy(symbols: np.ndarray) -> float:
    counts = np.array(list(Counter(symbols.tolist()).values()), float)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def canonical_bits(e: Encoded, centroid_bits: int) -> int:
    """Relative indices (best gap width) and values, Huffman-coded with canonical tables."""
    kept = e.symbols[e.keep]
    gaps = e.gaps
    best = None
    for width in GAP_WIDTHS:
        # filler entries get a symbol of their own: the value table maps symbols to centroids
        gap_symbols, values = relative_entries(gaps, kept.astype(np.int64), width, filler=-1)
        total = 4  # the gap width
        for symbols, is_gap in ((gap_symbols, True), (values, False)):
            counts, lengths = huffman_lengths(symbols)
            n = len(counts)
            total += sum(counts[s] * lengths[s] for s in counts) + COUNT_BITS + 1
            # gap table: a length for every gap up to the longest, or (gap, length) pairs;
            # value table: each symbol's centroid and length
            if is_gap:
                total += min(int(symbols.max()) * LENGTH_BITS, n * (width + LENGTH_BITS))
            else:
                total += n * (centroid_bits + LENGTH_BITS)
        best = total if best is None else min(best, total)
    assert best is not None
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="model.pt written by `autocompress apply`")
    args = parser.parse_args()
    report = json.loads((args.model.parent / "report.json").read_text())
    base_bytes = report["base_size_bytes"]
    model, payload = load_checkpoint(args.model)
    policy = Policy.from_dict(payload["policy"])
    names = list(policy.layers)
    if any(policy.choice(n).clusters is None for n in names):
        raise SystemExit("dc_bits.py reads models whose every layer shares weights (clusters)")
    encoded = encode_model(model, policy, names)

    accounted = entropy_bits = codebooks = used_centroids = bias_count = canonical = 0
    print(
        f"{'layer':6s} {'kept':>7s} {'clusters used':>14s} {'H(value)':>9s} {'H(gap)':>7s} "
        f"{'bits/kept (accounted)':>22s}"
    )
    for name, (tensors, bias) in encoded.items():
        layer_bits = huffman_bits(tensors, bias)
        accounted += layer_bits
        bias_count += 0 if bias is None else bias.size
        for e in tensors:
            kept = e.symbols[e.keep]
            h_value, h_gap = entropy(kept), entropy(e.gaps)
            entropy_bits += kept.size * (h_value + h_gap)
            codebooks += sum(v.size for v, _ in e.side)
            used = len(set(kept.tolist()))
            used_centroids += used
            canonical += canonical_bits(e, 16)
            print(
                f"{name:6s} {kept.size:7d} {used:9d}/{e.symbols.max():<4d} {h_value:9.3f} "
                f"{h_gap:7.3f} {layer_bits / kept.size:22.2f}"
            )

    def ratio(bits: float) -> str:
        size = int(-(-bits // 8))
        return f"{size:7,d} B  {base_bytes / size:5.1f}×"

    print(f"\nbase model (fp32): {base_bytes:,d} B")
    print(f"size_bytes_huffman as accounted:                          {ratio(accounted)}")
    print(
        "entropy of values and gaps + fp32 codebooks + fp32 biases:  "
        f"{ratio(entropy_bits + 32 * (codebooks + bias_count))}"
    )
    print(
        "  ... only the centroids in use:                            "
        f"{ratio(entropy_bits + 32 * (used_centroids + bias_count))}"
    )
    print(
        "  ... fp16 centroids in use and fp16 biases:                "
        f"{ratio(entropy_bits + 16 * (used_centroids + bias_count))}"
    )
    print(
        "Huffman, canonical tables, fp16 centroids and biases:       "
        f"{ratio(canonical + 16 * bias_count)}"
    )


if __name__ == "__main__":
    main()
