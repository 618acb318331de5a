"""onnxruntime session options shared by the engines that build their own sessions.

onnxruntime's defaults suit a server, not a two-core board that runs four engines
at once: a pool of one thread per core for every session, and worker threads that
spin (busy-wait) after each run to be ready for the next one, which shows up as
idle CPU in every process and steals time from the engine that has work to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime


def session_options(threads: int, spin: bool = False, arena: bool = True) -> onnxruntime.SessionOptions:
    """Options for one ``onnxruntime.InferenceSession`` on the CPU.

    ``threads`` is the session's intra-op pool size (the threads that share one
    operator, 1 = the calling thread only; 0 lets onnxruntime use one per core).
    Operators run one after another (sequential execution, a single inter-op
    thread). ``spin`` lets the pool's threads busy-wait between runs: a little
    lower latency per run for a core kept busy; leave it off unless the session
    runs back to back and has cores to itself.

    ``arena=False`` turns off the CPU memory arena, which otherwise keeps the
    largest activations a session ever needed for the rest of its life. The
    wake word's and the VAD's small models, run 80 ms at a time, do without it
    at no measurable cost (the wake word's sessions held 26 MB less when they
    still computed four seconds of noise at start-up).

    onnxruntime is imported here, so importing this module stays cheap.
    """
    import onnxruntime

    if threads < 0:
        raise ValueError(f"threads must be 0 (one per core) or more, not {threads}")
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_cpu_mem_arena = arena
    allow = "1" if spin else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", allow)
    opts.add_session_config_entry("session.inter_op.allow_spinning", allow)
    return opts


def session(model: Path, threads: int, spin: bool = False, arena: bool = True,
            providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> onnxruntime.InferenceSession:
    """An ``onnxruntime.InferenceSession`` of ``model`` with :func:`session_options`, on ``providers``
    (best first; the CPU by default: see :func:`harken.engines.accel.onnx_providers`)."""
    import onnxruntime

    return onnxruntime.InferenceSession(str(model), sess_options=session_options(threads, spin, arena),
                                        providers=list(providers))
