"""Run a training program on MXNet's distributed KVStore, all on this machine.

    python scripts/launch_dist.py --workers 2 --servers 1 -- \\
        python scripts/train_lenet_bn.py --kvstore dist_sync --epochs 1

Starts one scheduler, the servers and the workers as separate processes on loopback, on a free
port, and waits for the workers; every process it started is stopped when it ends, fails or gets
Ctrl-C. Its exit status is the first failing worker's, else 0.

On several machines the program stays the same; each process gets the environment this launcher
sets (see README, "Several machines"): DMLC_ROLE (scheduler, server or worker),
DMLC_PS_ROOT_URI and DMLC_PS_ROOT_PORT (the scheduler's address), DMLC_NUM_SERVER and
DMLC_NUM_WORKER.
"""
import argparse
import os
import signal
import socket
import subprocess
import sys

HOST = '127.0.0.1'


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def stop(processes, timeout=10):
    """Terminate, then kill, whatever is still running."""
    for p in processes:
        if p.poll() is None:
            p.terminate()
    for p in processes:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--servers', type=int, default=1)
    parser.add_argument('command', nargs=argparse.REMAINDER,
                        help='the workers\' command, after --')
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ['--'] else args.command
    if not command or args.workers < 1 or args.servers < 1:
        parser.error('give at least one worker, one server and a command after --')

    env = dict(os.environ, DMLC_PS_ROOT_URI=HOST, DMLC_PS_ROOT_PORT=str(free_port()),
               DMLC_NUM_SERVER=str(args.servers), DMLC_NUM_WORKER=str(args.workers),
               DMLC_NODE_HOST=HOST)
    # A scheduler or server is MXNet itself: importing it with that role runs the role.
    serve = [sys.executable, '-c', 'import mxnet']
    processes = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for role, count, cmd in (('scheduler', 1, serve), ('server', args.servers, serve),
                                 ('worker', args.workers, command)):
            for _ in range(count):
                processes.append(subprocess.Popen(cmd, env=dict(env, DMLC_ROLE=role)))
        workers = processes[1 + args.servers:]
        codes = [w.wait() for w in workers]
        return next((code for code in codes if code), 0)
    except KeyboardInterrupt:
        return 130
    finally:
        stop(processes)


if __name__ == '__main__':
    sys.exit(main())
