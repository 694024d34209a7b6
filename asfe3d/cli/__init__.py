"""The ``asfe3d`` command: one module per sub-command, heavy imports inside the commands.

Sub-commands: ``fuse`` (one pair, or a cohort with ``--datalist``; :mod:`asfe3d.cli.fuse`), ``demo``
(:mod:`asfe3d.cli.demo`), ``bids`` (a BIDS App; :mod:`asfe3d.cli.bids`), and ``train``, ``evaluate`` and
``benchmark``, whose own parsers live with their tools. Shared option builders are in :mod:`asfe3d.cli.options`.
Library code never imports this package.

Exit codes: 0 success; 2 bad input or usage (one line on stderr, ``asfe3d: error: <file>: <problem>``); 1 a failure
inside asfe3d (with its traceback); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM). An interrupted or
terminated run leaves no partial output under a final name and keeps any earlier outputs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from asfe3d.errors import Terminated

__all__ = ["main", "entry", "build_parser", "Terminated"]

#: sub-command modules of this package (each defines ``add_parser(sub)``), in ``--help`` order
COMMAND_MODULES = ("fuse", "demo", "bids")
#: sub-commands whose tools parse their own arguments: name -> (module with ``main(argv)``, help)
PASSTHROUGH = {
    "train": ("asfe3d.training.cli", "train the fusion network (2D on HMIF, 3D on simulated volumes)"),
    "evaluate": ("asfe3d.evaluation.cli", "score asfe and the classic baselines on pairs"),
    "benchmark": ("asfe3d.benchmark", "time the networks and the whole pipeline (seconds, memory)"),
}


def _on_sigterm(signum: int, frame: object) -> None:
    from asfe3d.utils.stop import request_stop

    request_stop("terminate")  # kept where the exception may be lost (asfe3d.utils.stop)
    raise Terminated(f"signal {signum}")


def _on_sigint(signum: int, frame: object) -> None:
    from asfe3d.utils.stop import request_stop

    request_stop("interrupt")
    raise KeyboardInterrupt


class _Parser(argparse.ArgumentParser):
    """argparse with the command's error format: a usage mistake (an unknown option, a value outside its choices)
    is one line ``asfe3d: error: <problem> (see <command> --help)`` and exit code 2, like every other refusal; the
    sub-commands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"asfe3d: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``asfe3d`` command."""
    from asfe3d import __version__

    parser = _Parser(prog="asfe3d", description="MONAI-native 3D MRI/PET fusion (ASFE-Fusion).")
    parser.add_argument("--version", action="version", version=f"asfe3d {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:  # a command module that cannot be imported fails here, loudly
        importlib.import_module(f"asfe3d.cli.{name}").add_parser(sub)
    for name, (module, help_text) in PASSTHROUGH.items():
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.set_defaults(func=None, passthrough=module)
    return parser


def main(argv: Sequence[str] | None = None, *, command: bool = False) -> int:
    """Run the ``asfe3d`` command.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).
        command: this process is the command (:func:`entry`): MONAI is imported without the optional integrations
            the command never uses (:func:`asfe3d.cli.startup.import_monai_lean`) and glibc keeps freed memory for
            reuse. Both are process-wide, so a program that calls :func:`main` (a test, a notebook, a workflow)
            keeps MONAI as installed: with them, MONAI's bundle validation in the same process failed, its
            ``jsonschema`` bound to a placeholder.

    Returns:
        The exit code.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # OpenMP threads that wait by spinning hold their cores; on a machine where another process wants one of them
    # every parallel region then waits for a descheduled thread (2 threads ran 2-4x slower than 1 under one other
    # busy process; with passive waiting, as fast as idle). Read when torch loads OpenMP, hence before any import
    # of torch; a value the user set is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    passthrough = getattr(args, "passthrough", None)
    if passthrough is None and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.utils.stop import clear_stop, stop_requested

    clear_stop()
    previous = previous_int = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # an ignored SIGINT stays ignored
            previous_int = signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread (e.g. called from a worker thread): leave signals alone
        previous = None
    interrupted = False
    try:
        from asfe3d.io.checks import locale_problem

        for arg in argv:  # before any path reaches the file system or SimpleITK
            problem = locale_problem(str(arg))
            if problem is not None:
                raise Asfe3dInputError(ascii(str(arg)), problem)
        if passthrough is not None:
            return int(importlib.import_module(passthrough).main(rest) or 0)
        from asfe3d.cli.options import setup_logging
        from asfe3d.cli.startup import import_monai_lean, reuse_freed_memory

        setup_logging(getattr(args, "verbose", 0))
        if command:
            reuse_freed_memory()
        before_imports = getattr(args, "before_imports", None)
        if before_imports is not None:  # work that needs no torch starts now, beside the imports
            before_imports(args)
        if command:
            import_monai_lean()
        code = int(args.func(args) or 0)
        if stop_requested() == "terminate":  # its exception was lost (raised in a callback that discards it)
            raise Terminated("signal 15")
        if stop_requested() == "interrupt":
            raise KeyboardInterrupt
        return code
    except Asfe3dInputError as exc:
        print(f"asfe3d: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        from asfe3d.io.writer import DISK_ERRNOS

        if exc.errno not in DISK_ERRNOS:
            raise
        print(f"asfe3d: error: {exc.filename or 'output'}: {_os_verb(exc)}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        where = getattr(args, "mri", None) or "asfe3d"
        print(f"asfe3d: error: {where}: out of memory ({_one_line(exc)}); no partial output was kept: run it where "
              "more memory is free (a larger job), or give the MRI on a coarser grid", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        interrupted = True
        if stop_requested() == "terminate":  # a cohort stops a SIGTERM's run as an interrupt (it cannot raise ours)
            print("asfe3d: terminated; no partial output was kept", file=sys.stderr)
            return 143
        print("asfe3d: interrupted; no partial output was kept", file=sys.stderr)
        return 130
    except Terminated:
        interrupted = True
        print("asfe3d: terminated; no partial output was kept", file=sys.stderr)
        return 143
    finally:
        early = getattr(args, "early", None)
        if early is not None and not interrupted:  # a run that ended early (a refusal, a failure) lets the thread
            # stop at its next step and waits for it (ITK must not be mid-call at the interpreter's teardown), but
            # not in the command, which ends without that teardown (entry): a refusal is not kept waiting for the
            # rest of a registration (a missing --weights file was reported, then the process sat 4-8 s)
            early.cancel(wait=not command)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)


#: what torch, SimpleITK and CUDA say when an allocation fails (they raise RuntimeError, numpy MemoryError)
_OOM_WORDS = ("can't allocate memory", "out of memory", "std::bad_alloc", "failed to allocate memory")


def _os_verb(exc: OSError) -> str:
    """What failed on ``exc.filename``: ``cannot read`` when the file is there and can be written but not read (an
    input: an unreadable DICOM slice found when its fingerprint was taken), ``cannot read or write`` when it can
    be neither (an input, or an earlier output of another user's: which one failed is not known here), else
    ``cannot write``."""
    name = exc.filename
    if isinstance(name, (str, bytes, os.PathLike)) and os.path.lexists(name) and not os.access(name, os.R_OK):
        return "cannot read" if os.access(name, os.W_OK) else "cannot read or write"
    return "cannot write"


def _out_of_memory(exc: BaseException) -> bool:
    """Whether an exception is a failed allocation (numpy's MemoryError, torch's CPU / CUDA allocators, ITK)."""
    return isinstance(exc, MemoryError) or any(w in str(exc).lower() for w in _OOM_WORDS)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def entry(argv: Sequence[str] | None = None) -> None:
    """The console command: :func:`main`, then the process ends without the interpreter's teardown.

    With torch and MONAI loaded, Python's shutdown (module clearing and the final garbage collections over millions
    of objects) takes 0.7-1.1 s on a 2-core machine, for a process whose outputs are already complete, closed and
    renamed into place. So once :func:`main` has returned, and only when no other thread but daemons (which the
    ordinary exit would not wait for either) is still running,
    stdout, stderr and the log handlers are flushed and the process exits at once with :func:`main`'s code
    (atexit handlers do not run; the command registers none). An exception from :func:`main` takes the ordinary
    path (traceback, exit 1). Library code and tests call :func:`main`, which returns the code as before.
    """
    import logging
    import threading

    code = main(argv, command=True)
    # a thread still working (not a daemon: the ordinary exit would wait for it) takes the ordinary exit; daemon
    # threads (tqdm's monitor, started by the progress bars) end with the process either way
    current = threading.current_thread()
    if any(t is not current and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said to the reader
            pass
    os._exit(code)

