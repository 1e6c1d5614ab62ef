"""compare_runs.py --tol T [--models A B] [--logs LOG1 LOG2 --keys k1,k2] [--ckpt A B]

Compares a one-process run with a data-parallel one (tests/integration/mpi.sh):
  --models A B  every tensor of two HF folders (*.safetensors, F32/BF16/F16): the relative
                error ||a - b|| / ||a|| of each tensor (Frobenius). The largest single element
                |a - b| / max|a| is printed too, for information only: AdamW divides each
                gradient element by its own magnitude, so an element whose gradient is near zero
                turns a last-bit difference in a sum into an update difference of up to lr;
  --logs L1 L2  the named numeric fields of two JSONL logs, line by line: |a - b| / max(|a|, tiny).
Prints the worst relative difference of each kind; exit 1 when one exceeds T, when a tensor or
a line is missing, or when nothing was compared. Needs numpy."""
import argparse, glob, json, os, struct, sys
import numpy as np

def tensors(folder):
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            head = json.loads(f.read(n))
            data = f.read()
        for name, t in head.items():
            if name == "__metadata__":
                continue
            a, b = t["data_offsets"]
            raw = np.frombuffer(data[a:b], dtype={"F32": np.float32, "BF16": np.uint16, "F16": np.float16}[t["dtype"]])
            if t["dtype"] == "BF16":
                raw = (raw.astype(np.uint32) << 16).view(np.float32)
            out[name] = raw.astype(np.float64).reshape(t["shape"])
    return out

ap = argparse.ArgumentParser()
ap.add_argument("--tol", type=float, required=True)
ap.add_argument("--models", nargs=2)
ap.add_argument("--logs", nargs=2)
ap.add_argument("--keys", default="loss")
a = ap.parse_args()
bad, compared = [], 0
if a.models:
    ta, tb = tensors(a.models[0]), tensors(a.models[1])
    if set(ta) != set(tb) or not ta:
        sys.exit("tensor names differ or no tensors: %s" % sorted(set(ta) ^ set(tb)))
    worst, at, elem = 0.0, "", 0.0
    for k in ta:
        if ta[k].shape != tb[k].shape:
            sys.exit("%s: shapes %s and %s" % (k, ta[k].shape, tb[k].shape))
        r = float(np.linalg.norm(ta[k] - tb[k]) / (np.linalg.norm(ta[k]) or 1.0))
        elem = max(elem, float(np.abs(ta[k] - tb[k]).max() / (np.abs(ta[k]).max() or 1.0)))
        if not r <= worst:
            worst, at = r, k
        compared += 1
    print("tensors: %d compared, max relative difference %.3g (%s); largest element difference %.3g of the "
          "tensor's scale" % (compared, worst, at, elem))
    if not worst <= a.tol:
        bad.append("tensors")
if a.logs:
    la = [json.loads(l) for l in open(a.logs[0])]
    lb = [json.loads(l) for l in open(a.logs[1])]
    if len(la) != len(lb) or not la:
        sys.exit("logs have %d and %d lines" % (len(la), len(lb)))
    worst, at = 0.0, ""
    for i, (x, y) in enumerate(zip(la, lb)):
        for k in a.keys.split(","):
            u, v = float(x[k]), float(y[k])
            r = abs(u - v) / max(abs(u), 1e-30)
            if u == v:
                r = 0.0
            if not r <= worst:
                worst, at = r, "line %d %s" % (i + 1, k)
            compared += 1
    print("losses: %d compared, max relative difference %.3g (%s)" % (len(la) * len(a.keys.split(",")), worst, at))
    if not worst <= a.tol:
        bad.append("losses")
if not compared:
    sys.exit("nothing compared")
sys.exit("over %g: %s" % (a.tol, ", ".join(bad)) if bad else 0)
