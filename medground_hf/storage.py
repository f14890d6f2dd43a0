"""Local paths and fsspec URLs (``s3://``, ``gs://``, ...): the one module that knows fsspec.

A ``--data-dir`` or ``--out`` is either a local path, read and written with plain file calls as
always, or a URL, reached through fsspec (the ``cloud`` extra: ``s3fs`` and
``universal_pathlib``, whose ``UPath`` gives builders the ``pathlib`` calls they already make:
``rglob``, ``iterdir``, ``is_file``, ``name``...). ``file://`` URLs are local paths.

Failures of a store (a missing bucket, no credentials, an unreachable endpoint) become
:class:`StorageError` (or ``OSError`` when reading a file), one line naming the URL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import MissingExtra

CLOUD = ("s3fs", "universal_pathlib")  # the cloud extra
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


class StorageError(ValueError):
    """A store cannot be reached or refuses an operation; the message names the URL."""


def scheme(location: str | os.PathLike) -> str | None:
    match = _SCHEME.match(str(location))
    return match[1].lower() if match else None


def is_url(location: str | os.PathLike) -> bool:
    """A location fsspec reaches (not a local path, nor a ``file://`` URL)."""
    return scheme(location) not in (None, "file")


def location(text: str | os.PathLike) -> str:
    """A URL without its trailing slash, or a local path as given (``file://`` removed)."""
    text = str(text)
    if is_url(text):
        return text.rstrip("/")
    return str(Path(text[len("file://") :] if scheme(text) == "file" else text))


def normalise(text: str | os.PathLike) -> str:
    """A location as a command key records it: a URL, or an absolute local path."""
    where = location(text)
    return where if is_url(where) else str(Path(where).expanduser().resolve())


def path(where: str | os.PathLike):
    """A ``pathlib.Path`` for a local location, a ``UPath`` (same calls, over fsspec) for a
    URL. Items keep their files as strings; builders turn them back into paths with this."""
    if not is_url(where):
        return Path(location(where)).expanduser()
    if not isinstance(where, str):
        return where  # a UPath already
    filesystem(where)  # the store's fsspec package is there (else: which extra to install)
    try:
        from upath import UPath
    except ImportError as exc:
        raise MissingExtra(f"a URL ({where})", "cloud", CLOUD) from exc
    return UPath(where.rstrip("/"))


def filesystem(url: str):
    """The fsspec filesystem of ``url`` and the path inside it."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        if scheme(url) in ("s3", "s3a"):
            raise MissingExtra(f"a URL ({url})", "cloud", CLOUD) from exc
        raise StorageError(f"{url}: {describe(exc)} (fsspec's package for the protocol)") from exc
    except ValueError as exc:
        raise StorageError(f"{url}: {describe(exc)}") from exc


def describe(error: BaseException) -> str:
    """One line about a store's failure (botocore and aiohttp messages run over lines)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


@contextmanager
def errors(url: str | os.PathLike, doing: str = "") -> Iterator[None]:
    """Translate a store's failure into :class:`StorageError` naming ``url``: a missing bucket
    or key, refused credentials, an unreachable endpoint (fsspec backends raise their own
    exception types, not only ``OSError``). A local path's errors pass as they are."""
    if not is_url(url):
        yield
        return
    try:
        yield
    except (StorageError, MissingExtra):
        raise
    except FileNotFoundError as exc:
        raise StorageError(f"{url}: {doing or 'not found'}: {describe(exc)}") from exc
    except PermissionError as exc:
        raise StorageError(f"{url}: access denied: {describe(exc)}") from exc
    except Exception as exc:
        ours = type(exc).__module__.split(".")[0] in ("medground_hf", "builtins")
        if ours and not isinstance(exc, OSError):
            raise  # our own errors and programming errors are not the store's
        raise StorageError(f"{url}: {doing + ': ' if doing else ''}{describe(exc)}") from exc


def read_bytes(where: str | os.PathLike) -> bytes:
    """A whole file: plain ``read_bytes`` locally; one GET for a URL. A store's failure is an
    ``OSError`` (readers already report those, naming the file)."""
    if isinstance(where, Path):
        return where.read_bytes()
    if not is_url(where):
        return Path(where).read_bytes()
    fs, inner = filesystem(str(where))
    try:
        return fs.cat_file(inner)
    except OSError:
        raise
    except Exception as exc:
        raise OSError(describe(exc)) from exc


def stamp(where: str) -> str:
    """What says a file changed: size and modification time (local: nanoseconds), or for a URL
    the size and the store's version tag (ETag, generation, md5 or mtime, whichever it gives);
    ``missing`` when it is gone. Resume compares stamps to take finished items as they are."""
    if not is_url(where):
        try:
            st = os.stat(where)
        except OSError:
            return "missing"
        return f"{st.st_size}:{st.st_mtime_ns}"
    fs, inner = filesystem(where)
    try:
        info = fs.info(inner)
    except FileNotFoundError:
        return "missing"
    except Exception as exc:
        raise StorageError(f"{where}: {describe(exc)}") from exc
    return f"{info.get('size')}:{version_tag(info)}"


def version_tag(info: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "generation", "md5Hash", "LastModified", "mtime", "updated"):
        if info.get(key) is not None:
            return str(info[key]).strip('"')
    return ""
