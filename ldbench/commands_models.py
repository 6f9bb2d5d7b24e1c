"""`ldbench pretrain-embedded`: remake the embedded base model's shipped weights and compare them."""

from __future__ import annotations

from pathlib import Path

from ldbench.errors import UserError


def pretrain_embedded(args) -> int:
    """Pretrain the default embedded model into args.out; exit 0 if it equals the shipped file, 1 if not."""
    from ldbench.models import embedded_weights

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out {out}: the weights file must end in .safetensors, e.g. --out embedded-base.safetensors")
    if out.resolve() == embedded_weights.WEIGHTS_FILE.resolve():
        raise UserError(f"--out {out} is the shipped file itself; write elsewhere and compare")
    result = embedded_weights.pretrain_to_file(out, quiet=args.quiet)
    print(f"wrote {out} in {result['seconds']:.0f} s of pretraining at {result['threads']} CPU threads; "
          f"SHA-256 {result['sha256']}")
    if result["identical"]:
        print("identical to the shipped weights (ldbench/models/weights/embedded-base.safetensors)")
        return 0
    print(f"DIFFERS from the shipped weights (SHA-256 {result['shipped_sha256'] or 'none shipped'}); the same "
          "torch version and thread count are needed for a bit-identical file")
    diff = result.get("difference")
    if diff is not None:
        print(f"{diff['differ']} of {diff['tensors']} tensors differ: largest element difference "
              f"{diff['max_abs']:.3g}, largest relative difference {diff['max_rel']:.3g} ({diff['worst']})"
              + (f"; in one file only or of another shape: {', '.join(diff['only_in'])}" if diff["only_in"] else ""))
    return 1
