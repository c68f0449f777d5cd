"""Reading ahead on host threads: a pipeline's batches made while the device trains."""

import concurrent.futures
import queue
import threading
from collections.abc import Callable, Iterator

_END = object()


def prefetched(reads: Callable[[], Iterator[Callable[[], dict]]], depth: int,
               threads: int = 1, name: str = "prefetch") -> Iterator[dict]:
    """The batches of reads()'s read functions, in order, up to `depth` of them read ahead by
    a pool of `threads` threads (depth 0: each read in the caller's thread).

    NumPy releases the GIL while it copies and computes, so more threads help large batches
    on hosts with cores to spare; on small batches they mostly contend for the GIL. The
    threads start on the first next() and stop once the returned generator is closed or
    garbage-collected; an exception in a read is raised again in the consumer.
    """
    if depth <= 0:
        for read in reads():
            yield read()
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        # Timed waits so that an abandoned iterator's feeder notices `stop` and exits instead
        # of blocking forever on a full queue.
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def feed() -> None:
        pool = concurrent.futures.ThreadPoolExecutor(max(1, threads), name)
        try:
            for read in reads():
                if not put(pool.submit(read)):
                    pool.shutdown(wait=False, cancel_futures=True)  # nobody will take them
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer, which re-raises it
            failed: concurrent.futures.Future = concurrent.futures.Future()
            failed.set_exception(e)
            put(failed)
        finally:
            pool.shutdown(wait=False)  # the workers finish what is queued, then exit

    threading.Thread(target=feed, name=f"{name}-feed", daemon=True).start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            yield item.result()
    finally:
        stop.set()
