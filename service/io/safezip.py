"""What reading a hostile zip can raise, in one place: every reader maps these to a domain error."""

from __future__ import annotations

import zipfile
import zlib

# BadZipFile/LargeZipFile: broken structure; NotImplementedError: unsupported version or method;
# RuntimeError: encrypted member; zlib.error/EOFError/OSError: broken or truncated data.
ZIP_ERRORS: tuple[type[BaseException], ...] = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError,
                                               RuntimeError, ValueError, OSError, EOFError, zlib.error, KeyError)
