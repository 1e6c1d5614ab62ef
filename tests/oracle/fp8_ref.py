#!/usr/bin/env python3
"""fp8_ref.py - independent numpy reference for rmu's FP8 (E4M3FN) weight quantization.

Written from the OCP FP8 / torch.float8_e4m3fn definition (1 sign, 4 exponent bits with
bias 7, 3 mantissa bits, subnormals below 2^-6, no infinities, S.1111.111 = NaN, largest
finite 448) and compressed-tensors' symmetric FP8 weight quantization (scale = amax / 448
per output channel or per tensor, w / scale rounded to nearest even after clamping to
+-448). Needs numpy only; safetensors files are parsed by hand (dtypes F32, F16, BF16,
F8_E4M3).

Subcommands:
  check-quant SRC QDIR      QDIR must be SRC quantized: every decoder linear weight F8_E4M3
                            with codes and F32 scales equal to this script's, every other
                            tensor byte-identical, and the quantization_config vLLM reads as
                            weight-only FP8. Exit 1 with the first mismatch.
  dequantize QDIR OUT       OUT = QDIR with every F8_E4M3 weight replaced by code * scale
                            (float64 product, stored F32: exact rounding), scales and
                            input_scales dropped, quantization_config removed: an F32 model
                            for tests/oracle/torch_ref.py and for rmu itself.
  legacy QDIR OUT           a per-tensor compressed-tensors folder rewritten in the older
                            quant_method "fp8" layout (scalar weight_scale, static
                            input_scale tensors, activation_scheme "static").
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2), "F8_E4M3": ("u1", 1)}
LINEAR = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def e4m3_table():
    """float64 value of each of the 256 codes, from the bit fields."""
    t = np.zeros(256)
    for c in range(256):
        s, e, m = c >> 7, (c >> 3) & 15, c & 7
        if e == 15 and m == 7:
            v = np.nan
        elif e == 0:
            v = m / 8.0 * 2.0 ** -6
        else:
            v = (1 + m / 8.0) * 2.0 ** (e - 7)
        t[c] = -v if s else v
    return t


TABLE = e4m3_table()
POS = TABLE[:127]  # codes 0..126: the finite non-negative values, increasing


def encode(y):
    """E4M3 codes of float32 array y: clamp to +-448, nearest value, ties to the even code."""
    y = np.asarray(y, dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("non-finite input")
    a = np.minimum(np.abs(y), 448.0)
    hi = np.clip(np.searchsorted(POS, a, side="left"), 0, 126)
    lo = np.clip(hi - 1, 0, 126)
    dlo, dhi = a - POS[lo], POS[hi] - a
    pick = np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(lo % 2 == 0, lo, hi)))
    return (pick | np.where(np.signbit(y), 0x80, 0)).astype(np.uint8)


def read_st(path):
    """{name: (dtype, shape, raw bytes)} of one safetensors file."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = (info["dtype"], [int(s) for s in info["shape"]], data[8 + n + b:8 + n + e])
    return out


def read_dir(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        wm = json.load(open(idx))["weight_map"]
        out = {}
        for shard in sorted(set(wm.values())):
            out.update(read_st(os.path.join(d, shard)))
        return out, wm
    return read_st(os.path.join(d, "model.safetensors")), None


def to_f32(dt, shape, raw):
    if dt == "BF16":
        a = (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4")
    elif dt == "F16":
        a = np.frombuffer(raw, "<f2").astype("<f4")
    elif dt == "F32":
        a = np.frombuffer(raw, "<f4")
    else:
        raise ValueError("no float dtype: " + dt)
    return a.reshape(shape)


def write_st(path, tensors):
    """tensors: list of (name, dtype, shape, raw) in file order."""
    header, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def copy_side_files(src, dst):
    os.makedirs(dst, exist_ok=True)
    for f in os.listdir(src):
        if f.endswith(".safetensors") or f.endswith(".index.json") or f == "config.json" or f.startswith("."):
            continue
        p = os.path.join(src, f)
        if os.path.isfile(p):
            shutil.copy(p, os.path.join(dst, f))


def linear_names(cfg):
    return ["model.layers.%d.%s.weight" % (l, n) for l in range(cfg["num_hidden_layers"]) for n in LINEAR]


def check_quant(src, qdir):
    cfg = json.load(open(os.path.join(src, "config.json")))
    qcfg = json.load(open(os.path.join(qdir, "config.json")))
    qc = qcfg.pop("quantization_config", None)
    if qcfg != cfg:
        return "config.json differs beyond quantization_config"
    g = (qc or {}).get("config_groups", {}).get("group_0", {})
    w = g.get("weights") or {}
    want = {"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"]}
    for k, v in want.items():
        if qc.get(k) != v:
            return "quantization_config.%s = %r, expected %r" % (k, qc.get(k), v)
    if qc.get("quantization_status") != "compressed" or g.get("targets") != ["Linear"]:
        return "quantization_status / targets"
    if g.get("input_activations") is not None:
        return "input_activations must be null (weight-only)"
    if (w.get("num_bits"), w.get("type"), w.get("symmetric"), w.get("dynamic")) != (8, "float", True, False):
        return "weights args %r" % w
    scheme = w.get("strategy")
    if scheme not in ("channel", "tensor"):
        return "strategy %r" % scheme
    st, _ = read_dir(src)
    qt, _ = read_dir(qdir)
    lin = set(linear_names(cfg))
    expected = set(st) | {n + "_scale" for n in lin}
    if set(qt) != expected:
        return "tensor names differ: extra %s missing %s" % (sorted(set(qt) - expected)[:3], sorted(expected - set(qt))[:3])
    nq = 0
    for name, (dt, shape, raw) in st.items():
        q = qt[name]
        if name not in lin:
            if q != (dt, shape, raw):
                return "%s changed" % name
            continue
        x = to_f32(dt, shape, raw)
        amax = np.abs(x).max(axis=1, keepdims=True) if scheme == "channel" else np.abs(x).max().reshape(1)
        scale = (amax / np.float32(448.0)).astype(np.float32)
        scale[scale == 0] = np.finfo(np.float32).eps
        sdt, sshape, sraw = qt[name + "_scale"]
        want_shape = [shape[0], 1] if scheme == "channel" else [1]
        if sdt != "F32" or sshape != want_shape:
            return "%s_scale is %s %s, expected F32 %s" % (name, sdt, sshape, want_shape)
        got_scale = np.frombuffer(sraw, "<f4").reshape(want_shape)
        if not np.array_equal(got_scale, scale):
            return "%s_scale differs (max rel %.3g)" % (name, np.max(np.abs(got_scale / scale - 1)))
        y = (x / (scale if scheme == "channel" else scale[0])).astype(np.float32)  # float32 division, as torch
        codes = encode(y)
        if q[0] != "F8_E4M3" or q[1] != shape:
            return "%s is %s %s, expected F8_E4M3 %s" % (name, q[0], q[1], shape)
        got = np.frombuffer(q[2], "u1").reshape(shape)
        bad = np.argwhere(got != codes)
        if len(bad):
            r, c = bad[0]
            return "%s[%d, %d]: code 0x%02x, expected 0x%02x (w = %r, w/scale = %r)" % (
                name, r, c, got[r, c], codes[r, c], float(x[r, c]), float(y[r, c]))
        if np.any((got & 0x7F) == 0x7F):
            return "%s holds a NaN code" % name
        nq += 1
    print("ok: %d weights, codes and %s scales as expected" % (nq, scheme))
    return None


def dequantize(qdir, out):
    cfg = json.load(open(os.path.join(qdir, "config.json")))
    cfg.pop("quantization_config", None)
    cfg["torch_dtype"] = "float32"
    qt, _ = read_dir(qdir)
    tensors = []
    for name in sorted(qt):
        dt, shape, raw = qt[name]
        if name.endswith("weight_scale") or name.endswith("input_scale"):
            continue
        if dt == "F8_E4M3":
            sdt, sshape, sraw = qt[name + "_scale"]
            s = to_f32(sdt, sshape, sraw).astype(np.float64).reshape(-1)
            v = TABLE[np.frombuffer(raw, "u1")].reshape(shape)
            x = v * (s.reshape(-1, 1) if s.size == shape[0] and s.size > 1 else s[0])
        else:
            x = to_f32(dt, shape, raw).astype(np.float64)
        tensors.append((name, "F32", shape, x.astype("<f4").tobytes()))
    copy_side_files(qdir, out)
    write_st(os.path.join(out, "model.safetensors"), tensors)
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    print("ok: wrote %s" % out)


def legacy(qdir, out):
    cfg = json.load(open(os.path.join(qdir, "config.json")))
    strategy = cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["strategy"]
    if strategy != "tensor":
        raise SystemExit("legacy: %s has %s scales; the fp8 layout has per-tensor ones" % (qdir, strategy))
    cfg["quantization_config"] = {"quant_method": "fp8", "activation_scheme": "static"}
    qt, _ = read_dir(qdir)
    tensors = []
    for name in sorted(qt):
        dt, shape, raw = qt[name]
        if name.endswith("weight_scale"):
            tensors.append((name, dt, [], raw))  # AutoFP8 writes scalars
            stem = name[: -len("weight_scale")]
            tensors.append((stem + "input_scale", "F32", [], np.float32(0.02).tobytes()))
        else:
            tensors.append((name, dt, shape, raw))
    copy_side_files(qdir, out)
    write_st(os.path.join(out, "model.safetensors"), tensors)
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    print("ok: wrote %s" % out)


def main(argv):
    if len(argv) != 4 or argv[1] not in ("check-quant", "dequantize", "legacy"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[1] == "check-quant":
        err = check_quant(argv[2], argv[3])
        if err:
            print("mismatch: " + err)
            return 1
        return 0
    (dequantize if argv[1] == "dequantize" else legacy)(argv[2], argv[3])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
