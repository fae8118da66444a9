"""The test VMs' bytecode cache for shipped code (molecule/testhosts/shipped_code_pyc.py).

It replaces builtins.compile in every Python on a test VM, so each case runs in its own
interpreter: the cached code must behave exactly as freshly compiled code, and calls whose
result could depend on more than the source and file name must not be cached at all.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTHOSTS = Path(__file__).resolve().parents[2] / "molecule" / "testhosts"

PROBE = """
import builtins, os, sys
sys.path.insert(0, sys.argv[1])
import shipped_code_pyc
shipped_code_pyc._CACHE_DIR = sys.argv[2]
source = "RESULT = sum(range(10))\\n" + "# padding\\n" * 600

def run(code):
    scope = {}
    exec(code, scope)
    return scope["RESULT"]

first = compile(source, "master:/x/mod.py", "exec", 0, True)
entries = os.listdir(sys.argv[2])
second = compile(source, "master:/x/mod.py", "exec", 0, True)
renamed = compile(source, "master:/y/mod.py", "exec", 0, True)
inherits = compile(source + "# inherits\\n", "master:/x/mod.py", "exec")
small = compile("RESULT = 1\\n", "master:/x/small.py", "exec", 0, True)
print(run(first), run(second), len(entries), len(os.listdir(sys.argv[2])),
      second.co_filename, renamed.co_filename, run(small),
      builtins.compile is shipped_code_pyc._cached_builtin_compile)
"""


def test_mitogen_style_compiles_are_cached_by_source_and_file_name(tmp_path):
    cache = tmp_path / "cache"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(TESTHOSTS), str(cache)], capture_output=True, text=True, check=True
    ).stdout.split()
    # Same answers from the cached code; one entry after the first compile; a second file name
    # is a second entry; inherited-flag and small compiles are not cached.
    assert out == ["45", "45", "1", "2", "master:/x/mod.py", "master:/y/mod.py", "1", "True"]
    assert len(list(cache.iterdir())) == 2


def test_a_corrupt_cache_entry_is_recompiled(tmp_path):
    cache = tmp_path / "cache"
    subprocess.run([sys.executable, "-c", PROBE, str(TESTHOSTS), str(cache)], check=True, capture_output=True)
    for entry in cache.iterdir():
        entry.write_bytes(b"not marshal data")
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(TESTHOSTS), str(cache)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[:2] == ["45", "45"]
