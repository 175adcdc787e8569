"""Runs ``spectral-moe train`` (argv as for the CLI) but dies with ``os._exit`` halfway through
writing the adapter file of checkpoint ``CRASH_AT_STEP``: a kill in the middle of a checkpoint write.
Used by test_kill_resume.py."""

import os
import sys

import peft.peft_model

from spectral_moe.cli import main

STEP = os.environ["CRASH_AT_STEP"]
_real_save = peft.peft_model.safe_save_file


def _dying_save(tensors, filename, *args, **kwargs):
    if f"checkpoint-{STEP}" in str(filename):
        _real_save(tensors, filename, *args, **kwargs)
        size = os.path.getsize(filename)
        with open(filename, "r+b") as fh:  # leave half a file behind, as a killed writer would
            fh.truncate(size // 2)
        os._exit(137)
    return _real_save(tensors, filename, *args, **kwargs)


peft.peft_model.safe_save_file = _dying_save

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
