"""Keras on TensorFlow, imported quietly: every module that trains or exports imports it here.

TensorFlow writes INFO lines straight to the process's stderr, between the run's own log
lines: oneDNN and CPU-feature notices while it loads (before its logging is set up, so no
level hides them), then the XLA service and "compiled cluster" lines. Here TF_CPP_MIN_LOG_LEVEL
is 1 (a value the user set is kept), which drops the later INFO lines and keeps warnings and
errors; and while TensorFlow loads, file descriptor 2 goes to a buffer whose lines are written
back afterwards, all but those INFO records.
"""

import os
import re
import sys
import tempfile

from thunder_dagster import settings

settings.configure_library({"TF_CPP_MIN_LOG_LEVEL": "1"}, keep=("TF_CPP_MIN_LOG_LEVEL",))

# absl's INFO record ("I0000 00:00:1796051964.760340 ...") and its note that logging is not set up.
STARTUP_INFO = re.compile(
    r"^(I\d{4} \d\d:\d\d:\d+\.\d+ |WARNING: All log messages before absl::InitializeLog\(\))"
)


def _import_quietly():
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            import keras
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode("utf-8", "replace").splitlines()
                if not STARTUP_INFO.match(line)
            ]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
    return keras, tensorflow


keras, tensorflow = _import_quietly()

__all__ = ["keras", "tensorflow"]
