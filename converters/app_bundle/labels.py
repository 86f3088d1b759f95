"""Class names for the output tensor: from the checkpoint, or from a file the user gives."""
from __future__ import annotations

from pathlib import Path

from mobile_compress.errors import UserError


def resolve_labels(checkpoint_labels: list[str], checkpoint_file: Path, labels_file: str | None,
                   num_outputs: int) -> list[str]:
    """One name per output, in output order; a missing or mismatched list is the user's to fix."""
    if labels_file is not None:
        path = Path(labels_file).expanduser()
        try:
            names = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"cannot read labels file {path}: {err}",
                            hint="pass --labels FILE with one class name per line, in output order") from None
        while names and not names[-1].strip():
            names.pop()
        where, fix = str(path), f"put exactly {num_outputs} non-empty lines in {path}, one class name per output"
    else:
        names = list(checkpoint_labels)
        where = f"{checkpoint_file} field 'labels'"
        fix = (f"pass --labels FILE with {num_outputs} lines (one class name per output, in output order), "
               f"or add the names to 'labels' in {checkpoint_file}")
        if not names:
            raise UserError(f"{checkpoint_file} has no class names (field 'labels' is empty)", hint=fix)
    if len(names) != num_outputs:
        raise UserError(f"{where} has {len(names)} class names but the model has {num_outputs} outputs", hint=fix)
    blank = [i for i, n in enumerate(names) if not n.strip()]
    if blank:
        raise UserError(f"{where}: class name {blank[0]} (counting from 0) is empty", hint=fix)
    return [n.strip() for n in names]


def labels_text(labels: list[str]) -> str:
    """labels.txt as MediaPipe and the Task Library read it: one name per line, line i = class i."""
    return "".join(f"{name}\n" for name in labels)
