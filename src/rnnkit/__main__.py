"""``python -m rnnkit …`` runs the command line, so ``torchrun -m rnnkit train …`` works too.

A worker that torchrun started ends with ``os._exit`` once its command has returned and left
the process group: the interpreter's own teardown, with the collective library's threads still
alive, could otherwise abort the finished worker ("terminate called without an active
exception", exit -6) and fail a job whose run is already written.
"""

from __future__ import annotations

import os
import sys

from rnnkit.cli.main import main

if __name__ == "__main__":
    code = main()
    from rnnkit import distributed

    if distributed.launched_by_torchrun():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
