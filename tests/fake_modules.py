"""sys.modules entries replaced for a block: the checkpoint tests pickle files against stand-in `torch`
modules (no PyTorch needed), and must leave the interpreter as they found it."""

import contextlib
import sys


@contextlib.contextmanager
def modules_replaced(mapping: dict):
    saved = {k: sys.modules.get(k) for k in mapping}
    sys.modules.update(mapping)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
