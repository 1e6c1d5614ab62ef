#!/usr/bin/env python3
"""torch_ablate.py - PyTorch check of `rmu attack ablate` (src/attack/ablate.h).

Recomputes, independently of the C code, with torch_ref.py's float64 decoder:
  1. the difference vectors (mean residual after each layer of --layers over the real tokens
     of the forget texts, the BOS position excluded: unlearned - base; with --retain-ids also
     forget - retain on the unlearned model), their SVD (torch.linalg.svd), the top-k
     directions signed along the sum of the rows, and the explained shares;
  2. the orthogonalised weights W - D (D^T W) (o_proj, down_proj) and E - (E D) D^T (the
     embedding), using rmu's own directions, so the projection is checked on its own;
  3. that the ablated model's residual stream, after every layer, has no component along
     the directions.
Token ids come from `rmu tokenize` (one line of ids per text, BOS included when the
tokenizer adds it). Prints one line per check and exits 1 if any fails.

    /usr/bin/python3 tests/oracle/torch_ablate.py --unlearned U --base B --out OUT \
        --forget-ids ids.txt [--retain-ids ids.txt] --layers 0,2 --k 1 --max-texts 64 \
        --max-len 512 --bos-id 1
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref  # noqa: E402


def read_ids(path, max_texts, max_len):
    rows = []
    with open(path) as f:
        for line in f:
            ids = [int(x) for x in line.split()]
            if ids:
                rows.append(ids[:max_len])
            if len(rows) == max_texts:
                break
    return rows


def mean_residuals(model, rows, layers, bos_id):
    C = model.cfg.hidden
    sums = {l: torch.zeros(C, dtype=torch.float64) for l in layers}
    n = 0
    with torch.no_grad():
        for ids in rows:
            first = 1 if bos_id is not None and ids[0] == bos_id else 0
            if len(ids) <= first:
                continue
            _, hid = torch_ref.run(model, model.w, torch.tensor([ids]), capture=layers, stop_after=max(layers))
            for l in layers:
                sums[l] += hid[l][0, first:].sum(0)
            n += len(ids) - first
    return {l: sums[l] / n for l in layers}, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unlearned", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--out", required=True, help="rmu attack ablate's output folder")
    ap.add_argument("--forget-ids", required=True)
    ap.add_argument("--retain-ids")
    ap.add_argument("--layers", required=True)
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--max-texts", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--bos-id", type=int)
    a = ap.parse_args()
    torch.set_num_threads(1)
    layers = [int(x) for x in a.layers.split(",")]
    U = torch_ref.Model(a.unlearned)
    B = torch_ref.Model(a.base)
    fr = read_ids(a.forget_ids, a.max_texts, a.max_len)
    mu_u, n_f = mean_residuals(U, fr, layers, a.bos_id)
    mu_b, _ = mean_residuals(B, fr, layers, a.bos_id)
    rows = [mu_u[l] - mu_b[l] for l in layers]
    if a.retain_ids:
        mu_r, _ = mean_residuals(U, read_ids(a.retain_ids, a.max_texts, a.max_len), layers, a.bos_id)
        rows += [mu_u[l] - mu_r[l] for l in layers]
    M = torch.stack(rows)
    _, S, Vh = torch.linalg.svd(M, full_matrices=False)
    D = Vh[: a.k].clone()
    total = M.sum(0)
    for i in range(a.k):
        s = float(total @ D[i])
        if s < 0 or (s == 0 and D[i][D[i].abs().argmax()] < 0):
            D[i] = -D[i]
    explained = (S[: a.k] ** 2 / (S ** 2).sum()).tolist()

    ours = torch_ref.read_safetensors(os.path.join(a.out, "attack", "directions.safetensors"))["directions"]
    ours = torch.from_numpy(np.ascontiguousarray(ours)).to(torch.float64)
    with open(os.path.join(a.out, "attack", "ablate.json")) as f:
        info = json.load(f)
    bad = 0

    def check(name, ok, detail):
        nonlocal bad
        print(("ok - " if ok else "not ok - ") + name + ": " + detail)
        bad += 0 if ok else 1

    cos = [float(ours[i] @ D[i]) for i in range(a.k)]
    check("directions equal the float64 SVD's (cosine, same sign)", min(cos) > 1 - 1e-6, "cos %s" % cos)
    check("explained shares", np.allclose(info["explained"], explained, rtol=1e-5, atol=1e-7),
          "%s vs %s" % (info["explained"], explained))
    check("singular values", np.allclose(info["singular_values"], S.tolist(), rtol=1e-5, atol=1e-6),
          "%s vs %s" % (info["singular_values"], S.tolist()))
    check("token count", info["tokens"]["forget"] == n_f, "%d vs %d" % (info["tokens"]["forget"], n_f))

    # 2. the projection, with rmu's directions
    A = torch_ref.Model(a.out)
    worst = 0.0
    for name in U.w:
        w = U.w[name]
        if name == "model.embed_tokens.weight":
            ref = w - (w @ ours.T) @ ours
        elif name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
            ref = w - ours.T @ (ours @ w)
        else:
            ref = w
        err = float((A.w[name] - ref).abs().max() / max(float(ref.abs().max()), 1e-30))
        worst = max(worst, err)
    check("projected weights equal W - D D^T W (max relative error)", worst < 2e-6, "%.3g" % worst)

    # 3. no residual component along the directions, after every layer
    ids = torch.tensor([fr[0]])
    with torch.no_grad():
        _, hid = torch_ref.run(A, A.w, ids, capture=tuple(range(A.cfg.n_layers)))
    comp = max(float((hid[l][0] @ ours.T).abs().max() / hid[l][0].norm(dim=-1).max()) for l in hid)
    check("ablated residual stream has no component along the directions", comp < 1e-5,
          "max |h.d| / max |h| = %.3g" % comp)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
