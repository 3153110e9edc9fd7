"""gloo's teardown abort (``terminate called without an active exception`` after a finished run),
reduced to PyTorch alone: no lstsd. See docs/known_issues.md.

    for i in $(seq 40); do OMP_NUM_THREADS=1 torchrun --nproc_per_node=2 tests/gloo_teardown_repro.py; done \
        2>&1 | grep -c "terminate called"
    # the same with --exit-now (end without the interpreter's finalization): never

What happens: ``wait()`` on a gloo collective returns as soon as the work is marked complete, but
the process group's worker thread drops its own reference to the work (and with it the tensors
the work holds) a moment later. When the main thread is already finalizing the interpreter by
then, freeing those tensors takes the GIL, Python 3.11 ends the thread inside ``take_gil``
(``pthread_exit``), the unwind reaches a ``noexcept`` destructor and libstdc++ calls
``std::terminate``. ``destroy_process_group()`` would join the worker threads first, but a
``DistributedDataParallel`` module keeps the group alive after it (even once deleted), so any
script that used DDP exits with the worker threads still running. The abort needs the worker
thread to be descheduled for that moment: about 1 run in 8 on a loaded 2-core machine.
"""

import os
import sys

import torch
import torch.distributed as dist
from torch import nn


def main() -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    if "--no-ddp" not in sys.argv:
        # DDP keeps the group, and its worker threads, alive past destroy_process_group().
        _ddp = nn.parallel.DistributedDataParallel(nn.Linear(4, 2))
    for _ in range(3):
        gathered = [torch.zeros(1000) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, torch.ones(1000))
    dist.barrier()
    dist.destroy_process_group()
    if "--exit-now" in sys.argv:     # the workaround: no interpreter finalization, so no thread takes the GIL in it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
