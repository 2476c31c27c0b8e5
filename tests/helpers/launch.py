"""Processes for multi-process tests: another run holding an output's lock, and the ranks of
a run started by an external launcher (what ``torchrun`` or ``srun`` give each process)."""

import contextlib
import os
import socket
import subprocess
import sys

_HOLDER = ("import sys, time\nfrom radiodiff.io.artifacts import lock_output\n"
           "lock_output(sys.argv[1])\nprint('held', flush=True)\ntime.sleep(300)")


@contextlib.contextmanager
def held_lock(target):
    """A live process holding ``target``'s output lock (as a run writing it does); yields it."""
    with subprocess.Popen([sys.executable, "-c", _HOLDER, str(target)], stdout=subprocess.PIPE,
                          text=True) as holder:
        try:
            assert holder.stdout.readline().strip() == "held"
            yield holder
        finally:
            holder.kill()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_external_ranks(cmd, cwd, n=2, timeout=240, attempts=3):
    """Run ``cmd`` as ``n`` independent processes with torchelastic's environment variables
    and no agent watching them (as ``srun`` starts ranks); returns ``(returncode, stderr)``
    per rank. A rank still running after ``timeout`` seconds fails the test. The master
    port is free when picked but may be taken before rank 0 binds it: a run that failed
    for that reason alone is started again on another port (``attempts`` in all)."""
    for _ in range(max(1, attempts)):
        results = _run_ranks(cmd, cwd, n, timeout, _free_port())
        if results is not None:
            return results
    raise AssertionError(f"the master port was taken {max(1, attempts)} times in a row")


_EADDRINUSE = "address already in use"


def _run_ranks(cmd, cwd, n, timeout, port):
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR",
                                                            "RADIODIFF_DEBUG")}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", WANDB_MODE="offline",
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(n),
               LOCAL_WORLD_SIZE=str(n), GROUP_RANK="0", TORCHELASTIC_RUN_ID="test")
    ranks = [subprocess.Popen(cmd, cwd=cwd, env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in range(n)]
    try:
        results = []
        for rank in ranks:  # rank 0 first: it binds the port
            err = rank.communicate(timeout=timeout)[1]
            if rank is ranks[0] and rank.returncode and _EADDRINUSE in err.lower():
                return None  # the port was taken before rank 0 bound it: the others wait
            results.append((rank.returncode, err))
        return results
    finally:
        for rank in ranks:
            rank.kill()
            rank.communicate()  # reaped, pipes closed
