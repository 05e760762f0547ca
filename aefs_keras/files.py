"""Files written whole, and files found damaged.

Every file the package writes for a later command to read (the `.keras`
model, the preprocessing artifact, benchmark results) goes through
`written_whole`: a temporary file beside the target, flushed to disk, then
moved over the target in one step. A full disk, an exception or a SIGKILL
leaves the previous file as it was (or no file), never half of one; the
next write into that folder removes what an interrupted one left and says so.
`load_model` and `check_keras_file` turn a cut-off or altered `.keras` file
into one line that names it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys
import zipfile

_PARTIAL = ".partial-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


def remove_leftovers(path: str) -> list[str]:
    """Remove the temporary files that interrupted writes of `path` left
    (their writer is gone); return their names."""
    folder, base = os.path.split(os.path.abspath(path))
    removed = []
    for tmp in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(base)}{_PARTIAL}*")):
        pid = os.path.basename(tmp)[len(base) + 1 + len(_PARTIAL):].split(".")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                os.remove(tmp)
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def written_whole(path: str, suffix: str = ""):
    """Yield a temporary path to write; on success it replaces `path`.

    Args:
        path: the file to write.
        suffix: an extension the writer insists on (".keras").
    """
    folder, base = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    for tmp in remove_leftovers(path):
        print(f"Removed {tmp}: what an interrupted write of {path} left (the file itself was not touched)",
              file=sys.stderr)
    tmp = os.path.join(folder, f".{base}{_PARTIAL}{os.getpid()}{suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # on disk before it takes the name
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def printable(text: str) -> str:
    """`text` with control characters escaped: a damaged file's member
    names may hold any byte, and a message must stay one line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def check_keras_file(path: str) -> None:
    """Raise FileNotFoundError or a one-line ValueError naming `path` if
    it is not a complete `.keras` archive."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path}")
    why = None
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()  # reads every member and checks its CRC
            names = set(z.namelist())
        if bad is not None:
            why = f"member {bad} fails its checksum"
        elif "config.json" not in names:
            why = "it holds no config.json"
    except zipfile.BadZipFile as e:
        why = str(e).rstrip(".")
    except (OSError, EOFError, ValueError, NotImplementedError) as e:
        why = f"{type(e).__name__}: {e}"
    if why:
        raise ValueError(f"{path} is damaged: not a complete .keras file ({printable(why)}). "
                         "Save or train it again, or use an earlier copy.")


def load_model(path: str, **kwargs):
    """`keras.saving.load_model` with the file checked first: a cut-off or
    altered file gives one line that names it, not Keras' "File not found".

    Args:
        path: a `.keras` file saved from an aefs-keras model.
        **kwargs: passed to `keras.saving.load_model` (e.g. `compile`).
    """
    import keras

    import aefs_keras

    aefs_keras._register_layers()  # Keras finds only registered classes
    check_keras_file(path)
    try:
        return keras.saving.load_model(path, **kwargs)
    except (OSError, KeyError, ValueError, TypeError) as e:
        first = printable((str(e).strip().split("\n") or [type(e).__name__])[0])
        if len(first) > 300:  # Keras quotes the whole config
            first = first[:300] + " ..."
        raise ValueError(f"{path} is damaged or not an aefs-keras model: {first}") from e
