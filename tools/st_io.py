"""Minimal safetensors reader/writer (no dependency on the `safetensors` package).

Format (https://github.com/huggingface/safetensors): 8-byte little-endian unsigned
header length N, N bytes of UTF-8 JSON (padded with spaces so the data starts on an
8-byte boundary), then the raw little-endian tensor data.  Each header entry is
{"dtype": ..., "shape": [...], "data_offsets": [begin, end]} relative to the start
of the data; the entries tile the data exactly.  "__metadata__" maps str -> str.

Only numpy is required; torch tensors are accepted by `save` and produced by
`load(..., torch=True)` when torch is importable.
"""

import json
import os
import struct

import numpy as np

__all__ = ["save", "load", "load_header", "to_bf16_bytes", "bf16_round"]

_ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I64": 8, "U8": 1}
_MAX_HEADER = 100_000_000


def _as_f32_numpy(t):
    """Any tensor/array -> contiguous float32 numpy array."""
    if hasattr(t, "detach"):  # torch tensor
        t = t.detach().to("cpu").float().contiguous().numpy()
    return np.ascontiguousarray(np.asarray(t, dtype=np.float32))


def to_bf16_bytes(a):
    """float32 array -> little-endian bfloat16 bytes, round-to-nearest-even
    (identical to torch's `.to(torch.bfloat16)` for finite values)."""
    a = _as_f32_numpy(a)
    u = a.view(np.uint32).astype(np.uint64)
    rounding = ((u >> 16) & 1) + 0x7FFF
    out = ((u + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():
        out[nan] = 0x7FC0
    return out.astype("<u2").tobytes()


def bf16_round(a):
    """Round a float32 array to the nearest bfloat16 value, returned as float32."""
    a = _as_f32_numpy(a)
    b = np.frombuffer(to_bf16_bytes(a), dtype="<u2").astype(np.uint32) << 16
    return b.view(np.float32).reshape(a.shape)


def _encode(t, dtype):
    if dtype == "BF16":
        return to_bf16_bytes(t)
    a = _as_f32_numpy(t)
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    raise ValueError("unsupported dtype for writing: %s" % dtype)


def save(path, tensors, dtype="BF16", metadata=None):
    """Write `tensors` (an ordered mapping name -> tensor/array) to `path`.

    Tensors are stored in the mapping's order.  `dtype` is "BF16", "F16" or "F32"
    (or a dict name -> dtype).  The file is written atomically (temp + rename)."""
    meta = {"format": "pt"}
    if metadata:
        meta.update({str(k): str(v) for k, v in metadata.items()})
    header = {"__metadata__": meta}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        dt = dtype[name] if isinstance(dtype, dict) else dtype
        shape = list(t.shape)
        blob = _encode(t, dt)
        n = 1
        for s in shape:
            n *= int(s)
        assert len(blob) == n * _ITEMSIZE[dt], name
        header[name] = {"dtype": dt, "shape": [int(s) for s in shape],
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_header(path):
    """Return (header dict, data start offset) after validating the header."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError("%s: file too short for a safetensors header" % path)
        (n,) = struct.unpack("<Q", raw)
        if n > _MAX_HEADER or 8 + n > size:
            raise ValueError("%s: bad header length %d" % (path, n))
        header = json.loads(f.read(n).decode("utf-8"))
    start = 8 + n
    spans = []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dt = e["dtype"]
        if dt not in _ITEMSIZE:
            raise ValueError("%s: %s: unsupported dtype %s" % (path, name, dt))
        b, en = e["data_offsets"]
        cnt = 1
        for s in e["shape"]:
            cnt *= s
        if en - b != cnt * _ITEMSIZE[dt]:
            raise ValueError("%s: %s: size does not match shape" % (path, name))
        spans.append((b, en, name))
    spans.sort()
    pos = 0
    for b, en, name in spans:
        if b != pos:
            raise ValueError("%s: %s: data offsets do not tile the data" % (path, name))
        pos = en
    if start + pos != size:
        raise ValueError("%s: data size %d does not match file size" % (path, pos))
    return header, start


def load(path, torch=False):
    """Read every tensor as float32 (numpy arrays, or torch tensors if torch=True).
    Returns (dict name -> tensor in file order, metadata dict)."""
    header, start = load_header(path)
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        buf = data[b:en]
        dt = e["dtype"]
        if dt == "BF16":
            a = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "F16":
            a = np.frombuffer(buf, dtype="<f2").astype(np.float32)
        elif dt == "F32":
            a = np.frombuffer(buf, dtype="<f4").astype(np.float32)
        elif dt == "I32":
            a = np.frombuffer(buf, dtype="<i4").copy()
        elif dt == "I64":
            a = np.frombuffer(buf, dtype="<i8").copy()
        else:
            a = np.frombuffer(buf, dtype=np.uint8).copy()
        a = a.reshape(e["shape"])
        if torch:
            import torch as _torch
            a = _torch.from_numpy(np.array(a))
        out[name] = a
    return out, header.get("__metadata__", {})
