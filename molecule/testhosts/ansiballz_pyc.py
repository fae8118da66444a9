"""Test VMs only: keep the bytecode Python compiles from Ansible's module payloads.

Every Ansible task ships its module and module_utils as a zip that Python imports with
zipimport, which never writes bytecode. Under QEMU's software emulation compiling
module_utils costs about 1.5 s per task (measured: 2.6 s -> 1.2 s for `command` with the
bytecode at hand). The code that runs is unchanged: the cache is keyed by the source itself.
Loaded from a .pth file in the image; never installed on real hosts.
"""

import hashlib
import marshal
import os
import zipimport

_CACHE_DIR = "/var/cache/ansiballz-pyc"
_compile_source = zipimport._compile_source


def _cached_compile(pathname, source):
    # The payload's zip lives in a fresh temp dir per task: key on the path inside it.
    inner = pathname.rsplit(".zip" + os.sep, 1)[-1]
    key = hashlib.sha256(inner.encode() + b"\0" + source).hexdigest()
    path = os.path.join(_CACHE_DIR, key)
    try:
        with open(path, "rb") as cached:
            return marshal.load(cached)
    except (OSError, EOFError, ValueError, TypeError):
        pass
    code = _compile_source(pathname, source)
    try:
        os.makedirs(_CACHE_DIR, exist_ok=True)
        partial = f"{path}.{os.getpid()}"
        with open(partial, "wb") as out:
            marshal.dump(code, out)
        os.replace(partial, path)
    except OSError:
        pass
    return code


zipimport._compile_source = _cached_compile
