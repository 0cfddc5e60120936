"""Run a training program on MXNet's distributed KVStore, all on this machine.

    gluon-bn launch-dist --workers 2 --servers 1 -- gluon-bn train --kvstore dist_sync

Starts one scheduler, the servers and the workers as separate processes on loopback, on a free
port (or --port), and watches all of them. When every worker has finished, it stops the rest
and exits 0. When any process fails first (a non-zero status, a signal, or a scheduler or
server that leaves while workers still run) it says which one and how, stops every other
process at once, and exits with the failing worker's status (1 for a scheduler or server,
128 + N for signal N). Ctrl-C, SIGTERM or SIGHUP stop everything too (exit 128 + the signal's
number). Each process runs in a process
group of its own, so what it started itself (data-loading workers) is stopped with it.

On several machines the program stays the same; each process gets the environment this launcher
sets (see README, "Several machines"): DMLC_ROLE (scheduler, server or worker),
DMLC_PS_ROOT_URI and DMLC_PS_ROOT_PORT (the scheduler's address), DMLC_NUM_SERVER and
DMLC_NUM_WORKER.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from ..utils.errors import Error
from ..utils.signals import status, stopping_on_signals

HOST = '127.0.0.1'
POLL_S = 0.1
# A scheduler or server may end a moment before the last worker's process is gone.
GRACE_S = 5.0
STOP_S = 3.0     # after SIGTERM, how long a process group gets before SIGKILL


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def describe(code):
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def stop(processes):
    """SIGTERM every process group still there, then SIGKILL what is left after STOP_S, and
    reap them all (no zombie)."""
    def signal_group(process, signum):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            pass
    for p in processes:
        signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + STOP_S
    for p in processes:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        signal_group(p, signal.SIGKILL)   # the group's other members too
        p.wait()


def watch(processes, names, num_workers, say):
    """Waits until all workers have finished (returns 0) or a process fails (says which and
    returns the launcher's exit status)."""
    workers = processes[-num_workers:]
    left_at = {}   # scheduler or server -> when it was seen gone with status 0
    while True:
        if all(w.poll() == 0 for w in workers):
            return 0
        for p in processes:
            code = p.poll()
            if code is None or (code == 0 and p in workers):
                continue
            if code == 0 and time.monotonic() - left_at.setdefault(p, time.monotonic()) < GRACE_S:
                continue
            what = describe(code) if code else "ended while workers were still running"
            say(f"{names[p]} (pid {p.pid}) {what}; stopping the other processes")
            if code < 0:
                return 128 - code
            return code if p in workers else 1
        time.sleep(POLL_S)


def runnable(program):
    """`program` as a path that can be executed (looked up on PATH if it has no slash), or an
    Error saying why it cannot run, before any process starts."""
    found = shutil.which(program) if os.sep not in program else program
    if found is None or not os.path.exists(found):
        raise Error(f"{program}: no such program (give its path, or a command on PATH)")
    if os.path.isdir(found):
        raise Error(f"{program} is a folder, not a program")
    if not os.access(found, os.X_OK):
        raise Error(f"{program} is not executable (chmod +x it, or run it with its "
                    f"interpreter: -- python3 {program})")
    return found


def launch(command, workers=2, servers=1, port=None, say=None):
    """Start the scheduler, the servers and `workers` processes running `command` (a list), and
    watch them (see the module's docstring). Returns the exit status. `say(line)` reports a
    process that failed (default: to stderr)."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    env = dict(os.environ, DMLC_PS_ROOT_URI=HOST, DMLC_NUM_SERVER=str(servers),
               DMLC_PS_ROOT_PORT=str(port or free_port()),
               DMLC_NUM_WORKER=str(workers), DMLC_NODE_HOST=HOST)
    # A scheduler or server is MXNet itself: importing it with that role runs the role.
    serve = [sys.executable, '-c', 'import mxnet']
    processes, names = [], {}
    program = runnable(command[0])
    try:
        with stopping_on_signals():   # SIGTERM, SIGHUP: as Ctrl-C, every process stops
            for role, count, cmd in (('scheduler', 1, serve), ('server', servers, serve),
                                     ('worker', workers, [program] + list(command[1:]))):
                for i in range(count):
                    p = subprocess.Popen(cmd, env=dict(env, DMLC_ROLE=role),
                                         start_new_session=True)
                    processes.append(p)
                    names[p] = role if role == 'scheduler' else f"{role} {i}"
            return watch(processes, names, workers, say)
    except KeyboardInterrupt as stopped:
        return status(stopped)
    finally:
        stop(processes)
