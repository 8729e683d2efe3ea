"""``rnnkit env``: versions, threads and backends, for bug reports and benchmark notes."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "env",
        help="versions, threads and available backends",
        description="Print rnnkit, torch, numpy and python versions, CPU threads and backends.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def environment() -> dict:
    """What ``rnnkit env`` reports, as a dict."""
    import os
    import platform

    import torch

    from rnnkit.devices import available_devices, default_device
    from rnnkit.io import versions

    try:
        from rnnkit.backends import available_backends

        backends = available_backends()
    except ImportError:  # pragma: no cover
        backends = {}
    from rnnkit.backends import cpu_kernels

    try:
        from rnnkit.train import TensorBoard

        tensorboard = TensorBoard.available()
    except ImportError:  # pragma: no cover
        tensorboard = False
    return {
        **versions(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cuda": torch.cuda.is_available(),
        "devices": available_devices(),
        "default_device": default_device(),
        "bf16_on_cuda": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        "distributed": [
            name
            for name, ok in (
                (
                    "gloo",
                    torch.distributed.is_available() and torch.distributed.is_gloo_available(),
                ),
                (
                    "nccl",
                    torch.distributed.is_available() and torch.distributed.is_nccl_available(),
                ),
            )
            if ok
        ],
        "backends": backends,
        "cpu_kernels": cpu_kernels.status(),
        "tensorboard": tensorboard,
    }


def run(args) -> int:
    env = environment()
    if args.json:
        print(json.dumps(env))
        return 0
    width = max(len(k) for k in env)
    for key, value in env.items():
        if key == "backends":
            print(f"{key:<{width}}  {', '.join(value) or '-'}")
            for name, text in value.items():
                print(f"{'':<{width}}    {name}: {text}")
        else:
            print(f"{key:<{width}}  {value}")
    return 0
