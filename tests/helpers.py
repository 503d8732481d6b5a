"""Tasks for the isolation tests: each misbehaves the way a broken parser would."""

import os
import signal
import time


def echo(value):
    return value


def hang(seconds):
    time.sleep(seconds)
    return "woke up"


def segfault(_):
    os.kill(os.getpid(), signal.SIGSEGV)


def hard_exit(_):
    os._exit(3)


def allocate(megabytes):
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)
