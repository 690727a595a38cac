"""Weights packed to their bits: the exported storage the cost model's ``size_bytes`` prices.

Per compressible layer, one bit stream, padded to whole bytes: for each weight tensor (two
after a low-rank factorization) the sparsity bitmap (if sparse), then the kept values — codes
at ``w_bits`` with a float32 scale per output channel, float16/float32 values, or
log2(clusters)-bit indices followed by the codebook — then the float32 bias. Every other tensor
the model needs (norms, running statistics) is stored as float32.

:func:`huffman_bits` gives Deep Compression's accounting of the same weights: relative indices
of the kept weights (with filler entries for gaps longer than the index width) and Huffman
coding of the value and gap symbols, code tables included.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from autocompress.compress.layers import WeightLayer, stored_weight, transforms, weight_layers
from autocompress.compress.quantize import WeightQuant, channel_scale
from autocompress.compress.share import Shared
from autocompress.compress.sparsity import keep_mask
from autocompress.cost.metrics import sparse_storage, value_bits
from autocompress.policy import Policy

GAP_WIDTHS = range(2, 13)  # relative-index widths tried per tensor
GAP_HEADER_BITS = 4


@dataclass(frozen=True)
class Encoded:
    """One weight tensor as stored: a symbol per position, the kept mask, side tables."""

    shape: tuple[int, ...]
    symbols: np.ndarray  # uint64 per position; pruned positions hold the zero symbol
    keep: np.ndarray  # bool per position
    bits: int  # per kept symbol in the bitmap form
    dense_bits: int  # per symbol when zeros are stored too
    side: list[tuple[np.ndarray, int]]  # (values, bits) stored after the symbols
    huffman: bool  # whether the symbols are codes worth entropy coding (not raw floats)

    @property
    def gaps(self) -> np.ndarray:
        """Distance from each kept position to the previous one (row-major, the first from -1)."""
        return np.diff(np.flatnonzero(self.keep), prepend=-1)

    @property
    def sparse(self) -> bool:
        return sparse_storage(self.keep.size, int(self.keep.sum()), self.bits, self.dense_bits)

    def stream(self) -> list[np.ndarray]:
        if self.sparse:
            return [
                self.keep.astype(np.uint8),
                _bits(self.symbols[self.keep], self.bits),
                *(_bits(v, b) for v, b in self.side),
            ]
        return [_bits(self.symbols, self.dense_bits), *(_bits(v, b) for v, b in self.side)]


def encode(layer: WeightLayer, w_bits: int, clusters: int | None) -> Encoded:
    """The stored form of ``layer``'s effective weight."""
    chain = transforms(layer)
    weight = layer.weight.detach()
    shape = tuple(weight.shape)
    keep_t = keep_mask(layer)
    keep = np.ones(weight.numel(), bool) if keep_t is None else keep_t.flatten().numpy()
    bits, dense_bits, _ = value_bits(w_bits, clusters, shape[0])
    shared = next((t for t in chain if isinstance(t, Shared)), None)
    if clusters is not None and shared is not None:
        book = shared.centroids.detach()
        side = (
            [(book.half().numpy().view(np.uint16).astype(np.uint64), 16)]
            if w_bits == 16
            else [(book.float().numpy().view(np.uint32).astype(np.uint64), 32)]
        )
        index = shared.index.flatten().numpy().astype(np.uint64)
        symbols = np.where(keep, index, np.uint64(clusters))  # zero is the extra index
        return Encoded(shape, symbols, keep, bits, dense_bits, side, huffman=True)
    if w_bits < 16:
        quant = next(t for t in chain if isinstance(t, WeightQuant))
        pre = _input_of(layer, quant)
        scale = channel_scale(pre, w_bits)
        qmax = 2 ** (w_bits - 1) - 1
        codes = torch.round(pre / scale).clamp(-qmax, qmax).to(torch.int64) + qmax
        scales = scale.flatten().float().numpy().view(np.uint32).astype(np.uint64)
        return Encoded(
            shape,
            codes.flatten().numpy().astype(np.uint64),
            keep,
            bits,
            dense_bits,
            [(scales, 32)],
            huffman=True,
        )
    flat = weight.flatten()
    raw = (
        flat.half().numpy().view(np.uint16)
        if w_bits == 16
        else flat.float().numpy().view(np.uint32)
    )
    return Encoded(shape, raw.astype(np.uint64), keep, bits, dense_bits, [], huffman=False)


def _input_of(layer: WeightLayer, target: nn.Module) -> torch.Tensor:
    """The tensor a weight transform receives: the stored weight through the ones before it."""
    x = stored_weight(layer).detach()
    for t in transforms(layer):
        if t is target:
            return x
        x = t(x)
    raise AssertionError("transform not in the layer's chain")


def encode_model(
    model: nn.Module, policy: Policy, layer_names: list[str]
) -> dict[str, tuple[list[Encoded], np.ndarray | None]]:
    """Every compressible layer's encoded weight tensors and float32 bias."""
    out = {}
    for name in layer_names:
        choice = policy.choice(name)
        factors = weight_layers(model, name)
        encoded = [encode(f, choice.w_bits, choice.clusters) for f in factors]
        bias = factors[-1].bias
        out[name] = (encoded, None if bias is None else bias.detach().float().numpy())
    return out


def pack_layer(encoded: list[Encoded], bias: np.ndarray | None) -> bytes:
    """One layer's bit stream, padded to whole bytes."""
    parts = [part for e in encoded for part in e.stream()]
    if bias is not None:
        parts.append(_bits(bias.view(np.uint32).astype(np.uint64), 32))
    return np.packbits(np.concatenate(parts)).tobytes()


def unpack_layer(
    blob: bytes, specs: list[tuple[tuple[int, ...], int, int, int | None]], bias: int
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Decode :func:`pack_layer`: ``specs`` = (shape, kept count, w_bits, clusters) per tensor.

    Returns the effective weights and the bias, equal to the packed model's.
    """
    bits = np.unpackbits(np.frombuffer(blob, np.uint8))
    pos = 0

    def take(count: int, width: int) -> np.ndarray:
        nonlocal pos
        padded = np.zeros((count, 64), np.uint8)
        padded[:, 64 - width :] = bits[pos : pos + count * width].reshape(count, width)
        pos += count * width
        return np.packbits(padded, axis=1).view(">u8").ravel().astype(np.uint64)

    weights = []
    for shape, kept, w_bits, clusters in specs:
        n = int(np.prod(shape))
        vbits, dense_bits, _ = value_bits(w_bits, clusters, shape[0])
        if sparse_storage(n, kept, vbits, dense_bits):
            keep = take(n, 1).astype(bool)
            symbols = np.zeros(n, np.uint64)
            symbols[keep] = take(kept, vbits)
        else:
            symbols = take(n, dense_bits)
            keep = np.ones(n, bool)
        if clusters is not None:
            width = 16 if w_bits == 16 else 32
            raw = take(clusters, width)
            book = (
                raw.astype(np.uint16).view(np.float16)
                if width == 16
                else raw.astype(np.uint32).view(np.float32)
            ).astype(np.float32)
            keep &= symbols < clusters
            values = np.where(keep, np.append(book, 0)[np.minimum(symbols, clusters)], 0)
        elif w_bits < 16:
            qmax = 2 ** (w_bits - 1) - 1
            codes = torch.from_numpy(symbols.astype(np.int64) - qmax).float()
            scales = torch.from_numpy(take(shape[0], 32).astype(np.uint32).view(np.float32))
            values = (codes.view(shape[0], -1) * scales[:, None]).flatten().numpy() * keep
        elif w_bits == 16:
            values = symbols.astype(np.uint16).view(np.float16).astype(np.float32) * keep
        else:
            values = symbols.astype(np.uint32).view(np.float32) * keep
        weights.append(torch.from_numpy(np.ascontiguousarray(values, np.float32).reshape(shape)))
    b = None
    if bias:
        b = torch.from_numpy(take(bias, 32).astype(np.uint32).view(np.float32).copy())
    return weights, b


def _bits(values: np.ndarray, width: int) -> np.ndarray:
    """Each value's ``width`` low bits, most significant first, as a flat uint8 0/1 array."""
    octets = values.astype(">u8").view(np.uint8).reshape(-1, 8)
    return np.unpackbits(octets, axis=1)[:, 64 - width :].ravel()


def huffman_bits(encoded: list[Encoded], bias: np.ndarray | None) -> int:
    """Deep Compression's size of one layer: relative indices and Huffman-coded symbols.

    Each sparse tensor stores the gaps between kept weights in the gap width (2–12 bits, a
    4-bit header says which) that makes it smallest; a gap longer than the width allows takes
    filler entries, as in the paper (which used 8 bits for convolutions and 5 for linears).
    """
    total = 0 if bias is None else bias.size * 32
    for e in encoded:
        total += sum(v.size * b for v, b in e.side)
        symbols = e.symbols[e.keep]
        if e.keep.all():
            total += _huffman_total(symbols, e.bits) if e.huffman else symbols.size * e.bits
            continue
        total += GAP_HEADER_BITS + min(_relative(e.gaps, symbols, e, w) for w in GAP_WIDTHS)
    return total


def relative_entries(
    gaps: np.ndarray, symbols: np.ndarray, width: int, filler: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(gap, value) entries of a relative index ``width`` bits wide: a gap longer than it
    allows takes filler entries (the longest gap, value ``filler``) before its own."""
    limit = 2**width - 1
    fillers = ((gaps - 1) // limit).astype(np.int64)
    count = int(fillers.sum())
    gap_symbols = np.concatenate([np.full(count, limit), gaps - fillers * limit])
    values = np.concatenate([np.full(count, filler, symbols.dtype), symbols])
    return gap_symbols, values


def _relative(gaps: np.ndarray, symbols: np.ndarray, e: Encoded, width: int) -> int:
    gap_symbols, values = relative_entries(gaps, symbols, width)
    coded = _huffman_total(values, e.bits) if e.huffman else values.size * e.bits
    return _huffman_total(gap_symbols, width) + coded


def huffman_lengths(symbols: np.ndarray) -> tuple[Counter[int], dict[int, int]]:
    """Each symbol's count and its Huffman code length (one bit for a lone symbol)."""
    counts = Counter(symbols.tolist())
    if len(counts) <= 1:
        return counts, {s: 1 for s in counts}
    lengths = {s: 0 for s in counts}
    heap = [(c, i, [s]) for i, (s, c) in enumerate(counts.items())]
    heapq.heapify(heap)
    tie = len(heap)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, tie, s1 + s2))
        tie += 1
    return counts, lengths


def _huffman_total(symbols: np.ndarray, symbol_bits: int) -> int:
    """Bits of the Huffman-coded symbols plus the code table (symbol and code length each)."""
    counts, lengths = huffman_lengths(symbols)
    coded = sum(counts[s] * lengths[s] for s in counts)
    return coded + len(counts) * (symbol_bits + 8)


def float_tensors(model: nn.Module, layer_names: list[str]) -> dict[str, torch.Tensor]:
    """Tensors stored as float32 besides the compressible layers: norms, running stats, ...

    Activation ranges are not counted (as a layer's input range is not): two floats a
    quantizer, for the residual adds' operands too.
    """
    prefixes = tuple(f"{n}." for n in layer_names)
    return {
        k: v
        for k, v in model.state_dict().items()
        if not k.startswith(prefixes) and v.is_floating_point() and "output_quant." not in k
    }


Encodings = dict[str, tuple[list[Encoded], np.ndarray | None]]  # what encode_model returns


def pack_model(
    model: nn.Module, policy: Policy, layer_names: list[str], encoded: Encodings | None = None
) -> dict[str, bytes]:
    """Every compressible layer's packed bytes, and ``"<float32>"`` for the other tensors.

    ``encoded``: the model's :func:`encode_model` result, when the caller has it already."""
    encoded = encoded or encode_model(model, policy, layer_names)
    blobs = {name: pack_layer(*enc) for name, enc in encoded.items()}
    floats = float_tensors(model, layer_names)
    blobs["<float32>"] = b"".join(t.float().numpy().tobytes() for t in floats.values())
    return blobs


def nonzero_params(
    model: nn.Module, policy: Policy, names: list[str], encoded: Encodings | None = None
) -> int:
    """Parameters the compressed model stores: kept weights, biases, and the other parameters
    (norms); the ``params`` cost counts pruned-to-zero weights of a sparse layer too."""
    kept = 0
    for tensors, bias in (encoded or encode_model(model, policy, names)).values():
        kept += sum(int(e.keep.sum()) for e in tensors) + (0 if bias is None else bias.size)
    prefixes = tuple(f"{n}." for n in names)
    others = sum(p.numel() for k, p in model.named_parameters() if not k.startswith(prefixes))
    return kept + others


def huffman_size(
    model: nn.Module, policy: Policy, names: list[str], encoded: Encodings | None = None
) -> int:
    """Bytes of the model in Deep Compression's accounting."""
    encoded = encoded or encode_model(model, policy, names)
    bits = sum(huffman_bits(enc, bias) for enc, bias in encoded.values())
    floats = sum(t.numel() for t in float_tensors(model, names).values())
    return -(-bits // 8) + 4 * floats
