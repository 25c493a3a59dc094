"""Local folders (plain paths and ``file://``): atomic renames, hard-link create-if-absent, a safe walk."""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from typing import BinaryIO

from fsspec.implementations.local import LocalFileSystem

from pipelines.errors import AccessDeniedError, StorageError
from pipelines.io.stores.base import Store
from pipelines.io.stores.registry import register_store
from pipelines.io.stores.retry import RetryPolicy

# Local failures a user fixes outside the job (nothing is retried): errno -> what to tell them.
_LOCAL_WRITE_PROBLEMS = {
    errno.ENOSPC: "no space left on the device; free some space and rerun the same command",
    errno.EDQUOT: "disk quota exceeded; free some space and rerun the same command",
    errno.EROFS: "the filesystem is read-only; choose a writable --output",
    errno.ENOTDIR: "a file stands where a folder is needed; move it away or choose another --output",
    errno.EISDIR: "a folder stands where a file is needed; move it away or choose another --output",
    errno.ENAMETOOLONG: "the name is longer than the filesystem allows",
}


@register_store
class LocalStore(Store):
    """Paths resolve to absolute paths; writes go through a temporary file beside the target."""

    schemes = ("file", "local")
    credentials_hint = "check the file's permissions"

    def resolve(self, uri: str) -> tuple[LocalFileSystem, str]:
        path = uri.split("://", 1)[1] if "://" in uri else uri
        return LocalFileSystem(), os.path.abspath(os.path.expanduser(path))

    def endpoint(self, uri: str) -> str:
        return "the local filesystem"

    def table_location(self, uri: str) -> tuple[str, dict[str, str]]:
        return self.resolve(uri)[1], {}

    def bucket(self, uri: str) -> None:
        return None

    def named(self, uri: str, path: str) -> str:
        # Local objects are named by absolute path: tasks on other nodes may run in another folder.
        return path

    def translate(self, error: BaseException, uri: str) -> BaseException:
        translated = super().translate(error, uri)
        problem = _LOCAL_WRITE_PROBLEMS.get(getattr(error, "errno", None))
        if translated is error and problem is not None:
            return StorageError(f"cannot write {uri}: {problem}")
        return translated

    def follows_link(self, link: str, root: str) -> bool:
        """A symlinked file is listed only if it resolves to a regular file inside the source.

        So a link can neither read a file from elsewhere (``/etc/passwd``) nor hang a fetch (a FIFO).
        """
        target, real_root = os.path.realpath(link), os.path.realpath(root)
        return os.path.isfile(target) and os.path.commonpath([target, real_root]) == real_root

    @contextlib.contextmanager
    def open_atomic(self, uri: str) -> Iterator[BinaryIO]:
        """A temporary file in the target's folder, renamed over the target on success (atomic within a filesystem)."""
        _, path = self.resolve(uri)
        try:
            descriptor, temporary = _temporary_beside(path)
        except OSError as error:
            self.fail(error, uri)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                yield handle
            os.replace(temporary, path)
        except BaseException as error:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            if isinstance(error, OSError):
                self.fail(error, uri)
            raise

    def write(self, uri: str, data: bytes, retry: RetryPolicy) -> None:
        def write() -> None:
            with self.open_atomic(uri) as handle:
                handle.write(data)

        self.run(uri, write, retry)

    def upload(self, local_path: str, uri: str, retry: RetryPolicy) -> None:
        def upload() -> None:
            with open(local_path, "rb") as source, self.open_atomic(uri) as target:
                shutil.copyfileobj(source, target)

        self.run(uri, upload, retry)

    def create_new(self, uri: str, data: bytes, retry: RetryPolicy) -> bool:
        """A temporary file hard-linked to the name: the link fails if the name exists, so one writer wins.

        Readers never see half a file. False on filesystems without hard links.
        """
        _, path = self.resolve(uri)
        descriptor, temporary = _temporary_beside(path)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.link(temporary, path)
        except FileExistsError:
            raise
        except OSError:
            return False
        finally:
            os.unlink(temporary)
        return True

    def check_writable(self, uri: str, retry: RetryPolicy) -> None:
        """The folder (or, if it does not exist yet, its nearest existing parent) must be a writable directory."""
        _, path = self.resolve(uri)
        existing = path
        while not os.path.lexists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise StorageError(f"cannot write under {uri}: {existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise AccessDeniedError(f"cannot write under {uri}: no write permission on {existing}")


def _temporary_beside(path: str) -> tuple[int, str]:
    """A new hidden temporary file in the folder of ``path`` (made if missing): (descriptor, its path).

    Beside its target, so that renaming or linking it there stays within one filesystem. Created
    with mode 0o666 less the umask, as an ordinary ``open(path, "w")`` would be (``mkstemp`` makes
    0o600 files, which the rest of a team cannot read), and named by a short random token rather
    than after the target, so that a target name near the filesystem's 255-byte limit still works.
    """
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError:  # a file stands where a folder of the path should be
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), folder) from None
    while True:
        temporary = os.path.join(folder, f".tmp-{secrets.token_hex(8)}")
        try:  # O_EXCL: never another writer's file; Python opens descriptors non-inheritable
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:
            continue
