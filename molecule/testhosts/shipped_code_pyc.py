"""Test VMs only: keep the bytecode Python compiles from the code Ansible ships to the host.

Stock Ansible ships each task's module and module_utils as a zip that Python imports with
zipimport; Mitogen (the QEMU scenarios' strategy) sends the sources over its connection and
compiles them in the VM. Neither ever writes bytecode, and under QEMU's software emulation
compiling module_utils costs seconds each time (stock: 2.6 s -> 1.2 s for a `command` task
with the bytecode at hand). The code that runs is unchanged: the cache is keyed by the source
and its file name. Loaded from a .pth file in the image; never installed on real hosts.
"""

import builtins
import hashlib
import marshal
import os
import zipimport

_CACHE_DIR = "/var/cache/shipped-code-pyc"
_zipimport_compile = zipimport._compile_source
_builtin_compile = builtins.compile


def _cached(name, source, compile_now):
    key = hashlib.sha256(name.encode() + b"\0" + (source if isinstance(source, bytes) else source.encode())).hexdigest()
    path = os.path.join(_CACHE_DIR, key)
    try:
        with open(path, "rb") as cached:
            return marshal.load(cached)
    except (OSError, EOFError, ValueError, TypeError):
        pass
    code = compile_now()
    try:
        os.makedirs(_CACHE_DIR, exist_ok=True)
        partial = f"{path}.{os.getpid()}"
        with open(partial, "wb") as out:
            marshal.dump(code, out)
        os.replace(partial, path)
    except OSError:
        pass
    return code


def _cached_zipimport_compile(pathname, source):
    # The payload's zip lives in a fresh temp dir per task: key on the path inside it.
    inner = pathname.rsplit(".zip" + os.sep, 1)[-1]
    return _cached(inner, source, lambda: _zipimport_compile(pathname, source))


def _cached_builtin_compile(source, filename, mode, flags=0, dont_inherit=False, optimize=-1, **kwargs):
    # Only what Mitogen compiles: whole modules, no inherited __future__ flags, so the result
    # depends on nothing but the source and the file name.
    if (
        mode == "exec"
        and not flags
        and dont_inherit
        and optimize == -1
        and not kwargs
        and isinstance(filename, str)
        and isinstance(source, (str, bytes))
        and len(source) > 4096
    ):
        return _cached(filename, source, lambda: _builtin_compile(source, filename, mode, flags, dont_inherit))
    return _builtin_compile(source, filename, mode, flags, dont_inherit, optimize, **kwargs)


zipimport._compile_source = _cached_zipimport_compile
builtins.compile = _cached_builtin_compile
