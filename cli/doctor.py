"""`styledrop doctor`: what this machine computes with, and which services it would use.

Prints the Python and package versions, JAX's backend and devices, the torch device of the
text tower and of the CLIP judge, the compute dtype "auto" means here, the Hugging Face
cache and whether downloads are on, and the artifact store and broker in effect (URLs
with any password replaced by ***). `--json` prints the same as one JSON object.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Distribution names; the CUDA plugins show which CUDA build of JAX is installed.
PACKAGES = (
    "jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "flax", "optax", "numpy",
    "torch", "transformers", "open_clip_torch", "huggingface_hub", "diffusers", "peft",
    "celery", "redis",
)  # fmt: skip
REDACTED = "***"
SECRET_QUERY_KEYS = ("password", "secret", "token", "key")  # parts of query parameter names


def add_parser(subparsers) -> None:
    """Registers the subcommand and its options."""
    parser = subparsers.add_parser(
        "doctor",
        help="Show versions, JAX / torch devices, compute dtype, store and broker.",
        description=(
            "Reports what this machine computes with: Python and package versions, JAX's"
            " backend and devices (a GPU needs the `cuda` install extra), the torch device of"
            " the text encoder and of the CLIP judge, the compute dtype that 'auto' means"
            " here (bfloat16 on a GPU, float32 elsewhere), the Hugging Face cache and whether"
            " downloads are on, and the store ($STYLEDROP_STORE) and broker"
            " ($STYLEDROP_BROKER_URL) in effect, passwords hidden. Connects to nothing."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def redact_url(url: str) -> str:
    """`url` with the password of its user part, and secret-looking query values, as ***.

    Args:
        url: Any URL or plain path ("redis://:pw@host:6379/0", "s3://bucket/x", "runs/store").
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        if ":" in user:
            netloc = f"{user.split(':', 1)[0]}:{REDACTED}@{host}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(secret in key.lower() for key, _ in query for secret in SECRET_QUERY_KEYS):
        hidden = [
            (key, REDACTED if any(s in key.lower() for s in SECRET_QUERY_KEYS) else value)
            for key, value in query
        ]
        parts = parts._replace(query=urlencode(hidden, safe="*"))
    return urlunsplit(parts._replace(netloc=netloc)) if parts.scheme else url


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _jax() -> dict[str, Any]:
    import jax

    try:
        return {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]}
    except RuntimeError as error:  # a CUDA build that finds no usable driver, say
        return {"backend": None, "devices": [], "error": str(error)}


def _torch() -> dict[str, Any]:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {
        "cuda_available": count > 0,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(count)],
    }


def report() -> dict[str, Any]:
    """Everything `styledrop doctor` prints, as one dict (see the module docstring)."""
    from huggingface_hub import constants

    from feedback.scorer import default_device as judge_device
    from muse.hub import downloads_disabled
    from muse.low_precision import default_compute_dtype
    from muse.text_encoder import default_device as text_device
    from worker.store import DEFAULT_STORE, STORE_ENV

    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "packages": {name: _version(name) for name in PACKAGES},
        "jax": _jax(),
        "torch": _torch(),
        "text_encoder_device": text_device(),
        "judge_device": judge_device(),
        "compute_dtype": default_compute_dtype(),
        "hf_hub": {"cache": str(constants.HF_HUB_CACHE), "offline": downloads_disabled()},
        "store": redact_url(os.environ.get(STORE_ENV) or DEFAULT_STORE),
        "broker": _broker(),
    }


def _broker() -> str:
    """The broker URL in effect, redacted; a machine without Celery has none."""
    try:
        from worker.app import broker_url
    except ImportError as error:  # a GPU box that only fine-tunes from the command line
        return f"none: {error}"
    return redact_url(broker_url())


def format_report(info: dict[str, Any]) -> list[str]:
    """The report as aligned "name: value" lines."""
    packages = ", ".join(f"{name} {v}" for name, v in info["packages"].items() if v)
    missing = [name for name, v in info["packages"].items() if not v]
    jax_info = info["jax"]
    cuda = info["torch"]["cuda_devices"]
    rows = [
        ("python", f"{info['python']} ({info['executable']})"),
        ("packages", packages),
        ("not installed", ", ".join(missing) or "-"),
        ("jax backend", jax_info["backend"] or f"none: {jax_info.get('error')}"),
        ("jax devices", ", ".join(jax_info["devices"]) or "-"),
        ("torch cuda", ", ".join(cuda) if cuda else "not available"),
        ("text encoder", f"torch {info['text_encoder_device']}"),
        ("clip judge", f"torch {info['judge_device']}"),
        ("compute dtype", f"{info['compute_dtype']} (auto: finetune, workers; generate: float32)"),
        ("hf cache", f"{info['hf_hub']['cache']} (downloads "
                     f"{'off' if info['hf_hub']['offline'] else 'on'})"),
        ("store", info["store"]),
        ("broker", info["broker"]),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    return [f"{name:<{width}}  {value}" for name, value in rows]


def run(args) -> None:
    """Runs the subcommand with parsed arguments."""
    info = report()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print("\n".join(format_report(info)))
