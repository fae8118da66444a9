"""Ansible's linear strategy carried over Mitogen (the `mitogen` package in requirements.txt).

The QEMU scenarios use it: under software emulation a stock task starts a fresh Python on the
VM and re-imports module_utils every time (4-9 s per task, measured), where Mitogen keeps one
interpreter per host and runs the same module code in it (0.3-1 s). Mitogen ships the same
shim inside its package; this copy only saves looking up the venv's site-packages path.
"""

import ansible_mitogen.loaders
import ansible_mitogen.strategy

_Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):
    pass
