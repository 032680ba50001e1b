"""Which CUDA backward passes of eemu's model differ run to run? (docs/results.md, "CUDA
determinism", 2026-12-04: two RETRAIN trainings on CUDA differed, two Mean ones did not.)

Runs each operation of the two-tower model's forward and backward, at the shapes of one
ml-100k training batch, REPEATS times on the same inputs, and prints per operation the number of
distinct SHA-256s of its gradients (1 = reproducible in this process) and the first hash, so
that two processes can be compared too. Shapes: "retrain" = 32 users with about 106 positives
each (3,400 pairs, 10,200 item rows: libtorch's embedding backward takes its sorting path above
3,072 indices), "mean" = the same batch on one of 8 shards (420 pairs, 1,260 item rows).

Uses the GPU machine's own PyTorch (no eemu binary). Environment: PROBE_DEVICE (cuda), PROBE_
DETERMINISTIC=1 calls torch.use_deterministic_algorithms(True); CUBLAS_WORKSPACE_CONFIG is read
by cuBLAS itself. scripts/gpu/cuda-training-hashes.sh runs it in two processes and with both
settings.
"""
import hashlib
import os

import torch
import torch.nn.functional as F

DEVICE = os.environ.get("PROBE_DEVICE", "cuda")
REPEATS = int(os.environ.get("PROBE_REPEATS", "5"))
if os.environ.get("PROBE_DETERMINISTIC") == "1":
    torch.use_deterministic_algorithms(True)


def digest(tensors):
    h = hashlib.sha256()
    for t in tensors:
        h.update(bytes(t.detach().float().cpu().contiguous().view(torch.uint8).flatten().tolist()))
    return h.hexdigest()[:16]


def inputs(pairs, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = 3 * pairs
    x = {
        "item_ids": torch.randint(0, 1682, (rows,), generator=g),
        "owner": torch.sort(torch.randint(0, 32, (pairs,), generator=g)).values,
        "genres": (torch.rand(rows, 19, generator=g) < 0.1).float(),
        "item_table": torch.randn(1682, 96, generator=g) * 0.1,
        "genre_w": torch.randn(19, 96, generator=g) * 0.1,
        "users": torch.randn(32, 128, generator=g),
        "w1": torch.randn(256, 192, generator=g) * 0.05,
        "b1": torch.zeros(256),
        "ln_w": torch.ones(256),
        "ln_b": torch.zeros(256),
        "w2": torch.randn(128, 256, generator=g) * 0.05,
        "b2": torch.zeros(128),
        "up": torch.randn(rows, 128, generator=g),
    }
    return {k: v.to(DEVICE) for k, v in x.items()}


def leaf(x, *names):
    return [x[n].clone().requires_grad_(True) for n in names]


def op_embedding(x):
    (t,) = leaf(x, "item_table")
    F.embedding(x["item_ids"], t).mul(x["up"][:, :96]).sum().backward()
    return [t.grad]


def op_index_select(x):
    (t,) = leaf(x, "item_table")
    t.index_select(0, x["item_ids"]).mul(x["up"][:, :96]).sum().backward()
    return [t.grad]


def op_user_gather(x):
    (u,) = leaf(x, "users")
    n = x["owner"].numel()
    F.embedding(x["owner"], u).mul(x["up"][:n]).sum().backward()
    return [u.grad]


def op_multi_hot(x):
    (w,) = leaf(x, "genre_w")
    x["genres"].matmul(w).mul(x["up"][:, :96]).sum().backward()
    return [w.grad]


def op_linear(x):
    w, b = leaf(x, "w1", "b1")
    h = torch.cat([x["up"][:, :96], x["up"][:, 32:128]], 1)
    F.linear(h, w, b).mul(x["up"].repeat(1, 2)).sum().backward()
    return [w.grad, b.grad]


def op_layer_norm(x):
    lw, lb = leaf(x, "ln_w", "ln_b")
    h = x["up"].repeat(1, 2)
    F.layer_norm(h, [256], lw, lb, 1e-5).mul(h.flip(0)).sum().backward()
    return [lw.grad, lb.grad]


def op_tower(x):
    """The item tower's forward and backward with the in-batch score and hinge loss."""
    t, gw, w1, b1, lw, lb, w2, b2, u = leaf(x, "item_table", "genre_w", "w1", "b1", "ln_w", "ln_b", "w2", "b2", "users")
    h = torch.cat([F.embedding(x["item_ids"], t), x["genres"].matmul(gw)], 1)
    h = F.gelu(F.layer_norm(F.linear(h, w1, b1), [256], lw, lb, 1e-5))
    v = F.linear(h, w2, b2)
    n = x["owner"].numel()
    uu = F.embedding(x["owner"], u)
    s = [(uu * v[k * n:(k + 1) * n]).sum(1) for k in range(3)]
    pos = torch.cat([s[0], s[0]])
    loss = torch.clamp(1.0 - pos + torch.cat([s[1], s[2]]), min=0).mean()
    loss.backward()
    return [t.grad, gw.grad, w1.grad, b1.grad, lw.grad, lb.grad, w2.grad, b2.grad, u.grad]


OPS = [op_embedding, op_index_select, op_user_gather, op_multi_hot, op_linear, op_layer_norm, op_tower]

print(f"device {DEVICE}, torch {torch.__version__}, deterministic algorithms "
      f"{torch.are_deterministic_algorithms_enabled()}, CUBLAS_WORKSPACE_CONFIG "
      f"{os.environ.get('CUBLAS_WORKSPACE_CONFIG', 'unset')}")
for shape, pairs in [("retrain", 3400), ("mean", 420)]:
    x = inputs(pairs)
    for op in OPS:
        try:
            hashes = [digest(op(x)) for _ in range(REPEATS)]
            print(f"{shape:8} {op.__name__[3:]:13} distinct {len(set(hashes))}/{REPEATS} first {hashes[0]}")
        except RuntimeError as e:
            print(f"{shape:8} {op.__name__[3:]:13} error: {str(e).splitlines()[0][:100]}")
