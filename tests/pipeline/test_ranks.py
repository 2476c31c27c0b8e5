"""Rank 0's decisions heard by every rank: a failure or a lock refusal stops them all."""

import os
from types import SimpleNamespace

import pytest

from helpers.launch import held_lock
from radiodiff.io.artifacts import OutputError
from radiodiff.pipeline.ranks import RankZeroLock, launched_externally, on_rank_zero


class Channel:
    """What ``strategy.broadcast(obj, src=0)`` does across ranks, run one after another."""

    def __init__(self):
        self.sent = []

    def trainer(self, rank, external=None):
        def broadcast(obj, src=0):
            if rank == src:
                self.sent.append(obj)
                return obj
            return self.sent[-1]
        env = None if external is None else SimpleNamespace(
            creates_processes_externally=external)
        return SimpleNamespace(is_global_zero=rank == 0, strategy=SimpleNamespace(
            broadcast=broadcast, cluster_environment=env))


def test_a_failure_on_rank_zero_stops_every_rank():
    channel, calls = Channel(), []

    def rotate():  # e.g. the checkpoint just written does not verify
        calls.append("rank 0")
        raise ValueError("the checkpoint just written did not verify")

    with pytest.raises(ValueError, match="did not verify"):  # rank 0: its own exception
        on_rank_zero(channel.trainer(0), rotate)
    with pytest.raises(OutputError, match=r"^the checkpoint just written did not verify$"):
        on_rank_zero(channel.trainer(1), rotate)  # rank 1: the same text, not run there
    assert calls == ["rank 0"]
    on_rank_zero(channel.trainer(0), lambda: calls.append("ok"))  # success: nobody raises
    on_rank_zero(channel.trainer(1), lambda: calls.append("not on rank 1"))
    assert calls == ["rank 0", "ok"]


def test_a_lock_refusal_reaches_every_rank_and_a_held_lock_is_given_back(tmp_path):
    out, wrote = tmp_path / "out", []
    with held_lock(out) as holder:
        channel = Channel()
        for rank in (0, 1):
            lock = RankZeroLock(out, "run=x: ", then=lambda: wrote.append(1))
            with pytest.raises(OutputError, match=rf"^run=x: {out}: being written by another "
                               rf"radiodiff run \(pid {holder.pid}\)"):
                lock.setup(channel.trainer(rank), None, "fit")
            assert not lock.held
    assert wrote == []
    lock = RankZeroLock(out, then=lambda: wrote.append(1))
    lock.acquire_before_launch(Channel().trainer(0, external=True))  # torchrun: not yet
    assert not lock.held
    lock.acquire_before_launch(Channel().trainer(1))                 # not rank 0: never
    assert not lock.held
    lock.acquire_before_launch(Channel().trainer(0, external=False))  # its own launcher
    assert lock.held and wrote == [1]  # the dead holder's lock taken over
    assert (tmp_path / ".rdlock-out").read_text().startswith(f"{os.getpid()}@")
    lock.setup(Channel().trainer(0, external=False), None, "fit")    # held already: no-op
    assert wrote == [1]
    lock.release()
    assert not lock.held and not list(tmp_path.glob(".rdlock-*"))


def test_launched_externally_reads_the_cluster_environment():
    assert not launched_externally(Channel().trainer(0))  # one process, no environment
    assert not launched_externally(Channel().trainer(0, external=False))
    assert launched_externally(Channel().trainer(0, external=True))
